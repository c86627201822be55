//! Executing a run on a target (DESIGN.md §3): `queued → staging → starting → running →
//! collecting → succeeded | failed | cancelled`. Each state is stored before the side effect
//! it names and every step is idempotent, so a driver that dies (kill -9, lost network) is
//! replaced by the next one — `cosmos logs -f`, `cosmos status`, the next `cosmos run` — which
//! picks up where the run is: re-uploads nothing that is there, never starts a second
//! container, reattaches to the log from where the local copy ends, or collects.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cosmos_core::launch::{RunLayout, TransferLaunch, container_name, torchrun_argv};
use cosmos_core::progress::{Milestone, ProgressParser, classify_failure};
use cosmos_core::queue::retry_delay_ms;
use cosmos_core::{InputFile, Run, RunId, RunOutput, RunStatus, RuntimeKind};
use cosmos_remote::blobs::{self, LocalBlob};
use cosmos_remote::runtime::{Launch, ModelState};
use cosmos_remote::{RemoteError, RemoteResult, args};

use crate::Services;
use crate::error::{EngineError, EngineResult};
use crate::runs::{extension, spec_for};
use crate::targets::{Connected, GPU_QUERY, Preflight, parse_gpus};

/// What a driver reports as it goes (for live displays).
#[derive(Debug, Clone)]
pub enum Update {
    Status(RunStatus, String),
    /// Bytes moved of a transfer (`upload` or `download`).
    Transfer {
        what: &'static str,
        done: u64,
        total: u64,
    },
    Progress(Milestone),
    /// Model output, as appended to the local run log.
    Log(Vec<u8>),
    /// Something worth telling (a retry, a rehearsal label).
    Note(String),
}

pub type Observer = Arc<dyn Fn(Update) + Send + Sync>;

/// How a drive ended.
#[derive(Debug, Clone)]
pub enum DriveOutcome {
    /// The run reached a terminal state.
    Done(Run),
}

