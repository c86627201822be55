//! `cosmos target add | list | show | edit | rm | trust | check`.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::json;

use cosmos_core::target::{parse_mount, parse_ssh_address, valid_env_name, validate_target_name};
use cosmos_core::{RuntimeKind, Target, TargetConfig, TargetKind};
use cosmos_remote::ssh::hostkeys::HostKeyVerdict;
use cosmos_remote::sshconfig;

use crate::context::Ctx;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add a target: an SSH host running Docker (or a local one with --local)
    Add(AddArgs),
    /// List targets
    List(ListArgs),
    /// Show a target's settings
    Show(ShowArgs),
    /// Change a target's settings
    Edit(EditArgs),
    /// Remove a target
    Rm(RmArgs),
    /// Show the host key fingerprint and pin it
    Trust(TrustArgs),
    /// Preflight: reachable, trusted, logged in, docker, image, checkout, checkpoints, GPUs, disk
    Check(ShowArgs),
}

#[derive(Debug, Clone, clap::Args, Default)]
pub struct Settings {
    /// Host name, address, or a Host alias from ~/.ssh/config
    #[arg(long)]
    host: Option<String>,
    /// Login user (default: from ~/.ssh/config, else yours)
    #[arg(long)]
    user: Option<String>,
    /// SSH port (default: from ~/.ssh/config, else 22)
    #[arg(long)]
    port: Option<u16>,
    /// Private key file (an encrypted key needs ssh-agent)
    #[arg(long, value_name = "PATH")]
    key: Option<String>,
    /// Jump host, `[user@]host[:port]` or an alias (ProxyJump)
    #[arg(long, value_name = "HOST")]
    jump: Option<String>,
    /// Where blobs and run directories live on the target
    #[arg(long, value_name = "DIR")]
    root: Option<String>,
    /// The cosmos-transfer1 checkout on the target
    #[arg(long, value_name = "DIR")]
    cosmos_dir: Option<String>,
    /// The Cosmos-Transfer1 Docker image on the target
    #[arg(long)]
    image: Option<String>,
    /// Shared memory for the container (`docker run --shm-size`)
    #[arg(long)]
    shm_size: Option<String>,
    /// docker, or none (a plain process)
    #[arg(long, value_parser = ["docker", "none"])]
    runtime: Option<String>,
    /// Run docker through `sudo -n`
    #[arg(long)]
    docker_sudo: bool,
    /// Leave `--gpus` out of `docker run` (engines without GPUs)
    #[arg(long)]
    no_gpu_flag: bool,
    /// GPU slots on the target
    #[arg(long)]
    gpus: Option<u32>,
    /// Extra environment for the model, KEY=VALUE (repeatable), written to the run's
    /// owner-only env file; not for secrets (stored with the target: use [secrets] in cosmos.toml)
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Mount a host folder into the model's container, HOST_DIR:CONTAINER_DIR[:ro]
    /// (repeatable; on `edit` the given mounts replace the target's)
    #[arg(long = "mount", value_name = "HOST:CONTAINER[:ro]")]
    mounts: Vec<String>,
    /// Remove every extra mount (`edit`)
    #[arg(long, conflicts_with = "mounts")]
    clear_mounts: bool,
    /// Make it the default target
    #[arg(long)]
    default: bool,
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The target's name, used by `--target` and every `cosmos target` command
    name: String,
    /// `ssh://user@host:port`, or a Host alias from ~/.ssh/config
    destination: Option<String>,
    /// A target on this machine
    #[arg(long, conflicts_with_all = ["host", "destination"])]
    local: bool,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The target's name
    name: String,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// The target's name
    name: String,
    /// Remove it even while runs on it are unfinished (they cannot be collected then)
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// The target's name
    name: String,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, clap::Args)]
