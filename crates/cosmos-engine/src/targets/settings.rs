//! A target's settings as a front end gives them (flags, a form), checked and applied to a
//! stored target's configuration; adding and editing targets with their defaults.

use std::collections::BTreeMap;

use cosmos_core::target::{parse_mount, parse_ssh_address, valid_env_name, validate_target_name};
use cosmos_core::{RuntimeKind, Target, TargetConfig, TargetKind};
use cosmos_remote::sshconfig;

use std::path::Path;

use crate::Services;
use crate::error::{EngineError, EngineResult};
use crate::runs::LaunchDefaults;

fn invalid(message: String) -> EngineError {
    EngineError::Invalid(message)
}

/// Settings to give a target; `None` (or `false`, or empty) leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct TargetSettings {
    pub host: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub key: Option<String>,
    pub jump: Option<String>,
    pub root: Option<String>,
    pub cosmos_dir: Option<String>,
    pub image: Option<String>,
    pub shm_size: Option<String>,
    /// `docker` or `none`.
    pub runtime: Option<String>,
    pub docker_sudo: bool,
    pub no_gpu_flag: bool,
    pub gpus: Option<u32>,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    /// Variables to remove.
    pub unset_env: Vec<String>,
    /// `HOST:CONTAINER[:ro]`; given, they replace the target's.
    pub mounts: Vec<String>,
    pub clear_mounts: bool,
    pub default: bool,
    /// Accept an image tag that floats (`:latest`, none).
    pub allow_floating: bool,
    /// The models the target is set up for (given, they replace the target's).
    pub models: Vec<String>,
}

/// A new target: its name, where it is, and its settings.
#[derive(Debug, Clone, Default)]
pub struct AddTargetRequest {
    pub name: String,
    /// `ssh://user@host:port`, `user@host`, or a Host alias.
    pub destination: Option<String>,
    pub local: bool,
    pub settings: TargetSettings,
}

/// Whether an environment variable's name says it holds a secret.
fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "API_KEY",
        "ACCESS_KEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
    ]
    .iter()
    .any(|w| upper.contains(w))
}

