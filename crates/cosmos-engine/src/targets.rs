//! Targets as the engine uses them: stored settings turned into a connection (one per target
//! per process, reused), a file store and a runtime; trust and preflight checks.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use cosmos_core::target::parse_ssh_address;
use cosmos_core::{RunId, RunStatus, RuntimeKind, Target, TargetConfig, TargetKind};
use cosmos_remote::local::{LocalFiles, LocalRunner};
use cosmos_remote::runtime::{Docker, ModelRuntime, Process};
use cosmos_remote::ssh::hostkeys::{HostKeyVerdict, KnownHosts};
use cosmos_remote::ssh::{ConnectNotice, SftpFiles, SshConnection, SshSpec};
use cosmos_remote::{Host, args, sshconfig};

use crate::Services;
use crate::error::{EngineError, EngineResult, ErrorKind};

mod settings;

pub use settings::{AddTargetRequest, TargetSettings};

/// Secret values by name; their `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct Secrets(pub BTreeMap<String, String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// What executing runs needs beyond the store: where local files go, which host keys are
/// trusted, the configured secrets, and the open connections.
#[derive(Debug)]
pub struct ExecEnv {
    pub data_dir: PathBuf,
    /// cosmos's own known_hosts (the user's `~/.ssh/known_hosts` is read too).
    pub known_hosts: PathBuf,
    /// Secrets from the configuration (the Hugging Face token), for steps that need them
    /// (downloading checkpoints); never given to a run, which needs none.
    pub secrets: Secrets,
    connections: Mutex<HashMap<String, Arc<SshConnection>>>,
    /// Targets whose image, checkpoints and GPUs were checked lately.
    pub(crate) preflights: Mutex<HashMap<String, Preflight>>,
    /// Targets this process could not reach lately, and since when: they get no new work.
    unreachable: Mutex<HashMap<String, std::time::Instant>>,
    /// Automatic retries of runs that met an infrastructure error before their model started.
    pub retry: RetryPolicy,
    /// How long a driver's lease lasts without a renewal (it renews six times as often).
    pub lease_ttl_ms: i64,
    /// How long reaching an SSH target may take: TCP, handshake and login together.
    pub connect_timeout: std::time::Duration,
    /// Told when reaching a target takes more than a second (a front end shows it).
    pub connect_notice: Option<ConnectNotice>,
    /// How far inputs already on a target are trusted before a run uses them.
    pub verify_inputs: cosmos_remote::blobs::Verify,
    /// How often a running model's GPUs are sampled (`nvidia-smi` on its target).
    pub gpu_sample: std::time::Duration,
    /// The most runs one process takes (`queue.max_batch`); `None` sizes each target's
    /// batches to the memory of its GPUs.
    pub max_batch: Option<u32>,
    /// Batches this process drives now (each has one driver here).
    pub(crate) batches_here: Mutex<std::collections::HashSet<cosmos_core::BatchId>>,
}

/// How often, and how patiently, a run that could not be staged is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Automatic retries before the run fails.
    pub max_attempts: u32,
    /// The first wait; each further one doubles (at most ten minutes).
    pub backoff_ms: u64,
    /// How long staging waits for a target that does not answer before giving the run back.
    pub staging_patience_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff_ms: 5_000,
            staging_patience_ms: 20_000,
        }
    }
}

/// A target's passed preflight: when, with which configuration, and how many GPUs it showed
/// (none counted on a rehearsal).
#[derive(Debug, Clone)]
pub(crate) struct Preflight {
    pub at: std::time::Instant,
    pub config: TargetConfig,
    pub gpus: Option<u32>,
    /// The image's id as the host reported it (none without an image).
    pub image_id: Option<String>,
    /// Checkpoints (relative to the checkpoints folder) found present.
    pub present: std::collections::BTreeSet<&'static str>,
}

