//! Workers (DESIGN.md §4): claim queued runs onto free GPU slots and drive them, many at a
//! time and across targets; take over runs whose driver died; give targets that stop
//! answering no new work until they answer again. Any number of workers share one database:
//! claims and leases keep every run with exactly one driver.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use cosmos_core::{RunId, RunStatus};
use cosmos_store::ClaimRequest;

use crate::Services;
use crate::error::{EngineError, EngineResult};
use crate::execute::{
    AbortOnDrop, DriveOutcome, LEASE_TTL_MS, Observer, Update, owner_id, owner_is_dead,
};

/// A worker not seen for this long is taken for dead.
pub const WORKER_TTL_MS: i64 = 10_000;
const WORKER_BEAT: Duration = Duration::from_secs(2);
/// How often an idle worker looks at the queue again.
const POLL: Duration = Duration::from_millis(200);
/// How often a worker records what it sees of its targets.
const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// How often a target that stopped answering is tried again.
const REPROBE: Duration = Duration::from_secs(5);

/// What a worker tells its operator.
#[derive(Debug, Clone)]
pub enum WorkerNote {
    Claimed {
        run: RunId,
        target: String,
        devices: Vec<u32>,
    },
    /// Taking over a run whose driver is gone.
    Adopted(RunId),
    Status(RunId, RunStatus, String),
    Finished(RunId, RunStatus),
    /// Something worth telling about a run (a retry, a lost connection).
    Note(RunId, String),
    Error(RunId, String),
    TargetDown(String),
    TargetUp(String),
}

pub type WorkerObserver = Arc<dyn Fn(WorkerNote) + Send + Sync>;

impl Services {
    /// Runs a worker until `stop` turns true; then it claims nothing more, stops driving
    /// (the models keep running; their leases are given up for another driver) and leaves.
    pub async fn work(
        &self,
        mut stop: watch::Receiver<bool>,
        on: WorkerObserver,
    ) -> EngineResult<()> {
        let env = self.exec_env()?;
        let me = owner_id();
        let host = me
            .strip_prefix("cosmos:")
            .and_then(|r| r.rsplit_once(':'))
            .map(|(h, _)| h.to_owned())
            .unwrap_or_default();
        let pid = std::process::id();
        self.store().worker_seen(&me, &host, pid).await?;
        let _beat = AbortOnDrop({
            let (services, me, host) = (self.clone(), me.clone(), host.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(WORKER_BEAT).await;
                    let _ = services.store().worker_seen(&me, &host, pid).await;
                }
            })
        });
        let mut tasks: JoinSet<(RunId, EngineResult<DriveOutcome>)> = JoinSet::new();
        let mut driving: HashSet<RunId> = HashSet::new();
        let mut probed = Instant::now();
        let mut reported: Option<Instant> = None;
        let mut down: HashSet<String> = HashSet::new();
        let mut turn = 0u64;
        while !*stop.borrow() {
            // Targets: down ones are tried again now and then.
            let unreachable = env.unreachable_targets();
            let mut changed = false;
            for name in unreachable.keys() {
                if down.insert(name.clone()) {
                    changed = true;
                    on(WorkerNote::TargetDown(name.clone()));
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
                    on(WorkerNote::TargetUp(name));
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

            // Runs a dead driver left mid-way (a lease lasts 30 s: looking every 2 s is plenty).
            turn += 1;
            let orphans = if turn % 10 == 1 {
                self.orphaned_runs().await?
            } else {
                Vec::new()
            };
            for run in orphans {
                if run.target.as_ref().is_some_and(|t| down.contains(t)) {
                    continue;
                }
                if driving.insert(run.id.clone()) {
                    on(WorkerNote::Adopted(run.id.clone()));
                    self.spawn_drive(&mut tasks, run.id, on.clone());
                }
            }

            // New work, as long as there are free slots on targets that answer (an empty
            // queue is seen without taking the write lock).
            let targets = self.open_slots().await?;
            while self.store().queue_length().await? > 0
                && let Some(claim) = self
                    .store()
                    .claim_run(&ClaimRequest {
                        owner: &me,
                        ttl_ms: LEASE_TTL_MS,
                        targets: &targets,
                        only: None,
                    })
                    .await?
            {
                on(WorkerNote::Claimed {
                    run: claim.run.clone(),
                    target: claim.target,
                    devices: claim.devices,
                });
                driving.insert(claim.run.clone());
                self.spawn_drive(&mut tasks, claim.run, on.clone());
            }

            let first = tokio::select! {
                _ = tokio::time::sleep(POLL) => None,
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
                report(&on, id, result);
            }
        }
        // Stopping: the models run on; whoever drives next reattaches.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        for id in &driving {
            let _ = self.store().release_lease(id, &me).await;
        }
        self.store().worker_gone(&me).await?;
        Ok(())
    }

    /// Workers alive: seen lately, and, for those on this machine, their process still there
    /// (a worker killed here is known dead at once, not after its silence).
    pub async fn live_workers(&self) -> EngineResult<Vec<cosmos_store::Worker>> {
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
    pub async fn open_slots(&self) -> EngineResult<Vec<(String, u32)>> {
        let env = self.exec_env()?;
        let down = env.unreachable_targets();
        let targets = self.store().list_targets().await?;
        Ok(targets
            .into_iter()
            .filter(|t| !down.contains_key(&t.name))
            .map(|t| {
                let found = env.gpus_seen(&t.name, &t.config);
                let slots = found.map_or(t.config.gpus, |n| t.config.gpus.min(n));
                (t.name, slots)
            })
            .collect())
    }

    /// Claims one particular queued run for this process (`cosmos run` executing its own
    /// run), placing it on free slots; `None` while none are free.
    pub async fn claim_own(&self, id: &RunId) -> EngineResult<Option<cosmos_store::Claim>> {
        let targets = self.open_slots().await?;
        Ok(self
            .store()
            .claim_run(&ClaimRequest {
                owner: &owner_id(),
                ttl_ms: LEASE_TTL_MS,
                targets: &targets,
                only: Some(id),
            })
            .await?)
    }

    fn spawn_drive(
        &self,
        tasks: &mut JoinSet<(RunId, EngineResult<DriveOutcome>)>,
        id: RunId,
        on: WorkerObserver,
    ) {
        let services = self.clone();
        let run = id.clone();
        let obs: Observer = Arc::new(move |u| match u {
            Update::Status(s, m) => on(WorkerNote::Status(run.clone(), s, m)),
            Update::Note(m) => on(WorkerNote::Note(run.clone(), m)),
            _ => {}
        });
        tasks.spawn(async move {
            let result = services.drive_run(&id, None, obs).await;
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

fn report(on: &WorkerObserver, id: RunId, result: EngineResult<DriveOutcome>) {
    match result {
        Ok(DriveOutcome::Done(run)) if run.status.is_terminal() => {
            on(WorkerNote::Finished(id, run.status));
        }
        // Back in the queue (a retry) or left for later: nothing to say.
        Ok(_) | Err(EngineError::Busy { .. }) => {}
        Err(e) => on(WorkerNote::Error(id, e.to_string())),
    }
}
