//! `cosmos target add | list | show | edit | rm | trust | check`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::json;

use cosmos_core::{RuntimeKind, Target, TargetKind};
use cosmos_engine::{
    AddTargetRequest, CheckItem, Fix, HostKeyVerdict, SetupEvent, SetupRequest, TargetSettings,
};

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
    /// Set a GPU host up: clone cosmos-transfer1 at the pinned commit, build the image,
    /// download the checkpoints (token from `cosmos secret set hf_token`), write their
    /// manifest, verify. Each step is skipped when done and verified: safe to re-run
    Setup(SetupArgs),
    /// Compare the checkpoints with their manifest (sizes and times; --full re-hashes) and
    /// check every checkpoint a run needs is readable inside the image
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// The target's name
    name: String,
    /// The repository to clone: a URL, or a path on the host (a mirror or a fork)
    #[arg(long, value_name = "URL|PATH")]
    repo: Option<String>,
    /// The commit to check out (default: the one cosmos was tested against)
    #[arg(long)]
    commit: Option<String>,
    /// The model to set it up for, following that model's recipe (transfer1, transfer2.5)
    /// [default: the model the target is for]; another model makes it that model's target
    #[arg(long)]
    model: Option<String>,
    /// Print the report as JSON (progress still goes to stderr)
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The target's name
    name: String,
    /// Re-hash every checkpoint (slow on 300 GB) instead of comparing sizes and times
    #[arg(long)]
    full: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
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
    /// Remove an environment variable from the target (`edit`, repeatable)
    #[arg(long = "unset-env", value_name = "KEY")]
    unset_env: Vec<String>,
    /// Mount a host folder into the model's container, HOST_DIR:CONTAINER_DIR[:ro]
    /// (repeatable; on `edit` the given mounts replace the target's)
    #[arg(long = "mount", value_name = "HOST:CONTAINER[:ro]")]
    mounts: Vec<String>,
    /// Remove every extra mount (`edit`)
    #[arg(long, conflicts_with = "mounts")]
    clear_mounts: bool,
    /// The models the target is set up for: transfer1 (the default) or transfer2.5
    /// (repeatable; its checkout and image are that model's); runs of another model never go there
    #[arg(long = "model", value_name = "MODEL")]
    models: Vec<String>,
    /// Make it the default target
    #[arg(long)]
    default: bool,
    /// Accept an image tag that can change under the target (`:latest`, or none)
    #[arg(long)]
    allow_floating: bool,
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
    /// Pin without asking (for scripts); a changed key also needs --replace
    #[arg(long, short = 'y')]
    yes: bool,
    /// Replace a pinned key that changed (only when you know why it changed)
    #[arg(long)]
    replace: bool,
}

impl Settings {
    fn request(&self) -> TargetSettings {
        TargetSettings {
            host: self.host.clone(),
            user: self.user.clone(),
            port: self.port,
            key: self.key.clone(),
            jump: self.jump.clone(),
            root: self.root.clone(),
            cosmos_dir: self.cosmos_dir.clone(),
            image: self.image.clone(),
            shm_size: self.shm_size.clone(),
            runtime: self.runtime.clone(),
            docker_sudo: self.docker_sudo,
            no_gpu_flag: self.no_gpu_flag,
            gpus: self.gpus,
            env: self.env.clone(),
            unset_env: self.unset_env.clone(),
            mounts: self.mounts.clone(),
            clear_mounts: self.clear_mounts,
            default: self.default,
            allow_floating: self.allow_floating,
            models: self.models.clone(),
        }
    }
}