impl ExecEnv {
    pub fn new(data_dir: PathBuf, known_hosts: PathBuf, secrets: BTreeMap<String, String>) -> Self {
        Self {
            data_dir,
            known_hosts,
            secrets: Secrets(secrets),
            connections: Mutex::new(HashMap::new()),
            preflights: Mutex::new(HashMap::new()),
            unreachable: Mutex::new(HashMap::new()),
            retry: RetryPolicy::default(),
            lease_ttl_ms: crate::execute::LEASE_TTL_MS,
            connect_timeout: cosmos_remote::ssh::CONNECT_TIMEOUT,
            connect_notice: None,
            verify_inputs: Default::default(),
            gpu_sample: std::time::Duration::from_secs(5),
            max_batch: None,
            batches_here: Mutex::new(Default::default()),
        }
    }

    /// At most `n` runs per process (1: no batches); `None` follows each target's GPUs.
    pub fn with_max_batch(mut self, n: Option<u32>) -> Self {
        self.max_batch = n.map(|n| n.max(1));
        self
    }

    /// The most runs one process may take on a target.
    pub fn max_batch_on(&self, config: &TargetConfig) -> u32 {
        self.max_batch
            .unwrap_or_else(|| cosmos_core::batch::batch_limit_for_memory(config.gpu_memory_mib))
    }

    /// How often a running model's GPUs are sampled.
    pub fn with_gpu_sampling(mut self, every: std::time::Duration) -> Self {
        self.gpu_sample = every;
        self
    }

    /// Re-hash every input already on a target (`Verify::Full`), or trust its stamp.
    pub fn with_verify_inputs(mut self, verify: cosmos_remote::blobs::Verify) -> Self {
        self.verify_inputs = verify;
        self
    }

    /// One deadline for reaching a target; `notice` hears when it takes more than a second.
    pub fn with_connect(
        mut self,
        timeout: std::time::Duration,
        notice: Option<ConnectNotice>,
    ) -> Self {
        self.connect_timeout = timeout;
        self.connect_notice = notice;
        self
    }

    /// The SSH login for a target, with this process's connect deadline.
    fn ssh_spec(&self, target: &Target) -> EngineResult<SshSpec> {
        ssh_spec(target, &self.known(), self.connect_timeout)
    }

    /// Leases that last `ms` without a renewal.
    pub fn with_lease_ttl(mut self, ms: i64) -> Self {
        self.lease_ttl_ms = ms.max(200);
        self
    }