impl TargetSettings {
    /// Applies the settings given to `c`, checking each.
    pub fn apply(&self, c: &mut TargetConfig) -> EngineResult<()> {
        if let Some(host) = &self.host {
            // A Host alias from ~/.ssh/config fills in what the flags leave open.
            let alias = sshconfig::lookup_user(host);
            c.host = Some(alias.host_name.clone().unwrap_or_else(|| host.clone()));
            c.user = c.user.take().or(alias.user);
            c.port = c.port.or(alias.port);
            c.key = c
                .key
                .take()
                .or(alias.identity_file.map(|p| p.display().to_string()));
            c.jump = c.jump.take().or(alias.proxy_jump);
        }
        if let Some(v) = &self.user {
            c.user = Some(v.clone());
        }
        if let Some(v) = self.port {
            c.port = Some(v);
        }
        if let Some(v) = &self.key {
            let path = std::path::Path::new(v);
            if !path.is_file() {
                return Err(invalid(format!("key file `{v}` does not exist")));
            }
            c.key = Some(
                std::fs::canonicalize(path)
                    .map_err(|e| invalid(format!("key file `{v}`: {e}")))?
                    .display()
                    .to_string(),
            );
        }
        if let Some(v) = &self.jump {
            parse_ssh_address(v).map_err(|e| invalid(format!("--jump: {e}")))?;
            c.jump = Some(v.clone());
        }
        if let Some(v) = &self.root {
            c.root = v.trim_end_matches('/').to_owned();
        }
        if let Some(v) = &self.cosmos_dir {
            c.cosmos_dir = v.trim_end_matches('/').to_owned();
        }
        if let Some(v) = &self.image {
            c.image = v.clone();
        }
        if let Some(v) = &self.shm_size {
            c.shm_size = v.clone();
        }
        if let Some(v) = &self.runtime {
            c.runtime = if v == "none" {
                RuntimeKind::None
            } else {
                RuntimeKind::Docker
            };
        }
        if self.docker_sudo {
            c.docker_sudo = true;
        }
        if self.no_gpu_flag {
            c.gpu_flag = false;
        }
        if let Some(n) = self.gpus {
            if n == 0 || n > 64 {
                return Err(invalid(format!("--gpus {n} is out of range: use 1 to 64")));
            }
            c.gpus = n;
            c.gpus_from_host = false;
        }
        for pair in &self.env {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(invalid(format!("--env `{pair}` is not KEY=VALUE")));
            };
            if !valid_env_name(k) {
                return Err(invalid(format!(
                    "--env: `{k}` is not a valid variable name (letters, digits, _)"
                )));
            }
            if v.contains('\n') {
                return Err(invalid(format!("--env {k}: the value must be one line")));
            }
            if looks_secret(k) {
                return Err(invalid(format!(
                    "--env {k} looks like a secret, and target settings are stored in the database, where secrets never go: put a Hugging Face token in cosmos.toml as `[secrets] hf_token` (or COSMOS_SECRETS_HF_TOKEN); runs never need it: Cosmos-Transfer1 reads HF_TOKEN only to download checkpoints"
                )));
            }
            c.env.insert(k.to_owned(), v.to_owned());
        }
        if self.clear_mounts {
            c.mounts.clear();
        }
        if !self.models.is_empty() {
            let mut models = Vec::new();
            for m in &self.models {
                let model =
                    cosmos_core::model::model(m).map_err(|e| invalid(format!("--model: {e}")))?;
                if !models.iter().any(|n| n == model.name()) {
                    models.push(model.name().to_owned());
                }
            }
            // Cosmos-Transfer1 alone is what a target that names none runs.
            c.models = if models == [cosmos_core::model::DEFAULT_MODEL] {
                Vec::new()
            } else {
                models
            };
        }
        if !self.mounts.is_empty() {
            c.mounts = self
                .mounts
                .iter()
                .map(|m| parse_mount(m).map_err(|e| invalid(format!("--mount: {e}"))))
                .collect::<EngineResult<_>>()?;
        }
        for k in &self.unset_env {
            if c.env.remove(k).is_none() {
                let set: Vec<&str> = c.env.keys().map(String::as_str).collect();
                return Err(invalid(format!(
                    "--unset-env {k}: the target has no such variable (it has: {})",
                    if set.is_empty() {
                        "none".into()
                    } else {
                        set.join(", ")
                    }
                )));
            }
        }
        c.validate_argv_values().map_err(invalid)
    }

    /// A Docker target's image must say what it is: a digest or a versioned tag; a floating
    /// one is kept only when allowed, and the target remembers it was.
    fn check_pinned(&self, c: &mut TargetConfig) -> EngineResult<()> {
        let floating = cosmos_core::setup::is_floating(&c.image);
        c.floating_image = floating && self.allow_floating;
        if c.runtime == RuntimeKind::Docker && floating && !self.allow_floating {
            return Err(EngineError::refused(
                crate::ErrorKind::InvalidInput,
                "floating_image",
                format!(
                    "image `{}` floats (no tag, or `:latest`): it can change under the target without anyone knowing what runs ran on; use a versioned tag or a digest (`name:1.2`, `name@sha256:…`; setup builds `{}`), or allow it explicitly",
                    c.image,
                    cosmos_core::setup::image_tag(cosmos_core::setup::COMMIT)
                ),
            ));
        }
        Ok(())
    }
}

