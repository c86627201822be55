//! Executing a run on a target (DESIGN.md §3): `queued → staging → starting → running →
//! collecting → succeeded | failed | cancelled`. Each state is stored before the side effect
//! it names and every step is idempotent, so a driver that dies (kill -9, lost network) is
//! replaced by the next one — a worker, or the next `cosmos run` — which picks up where the
//! run is: re-uploads nothing that is there, never starts a second container, reattaches to
//! the log from where the local copy ends, or collects.
//!
//! A driver holds the run's lease ([`lease::HeldLease`]); every write it makes carries the
//! lease's fence, and a renewal that fails stops it at once, so a driver paused past its
//! lease while another took over writes nothing and starts nothing.

mod batch;
mod collect;
mod follow;
pub(crate) mod lease;
pub(crate) mod stage;
mod transfer_events;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cosmos_core::launch::RunLayout;
use cosmos_core::queue::retry_delay_ms;
use cosmos_core::{InputFile, Run, RunId, RunStatus};
use cosmos_remote::backoff::jittered;
use cosmos_remote::runtime::ModelState;
use cosmos_remote::{RemoteError, RemoteResult, args};
use cosmos_store::{Fence, StatusChange, StoreError};
use tracing::Instrument;

pub use lease::owner_id;
pub(crate) use lease::{AbortOnDrop, owner_is_dead};
use stage::Staging;

use crate::Services;
use crate::error::{EngineError, EngineResult};
use crate::launch::build_launch;
use crate::targets::Connected;

/// How a run ended badly: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What the driver of one run holds: the run and the lease's fence its writes carry.
#[derive(Debug, Clone)]
pub(crate) struct Drive {
    pub id: RunId,
    pub fence: Fence,
    /// Until when the lease is surely ours by this process's clock: past it (the process
    /// was paused, say), the driver writes nothing, not even to local files, until a
    /// renewal says otherwise.
    pub until: lease::LeaseClock,
}

/// The lease lasts this long without a renewal unless configured otherwise.
pub(crate) const LEASE_TTL_MS: i64 = 30_000;
/// How long an unreachable target is waited for before the driver gives up (the run stays
/// as it is, to be reconciled later: unreachable is not failed).
const PATIENCE: Duration = Duration::from_secs(15 * 60);

/// The local run log and outputs folder of a run.
pub fn local_log(data_dir: &Path, id: &RunId) -> PathBuf {
    local_job_log(data_dir, id.as_str())
}

/// The local log of a job: a run, or a batch (one process, one log, for its runs).
pub fn local_job_log(data_dir: &Path, job: &str) -> PathBuf {
    data_dir.join("logs").join(format!("{job}.log"))
}

/// Where a run's model log is kept here: its batch's when it ran in one.
pub fn run_log(data_dir: &Path, run: &Run) -> PathBuf {
    match &run.batch_id {
        Some(batch) => local_job_log(data_dir, batch.as_str()),
        None => local_log(data_dir, &run.id),
    }
}

pub fn local_outputs(data_dir: &Path, id: &RunId) -> PathBuf {
    data_dir.join("outputs").join(id.as_str())
}

/// A run's poster: a still of its output video, made when the run is collected.
pub fn local_poster(data_dir: &Path, id: &RunId) -> PathBuf {
    local_outputs(data_dir, id).join("poster.jpg")
}

/// The GPUs a run uses: those the scheduler gave it, else the first `--gpus` of them.
pub(crate) fn devices_of(run: &Run) -> Vec<u32> {
    if run.devices.is_empty() {
        (0..run.params.gpus).collect()
    } else {
        run.devices.clone()
    }
}