    /// How many GPUs a target showed at its last preflight in this process, while its
    /// configuration is unchanged.
    pub(crate) fn gpus_seen(&self, name: &str, config: &TargetConfig) -> Option<u32> {
        let cache = self.preflights.lock().ok()?;
        cache
            .get(name)
            .filter(|p| &p.config == config)
            .and_then(|p| p.gpus)
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Records whether a target answered; the scheduler gives unreachable ones no new work.
    pub fn mark_reachable(&self, target: &str, reachable: bool) {
        if let Ok(mut map) = self.unreachable.lock() {
            if reachable {
                map.remove(target);
            } else {
                map.entry(target.to_owned())
                    .or_insert_with(std::time::Instant::now);
            }
        }
    }

    /// Targets not reachable lately, with how long ago that was first seen.
    pub fn unreachable_targets(&self) -> HashMap<String, std::time::Instant> {
        self.unreachable
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    pub fn known(&self) -> KnownHosts {
        let user = std::env::home_dir().map(|h| h.join(".ssh").join("known_hosts"));
        KnownHosts::new(self.known_hosts.clone(), user)
    }
}

/// A target ready to use.
#[derive(Debug, Clone)]
pub struct Connected {
    pub target: Target,
    pub host: Host,
    pub runtime: Arc<dyn ModelRuntime>,
    pub ssh: Option<Arc<SshConnection>>,
}

/// The login of a jump host, `[user@]host[:port]` as ProxyJump takes it, resolving
/// ssh_config aliases.
fn jump_spec(
    text: &str,
    name: &str,
    known: &KnownHosts,
    connect_timeout: std::time::Duration,
) -> EngineResult<SshSpec> {
    let a = parse_ssh_address(text)
        .map_err(|e| EngineError::Invalid(format!("target `{name}`'s jump host: {e}")))?;
    let alias = sshconfig::lookup_user(&a.host);
    Ok(SshSpec {
        name: name.to_owned(),
        host: alias.host_name.clone().unwrap_or(a.host),
        port: a.port.or(alias.port).unwrap_or(22),
        user: a.user.or(alias.user.clone()).unwrap_or_else(default_user),
        identity: alias.identity_file.clone(),
        jump: None,
        known_hosts: known.clone(),
        connect_timeout,
    })
}

pub(crate) fn default_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

/// The SSH login for a target.
pub fn ssh_spec(
    target: &Target,
    known: &KnownHosts,
    connect_timeout: std::time::Duration,
) -> EngineResult<SshSpec> {
    let c = &target.config;
    let host = c
        .host
        .clone()
        .ok_or_else(|| EngineError::Invalid(format!("target `{}` has no host", target.name)))?;
    Ok(SshSpec {
        name: target.name.clone(),
        host,
        port: c.port.unwrap_or(22),
        user: c.user.clone().unwrap_or_else(default_user),
        identity: c.key.as_ref().map(PathBuf::from),
        jump: c
            .jump
            .as_deref()
            .map(|j| jump_spec(j, &target.name, known, connect_timeout).map(Box::new))
            .transpose()?,
        known_hosts: known.clone(),
        connect_timeout,
    })
}

/// The runtime a target's settings name: the one place a runtime kind is looked at.
pub fn runtime_of(target: &Target) -> Arc<dyn ModelRuntime> {
    match target.config.runtime {
        RuntimeKind::Docker => Arc::new(docker_of(&target.config)),
        RuntimeKind::None => Arc::new(Process),
    }
}

/// The docker CLI as a target runs it (with `sudo -n` when its settings say so), for the
/// work beside a run's model: setup's build and download, the check inside the image.
pub(crate) fn docker_of(config: &TargetConfig) -> Docker {
    Docker {
        sudo: config.docker_sudo,
        gpu_flag: config.gpu_flag,
    }
}

/// Whether a target takes runs that do not name it: every target but a rehearsal one beside
/// real ones (a rehearsal target is used only when named or when it is the only kind).
pub(crate) fn takes_unnamed_runs(all: &[Target]) -> impl Fn(&Target) -> bool + use<> {
    let only_rehearsals = all.iter().all(|t| t.config.rehearsal);
    move |t: &Target| only_rehearsals || !t.config.rehearsal
}

impl Services {
    pub(crate) fn exec_env(&self) -> EngineResult<&ExecEnv> {
        self.exec
            .as_deref()
            .ok_or_else(|| EngineError::Internal("executing runs is not set up here".into()))
    }

    /// Removes a target. Runs still needing it make this an error unless `force`; forced,
    /// the queued runs pinned to it are cancelled (they could never run), and runs started
    /// on it are left for the day a target of that name returns. Returns the runs cancelled.
    pub(crate) async fn remove_target(&self, name: &str, force: bool) -> EngineResult<Vec<RunId>> {
        self.find_target(Some(name)).await?;
        let started = self.store().unfinished_runs_on(name).await?;
        let pinned = self.store().queued_runs_pinned_to(name).await?;
        let needing = started + pinned.len() as u64;
        if needing > 0 && !force {
            return Err(EngineError::refused(
                crate::ErrorKind::Conflict,
                "target_in_use",
                format!(
                    "target `{name}` still has {needing} unfinished run(s) started on it or waiting for it: let them finish or cancel them first"
                ),
            ));
        }
        let message = format!("cancelled: its target `{name}` was removed");
        for id in &pinned {
            let change =
                cosmos_store::StatusChange::new(RunStatus::Queued, RunStatus::Cancelled, &message)
                    .code("target_removed");
            self.bus
                .record_event(self.store().change_status(id, &change))
                .await?;
        }
        self.store().delete_target(name).await?;
        Ok(pinned)
    }

    /// A stored target by name, or the default one.
    pub(crate) async fn find_target(&self, name: Option<&str>) -> EngineResult<Target> {
        match name {
            Some(n) => self
                .store()
                .target(n)
                .await?
                .ok_or_else(|| EngineError::NoSuchTarget(n.to_owned())),
            None => {
                let all = self.store().list_targets().await?;
                let anywhere = takes_unnamed_runs(&all);
                all.into_iter()
                    .find(|t| t.is_default && anywhere(t))
                    .ok_or(EngineError::NoDefaultTarget)
            }
        }
    }

    /// The target's host, reusing this process's connection to it.
    pub(crate) fn connect(&self, target: &Target) -> EngineResult<Connected> {
        let env = self.exec_env()?;
        let runtime = runtime_of(target);
        match target.config.kind {
            TargetKind::Local => Ok(Connected {
                target: target.clone(),
                host: Host {
                    runner: Arc::new(LocalRunner),
                    files: Arc::new(LocalFiles),
                },
                runtime,
                ssh: None,
            }),
            TargetKind::Ssh => {
                let spec = env.ssh_spec(target)?;
                let conn = {
                    let mut conns = env
                        .connections
                        .lock()
                        .map_err(|_| EngineError::Internal("connection cache poisoned".into()))?;
                    let entry = conns.entry(target.name.clone()).or_insert_with(|| {
                        SshConnection::with_notice(spec.clone(), env.connect_notice.clone())
                    });
                    if entry.spec() != &spec {
                        *entry = SshConnection::with_notice(spec, env.connect_notice.clone());
                    }
                    entry.clone()
                };
                Ok(Connected {
                    target: target.clone(),
                    host: Host {
                        runner: conn.clone(),
                        files: Arc::new(SftpFiles::new(conn.clone())),
                    },
                    runtime,
                    ssh: Some(conn),
                })
            }
        }
    }

    /// The SSH logins a target's connection goes through, in order: its jump host (when it
    /// has one), then the target itself. Each host key is pinned on its own.
    pub(crate) fn ssh_hops(&self, target: &Target) -> EngineResult<Vec<SshSpec>> {
        let env = self.exec_env()?;
        let spec = env.ssh_spec(target)?;
        let mut hops: Vec<SshSpec> = spec.jump.iter().map(|j| (**j).clone()).collect();
        hops.push(spec);
        Ok(hops)
    }

    /// The host key one hop shows, with its algorithm, and what the known_hosts files say.
    pub(crate) async fn scan_key(
        &self,
        hop: &SshSpec,
    ) -> EngineResult<(String, String, HostKeyVerdict)> {
        let (key, verdict) = cosmos_remote::ssh::scan_host_key(hop).await?;
        let fp = cosmos_remote::ssh::hostkeys::fingerprint(&key);
        let algo = key.algorithm().to_string();
        Ok((fp, algo, verdict))
    }

    /// Pins the key one hop shows now, in cosmos's own known_hosts.
    pub(crate) async fn trust_key(&self, hop: &SshSpec, replace: bool) -> EngineResult<String> {
        let env = self.exec_env()?;
        let (key, verdict) = cosmos_remote::ssh::scan_host_key(hop).await?;
        match &verdict {
            HostKeyVerdict::Trusted => {}
            HostKeyVerdict::Unknown => env.known().trust(&hop.host, hop.port, &key)?,
            HostKeyVerdict::Changed { file } if file.as_path() != env.known_hosts.as_path() => {
                return Err(EngineError::Invalid(format!(
                    "{} pins a different key for {}; fix that file first",
                    file.display(),
                    hop.address()
                )));
            }
            // A changed key is never replaced without being asked to.
            HostKeyVerdict::Changed { file } if !replace => {
                return Err(EngineError::Refused {
                    kind: ErrorKind::Conflict,
                    code: "host_key_changed",
                    message: format!(
                        "the host key of {} differs from the one pinned in {}; replace it only if you know why it changed",
                        hop.address(),
                        file.display()
                    ),
                });
            }
            HostKeyVerdict::Changed { .. } => {
                env.known().replace(&hop.host, hop.port, &key)?;
            }
        }
        Ok(cosmos_remote::ssh::hostkeys::fingerprint(&key))
    }
}

/// One preflight item.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckItem {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
    /// What would fix it, when it failed (a front end words it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
}

/// What fixes a failed preflight item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fix", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Fix {
    /// The host or port is wrong, or sshd is not running.
    HostOrPort,
    /// The host key is not pinned yet.
    TrustHostKey,
    /// The host key changed: verify it before trusting it.
    VerifyHostKey,
    /// The login user or key is wrong.
    UserOrKey,
    /// The login user may not run docker.
    DockerAccess { sudo: bool },
    /// The image is not on the host.
    Image { image: String },
    /// No cosmos-transfer1 checkout there.
    Checkout { dir: String },
    /// No checkpoints in the checkout.
    Checkpoints,
    /// More GPU slots configured than the host has GPUs.
    Slots { gpus: u32, slots: u32 },
    /// No NVIDIA driver, or no GPU.
    Driver,
    /// The container runtime cannot hand GPUs to containers.
    GpuRuntime,
    /// Too little free space under the root.
    Space { root: String },
    /// The root is not writable by the login user.
    Root { root: String },
    /// `cosmos target setup` makes (or repairs) what is missing.
    Setup,
    /// The image floats: pin a version (or accept it explicitly).
    PinImage,
    /// The checkpoints live on a disk the container does not see: mount it.
    Mount { mount: String },
    /// Files only look changed (times): re-hash them to tell.
    FullVerify,
    /// These files differ from the manifest: remove them and set up again (the download
    /// fetches them anew).
    Redownload { files: Vec<String> },
}