pub struct TrustArgs {
    /// The target's name
    name: String,
    /// Pin without asking (for scripts)
    #[arg(long, short = 'y')]
    yes: bool,
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

impl Settings {
    fn apply(&self, c: &mut TargetConfig) -> Result<()> {
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
                bail!("key file `{v}` does not exist");
            }
            c.key = Some(std::fs::canonicalize(path)?.display().to_string());
        }
        if let Some(v) = &self.jump {
            parse_ssh_address(v).map_err(|e| anyhow::anyhow!("--jump: {e}"))?;
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
                bail!("--gpus {n} is out of range: use 1 to 64");
            }
            c.gpus = n;
        }
        for pair in &self.env {
            let Some((k, v)) = pair.split_once('=') else {
                bail!("--env `{pair}` is not KEY=VALUE");
            };
            if !valid_env_name(k) {
                bail!("--env: `{k}` is not a valid variable name (letters, digits, _)");
            }
            if v.contains('\n') {
                bail!("--env {k}: the value must be one line");
            }
            if looks_secret(k) {
                bail!(
                    "--env {k} looks like a secret, and target settings are stored in the database, where secrets never go: put a Hugging Face token in cosmos.toml as `[secrets] hf_token` (or COSMOS_SECRETS_HF_TOKEN); it reaches the model as HF_TOKEN through the owner-only env file"
                );
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
                .map(|m| parse_mount(m).map_err(|e| anyhow::anyhow!("--mount: {e}")))
                .collect::<Result<_>>()?;
        }
        for p in [&c.root, &c.cosmos_dir] {
            if !p.starts_with('/') {
                bail!("`{p}` must be an absolute path on the target");
            }
        }
        Ok(())
    }
}

