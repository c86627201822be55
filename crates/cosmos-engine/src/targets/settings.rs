//! A target's settings as a front end gives them (flags, a form), checked and applied to a
//! stored target's configuration; adding and editing targets with their defaults.

use std::collections::BTreeMap;

use cosmos_core::target::{parse_mount, parse_ssh_address, valid_env_name, validate_target_name};
use cosmos_core::{RuntimeKind, Target, TargetConfig, TargetKind};
use cosmos_remote::sshconfig;

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
    /// `HOST:CONTAINER[:ro]`; given, they replace the target's.
    pub mounts: Vec<String>,
    pub clear_mounts: bool,
    pub default: bool,
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
                    "--env {k} looks like a secret, and target settings are stored in the database, where secrets never go: put a Hugging Face token in cosmos.toml as `[secrets] hf_token` (or COSMOS_SECRETS_HF_TOKEN); it reaches the model as HF_TOKEN through the owner-only env file"
                )));
            }
            c.env.insert(k.to_owned(), v.to_owned());
        }
        if self.clear_mounts {
            c.mounts.clear();
        }
        if !self.mounts.is_empty() {
            c.mounts = self
                .mounts
                .iter()
                .map(|m| parse_mount(m).map_err(|e| invalid(format!("--mount: {e}"))))
                .collect::<EngineResult<_>>()?;
        }
        for p in [&c.root, &c.cosmos_dir] {
            if !p.starts_with('/') {
                return Err(invalid(format!(
                    "`{p}` must be an absolute path on the target"
                )));
            }
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
        let mut c = TargetConfig {
            kind: if req.local {
                TargetKind::Local
            } else {
                TargetKind::Ssh
            },
            host: None,
            user: None,
            port: None,
            key: None,
            jump: None,
            root: defaults.root.clone(),
            cosmos_dir: defaults.cosmos_dir.clone(),
            image: defaults.image.clone(),
            shm_size: defaults.shm_size.clone(),
            runtime: RuntimeKind::Docker,
            docker_sudo: false,
            gpu_flag: true,
            gpus: 8,
            env: BTreeMap::new(),
            torchrun: None,
            rehearsal: false,
            mounts: Vec::new(),
            image_digest: None,
        };
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
            return Err(invalid(format!(
                "give the host of target `{}`: `ssh://user@host:port` or a host name (or make it local)",
                req.name
            )));
        }
        let settings = TargetSettings {
            host,
            ..req.settings.clone()
        };
        settings.apply(&mut c)?;
        let t = Target {
            name: req.name.clone(),
            config: c,
            is_default: req.settings.default || self.store().list_targets().await?.is_empty(),
        };
        self.store().put_target(&t, false).await?;
        Ok(t)
    }

    /// Stores a target as given, replacing one of the same name (a rehearsal target that
    /// `quickstart` sets up).
    pub(crate) async fn put_target(&self, target: &Target) -> EngineResult<()> {
        Ok(self.store().put_target(target, true).await?)
    }

    /// Changes a target's settings.
    pub(crate) async fn edit_target(
        &self,
        name: &str,
        settings: &TargetSettings,
    ) -> EngineResult<Target> {
        let mut t = self.find_target(Some(name)).await?;
        settings.apply(&mut t.config)?;
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
