//! Executing a run on a target (DESIGN.md §3): `queued → staging → starting → running →
//! collecting → succeeded | failed | cancelled`. Each state is stored before the side effect
//! it names and every step is idempotent, so a driver that dies (kill -9, lost network) is
//! replaced by the next one — `cosmos logs -f`, `cosmos status`, the next `cosmos run` — which
//! picks up where the run is: re-uploads nothing that is there, never starts a second
//! container, reattaches to the log from where the local copy ends, or collects.

mod collect;
mod follow;
mod lease;
mod stage;
mod transfer_events;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cosmos_core::launch::{RunLayout, TransferLaunch, container_name, torchrun_argv};
use cosmos_core::progress::Milestone;
use cosmos_core::queue::retry_delay_ms;
use cosmos_core::{InputFile, Run, RunId, RunStatus};
use cosmos_remote::backoff::jittered;
use cosmos_remote::runtime::{Launch, ModelState};
use cosmos_remote::{RemoteError, RemoteResult};

pub use lease::owner_id;
pub(crate) use lease::{AbortOnDrop, owner_is_dead};
use stage::Staging;

use crate::Services;
use crate::error::{EngineError, EngineResult};
use crate::runs::spec_for;
use crate::targets::Connected;

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

/// The local run log and outputs folder of a run.
pub fn local_log(data_dir: &Path, id: &RunId) -> PathBuf {
    data_dir.join("logs").join(format!("{id}.log"))
}

pub fn local_outputs(data_dir: &Path, id: &RunId) -> PathBuf {
    data_dir.join("outputs").join(id.as_str())
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

impl Services {
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
        let mut seen_end: Option<(ModelState, bool)> = None;
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
                        match self.requeue(&run, &e.to_string(), true, obs).await? {
                            Some(queued) => return Ok(queued),
                            None => {
                                let tries = run.attempts + 1;
                                let why =
                                    format!("gave up after {tries} attempts to stage it: {e}");
                                step(RunStatus::Failed, why).await?;
                            }
                        }
                    }
                    // Placed on a GPU the host lacks: this process now knows how many it
                    // has and places the run again at once.
                    Err(Staging::Misplaced(why)) => {
                        match self.requeue(&run, &why, false, obs).await? {
                            Some(queued) => return Ok(queued),
                            None => step(RunStatus::Failed, why).await?,
                        }
                    }
                    Err(Staging::Error(e)) => return Err(e),
                },
                RunStatus::Starting if self.store().cancel_requested(id).await? => {
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
                        mounts: &target.config.mounts,
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
                            if self.store().cancel_requested(id).await? {
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

    /// Gives a run that could not be staged back to the queue (after a doubling wait when
    /// `backoff`), while it has retries left (`None` once they are spent).
    async fn requeue(
        &self,
        run: &Run,
        why: &str,
        backoff: bool,
        obs: &Observer,
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
                    let wait = jittered(pause);
                    obs(Update::Note(format!("{what}: {e}; retrying in {wait:.1?}")));
                    tokio::time::sleep(wait).await;
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
}