/// How long a lease lasts without a heartbeat, and how often it is renewed.
pub(crate) const LEASE_TTL_MS: i64 = 30_000;
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long an unreachable target is waited for before the driver gives up (the run stays
/// as it is, to be reconciled later: unreachable is not failed).
const PATIENCE: Duration = Duration::from_secs(15 * 60);
/// How long a target's passed preflight is trusted before it is checked again.
const PREFLIGHT_FRESH: Duration = Duration::from_secs(60);
/// Room kept free on a target beyond the inputs, for the model's outputs and log.
const DISK_MARGIN: u64 = 64 << 20;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// The message of the event `cosmos kill` records before it kills the model.
pub(crate) const CANCEL_REQUEST: &str = "cancel requested";

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// This process's lease owner name: `cosmos:<host>:<pid>`.
pub fn owner_id() -> String {
    format!("cosmos:{}:{}", hostname(), std::process::id())
}

/// True when `owner` names a process on this machine that no longer exists.
pub(crate) fn owner_is_dead(owner: &str) -> bool {
    let mut parts = owner.rsplitn(2, ':');
    let (Some(pid), Some(rest)) = (parts.next(), parts.next()) else {
        return false;
    };
    let host = rest.strip_prefix("cosmos:").unwrap_or("");
    host == hostname()
        && pid
            .parse::<u32>()
            .is_ok_and(|p| !Path::new(&format!("/proc/{p}")).exists())
}

/// The local run log and outputs folder of a run.
pub fn local_log(data_dir: &Path, id: &RunId) -> PathBuf {
    data_dir.join("logs").join(format!("{id}.log"))
}

pub fn local_outputs(data_dir: &Path, id: &RunId) -> PathBuf {
    data_dir.join("outputs").join(id.as_str())
}

/// Aborts a spawned task when dropped.
pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The spec a stored run gives Cosmos, its inputs in `layout`.
fn spec_of(
    run: &Run,
    files: &[InputFile],
    layout: &RunLayout,
) -> Result<cosmos_core::spec::TransferSpec, cosmos_core::spec::SpecError> {
    spec_for(
        &run.prompt_text,
        run.negative_prompt.as_deref(),
        &run.params,
        files,
        layout,
    )
}

/// The GPUs a run uses: those the scheduler gave it, else the first `--gpus` of them.
fn devices_of(run: &Run) -> Vec<u32> {
    if run.devices.is_empty() {
        (0..run.params.gpus).collect()
    } else {
        run.devices.clone()
    }
}

/// Lists a run's outputs with their hashes: `sh -c SCRIPT sh OUTPUTS_DIR`.
const LIST_OUTPUTS: &str =
    r#"cd -- "$1" && find . -type f ! -name '*.part' -exec sha256sum -- {} +"#;

/// Links blobs into a run's inputs folder: `sh -c SCRIPT sh BLOB LINK BLOB LINK …`.
const LINK_SCRIPT: &str = r#"while [ $# -gt 1 ]; do ln -sfn -- "$1" "$2" || exit 1; shift 2; done"#;

impl Services {
    /// Takes the run's lease, or says who holds it.
    pub(crate) async fn acquire(&self, id: &RunId) -> EngineResult<String> {
        let owner = owner_id();
        let steal = match self.store().lease(id).await? {
            Some(l) if l.owner != owner && owner_is_dead(&l.owner) => Some(l.owner),
            _ => None,
        };
        if self
            .store()
            .take_lease(id, &owner, LEASE_TTL_MS, steal.as_deref())
            .await?
        {
            return Ok(owner);
        }
        let holder = self
            .store()
            .lease(id)
            .await?
            .map(|l| l.owner)
            .unwrap_or_default();
        Err(EngineError::Busy {
            run: id.to_string(),
            owner: holder,
        })
    }

    /// Gives the run's lease up (after a drive, or when the user detaches).
    pub async fn release(&self, id: &RunId) -> EngineResult<()> {
        Ok(self.store().release_lease(id, &owner_id()).await?)
    }

    /// Drives a run to a terminal state on its target (`target` names one for a run that has
    /// none yet; otherwise the default). Another live driver makes this an
    /// [`EngineError::Busy`].
    pub async fn drive_run(
        &self,
        id: &RunId,
        target: Option<&str>,
        obs: Observer,
    ) -> EngineResult<DriveOutcome> {
        let owner = self.acquire(id).await?;
        // Renews the lease while the drive lives, also when the drive is dropped midway (a
        // worker stopping): the guard ends the heartbeat with it.
        let _beat = AbortOnDrop({
            let (me, id, owner) = (self.clone(), id.clone(), owner.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    let _ = me.store().take_lease(&id, &owner, LEASE_TTL_MS, None).await;
                }
            })
        });
        let result = self.drive_inner(id, target, &obs).await;
        let _ = self.store().release_lease(id, &owner).await;
        result.map(DriveOutcome::Done)
    }

    async fn drive_inner(
        &self,
        id: &RunId,
        target: Option<&str>,
        obs: &Observer,
    ) -> EngineResult<Run> {
        let run = self.store().run(id).await?;
        if run.status.is_terminal() {
            return Ok(run);
        }
        let target = match &run.target {
            Some(t) => self.find_target(Some(t)).await?,
            None => {
                let t = self.find_target(target).await?;
                self.store().set_run_target(id, &t.name).await?;
                t
            }
        };
        let c = self.connect(&target)?;
        if target.config.rehearsal {
            obs(Update::Note(format!(
                "rehearsal on `{}`: cosmos-sim stands in for Cosmos; the output is a copy of the input, not Cosmos output",
                target.name
            )));
        }
        let layout = RunLayout::new(&target.config.root, id);
        // How the model ended, when this driver saw it end (saves asking again).
        let mut seen_end: Option<ModelState> = None;
        loop {
            let run = self.store().run(id).await?;
            let step = |to: RunStatus, message: String| async move {
                match self.store().transition(id, run.status, to, &message).await {
                    Ok(()) => {
                        obs(Update::Status(to, message));
                        EngineResult::Ok(())
                    }
                    // Another process moved it first (`cosmos kill` of a queued or staging
                    // run): the next turn of the loop reads where it is now.
                    Err(cosmos_store::StoreError::Conflict { .. }) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            };
            match run.status {
                RunStatus::Queued => {
                    step(RunStatus::Staging, format!("staging on {}", target.name)).await?;
                }
                RunStatus::Staging => match self.stage(&c, &run, &layout, obs).await {
                    Ok(()) => {
                        step(
                            RunStatus::Starting,
                            "inputs verified on the target; starting the model".into(),
                        )
                        .await?
                    }
                    Err(Staging::Fail(reason)) => step(RunStatus::Failed, reason).await?,
                    // Nothing started yet: the run can wait and go where there is room.
                    Err(Staging::Error(EngineError::Remote(e))) if e.is_transient() => {
                        match self.requeue(&run, &e, obs).await? {
                            Some(queued) => return Ok(queued),
                            None => {
                                let tries = run.attempts + 1;
                                let why =
                                    format!("gave up after {tries} attempts to stage it: {e}");
                                step(RunStatus::Failed, why).await?;
                            }
                        }
                    }
                    Err(Staging::Error(e)) => return Err(e),
                },
                RunStatus::Starting if self.cancel_requested(id).await? => {
                    step(
                        RunStatus::Cancelled,
                        "cancelled by the user before the model started".into(),
                    )
                    .await?;
                }
                RunStatus::Starting => {
                    let launch = self.launch_command(&c, &run, &layout).await?;
                    let l = Launch {
                        run_id: id,
                        layout: &layout,
                        root: &target.config.root,
                        cosmos_dir: &target.config.cosmos_dir,
                        image: &target.config.image,
                        shm_size: &target.config.shm_size,
                        gpu_devices: &devices_of(&run),
                        command: launch,
                    };
                    // Starting is idempotent (a container of that name, a pid file): a
                    // driver that died after starting the model starts nothing new.
                    let state = self
                        .patiently(&c, "start the model", obs, || c.runtime.start(&c.host, &l))
                        .await;
                    match state {
                        Ok(_) => {
                            let what = if c.runtime.is_docker() {
                                format!("container {} started", container_name(id))
                            } else {
                                "model process started".into()
                            };
                            step(RunStatus::Running, what).await?;
                            // A kill that came while the model was being started found
                            // nothing to kill: honour it now.
                            if self.cancel_requested(id).await? {
                                c.runtime.kill(&c.host, id, &layout).await?;
                            }
                        }
                        Err(EngineError::Remote(e)) if !e.is_transient() => {
                            step(RunStatus::Failed, format!("the model could not start: {e}"))
                                .await?
                        }
                        Err(e) => return Err(e),
                    }
                }
                RunStatus::Running => {
                    let (ended, state) = self.follow(&c, &run, &layout, obs).await?;
                    seen_end = Some(state);
                    step(RunStatus::Collecting, ended).await?;
                }
                RunStatus::Collecting => {
                    let (to, message) = self
                        .collect(&c, &run, &layout, seen_end.take(), obs)
                        .await?;
                    step(to, message).await?;
                }
                _ => return Ok(run),
            }
        }
    }

    /// Gives a run that could not be staged back to the queue, after a doubling wait, while
    /// it has retries left (`None` once they are spent).
    async fn requeue(
        &self,
        run: &Run,
        e: &RemoteError,
        obs: &Observer,
    ) -> EngineResult<Option<Run>> {
        let policy = self.exec_env()?.retry;
        if run.attempts >= policy.max_attempts {
            return Ok(None);
        }
        let attempt = run.attempts + 1;
        let wait = retry_delay_ms(policy.backoff_ms, attempt);
        let message = format!(
            "{e}; back in the queue for retry {attempt} of {} in {:.1} s",
            policy.max_attempts,
            wait as f64 / 1000.0
        );
        let at = cosmos_core::now() + chrono::Duration::milliseconds(wait as i64);
        self.store()
            .requeue_run(&run.id, RunStatus::Staging, at, &message)
            .await?;
        obs(Update::Status(RunStatus::Queued, message));
        Ok(Some(self.store().run(&run.id).await?))
    }

    /// How long staging waits for an unreachable target before the run goes back to the
    /// queue (nothing has started yet, so another target may take it).
    fn staging_patience(&self) -> EngineResult<Duration> {
        Ok(Duration::from_millis(
            self.exec_env()?.retry.staging_patience_ms,
        ))
    }

    /// Whether `cosmos kill` asked for the run to stop.
    async fn cancel_requested(&self, id: &RunId) -> EngineResult<bool> {
        let events = self.store().run_events(id).await?;
        Ok(events.iter().any(|e| e.message == CANCEL_REQUEST))
    }

    /// Retries `f` while the target is unreachable, with backoff, for up to `patience`
    /// (staging gives up sooner: the run can go elsewhere); keeps the target's health.
    async fn patiently<T, F, Fut>(
        &self,
        c: &Connected,
        what: &str,
        obs: &Observer,
        f: F,
    ) -> EngineResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = RemoteResult<T>>,
    {
        self.retrying(PATIENCE, c, what, obs, f).await
    }

    async fn retrying<T, F, Fut>(
        &self,
        patience: Duration,
        c: &Connected,
        what: &str,
        obs: &Observer,
        mut f: F,
    ) -> EngineResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = RemoteResult<T>>,
    {
        let health = self.exec_env()?;
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(500);
        loop {
            let result = f().await;
            health.mark_reachable(
                &c.target.name,
                !matches!(&result, Err(RemoteError::Unreachable { .. })),
            );
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && started.elapsed() < patience => {
                    obs(Update::Note(format!(
                        "{what}: {e}; retrying in {:.0?}",
                        pause
                    )));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn input_files(&self, run: &Run) -> EngineResult<Vec<InputFile>> {
        let set_id = run
            .input_set_id
            .clone()
            .ok_or_else(|| EngineError::NoInputSet(run.prompt_id.to_string()))?;
        Ok(self.store().input_set(&set_id).await?.files)
    }

    async fn launch_command(
        &self,
        c: &Connected,
        run: &Run,
        layout: &RunLayout,
    ) -> EngineResult<Vec<String>> {
        let files = self.input_files(run).await?;
        let spec = spec_of(run, &files, layout)?;
        let mut argv = torchrun_argv(&TransferLaunch {
            gpus: run.params.gpus,
            spec_path: &layout.spec(),
            output_dir: &layout.outputs(),
            is_av: spec.is_av,
            checkpoint_dir: "checkpoints",
        });
        if let Some(t) = &c.target.config.torchrun {
            argv[0] = t.clone();
        }
        Ok(argv)
    }

    /// Uploads the inputs (once), links them, writes spec.json and the env file; checks what
    /// can be checked before any GPU time is spent.
    async fn stage(
        &self,
        c: &Connected,
        run: &Run,
        layout: &RunLayout,
        obs: &Observer,
    ) -> Result<(), Staging> {
        let cfg = &c.target.config;
        let h = &c.host;
        let name = &c.target.name;
        let gpus = self.preflight(c, obs).await?;
        if let Some(found) = gpus
            && found < run.params.gpus
        {
            return Err(Staging::Fail(format!(
                "the run asks for {} GPUs but target {name} has {found}: run with `--gpus {found}` or on a bigger host",
                run.params.gpus
            )));
        }

        let files = self.input_files(run).await?;
        let blobs_in: Vec<LocalBlob> = files
            .iter()
            .map(|f| LocalBlob {
                path: PathBuf::from(&f.path),
                sha256: f.sha256.clone(),
                size: f.size,
            })
            .collect();
        for b in &blobs_in {
            match std::fs::metadata(&b.path) {
                Ok(m) if m.len() == b.size => {}
                Ok(_) => {
                    return Err(Staging::Fail(format!(
                        "{} changed since it was registered: register the folder again (`cosmos inputs add`)",
                        b.path.display()
                    )));
                }
                Err(e) => {
                    return Err(Staging::Fail(format!(
                        "cannot read input {}: {e}",
                        b.path.display()
                    )));
                }
            }
        }
        let total: u64 = blobs_in.iter().map(|b| b.size).sum();
        let report: Arc<dyn Fn(u64) + Send + Sync> = {
            let obs = obs.clone();
            Arc::new(move |done| {
                obs(Update::Transfer {
                    what: "upload",
                    done,
                    total,
                })
            })
        };
        h.mkdirs(&[&layout.outputs(), &format!("{}/inputs", layout.dir())])
            .await
            .map_err(|e| self.stage_error(e, name))?;
        // Room for what is not there yet, checked before a byte is sent.
        let mut missing = 0u64;
        for b in &blobs_in {
            let at = blobs::blob_path(&cfg.root, &b.sha256);
            let have = h
                .files
                .size(&at)
                .await
                .map_err(|e| self.stage_error(e, name))?;
            if have != Some(b.size) {
                missing += b.size;
            }
        }
        let free = h
            .free_bytes(&cfg.root)
            .await
            .map_err(|e| self.stage_error(e, name))?;
        if let Some(free) = free
            && free < missing + DISK_MARGIN
        {
            return Err(Staging::Fail(format!(
                "not enough disk space on target {name}: {} free under {}, the inputs need {} (plus {} for outputs): free space there, or `cosmos target edit {name} --root …`",
                mib(free),
                cfg.root,
                mib(missing),
                mib(DISK_MARGIN)
            )));
        }
        let (paths, sent) = self
            .retrying(self.staging_patience()?, c, "upload inputs", obs, || {
                blobs::upload_all(h, &cfg.root, &blobs_in, 4, report.clone())
            })
            .await
            .map_err(|e| match e {
                EngineError::Remote(r) => self.stage_error(r, name),
                other => Staging::Error(other),
            })?;
        // Placement prefers this target for later runs on these inputs.
        if let Some(set) = &run.input_set_id {
            self.store()
                .note_inputs_on_target(name, set)
                .await
                .map_err(|e| Staging::Error(e.into()))?;
        }
        let _ = self
            .store()
            .add_run_event(
                &run.id,
                RunStatus::Staging,
                None,
                &if sent.bytes == 0 {
                    "inputs already on the target: nothing uploaded".to_owned()
                } else {
                    format!("uploaded {} bytes, verified by sha256", sent.bytes)
                },
            )
            .await;
        let mut link = args(&["sh", "-c", LINK_SCRIPT, "sh"]);
        for (f, blob) in files.iter().zip(&paths) {
            link.push(blob.clone());
            link.push(layout.input(f.kind, extension(&f.path)));
        }
        h.ok("link inputs", &link)
            .await
            .map_err(|e| self.stage_error(e, name))?;

        let spec = spec_of(run, &files, layout)
            .map_err(|e| Staging::Fail(format!("the spec is invalid: {e}")))?;
        let mut text = serde_json::to_string_pretty(&spec.json).unwrap_or_default();
        text.push('\n');
        h.files
            .write(&layout.spec(), text.as_bytes(), 0o644)
            .await
            .map_err(|e| self.stage_error(e, name))?;
        let env = self.exec_env().map_err(Staging::Error)?;
        let mut lines = String::new();
        if cfg.runtime == RuntimeKind::None {
            lines.push_str(&format!("PYTHONPATH={}\n", cfg.cosmos_dir));
        }
        // `--gpus device=…` renumbers the devices inside the container; without it the model
        // sees every GPU and is told which are its own.
        if cfg.runtime == RuntimeKind::None || !cfg.gpu_flag {
            let devices: Vec<String> = devices_of(run).iter().map(u32::to_string).collect();
            lines.push_str(&format!("CUDA_VISIBLE_DEVICES={}\n", devices.join(",")));
        }
        for (k, v) in cfg.env.iter().chain(env.secrets.iter()) {
            if v.contains('\n') {
                return Err(Staging::Fail(format!(
                    "the value of {k} spans lines; env files take one line per variable"
                )));
            }
            lines.push_str(&format!("{k}={v}\n"));
        }
        h.files
            .write(&layout.env_file(), lines.as_bytes(), 0o600)
            .await
            .map_err(|e| self.stage_error(e, name))?;
        Ok(())
    }

    /// What can be checked of a target before a byte is sent: the image, the checkpoints
    /// and the GPUs (their number is returned; a rehearsal has none to count). A target that
    /// passed lately with the same configuration is not asked again.
    async fn preflight(&self, c: &Connected, obs: &Observer) -> Result<Option<u32>, Staging> {
        let cfg = &c.target.config;
        let h = &c.host;
        let name = &c.target.name;
        let env = self.exec_env().map_err(Staging::Error)?;
        if let Ok(cache) = env.preflights.lock()
            && let Some(p) = cache.get(name)
            && &p.config == cfg
            && p.at.elapsed() < PREFLIGHT_FRESH
        {
            return Ok(p.gpus);
        }
        if cfg.runtime == RuntimeKind::Docker {
            let argv = c
                .runtime
                .docker(&["image", "inspect", "--format", "{{.Id}}", &cfg.image]);
            let out = self
                .retrying(self.staging_patience()?, c, "check the image", obs, || {
                    h.runner.run(&argv)
                })
                .await?;
            if !out.success() {
                return Err(Staging::Fail(format!(
                    "image {} is not on target {name} ({}): build or `docker load` it there, or `cosmos target edit {name} --image …`",
                    cfg.image,
                    out.last_words()
                )));
            }
        }
        let ckpt = format!("{}/checkpoints", cfg.cosmos_dir);
        let test = args(&["test", "-d", &ckpt]);
        let out = self
            .retrying(
                self.staging_patience()?,
                c,
                "check the checkpoints",
                obs,
                || h.runner.run(&test),
            )
            .await?;
        if !out.success() {
            return Err(Staging::Fail(format!(
                "no checkpoints directory at {ckpt} on target {name}: download the checkpoints into the cosmos-transfer1 checkout, or `cosmos target edit {name} --cosmos-dir …` (`cosmos target check {name}`)"
            )));
        }

        let mut gpus = None;
        if !cfg.rehearsal {
            let smi = args(&GPU_QUERY);
            let out = self
                .retrying(self.staging_patience()?, c, "count the GPUs", obs, || {
                    h.runner.run(&smi)
                })
                .await?;
            let found = parse_gpus(&out.stdout_text()).len() as u32;
            if !out.success() || found == 0 {
                return Err(Staging::Fail(format!(
                    "no usable GPU on target {name} (nvidia-smi: {}): install the NVIDIA driver there, or pick another target (`cosmos target check {name}`)",
                    if out.success() {
                        "no GPUs listed".into()
                    } else {
                        out.last_words()
                    }
                )));
            }
            gpus = Some(found);
        }
        if let Ok(mut cache) = env.preflights.lock() {
            let at = std::time::Instant::now();
            let config = cfg.clone();
            cache.insert(name.clone(), Preflight { at, config, gpus });
        }
        Ok(gpus)
    }

    fn stage_error(&self, e: RemoteError, target: &str) -> Staging {
        if e.is_transient() {
            return Staging::Error(e.into());
        }
        let text = e.to_string();
        if text.contains("No space left") || text.contains("Failure") && text.contains("write") {
            return Staging::Fail(format!(
                "the target {target} ran out of disk space while staging ({text}): free space under its root"
            ));
        }
        Staging::Fail(format!("staging on {target} failed: {text}"))
    }

    /// Follows the model's log until it ends; returns the collecting message and how it
    /// ended.
    async fn follow(
        &self,
        c: &Connected,
        run: &Run,
        layout: &RunLayout,
        obs: &Observer,
    ) -> EngineResult<(String, ModelState)> {
        let env = self.exec_env()?;
        let log_path = local_log(&env.data_dir, &run.id);
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                EngineError::Invalid(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| {
                EngineError::Invalid(format!("cannot open {}: {e}", log_path.display()))
            })?;
        // What is in the local log is what was received: resume after it.
        let mut offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let frames = self
            .input_files(run)
            .await?
            .iter()
            .map(|f| f.video.frames)
            .min()
            .unwrap_or(121);
        let mut parser = ProgressParser::new(cosmos_core::resolution::clip_count(frames) as u32);
        let mut partial: Vec<u8> = Vec::new();
        let mut last: Option<String> = None;
        // Milestones go to the store as they arrive (for `status --watch` and followers in
        // other processes), written by a task so the log stream never waits on the database.
        let (events, mut arrived) = tokio::sync::mpsc::unbounded_channel::<Milestone>();
        let writer = {
            let (me, id) = (self.clone(), run.id.clone());
            tokio::spawn(async move {
                while let Some(m) = arrived.recv().await {
                    let _ = me
                        .store()
                        .add_run_event(&id, RunStatus::Running, Some(m.fraction), &m.describe())
                        .await;
                }
            })
        };
        let ended = loop {
            let mut on_bytes = |bytes: &[u8]| {
                let _ = log.write_all(bytes);
                obs(Update::Log(bytes.to_vec()));
                partial.extend_from_slice(bytes);
                while let Some(end) = partial.iter().position(|b| *b == b'\n' || *b == b'\r') {
                    let line: Vec<u8> = partial.drain(..=end).collect();
                    let text = String::from_utf8_lossy(&line);
                    if let Some(m) = parser.feed(text.trim_end()) {
                        let key = m.describe();
                        if last.as_deref() != Some(key.as_str()) || m.fraction >= 0.99 {
                            last = Some(key);
                            obs(Update::Progress(m.clone()));
                            let _ = events.send(m);
                        }
                    }
                }
            };
            let followed = c
                .runtime
                .follow(&c.host, &run.id, layout, &mut offset, &mut on_bytes)
                .await;
            if let Err(e) = followed {
                if !e.is_transient() {
                    break Err(e.into());
                }
                self.exec_env()?.mark_reachable(&c.target.name, false);
                obs(Update::Note(format!(
                    "lost the log stream ({e}); reconnecting"
                )));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let state = self
                .patiently(c, "read the model's state", obs, || {
                    c.runtime.state(&c.host, &run.id, layout)
                })
                .await;
            match state {
                Ok(ModelState::Running) => continue,
                Ok(s @ ModelState::Exited(code)) => {
                    break Ok((format!("the model exited with code {code}"), s));
                }
                Ok(s @ (ModelState::Vanished | ModelState::Absent)) => {
                    break Ok(("the model process is gone".into(), s));
                }
                Err(e) => break Err(e),
            }
        };
        // Every milestone is stored before the run moves on.
        drop(events);
        let _ = writer.await;
        ended
    }

    /// Reads the exit status, keeps the log on the target, downloads and verifies outputs.
    async fn collect(
        &self,
        c: &Connected,
        run: &Run,
        layout: &RunLayout,
        seen_end: Option<ModelState>,
        obs: &Observer,
    ) -> EngineResult<(RunStatus, String)> {
        let env = self.exec_env()?;
        let state = match seen_end {
            Some(s) => s,
            None => {
                self.patiently(c, "read the exit status", obs, || {
                    c.runtime.state(&c.host, &run.id, layout)
                })
                .await?
            }
        };
        let exit = match state {
            ModelState::Exited(code) => {
                self.store().set_exit_code(&run.id, code).await?;
                Some(code)
            }
            ModelState::Running => {
                return Err(EngineError::Invalid(format!(
                    "run {} is collecting but its model still runs",
                    run.id
                )));
            }
            ModelState::Vanished => None,
            // Gone after its status was kept (an earlier driver removed it), or never seen.
            ModelState::Absent => run.exit_code,
        };
        // The log is kept on the target; a target that cannot take it (a full disk) does not
        // stop the run from ending: the local copy has the same lines.
        let mut remote_log = state != ModelState::Absent;
        if remote_log {
            if let Err(e) = self
                .patiently(c, "save the model log", obs, || {
                    c.runtime.save_log(&c.host, &run.id, layout)
                })
                .await
            {
                obs(Update::Note(format!(
                    "the model log stays only in the local copy: {e}"
                )));
                remote_log = false;
            }
            // Its status read and its log kept, the container has served: it goes before the
            // run ends, so no stopped container outlives a finished run.
            if let Err(e) = c.runtime.remove(&c.host, &run.id).await {
                tracing::warn!("could not remove the container of {}: {e}", run.id);
            }
        } else if run.exit_code.is_some() {
            remote_log = c.host.files.size(&layout.log()).await?.is_some();
        }
        let cancelled = self.cancel_requested(&run.id).await?;
        if exit != Some(0) {
            if cancelled {
                return Ok((
                    RunStatus::Cancelled,
                    "cancelled by the user; the model was killed".into(),
                ));
            }
            const TAIL: u64 = 64 * 1024;
            let tail = if remote_log {
                let size = c.host.files.size(&layout.log()).await?.unwrap_or(0);
                let from = size.saturating_sub(TAIL);
                c.host
                    .files
                    .read_at(&layout.log(), from, TAIL as usize)
                    .await?
            } else {
                let bytes = std::fs::read(local_log(&env.data_dir, &run.id)).unwrap_or_default();
                let from = bytes.len().saturating_sub(TAIL as usize);
                bytes[from..].to_vec()
            };
            let failure = classify_failure(exit, &String::from_utf8_lossy(&tail));
            return Ok((RunStatus::Failed, failure.reason));
        }
        // Names and hashes in one round trip: `<sha256>  ./<relative path>` per file.
        let list = args(&["sh", "-c", LIST_OUTPUTS, "sh", &layout.outputs()]);
        let listed = self
            .patiently(c, "list outputs", obs, || c.host.runner.run(&list))
            .await?
            .check("list outputs")?;
        let mut remote: Vec<(String, String)> = Vec::new();
        for line in listed.stdout_text().lines() {
            match line.split_once("  ./") {
                Some((sha, rel)) if sha.len() == 64 && !sha.starts_with('\\') => {
                    remote.push((rel.to_owned(), sha.to_owned()));
                }
                _ => {
                    return Ok((
                        RunStatus::Failed,
                        format!("an output's name cannot be transferred safely: {line}"),
                    ));
                }
            }
        }
        remote.sort();
        if remote.is_empty() {
            return Ok((
                RunStatus::Failed,
                "the model exited 0 but wrote no outputs".into(),
            ));
        }
        let prefix = format!("{}/", layout.outputs());
        let local_dir = local_outputs(&env.data_dir, &run.id);
        let mut outputs = Vec::new();
        let sizes: Vec<u64> = {
            let mut v = Vec::new();
            for (rel, _) in &remote {
                v.push(
                    c.host
                        .files
                        .size(&format!("{prefix}{rel}"))
                        .await?
                        .unwrap_or(0),
                );
            }
            v
        };
        let total: u64 = sizes.iter().sum();
        let mut before = 0u64;
        for ((rel, sha), size) in remote.iter().zip(&sizes) {
            let r = format!("{prefix}{rel}");
            let local = local_dir.join(rel);
            if let Some(dir) = local.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    EngineError::Invalid(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let report = |done: u64| {
                obs(Update::Transfer {
                    what: "download",
                    done: before + done,
                    total,
                })
            };
            let (sha256, size_got) = self
                .patiently(c, "download outputs", obs, || {
                    blobs::download(&c.host, &r, Some(sha), &local, &report)
                })
                .await?;
            before += size;
            outputs.push(RunOutput {
                path: local.display().to_string(),
                size: size_got,
                sha256,
            });
        }
        // The main video first: `<name>.mp4` / `video_<N>/output.mp4` before intermediates.
        outputs.sort_by_key(|o| {
            (
                o.path.contains("_input_control_"),
                !o.path.ends_with(".mp4"),
                o.path.clone(),
            )
        });
        self.store().set_run_outputs(&run.id, &outputs).await?;
        Ok((
            RunStatus::Succeeded,
            format!(
                "{} output files downloaded and verified (sha256)",
                outputs.len()
            ),
        ))
    }
}

/// Why staging stopped: a reason the run fails with, or an error that leaves it as it is.
enum Staging {
    Fail(String),
    Error(EngineError),
}

impl From<EngineError> for Staging {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Remote(r) if !r.is_transient() => Staging::Fail(r.to_string()),
            other => Staging::Error(other),
        }
    }
}

impl Services {
    /// Cancels a run: a queued or staging one ends `cancelled` at once; a started one has
    /// its model killed, and whoever drives it records `cancelled`.
    pub async fn cancel_run(&self, id: &RunId) -> EngineResult<Run> {
        let run = self.store().run(id).await?;
        match run.status {
            s if s.is_terminal() => Ok(run),
            RunStatus::Queued | RunStatus::Staging => {
                self.store()
                    .transition(
                        id,
                        run.status,
                        RunStatus::Cancelled,
                        "cancelled by the user",
                    )
                    .await?;
                Ok(self.store().run(id).await?)
            }
            _ => {
                self.store()
                    .add_run_event(id, run.status, None, CANCEL_REQUEST)
                    .await?;
                let target = self.find_target(run.target.as_deref()).await?;
                let c = self.connect(&target)?;
                let layout = RunLayout::new(&target.config.root, id);
                c.runtime.kill(&c.host, id, &layout).await?;
                Ok(self.store().run(id).await?)
            }
        }
    }

    /// Runs that started but have not finished and that no live process drives: the ones a
    /// crash left behind.
    pub async fn orphaned_runs(&self) -> EngineResult<Vec<Run>> {
        let live = self
            .store()
            .list_runs(&cosmos_store::RunFilter {
                statuses: vec![
                    RunStatus::Staging,
                    RunStatus::Starting,
                    RunStatus::Running,
                    RunStatus::Collecting,
                ],
                limit: 1000,
                ..Default::default()
            })
            .await?;
        let now = cosmos_core::now();
        let mut out = Vec::new();
        for run in live {
            let free = match self.store().lease(&run.id).await? {
                None => true,
                Some(l) => l.expires_at < now || owner_is_dead(&l.owner),
            };
            if free {
                out.push(run);
            }
        }
        Ok(out)
    }
}
