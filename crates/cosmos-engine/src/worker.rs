//! Workers (DESIGN.md §4): claim queued runs onto free GPU slots and drive them, many at a
//! time and across targets; take over runs whose driver died; give targets that stop
//! answering no new work until they answer again. Any number of workers share one database:
//! claims and fenced leases keep every run with exactly one driver. A worker wakes at once
//! on work queued in its own process and within [`CROSS_PROCESS_POLL`] on work queued by
//! another, by asking the store for its newest event id (not by reading the queue).

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use cosmos_core::{Run, RunId};
use cosmos_store::TargetOffer;

use crate::Services;
use crate::bus::CROSS_PROCESS_POLL;
use crate::error::{EngineError, EngineResult};
use crate::execute::{AbortOnDrop, owner_id, owner_is_dead};
use cosmos_remote::backoff::jittered;

/// A worker not seen for this long is taken for dead.
pub const WORKER_TTL_MS: i64 = 10_000;
const WORKER_BEAT: Duration = Duration::from_secs(2);
/// How often a worker records what it sees of its targets.
const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// How often a target that stopped answering is tried again.
const REPROBE: Duration = Duration::from_secs(5);
/// How often an idle worker looks at the queue without being woken (retries that wait).
const RECLAIM: Duration = Duration::from_millis(500);
/// How often a worker looks for runs whose driver died (a lease lasts longer).
const ORPHANS_EVERY: Duration = Duration::from_secs(2);
/// The first and the longest pause after the store was unavailable.
const TROUBLE_FIRST: Duration = Duration::from_millis(500);
const TROUBLE_MAX: Duration = Duration::from_secs(30);

/// What a worker tells its operator beyond the runs' own events (which are on the bus).
#[derive(Debug, Clone)]
pub enum WorkerEvent {
    /// Taking over a run whose driver is gone.
    Adopted(RunId),
    Finished(RunId, cosmos_core::RunStatus),
    Error(RunId, String),
    TargetDown(String),
    TargetUp(String),
    /// The store was unavailable (busy, locked, full): the worker waits and goes on.
    Trouble(String),
}