impl Command {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        if let Command::Setup(a) = self {
            return setup(ctx, a).await;
        }
        let services = ctx.services().await?;
        let mut out = std::io::stdout().lock();
        match self {
            Command::Add(a) => {
                let t = services
                    .targets()
                    .add(
                        &AddTargetRequest {
                            name: a.name.clone(),
                            destination: a.destination.clone(),
                            local: a.local,
                            settings: a.settings.request(),
                        },
                        &ctx.launch_defaults(),
                    )
                    .await?;
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
                let all = services.targets().list().await?;
                if a.json {
                    output::json(&mut out, &all)?;
                } else if all.is_empty() {
                    ctx.say("note", "no targets yet: `cosmos target add NAME ssh://user@host` or `cosmos quickstart`");
                } else {
                    let mut table = output::Table::new(&[
                        "NAME", "DEFAULT", "ADDRESS", "RUNTIME", "MODELS", "SLOTS", "ROOT",
                    ]);
                    for t in &all {
                        table.row(vec![
                            t.name.clone(),
                            if t.is_default { "*" } else { "" }.into(),
                            address(t),
                            runtime_label(t),
                            t.config.models().join(","),
                            t.config.gpus.to_string(),
                            t.config.root.clone(),
                        ]);
                    }
                    table.print(&mut out, ctx.style)?;
                }
            }
            Command::Show(a) => {
                let t = services.targets().find(Some(&a.name)).await?;
                if a.json {
                    output::json(&mut out, &t)?;
                } else {
                    // Target settings hold no secrets (names that look secret are refused
                    // at `target add`/`edit`), so their values are shown as they are.
                    let v = serde_json::to_value(&t)?;
                    writeln!(
                        out,
                        "{}",
                        toml::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
                    )?;
                }
            }
            Command::Edit(a) => {
                let t = services
                    .targets()
                    .edit(&a.name, &a.settings.request())
                    .await?;
                writeln!(out, "{}", t.name)?;
            }
            Command::Rm(a) => {
                // Without its target, a started run could never be collected or its
                // container stopped, and a pinned run would wait for ever.
                for id in services.targets().remove(&a.name, a.force).await? {
                    ctx.say(
                        "note",
                        &format!("cancelled {id}: it could only run on {}", a.name),
                    );
                }
                writeln!(out, "{}", a.name)?;
            }
            Command::Trust(a) => {
                let t = services.targets().find(Some(&a.name)).await?;
                if t.config.kind != TargetKind::Ssh {
                    bail!(
                        "target `{}` is local: there is no host key to trust",
                        t.name
                    );
                }
                let hops = services.targets().hops(&t)?;
                let last = hops.len() - 1;
                for (i, hop) in hops.iter().enumerate() {
                    let what = if i == last {
                        hop.address()
                    } else {
                        format!("jump host {}", hop.address())
                    };
                    let (fp, algo, verdict) = services.targets().scan_key(hop).await?;
                    match &verdict {
                        HostKeyVerdict::Trusted => {
                            ctx.say("note", &format!("{what} already trusted ({algo} {fp})"));
                            if i == last {
                                writeln!(out, "{fp}")?;
                            }
                            continue;
                        }
                        HostKeyVerdict::Changed { file } => {
                            let message = format!(
                                "THE HOST KEY OF {what} DIFFERS FROM THE ONE PINNED IN {}: it now presents {algo} key {fp}",
                                file.display()
                            );
                            if !a.replace {
                                bail!(
                                    "{message}. Someone may be impersonating the host, or it was reinstalled: only if you know why it changed, `cosmos target trust {} --replace` replaces the key pinned for {what} in {}",
                                    t.name,
                                    file.display()
                                );
                            }
                            ctx.say(
                                "warning",
                                &format!(
                                    "{message}; replacing the key pinned for {what} in {}",
                                    file.display()
                                ),
                            );
                        }
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
                    let fp = services.targets().trust_key(hop, a.replace).await?;
                    ctx.say(
                        "note",
                        &format!("pinned {fp} for {what} in {}", ctx.known_hosts().display()),
                    );
                    if i == last {
                        writeln!(out, "{fp}")?;
                    }
                }
                // A target added without --gpus gets as many slots as the host has GPUs.
                if t.config.gpus_from_host
                    && let Ok(Some(n)) = services.targets().count_gpus(&t).await
                {
                    let s = if n == 1 { "" } else { "s" };
                    ctx.say("note", &format!("{} has {n} GPU{s}: {n} slot{s}", t.name));
                }
            }
            Command::Setup(_) => unreachable!("handled above"),
            Command::Verify(a) => {
                let t = services.targets().find(Some(&a.name)).await?;
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let shown = tokio::spawn(show_progress(rx, ctx.err_style));
                let items = services
                    .targets()
                    .verify(
                        &cosmos_engine::VerifyRequest {
                            target: a.name.clone(),
                            full: a.full,
                        },
                        Some(tx),
                    )
                    .await;
                let _ = shown.await;
                return print_items(ctx, &t, &items?, a.json);
            }
            Command::Check(a) => {
                let t = services.targets().find(Some(&a.name)).await?;
                let items = services.targets().check(&t).await?;
                return print_items(ctx, &t, &items, a.json);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Check items, one per line with the fix under a failed one (or JSON); the exit code says
/// whether all passed.
fn print_items(ctx: &Ctx, t: &Target, items: &[CheckItem], json_out: bool) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let ok = items.iter().all(|i| i.ok);
    if json_out {
        // Each failed item with its fix in words, beside the engine's own.
        let items: Vec<serde_json::Value> = items
            .iter()
            .map(|i| {
                let mut v = json!(i);
                if let Some(f) = &i.fix {
                    v["hint"] = json!(fix_text(f, &t.name));
                }
                v
            })
            .collect();
        output::json(
            &mut out,
            &json!({ "target": t.name, "ok": ok, "items": items }),
        )?;
    } else {
        for i in items {
            let mark = if i.ok {
                ctx.style.paint("32", "ok    ")
            } else {
                ctx.style.paint("31", "failed")
            };
            writeln!(out, "{mark} {:<16} {}", i.check, i.detail)?;
            if let Some(f) = &i.fix {
                writeln!(out, "       {:<16} fix: {}", "", fix_text(f, &t.name))?;
            }
        }
    }
    // Not reached or not logged in is a connection error (2), like everywhere; a target
    // reached that fails a check is the subject failing (1).
    let unreachable = items
        .iter()
        .any(|i| i.fix.as_ref().is_some_and(Fix::is_connection));
    Ok(match (ok, unreachable) {
        (true, _) => ExitCode::SUCCESS,
        (false, true) => ExitCode::from(2),
        (false, false) => ExitCode::from(1),
    })
}

/// Renders setup's progress on stderr: a line per step, output lines dimmed, amounts on one
/// line that redraws on a terminal (every tenth of them otherwise).
async fn show_progress(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<SetupEvent>,
    style: crate::output::Style,
) {
    let tty = std::io::stderr().is_terminal();
    let mut amounts = 0u64;
    let mut redraw = false;
    while let Some(e) = rx.recv().await {
        let mut err = std::io::stderr().lock();
        if redraw && !matches!(e, SetupEvent::Amount { .. }) {
            let _ = writeln!(err);
            redraw = false;
        }
        let _ = match e {
            SetupEvent::Step { step, what } => {
                writeln!(err, "{} {step:<12} {what}", style.paint("36", "▸"))
            }
            SetupEvent::Skipped { step, detail } => writeln!(
                err,
                "{} {step:<12} {detail} {}",
                style.paint("32", "✓"),
                style.paint("2", "(already done)")
            ),
            SetupEvent::Done { step, detail } => {
                writeln!(err, "{} {step:<12} {detail}", style.paint("32", "✓"))
            }
            SetupEvent::Line { line, .. } => writeln!(err, "  {}", style.paint("2", &line)),
            SetupEvent::Amount {
                step,
                bytes,
                files,
                of_files,
            } => {
                amounts += 1;
                let of = of_files.map(|n| format!("/{n}")).unwrap_or_default();
                let text = format!(
                    "  {step}: {files}{of} files, {:.2} GiB",
                    bytes as f64 / (1u64 << 30) as f64
                );
                if tty {
                    redraw = true;
                    write!(err, "\r\x1b[2K{text}")
                } else if amounts % 10 == 1 {
                    writeln!(err, "{text}")
                } else {
                    Ok(())
                }
            }
        };
    }
    if redraw {
        let _ = writeln!(std::io::stderr());
    }
}

/// `cosmos target setup NAME`.
async fn setup(ctx: &Ctx, a: &SetupArgs) -> Result<ExitCode> {
    let services = ctx.services_with_secrets().await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let shown = tokio::spawn(show_progress(rx, ctx.err_style));
    let report = services
        .targets()
        .setup(
            &SetupRequest {
                target: a.name.clone(),
                repo: a.repo.clone(),
                commit: a.commit.clone(),
                checkpoint_space_gb: ctx.settings.config.setup.checkpoint_space_gb,
                model: a.model.clone(),
            },
            Some(tx),
        )
        .await;
    let _ = shown.await;
    let report = report?;
    let mut out = std::io::stdout().lock();
    if a.json {
        output::json(&mut out, &report)?;
    } else {
        let done = report.steps.iter().filter(|s| !s.skipped).count();
        let ms: u64 = report.steps.iter().map(|s| s.millis).sum();
        let c = &report.target.config;
        ctx.say(
            "note",
            &format!(
                "{} is set up ({} of {} steps needed work, {:.1} s): image {}, checkout {}{}",
                report.target.name,
                done,
                report.steps.len(),
                ms as f64 / 1000.0,
                c.image,
                c.checkout_commit.as_deref().unwrap_or("?"),
                // A model whose checkpoints come through the hub cache has no manifest.
                c.manifest_hash
                    .as_deref()
                    .map_or(String::new(), |h| format!(
                        ", manifest {}",
                        &h[..16.min(h.len())]
                    ))
            ),
        );
        writeln!(out, "{}", report.target.name)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A preflight fix in words, with the command that applies it.
fn fix_text(fix: &Fix, name: &str) -> String {
    match fix {
        Fix::HostOrPort => format!(
            "check the host and port (`cosmos target edit {name} --host … --port …`) and that sshd runs"
        ),
        Fix::TrustHostKey => format!("cosmos target trust {name}"),
        Fix::VerifyHostKey => {
            "verify the new key with the host's administrator before trusting it".into()
        }
        Fix::UserOrKey => format!("check `--user` and `--key` (`cosmos target edit {name}`)"),
        Fix::DockerAccess { sudo: true } => "allow passwordless `sudo docker` for this user".into(),
        Fix::DockerAccess { sudo: false } => format!(
            "add the user to the docker group, or `cosmos target edit {name} --docker-sudo`"
        ),
        Fix::Image { image } => format!(
            "`cosmos target setup {name}` builds the image; or build or `docker load` {image} on the host, or `cosmos target edit {name} --image …`"
        ),
        Fix::Checkout { dir } => format!(
            "`cosmos target setup {name}` clones cosmos-transfer1 to {dir}; or `cosmos target edit {name} --cosmos-dir …`"
        ),
        Fix::Checkpoints => format!(
            "`cosmos target setup {name}` downloads the checkpoints and writes their manifest"
        ),
        Fix::Slots { gpus, slots } => format!(
            "the target has {gpus} GPU{} but {slots} slot{}: `cosmos target edit {name} --gpus {gpus}`",
            if *gpus == 1 { "" } else { "s" },
            if *slots == 1 { "" } else { "s" }
        ),
        Fix::Driver => "install the NVIDIA driver on the host".into(),
        Fix::GpuRuntime => format!(
            "install the NVIDIA Container Toolkit on the host and `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`; for an engine without GPUs, `cosmos target edit {name} --no-gpu-flag`"
        ),
        Fix::Space { root } => {
            format!("free space under {root} (runs need room for inputs and outputs)")
        }
        Fix::Root { root } => format!(
            "make {root} writable by the login user, or `cosmos target edit {name} --root …`"
        ),
        Fix::Setup => format!("cosmos target setup {name}"),
        Fix::PinImage => format!(
            "`cosmos target setup {name}` builds a versioned image; or `cosmos target edit {name} --image NAME:VERSION` (`--allow-floating` keeps a floating one)"
        ),
        Fix::Mount { mount } => format!(
            "`cosmos target edit {name} --mount {mount}` (with the target's other mounts), then `cosmos target verify {name}`"
        ),
        Fix::FullVerify => {
            format!("`cosmos target verify {name} --full` tells a changed file from a touched one")
        }
        Fix::Redownload { files } => format!(
            "remove {} on the host, then `cosmos target setup {name}` downloads {} again",
            files.join(" "),
            if files.len() == 1 { "it" } else { "them" }
        ),
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