impl Services {
    /// Adds a target with the configured defaults, then the settings given; the first
    /// target becomes the default.
    pub(crate) async fn add_target(
        &self,
        req: &AddTargetRequest,
        defaults: &LaunchDefaults,
    ) -> EngineResult<Target> {
        validate_target_name(&req.name).map_err(invalid)?;
        // Extra mounts are a target's own, never the defaults'.
        let mut c = LaunchDefaults {
            mounts: Vec::new(),
            ..defaults.clone()
        }
        .config(if req.local {
            TargetKind::Local
        } else {
            TargetKind::Ssh
        });
        let mut host = req.settings.host.clone();
        if let Some(dest) = &req.destination {
            if dest.starts_with("ssh://") || dest.contains('@') {
                let a = parse_ssh_address(dest).map_err(invalid)?;
                c.user = a.user;
                c.port = a.port;
                host = Some(a.host);
            } else {
                host = Some(dest.clone());
            }
        }
        if !req.local && host.is_none() {
            return Err(EngineError::refused(
                crate::ErrorKind::InvalidInput,
                "target_needs_host",
                format!(
                    "give the host of target `{}`: `ssh://user@host:port` or a host name (or make it local)",
                    req.name
                ),
            ));
        }
        let settings = TargetSettings {
            host,
            ..req.settings.clone()
        };
        settings.apply(&mut c)?;
        settings.check_pinned(&mut c)?;
        let t = Target {
            name: req.name.clone(),
            config: c,
            // The first real target is the default unless another real one already is: a
            // rehearsal target's default gives way to it.
            is_default: req.settings.default
                || self
                    .store()
                    .list_targets()
                    .await?
                    .iter()
                    .all(|t| t.config.rehearsal || !t.is_default),
        };
        self.store().put_target(&t, false).await?;
        Ok(t)
    }

    /// Sets up (again) the rehearsal target `name` under `dir`: cosmos-sim (`sim`) as the
    /// model, run as a plain process on this machine, with a checkout laid out by the sim.
    /// It is the default unless another target is.
    pub(crate) async fn put_rehearsal(
        &self,
        name: &str,
        dir: &Path,
        sim: &Path,
    ) -> EngineResult<Target> {
        let (bin, checkout, root) = (
            dir.join("bin"),
            dir.join("cosmos-transfer1"),
            dir.join("root"),
        );
        let io = |what: &Path, e: std::io::Error| {
            EngineError::Internal(format!("cannot set up {}: {e}", what.display()))
        };
        for d in [&bin, &root] {
            std::fs::create_dir_all(d).map_err(|e| io(d, e))?;
        }
        let torchrun = bin.join("torchrun");
        // A stale link from an earlier set-up is replaced; a missing one is fine.
        let _ = std::fs::remove_file(&torchrun);
        std::os::unix::fs::symlink(sim, &torchrun).map_err(|e| io(&torchrun, e))?;
        if !checkout.join("checkpoints").is_dir() {
            let laid = std::process::Command::new(sim)
                .arg("checkout")
                .arg(&checkout)
                .status()
                .map_err(|e| io(&checkout, e))?;
            if !laid.success() {
                return Err(EngineError::Internal(format!(
                    "cosmos-sim could not lay out {}",
                    checkout.display()
                )));
            }
        }
        let path = |p: &Path| p.display().to_string();
        let defaults = LaunchDefaults {
            root: path(&root),
            cosmos_dir: path(&checkout),
            image: "none".into(),
            shm_size: "1g".into(),
            mounts: Vec::new(),
        };
        let mut config = defaults.config(TargetKind::Local);
        config.runtime = RuntimeKind::None;
        config.gpu_flag = false;
        config.gpus = 1;
        config.gpus_from_host = false;
        config.env = BTreeMap::from([("COSMOS_SIM_GPUS".into(), "1".into())]);
        config.torchrun = Some(path(&torchrun));
        config.rehearsal = true;
        let others = self.store().list_targets().await?;
        let target = Target {
            name: name.to_owned(),
            config,
            is_default: others.iter().all(|t| t.name == name || !t.is_default),
        };
        self.store().put_target(&target, true).await?;
        Ok(target)
    }

    /// Changes a target's settings.
    pub(crate) async fn edit_target(
        &self,
        name: &str,
        settings: &TargetSettings,
    ) -> EngineResult<Target> {
        let mut t = self.find_target(Some(name)).await?;
        settings.apply(&mut t.config)?;
        if settings.image.is_some() || settings.runtime.is_some() || settings.allow_floating {
            settings.check_pinned(&mut t.config)?;
        }
        if settings.default {
            t.is_default = true;
        }
        self.store().put_target(&t, true).await?;
        Ok(t)
    }

    pub(crate) async fn list_targets(&self) -> EngineResult<Vec<Target>> {
        Ok(self.store().list_targets().await?)
    }
}