impl Services {
    /// Runs a worker until `stop` turns true; then it claims nothing more, stops driving
    /// (the models keep running; their leases are given up for another driver) and leaves.
    #[tracing::instrument(level = "info", skip_all)]
    pub(crate) async fn work(
        &self,
        mut stop: watch::Receiver<bool>,
        report: mpsc::UnboundedSender<WorkerEvent>,
    ) -> EngineResult<()> {
        let env = self.exec_env()?;
        let me = owner_id();
        let host = me
            .strip_prefix("cosmos:")
            .and_then(|r| r.rsplit_once(':'))
            .map(|(h, _)| h.to_owned())
            .unwrap_or_default();
        let pid = std::process::id();
        // Seen at once, unless the store is busy: then the heartbeat below says it.
        match self.store().worker_seen(&me, &host, pid).await {
            Err(e) if e.is_transient() => tracing::warn!("cannot record this worker yet: {e}"),
            other => other?,
        }
        let _beat = AbortOnDrop({
            let (services, me, host) = (self.clone(), me.clone(), host.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(WORKER_BEAT).await;
                    if let Err(e) = services.store().worker_seen(&me, &host, pid).await {
                        tracing::warn!("cannot record this worker as alive: {e}");
                    }
                }
            })
        });
        let say = |e: WorkerEvent| {
            let _ = report.send(e);
        };
        let mut tasks: JoinSet<(RunId, EngineResult<Run>)> = JoinSet::new();
        let mut driving: HashSet<RunId> = HashSet::new();
        let mut probed = Instant::now();
        let mut reported: Option<Instant> = None;
        let mut orphans_at: Option<Instant> = None;
        let mut down: HashSet<String> = HashSet::new();
        let mut seen_event = -1i64;
        let mut claimed_at = Instant::now();
        // Trouble with the store that can pass (busy, locked, a full disk): waited out, with
        // a doubling pause, never a reason to leave the runs this worker drives.
        let mut pause = TROUBLE_FIRST;
        while !*stop.borrow() {
            let pass = async {
                // Targets: down ones are tried again now and then.
                let unreachable = env.unreachable_targets();
                let mut changed = false;
                for name in unreachable.keys() {
                    if down.insert(name.clone()) {
                        changed = true;
                        say(WorkerEvent::TargetDown(name.clone()));
                    }
                }
                if probed.elapsed() >= REPROBE {
                    probed = Instant::now();
                    for name in unreachable.keys() {
                        if self.probe(name).await {
                            env.mark_reachable(name, true);
                        }
                    }
                }
                let unreachable = env.unreachable_targets();
                for name in down.clone() {
                    if !unreachable.contains_key(&name) {
                        down.remove(&name);
                        changed = true;
                        say(WorkerEvent::TargetUp(name));
                    }
                }
                // What the worker sees of its targets, for `cosmos status` in other processes.
                if changed || reported.is_none_or(|t| t.elapsed() >= HEALTH_EVERY) {
                    reported = Some(Instant::now());
                    for t in self.store().list_targets().await? {
                        let up = !unreachable.contains_key(&t.name);
                        let gpus = env.gpus_seen(&t.name, &t.config);
                        self.store().set_target_health(&t.name, up, gpus).await?;
                    }
                }

                // Runs a dead driver left mid-way.
                if orphans_at.is_none_or(|t| t.elapsed() >= ORPHANS_EVERY) {
                    orphans_at = Some(Instant::now());
                    let known: BTreeSet<String> = self
                        .store()
                        .list_targets()
                        .await?
                        .into_iter()
                        .map(|t| t.name)
                        .collect();
                    for run in self.orphaned_runs().await? {
                        // A run on a removed target waits for a target of that name to
                        // return (`target remove --force`); trying it now only fails.
                        if run
                            .target
                            .as_ref()
                            .is_some_and(|t| down.contains(t) || !known.contains(t))
                        {
                            continue;
                        }
                        if driving.insert(run.id.clone()) {
                            say(WorkerEvent::Adopted(run.id.clone()));
                            self.spawn_drive(&mut tasks, run.id);
                        }
                    }
                }

                // New work, as long as there are free slots on targets that answer (an empty
                // queue is seen without taking the write lock).
                // A retry's wait ends without an event: the queue is looked at now and then too.
                let head = self.store().last_event_id().await?;
                if head != seen_event || claimed_at.elapsed() >= RECLAIM {
                    seen_event = head;
                    claimed_at = Instant::now();
                    while self.store().queue_length().await? > 0
                        && let Some(claim) = self.claim_one(None).await?
                    {
                        driving.insert(claim.run.clone());
                        self.spawn_drive(&mut tasks, claim.run);
                    }
                }

                let first = tokio::select! {
                    _ = tokio::time::sleep(CROSS_PROCESS_POLL) => None,
                    _ = self.bus.work_arrived() => { seen_event = -1; None }
                    _ = stop.changed() => None,
                    Some(done) = tasks.join_next() => Some(done),
                };
                // That drive and any others that ended meanwhile.
                for (id, result) in first
                    .into_iter()
                    .chain(std::iter::from_fn(|| tasks.try_join_next()))
                    .flatten()
                {
                    driving.remove(&id);
                    // Slots may have freed: look at the queue again.
                    seen_event = -1;
                    match result {
                        Ok(run) if run.status.is_terminal() => {
                            say(WorkerEvent::Finished(id, run.status));
                        }
                        // Back in the queue (a retry), someone else's, or no longer ours.
                        Ok(_)
                        | Err(EngineError::Busy { .. })
                        | Err(EngineError::Store(cosmos_store::StoreError::LeaseLost { .. })) => {}
                        Err(e) => say(WorkerEvent::Error(id, e.to_string())),
                    }
                }
                Ok::<(), EngineError>(())
            }
            .await;
            match pass {
                Ok(()) => pause = TROUBLE_FIRST,
                Err(e) if e.is_transient() => {
                    tracing::warn!("{e}; trying again in {pause:?}");
                    say(WorkerEvent::Trouble(format!(
                        "{e}; trying again in {:.1} s",
                        pause.as_secs_f64()
                    )));
                    tokio::select! {
                        _ = tokio::time::sleep(jittered(pause)) => {}
                        _ = stop.changed() => {}
                    }
                    pause = (pause * 2).min(TROUBLE_MAX);
                }
                Err(e) => return Err(e),
            }
        }
        // Stopping: the models run on; whoever drives next reattaches.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        for id in &driving {
            self.release(id).await?;
        }
        self.store().worker_gone(&me).await?;
        Ok(())
    }

    /// Workers alive: seen lately, and, for those on this machine, their process still there
    /// (a worker killed here is known dead at once, not after its silence).
    pub(crate) async fn live_workers(&self) -> EngineResult<Vec<cosmos_store::Worker>> {
        Ok(self
            .store()
            .live_workers(WORKER_TTL_MS)
            .await?
            .into_iter()
            .filter(|w| !owner_is_dead(&w.id))
            .collect())
    }

    /// Targets that can take work (all but those that stopped answering), with their slots:
    /// as many as configured, but no more than the GPUs the target showed when last checked.
    pub(crate) async fn open_slots(&self) -> EngineResult<Vec<TargetOffer>> {
        let env = self.exec_env()?;
        let down = env.unreachable_targets();
        let targets = self.store().list_targets().await?;
        let anywhere = crate::targets::takes_unnamed_runs(&targets);
        Ok(targets
            .into_iter()
            .filter(|t| !down.contains_key(&t.name))
            .map(|t| {
                let found = env.gpus_seen(&t.name, &t.config);
                let slots = found.map_or(t.config.gpus, |n| t.config.gpus.min(n));
                TargetOffer {
                    max_batch: env.max_batch_on(&t.config),
                    // A rehearsal target beside real ones takes only runs sent to it by name.
                    pinned_only: !anywhere(&t),
                    rehearsal: t.config.rehearsal,
                    models: t.config.models(),
                    name: t.name,
                    gpus: slots,
                }
            })
            .collect())
    }

    fn spawn_drive(&self, tasks: &mut JoinSet<(RunId, EngineResult<Run>)>, id: RunId) {
        let services = self.clone();
        tasks.spawn(async move {
            let result = services.drive_run(&id).await;
            (id, result)
        });
    }

    /// Whether a target answers (a local one always does).
    async fn probe(&self, name: &str) -> bool {
        let Ok(target) = self.find_target(Some(name)).await else {
            return false;
        };
        match self.connect(&target) {
            Ok(c) => match c.ssh {
                Some(ssh) => ssh.connect().await.is_ok(),
                None => true,
            },
            Err(_) => false,
        }
    }
}