/// `n` and the noun in the right number: `1 slot`, `2 slots`.
pub(crate) fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Fix {
    /// Whether the check stopped at reaching or logging into the target (a connection error,
    /// not a failed check of the target itself).
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Fix::HostOrPort | Fix::TrustHostKey | Fix::VerifyHostKey | Fix::UserOrKey
        )
    }
}

fn item(check: &'static str, ok: bool, detail: String, fix: Fix) -> CheckItem {
    CheckItem {
        check,
        ok,
        detail,
        fix: (!ok).then_some(fix),
    }
}

fn passed(check: &'static str, detail: String) -> CheckItem {
    CheckItem {
        check,
        ok: true,
        detail,
        fix: None,
    }
}

/// The nvidia-smi query whose answer [`parse_gpus`] reads.
pub(crate) const GPU_QUERY: [&str; 3] = [
    "nvidia-smi",
    "--query-gpu=index,name,uuid,memory.total,memory.used,utilization.gpu",
    "--format=csv,noheader,nounits",
];

/// A GPU as nvidia-smi reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Gpu {
    pub index: u32,
    pub name: String,
    pub memory_total_mib: u64,
    pub memory_used_mib: u64,
    pub utilization_percent: u32,
}

pub(crate) fn parse_gpus(csv: &str) -> Vec<Gpu> {
    csv.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            if f.len() < 6 {
                return None;
            }
            Some(Gpu {
                index: f[0].parse().ok()?,
                name: f[1].to_owned(),
                memory_total_mib: f[3].parse().ok()?,
                memory_used_mib: f[4].parse().ok()?,
                utilization_percent: f[5].parse().unwrap_or(0),
            })
        })
        .collect()
}