impl Services {
    /// Drives a run to a terminal state on its target (the default target for a run that
    /// has none yet). Another live driver makes this an [`EngineError::Busy`]; losing the
    /// lease midway ends it with [`StoreError::LeaseLost`].
    pub(crate) async fn drive_run(&self, id: &RunId) -> EngineResult<Run> {
        let span = tracing::info_span!(
            "drive",
            run = %id,
            target = tracing::field::Empty,
            stage = tracing::field::Empty
        );
        async {
            // A run placed in a batch is driven with the batch's other runs.
            let run = self.store().run(id).await?;
            if let Some(batch) = run.batch_id.as_ref().filter(|_| !run.status.is_terminal()) {
                self.drive_batch(batch).await?;
                return Ok(self.store().run(id).await?);
            }
            let mut held = self.acquire(id).await?;
            let drive = Drive {
                id: id.clone(),
                fence: held.fence.clone(),
                until: held.until.clone(),
            };
            let result = tokio::select! {
                r = self.drive_inner(&drive) => r,
                _ = held.lost.wait_for(|lost| *lost) => {
                    Err(StoreError::LeaseLost { id: id.clone() }.into())
                }
            };
            if let Err(e) = self.store().release_lease(id, &drive.fence).await {
                tracing::warn!("cannot release the lease: {e}");
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Fails with [`StoreError::LeaseLost`] unless the driver still holds its lease: asked
    /// before each side effect on a target or on local files.
    pub(crate) async fn check_lease(&self, d: &Drive) -> EngineResult<()> {
        if self
            .store()
            .renew_lease(&d.id, &d.fence, self.lease_ttl_ms())
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::LeaseLost { id: d.id.clone() }.into())
        }
    }

    /// Records a note on the run (a retry, a lost connection), as its driver.
    pub(crate) async fn note(
        &self,
        d: &Drive,
        stage: RunStatus,
        message: &str,
    ) -> EngineResult<()> {
        self.bus
            .record_event(
                self.store()
                    .add_run_event(&d.id, stage, None, message, Some(&d.fence)),
            )
            .await
            .map(drop)
    }

    /// Moves the run on, as its driver: another process that moved it first (a user's
    /// cancel) is not an error; the next turn reads where it is now.
    async fn step(
        &self,
        d: &Drive,
        from: RunStatus,
        to: RunStatus,
        message: &str,
        code: Option<&str>,
    ) -> EngineResult<()> {
        let mut change = StatusChange::new(from, to, message).fenced(Some(&d.fence));
        change.code = code;
        match self
            .bus
            .record_event(self.store().change_status(&d.id, &change))
            .await
        {
            Ok(_) => {
                tracing::info!(run = %d.id, status = %to, "{message}");
                Ok(())
            }
            Err(EngineError::Store(StoreError::Conflict { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn fail(&self, d: &Drive, from: RunStatus, f: Failure) -> EngineResult<()> {
        self.step(d, from, RunStatus::Failed, &f.message, Some(f.code))
            .await
    }

    async fn drive_inner(&self, d: &Drive) -> EngineResult<Run> {
        let id = &d.id;
        let run = self.store().run(id).await?;
        if run.status.is_terminal() {
            return Ok(run);
        }
        let target = match &run.target {
            Some(t) => self.find_target(Some(t)).await?,
            None => {
                let t = self.find_target(None).await?;
                self.store()
                    .set_run_target(id, &t.name, Some(&d.fence))
                    .await?;
                t
            }
        };
        tracing::Span::current().record("target", target.name.as_str());
        let c = self.connect(&target)?;
        let layout = RunLayout::new(&target.config.root, id);
        // How the model ended, when this driver saw it end (saves asking again).
        let mut seen_end: Option<(ModelState, bool)> = None;
        loop {
            let run = self.store().run(id).await?;
            let from = run.status;
            tracing::Span::current().record("stage", tracing::field::display(from));
            // Collecting writes local files (the outputs) before any fenced store write.
            if from == RunStatus::Collecting {
                self.check_lease(d).await?;
            }
            match run.status {
                RunStatus::Queued => {
                    let message = if target.config.rehearsal {
                        format!(
                            "staging on {} (rehearsal: cosmos-sim stands in for Cosmos; the output is a copy of the input)",
                            target.name
                        )
                    } else {
                        format!("staging on {}", target.name)
                    };
                    self.step(d, from, RunStatus::Staging, &message, None)
                        .await?;
                }
                RunStatus::Staging => match self.stage(&c, &run, &layout, d).await {
                    Ok(()) => {
                        let message = "inputs verified on the target; starting the model";
                        self.step(d, from, RunStatus::Starting, message, None)
                            .await?
                    }
                    Err(Staging::Fail(f)) => self.fail(d, from, f).await?,
                    // Nothing started yet: the run can wait and go where there is room.
                    Err(Staging::Error(EngineError::Remote(e))) if e.is_transient() => {
                        match self.requeue(d, &run, &e.to_string(), true, None).await? {
                            Some(queued) => return Ok(queued),
                            None => {
                                let tries = run.attempts + 1;
                                let why =
                                    format!("gave up after {tries} attempts to stage it: {e}");
                                self.fail(d, from, Failure::new("target_unreachable", why))
                                    .await?;
                            }
                        }
                    }
                    // Placed on a GPU the host lacks: this process now knows how many it
                    // has and places the run again at once.
                    Err(Staging::Misplaced(why)) => {
                        match self.requeue(d, &run, &why, false, None).await? {
                            Some(queued) => return Ok(queued),
                            None => self.fail(d, from, Failure::new("misplaced", why)).await?,
                        }
                    }
                    Err(Staging::Error(e)) => return Err(e),
                },
                RunStatus::Starting if self.store().cancel_requested(id).await? => {
                    let message = "cancelled by the user before the model started";
                    self.step(d, from, RunStatus::Cancelled, message, Some("cancelled"))
                        .await?;
                }
                RunStatus::Starting => {
                    let files = self.input_files(&run).await?;
                    let plan = build_launch(&target, &run, &files, &devices_of(&run))?;
                    // The command is kept before it runs (what `cosmos show` says ran), and
                    // writing it proves the lease is still ours: a driver that lost it
                    // starts nothing.
                    self.store()
                        .set_supply(id, &self.supply_of(&target), Some(&d.fence))
                        .await?;
                    self.store()
                        .set_launch_command(id, &plan.start_command, Some(&d.fence))
                        .await?;
                    // Starting is idempotent (a container of that name, a pid file): a
                    // driver that died after starting the model starts nothing new.
                    let argv = plan.start_command;
                    let state = self
                        .patiently(&c, d, from, "start the model", || {
                            c.runtime.start(&c.host, &argv)
                        })
                        .await;
                    match state {
                        Ok(()) => {
                            let message = c.runtime.started(id.as_str());
                            self.step(d, from, RunStatus::Running, &message, None)
                                .await?;
                            // A kill that came while the model was being started found
                            // nothing to kill: honour it now.
                            if self.store().cancel_requested(id).await? {
                                c.runtime.kill(&c.host, id.as_str(), &layout).await?;
                            }
                        }
                        Err(EngineError::Remote(e)) if !e.is_transient() => {
                            let failure = start_failure(&target.name, &e);
                            // What the runtime said is the run's log too (`cosmos logs`).
                            self.note_in_log(&run.id, &failure.message);
                            // Nothing ran: another target may take it before it fails.
                            if self.another_target_for(&run, &target.name).await? {
                                let why =
                                    format!("{}; placing it on another target", failure.message);
                                if let Some(queued) = self
                                    .requeue(d, &run, &why, false, Some(&target.name))
                                    .await?
                                {
                                    return Ok(queued);
                                }
                            }
                            self.fail(d, from, failure).await?
                        }
                        Err(e) => return Err(e),
                    }
                }
                RunStatus::Running => {
                    let (ended, state) = self.follow(&c, &run, &layout, d).await?;
                    seen_end = Some(state);
                    self.step(d, from, RunStatus::Collecting, &ended, None)
                        .await?;
                }
                RunStatus::Collecting => {
                    let (to, message, code) =
                        self.collect(&c, &run, &layout, seen_end.take(), d).await?;
                    self.step(d, from, to, &message, code).await?;
                }
                _ => {
                    // The env file served the model; nothing of it outlives the run.
                    if run.status.is_terminal() {
                        let rm = args(&["rm", "-f", "--", &layout.env_file()]);
                        if let Err(e) = c.host.runner.run(&rm).await {
                            tracing::warn!(run = %id, "cannot remove the run's env file: {e}");
                        }
                    }
                    return Ok(run);
                }
            }
        }
    }

    /// Gives a run that could not be staged back to the queue (after a doubling wait when
    /// `backoff`), while it has retries left (`None` once they are spent).
    async fn requeue(
        &self,
        d: &Drive,
        run: &Run,
        why: &str,
        backoff: bool,
        avoid: Option<&str>,
    ) -> EngineResult<Option<Run>> {
        let policy = self.exec_env()?.retry;
        if run.attempts >= policy.max_attempts {
            return Ok(None);
        }
        let attempt = run.attempts + 1;
        let wait = if backoff {
            let base = Duration::from_millis(retry_delay_ms(policy.backoff_ms, attempt));
            jittered(base).as_millis() as u64
        } else {
            0
        };
        let message = format!(
            "{why}; back in the queue for retry {attempt} of {} in {:.1} s",
            policy.max_attempts,
            wait as f64 / 1000.0
        );
        let at = cosmos_core::now() + chrono::Duration::milliseconds(wait as i64);
        self.bus
            .record(self.store().requeue_run(
                &run.id,
                run.status,
                at,
                &message,
                Some(&d.fence),
                avoid,
            ))
            .await?;
        Ok(Some(self.store().run(&run.id).await?))
    }

    /// Whether a target other than `failed` (and those the run could not start on before)
    /// could take the run: it is not pinned, and such a target exists.
    async fn another_target_for(&self, run: &Run, failed: &str) -> EngineResult<bool> {
        if run.target_pin.is_some() {
            return Ok(false);
        }
        let all = self.store().list_targets().await?;
        let anywhere = crate::targets::takes_unnamed_runs(&all);
        let avoided = self.store().avoided_targets(&run.id).await?;
        Ok(all.iter().any(|t| {
            anywhere(t)
                && t.name != failed
                && !avoided.contains(&t.name)
                && t.config.gpus >= run.params.gpus
        }))
    }

    /// Appends a line to the run's local log, where `cosmos logs` reads.
    fn note_in_log(&self, id: &RunId, line: &str) {
        let Ok(env) = self.exec_env() else { return };
        let path = local_log(&env.data_dir, id);
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            std::io::Write::write_all(&mut f, format!("cosmos: {line}\n").as_bytes())
        };
        if let Err(e) = write() {
            tracing::warn!(run = %id, "cannot write the run's log: {e}");
        }
    }

    /// How long staging waits for an unreachable target before the run goes back to the
    /// queue (nothing has started yet, so another target may take it).
    fn staging_patience(&self) -> EngineResult<Duration> {
        Ok(Duration::from_millis(
            self.exec_env()?.retry.staging_patience_ms,
        ))
    }

    /// Retries `f` while the target is unreachable, with backoff, for up to `patience`
    /// (staging gives up sooner: the run can go elsewhere); keeps the target's health.
    async fn patiently<T, F, Fut>(
        &self,
        c: &Connected,
        d: &Drive,
        stage: RunStatus,
        what: &str,
        f: F,
    ) -> EngineResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = RemoteResult<T>>,
    {
        self.retrying(PATIENCE, c, d, stage, what, f).await
    }

    async fn retrying<T, F, Fut>(
        &self,
        patience: Duration,
        c: &Connected,
        d: &Drive,
        stage: RunStatus,
        what: &str,
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
            let reachable = !matches!(&result, Err(RemoteError::Unreachable { .. }));
            health.mark_reachable(&c.target.name, reachable);
            self.target_seen(&c.target.name, reachable, &d.id);
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && started.elapsed() < patience => {
                    let wait = jittered(pause);
                    let note = format!("{what}: {e}; retrying in {wait:.1?}");
                    self.note(d, stage, &note).await?;
                    tokio::time::sleep(wait).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(crate) async fn input_files(&self, run: &Run) -> EngineResult<Vec<InputFile>> {
        // An upscale of a run enlarges that run's output, whatever scene it came from.
        if let Some(parent) = &run.upscale_of {
            return self.upscale_input(parent).await;
        }
        let set_id = run
            .input_set_id
            .clone()
            .ok_or_else(|| EngineError::NoInputSet(run.prompt_id.to_string()))?;
        let files = self.store().input_set(&set_id).await?.files;
        // The upsampler reads one video.
        if run.kind == cosmos_core::RunKind::Enhance {
            return Ok(crate::enhance::enhance_video(&files)
                .cloned()
                .into_iter()
                .collect());
        }
        Ok(files)
    }
}

/// Why a model could not start, in the runtime's own words, with what fixes it when known.
fn start_failure(target: &str, e: &cosmos_remote::RemoteError) -> Failure {
    let words = e.to_string();
    if words.contains("could not select device driver") && words.contains("gpu") {
        return Failure::new(
            "gpu_runtime_missing",
            format!(
                "the model could not start on {target}: {words} (the Docker engine there has no GPU support)"
            ),
        );
    }
    Failure::new(
        "start_failed",
        format!("the model could not start on {target}: {words}"),
    )
}