impl Command {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let store = services.store();
        let mut out = std::io::stdout().lock();
        match self {
            Command::Add(a) => {
                validate_target_name(&a.name).map_err(anyhow::Error::msg)?;
                let defaults = &ctx.settings.config.target;
                let mut c = TargetConfig {
                    kind: if a.local {
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
                let mut settings_host = a.settings.host.clone();
                if let Some(dest) = &a.destination {
                    if dest.starts_with("ssh://") || dest.contains('@') {
                        let a = parse_ssh_address(dest).map_err(anyhow::Error::msg)?;
                        c.user = a.user;
                        c.port = a.port;
                        settings_host = Some(a.host);
                    } else {
                        settings_host = Some(dest.clone());
                    }
                }
                let settings = Settings {
                    host: settings_host,
                    ..a.settings.clone()
                };
                if !a.local && settings.host.is_none() {
                    bail!(
                        "give the host: `cosmos target add {} ssh://user@host:port` or `--host HOST` (or `--local`)",
                        a.name
                    );
                }
                settings.apply(&mut c)?;
                let t = Target {
                    name: a.name.clone(),
                    config: c,
                    is_default: a.settings.default || store.list_targets().await?.is_empty(),
                };
                store.put_target(&t, false).await?;
                ctx.say(
                    "note",
                    &format!(
                        "added target `{}`{}; next: `cosmos target trust {}` then `cosmos target check {}`",
                        t.name,
                        if t.is_default { " (the default)" } else { "" },
                        t.name,
                        t.name
                    ),
                );
                writeln!(out, "{}", t.name)?;
            }
            Command::List(a) => {
                let all = store.list_targets().await?;
                if a.json {
                    output::json(&mut out, &all)?;
                } else if all.is_empty() {
                    ctx.say("note", "no targets yet: `cosmos target add NAME ssh://user@host` or `cosmos quickstart`");
                } else {
                    for t in &all {
                        writeln!(
                            out,
                            "{}{}\t{}\t{}\t{} GPUs\t{}",
                            t.name,
                            if t.is_default { " *" } else { "" },
                            address(t),
                            runtime_label(t),
                            t.config.gpus,
                            t.config.root
                        )?;
                    }
                }
            }
            Command::Show(a) => {
                let t = services.find_target(Some(&a.name)).await?;
                if a.json {
                    output::json(&mut out, &t)?;
                } else {
                    let mut v = serde_json::to_value(&t)?;
                    if let Some(env) = v.get_mut("env").and_then(|e| e.as_object_mut()) {
                        for val in env.values_mut() {
                            *val = json!("<set>");
                        }
                    }
                    writeln!(
                        out,
                        "{}",
                        toml::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
                    )?;
                }
            }
            Command::Edit(a) => {
                let mut t = services.find_target(Some(&a.name)).await?;
                a.settings.apply(&mut t.config)?;
                if a.settings.default {
                    t.is_default = true;
                }
                store.put_target(&t, true).await?;
                writeln!(out, "{}", t.name)?;
            }
            Command::Rm(a) => {
                // Without its target, a started run could never be collected or its
                // container stopped, and a pinned run would wait for ever.
                for id in services.remove_target(&a.name, a.force).await? {
                    ctx.say(
                        "note",
                        &format!("cancelled {id}: it could only run on {}", a.name),
                    );
                }
                writeln!(out, "{}", a.name)?;
            }
            Command::Trust(a) => {
                let t = services.find_target(Some(&a.name)).await?;
                if t.config.kind != TargetKind::Ssh {
                    bail!(
                        "target `{}` is local: there is no host key to trust",
                        t.name
                    );
                }
                let hops = services.ssh_hops(&t)?;
                let last = hops.len() - 1;
                for (i, hop) in hops.iter().enumerate() {
                    let what = if i == last {
                        hop.address()
                    } else {
                        format!("jump host {}", hop.address())
                    };
                    let (fp, algo, verdict) = services.scan_key(hop).await?;
                    match &verdict {
                        HostKeyVerdict::Trusted => {
                            ctx.say("note", &format!("{what} already trusted ({algo} {fp})"));
                            if i == last {
                                writeln!(out, "{fp}")?;
                            }
                            continue;
                        }
                        HostKeyVerdict::Changed { file } => ctx.say(
                            "warning",
                            &format!(
                                "THE HOST KEY OF {what} DIFFERS FROM THE ONE PINNED IN {}: only continue if you know why it changed",
                                file.display()
                            ),
                        ),
                        HostKeyVerdict::Unknown => {}
                    }
                    eprintln!("{what} presents {algo} key {fp}");
                    if !a.yes {
                        if !std::io::stdin().is_terminal() {
                            bail!("not pinned: pass --yes to pin without asking");
                        }
                        eprint!("Pin this key for `{}`? [y/N] ", t.name);
                        let mut answer = String::new();
                        std::io::stdin().lock().read_line(&mut answer)?;
                        if !matches!(answer.trim(), "y" | "Y" | "yes") {
                            bail!("not pinned");
                        }
                    }
                    let fp = services.trust_key(hop).await?;
                    ctx.say(
                        "note",
                        &format!("pinned {fp} for {what} in {}", ctx.known_hosts().display()),
                    );
                    if i == last {
                        writeln!(out, "{fp}")?;
                    }
                }
            }
            Command::Check(a) => {
                let t = services.find_target(Some(&a.name)).await?;
                let items = services.check_target(&t).await?;
                let ok = items.iter().all(|i| i.ok);
                if a.json {
                    output::json(
                        &mut out,
                        &json!({ "target": t.name, "ok": ok, "items": items }),
                    )?;
                } else {
                    for i in &items {
                        let mark = if i.ok {
                            ctx.style.paint("32", "ok    ")
                        } else {
                            ctx.style.paint("31", "failed")
                        };
                        writeln!(out, "{mark} {:<16} {}", i.check, i.detail)?;
                        if let Some(h) = &i.hint {
                            writeln!(out, "       {:<16} fix: {h}", "")?;
                        }
                    }
                }
                return Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

pub fn address(t: &Target) -> String {
    match t.config.kind {
        TargetKind::Local => "local".into(),
        TargetKind::Ssh => format!(
            "ssh://{}@{}:{}",
            t.config
                .user
                .clone()
                .unwrap_or_else(|| std::env::var("USER").unwrap_or_default()),
            t.config.host.as_deref().unwrap_or("?"),
            t.config.port.unwrap_or(22)
        ),
    }
}

fn runtime_label(t: &Target) -> String {
    match t.config.runtime {
        RuntimeKind::Docker => format!("docker {}", t.config.image),
        RuntimeKind::None if t.config.rehearsal => "rehearsal (cosmos-sim)".into(),
        RuntimeKind::None => "process".into(),
    }
}