impl Services {
    /// Records the GPUs a target's host reports: its health, and its slot count when its
    /// slots follow the host (the target as it is now, when that changed it).
    /// The memory of its smallest GPU is kept too: it sizes the target's batches.
    pub(crate) async fn record_gpus(
        &self,
        name: &str,
        gpus: &[Gpu],
    ) -> EngineResult<Option<Target>> {
        let found = gpus.len() as u32;
        let memory = gpus.iter().map(|g| g.memory_total_mib).min();
        self.store()
            .set_target_health(name, true, Some(found))
            .await?;
        match self.store().target(name).await? {
            Some(mut t)
                if (t.config.gpus_from_host && found > 0 && t.config.gpus != found)
                    || (memory.is_some() && t.config.gpu_memory_mib != memory) =>
            {
                if t.config.gpus_from_host && found > 0 && t.config.gpus != found {
                    t.config.gpus = found;
                    tracing::info!(target = %name, "{found} GPUs found: slots set to match");
                }
                t.config.gpu_memory_mib = memory.or(t.config.gpu_memory_mib);
                self.store().put_target(&t, true).await?;
                Ok(Some(t))
            }
            _ => Ok(None),
        }
    }

    /// Counts a target's GPUs now (nvidia-smi over its connection) and records them; `None`
    /// when the host lists none or cannot be asked.
    pub(crate) async fn count_gpus(&self, target: &Target) -> EngineResult<Option<u32>> {
        if target.config.rehearsal {
            return Ok(None);
        }
        let c = self.connect(target)?;
        let out = match c.host.runner.run(&args(&GPU_QUERY)).await {
            Ok(out) if out.success() => out,
            _ => return Ok(None),
        };
        let gpus = parse_gpus(&out.stdout_text());
        if gpus.is_empty() {
            return Ok(None);
        }
        self.record_gpus(&target.name, &gpus).await?;
        Ok(Some(gpus.len() as u32))
    }

    /// Preflight: each item ok or failed with a hint. Stops early only when nothing further
    /// can be checked (unreachable, untrusted, not logged in).
    pub(crate) async fn check_target(&self, target: &Target) -> EngineResult<Vec<CheckItem>> {
        let mut items = Vec::new();
        let c = self.connect(target)?;
        let name = &target.name;
        if let Some(ssh) = &c.ssh {
            match ssh.connect().await {
                Ok(()) => {
                    items.push(passed("reachable", ssh.spec().address()));
                    items.push(passed("host key", "pinned and matching".into()));
                    items.push(passed("authenticated", format!("as {}", ssh.spec().user)));
                }
                Err(e) => {
                    use cosmos_remote::RemoteError as R;
                    let (check, fix) = match &e {
                        R::Unreachable { .. } => ("reachable", Fix::HostOrPort),
                        R::UnknownHostKey { .. } => ("host key", Fix::TrustHostKey),
                        R::HostKeyChanged { .. } => ("host key", Fix::VerifyHostKey),
                        _ => ("authenticated", Fix::UserOrKey),
                    };
                    items.push(item(check, false, e.to_string(), fix));
                    return Ok(items);
                }
            }
        }
        let h = &c.host;
        let cfg = &target.config;
        if let Some(engine) = c.runtime.check_engine(h).await? {
            let ok = engine.is_ok();
            items.push(item(
                "docker",
                ok,
                engine.clone().unwrap_or_else(|e| e),
                Fix::DockerAccess {
                    sudo: cfg.docker_sudo,
                },
            ));
            if ok && let Some(image) = c.runtime.check_image(h, &cfg.image).await? {
                items.push(item(
                    "image",
                    image.is_ok(),
                    match &image {
                        Ok(digest) => format!("{} ({digest})", cfg.image),
                        Err(_) => format!("{} is not on the host", cfg.image),
                    },
                    Fix::Image {
                        image: cfg.image.clone(),
                    },
                ));
                // Containers get GPUs the way runs ask for them (an engine without the
                // NVIDIA runtime refuses `--gpus`).
                if image.is_ok()
                    && let Some(gpus) = c.runtime.check_gpus(h, &cfg.image).await?
                {
                    items.push(item(
                        "gpu access",
                        gpus.is_ok(),
                        gpus.unwrap_or_else(|e| e),
                        Fix::GpuRuntime,
                    ));
                }
                // An image that floats (set before floating tags were refused) is named.
                if cosmos_core::setup::is_floating(&cfg.image) && !cfg.floating_image {
                    items.push(item(
                        "image pinned",
                        false,
                        format!(
                            "{} floats (no tag, or `:latest`): runs cannot say what they ran on",
                            cfg.image
                        ),
                        Fix::PinImage,
                    ));
                }
                if let Ok(digest) = image
                    && cfg.image_digest.as_deref() != Some(digest.as_str())
                {
                    let mut t = target.clone();
                    t.config.image_digest = Some(digest);
                    self.store().put_target(&t, true).await?;
                }
            }
        }
        let checkout = h
            .runner
            .run(&args(&[
                "test",
                "-f",
                &format!(
                    "{}/{}",
                    cfg.cosmos_dir,
                    cosmos_core::launch::TRANSFER_SCRIPT
                ),
            ]))
            .await?;
        items.push(item(
            "cosmos checkout",
            checkout.success(),
            cfg.cosmos_dir.clone(),
            Fix::Checkout {
                dir: cfg.cosmos_dir.clone(),
            },
        ));
        // The checkpoints: against setup's manifest when there is one (sizes and times),
        // and readable where the model will look (inside the image).
        let manifest =
            crate::setup::manifest_item(&c, false, &crate::setup::reporter(None)).await?;
        if manifest.ok || cfg.manifest_hash.is_some() {
            items.push(manifest);
        } else {
            let ckpt = format!("{}/checkpoints", cfg.cosmos_dir);
            let listed = h.runner.run(&args(&["ls", "-A", "--", &ckpt])).await?;
            let entries = listed.stdout_text().lines().count();
            items.push(item(
                "checkpoints",
                listed.success() && entries > 0,
                if listed.success() {
                    format!("{ckpt} ({entries} entries; no manifest: setup writes one)")
                } else {
                    format!("{ckpt} is missing")
                },
                Fix::Checkpoints,
            ));
        }
        let image_ok = items.iter().all(|i| i.check != "image" || i.ok)
            && items.iter().all(|i| i.check != "docker" || i.ok);
        if image_ok {
            items.push(crate::setup::in_image_all(&c).await?);
        }
        let smi = h.runner.run(&args(&GPU_QUERY)).await;
        let (ok, detail, fix) = match smi {
            Ok(out) if out.success() => {
                let gpus = parse_gpus(&out.stdout_text());
                let found = gpus.len() as u32;
                // What `cosmos status` shows of the target's slots, before any worker looks;
                // slots that follow the host become what it has.
                let slots = if found > 0 {
                    self.record_gpus(name, &gpus)
                        .await?
                        .map_or(cfg.gpus, |t| t.config.gpus)
                } else {
                    cfg.gpus
                };
                match gpus.first() {
                    Some(g) => {
                        let detail = format!(
                            "{found} × {} ({} MiB; {}% busy, {} MiB used on GPU {}); {}",
                            g.name,
                            g.memory_total_mib,
                            g.utilization_percent,
                            g.memory_used_mib,
                            g.index,
                            if cfg.gpus_from_host {
                                format!(
                                    "{} (as many as the host has)",
                                    plural(slots, "slot", "slots")
                                )
                            } else {
                                format!("{} configured", plural(slots, "slot", "slots"))
                            }
                        );
                        // More slots than GPUs would place runs on devices that do not exist.
                        let fix = Fix::Slots { gpus: found, slots };
                        (slots <= found, detail, fix)
                    }
                    None => (false, "no GPUs listed".into(), Fix::Driver),
                }
            }
            Ok(out) => (false, out.last_words(), Fix::Driver),
            Err(e) => (false, e.to_string(), Fix::Driver),
        };
        items.push(item("gpus", ok, detail, fix));
        let _ = h.mkdirs(&[&cfg.root]).await;
        let free_gib = h
            .free_bytes(&cfg.root)
            .await?
            .map(|b| b as f64 / (1u64 << 30) as f64);
        items.push(item(
            "disk",
            free_gib.is_some_and(|g| g >= 1.0),
            match free_gib {
                Some(g) => format!("{g:.1} GiB free under {}", cfg.root),
                None => format!("cannot read free space under {}", cfg.root),
            },
            Fix::Space {
                root: cfg.root.clone(),
            },
        ));
        let probe = format!("{}/.cosmos-write-test", cfg.root);
        let writable = h.files.write(&probe, b"ok\n", 0o600).await.is_ok()
            && h.runner
                .run(&args(&["rm", "-f", "--", &probe]))
                .await
                .is_ok_and(|o| o.success());
        items.push(item(
            "root writable",
            writable,
            cfg.root.clone(),
            Fix::Root {
                root: cfg.root.clone(),
            },
        ));
        Ok(items)
    }
}
