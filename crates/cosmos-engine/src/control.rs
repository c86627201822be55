//! Steering runs: cancelling (one, many, a prompt's, a sweep's, every queued run), retrying,
//! pausing the queue, and seeing runs through to their end — by following the worker that
//! drives them, or, with no worker alive, by claiming and driving them in this process
//! (finishing beside them any runs a crashed cosmos left behind).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use cosmos_core::{Run, RunId, RunStatus};
use cosmos_store::{ClaimRequest, RunFilter};

use crate::Services;
use crate::error::{EngineError, EngineResult};

/// Which runs a cancel is about.
#[derive(Debug, Clone)]
pub enum CancelScope {
    Runs(Vec<RunId>),
    /// Every unfinished run of a prompt.
    Prompt(cosmos_core::PromptId),
    /// Every unfinished run of a sweep (named by any of its runs).
    Sweep(RunId),
    /// Every queued run.
    Queued,
}

/// What a cancel did.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cancelled {
    /// The runs as they stand now: `cancelled`, or still ending (their driver records it).
    pub runs: Vec<Run>,
    /// Targets that did not answer in time to have a model killed: the cancel is recorded,
    /// and the run's driver stops the model when it reaches the target.
    pub unreachable: Vec<String>,
    /// Runs named that had already finished: nothing was cancelled.
    pub already_finished: Vec<Run>,
}

/// How long a cancel waits for a target to kill a model before leaving it to the driver.
const KILL_PATIENCE: Duration = Duration::from_secs(10);

/// How seeing runs through ended.
#[derive(Debug)]
pub enum Followed {
    /// Every run reached a terminal state.
    Finished(Vec<Run>),
    /// The caller stopped waiting; the runs go on (or stay queued).
    Stopped,
}

const LIVE: [RunStatus; 5] = [
    RunStatus::Queued,
    RunStatus::Staging,
    RunStatus::Starting,
    RunStatus::Running,
    RunStatus::Collecting,
];

impl Services {
    /// Cancels runs: a queued or staging one ends `cancelled` at once; a started one has its
    /// model killed, and its driver records `cancelled` (with no driver alive, this process
    /// collects it). Returns the runs as they stand afterwards.
    #[tracing::instrument(level = "info", skip(self))]
    pub(crate) async fn cancel(&self, scope: CancelScope) -> EngineResult<Cancelled> {
        let named = matches!(scope, CancelScope::Runs(_));
        let ids: Vec<RunId> = match scope {
            CancelScope::Runs(ids) => ids,
            CancelScope::Queued => {
                self.unfinished(RunFilter {
                    statuses: vec![RunStatus::Queued],
                    ..Default::default()
                })
                .await?
            }
            CancelScope::Prompt(p) => {
                self.unfinished(RunFilter {
                    prompt_id: Some(p),
                    ..Default::default()
                })
                .await?
            }
            CancelScope::Sweep(any) => {
                let run = self.store().run(&any).await?;
                let sweep = run.sweep_id.ok_or_else(|| {
                    EngineError::Invalid(format!("run `{any}` is not part of a sweep"))
                })?;
                self.unfinished(RunFilter {
                    sweep_id: Some(sweep),
                    ..Default::default()
                })
                .await?
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        let mut orphans = Vec::new();
        let mut unreachable: Vec<String> = Vec::new();
        // Which started runs nobody drives, asked once (a queued or staging run ends here).
        let mut undriven: Option<HashSet<RunId>> = None;
        let mut already_finished = Vec::new();
        for id in &ids {
            let before = self.store().run(id).await?;
            if before.status.is_terminal() {
                // A run of a sweep or prompt that ended meanwhile is simply done.
                if named {
                    already_finished.push(before);
                }
                continue;
            }
            let (run, missed) = self.cancel_one(before).await?;
            if let Some(t) = missed {
                if !unreachable.contains(&t) {
                    unreachable.push(t);
                }
            } else if !run.status.is_terminal() {
                if undriven.is_none() {
                    let found = self.orphaned_runs().await?.into_iter().map(|r| r.id);
                    undriven = Some(found.collect());
                }
                if undriven.as_ref().is_some_and(|u| u.contains(id)) {
                    orphans.push(id.clone());
                }
            }
            out.push(run);
        }
        // Started runs nobody drives: collect them here, so they end `cancelled`.
        for id in orphans {
            match self.drive_run(&id).await {
                Ok(run) => {
                    if let Some(slot) = out.iter_mut().find(|r| r.id == id) {
                        *slot = run;
                    }
                }
                Err(EngineError::Busy { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Cancelled {
            runs: out,
            unreachable,
            already_finished,
        })
    }

    async fn unfinished(&self, mut filter: RunFilter) -> EngineResult<Vec<RunId>> {
        if filter.statuses.is_empty() {
            filter.statuses = LIVE.to_vec();
        }
        filter.limit = 100_000;
        Ok(self
            .store()
            .list_runs(&filter)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect())
    }

    /// Cancels one run; the target that could not be reached to kill its model, if any.
    async fn cancel_one(&self, run: Run) -> EngineResult<(Run, Option<String>)> {
        let id = &run.id;
        match run.status {
            s if s.is_terminal() => Ok((run, None)),
            RunStatus::Queued | RunStatus::Staging => {
                let change = cosmos_store::StatusChange::new(
                    run.status,
                    RunStatus::Cancelled,
                    "cancelled by the user",
                )
                .code("cancelled");
                match self
                    .bus
                    .record_event(self.store().change_status(id, &change))
                    .await
                {
                    // It moved on meanwhile: cancel it where it is now.
                    Err(EngineError::Store(cosmos_store::StoreError::Conflict { .. })) => {
                        Box::pin(self.cancel_one(self.store().run(id).await?)).await
                    }
                    Err(e) => Err(e),
                    Ok(_) => Ok((self.store().run(id).await?, None)),
                }
            }
            _ => {
                self.bus
                    .record_event(self.store().request_cancel(id, run.status))
                    .await?;
                // In a batch the process serves other runs too: their driver ends this one
                // (and stops the process once no run of the batch wants it).
                if let Some(batch) = &run.batch_id
                    && self.batch_goes_on(batch, id).await?
                {
                    return Ok((self.store().run(id).await?, None));
                }
                let job = run.batch_id.as_ref().map_or(id.as_str(), |b| b.as_str());
                let target = self.find_target(run.target.as_deref()).await?;
                let c = self.connect(&target)?;
                let layout = cosmos_core::launch::RunLayout::new(&target.config.root, job);
                let killed =
                    tokio::time::timeout(KILL_PATIENCE, c.runtime.kill(&c.host, job, &layout))
                        .await;
                let missed = match killed {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) if !e.is_transient() => return Err(e.into()),
                    Ok(Err(e)) => {
                        tracing::warn!(run = %id, "cannot reach {} to kill the model: {e}", target.name);
                        Some(target.name)
                    }
                    Err(_) => Some(target.name),
                };
                Ok((self.store().run(id).await?, missed))
            }
        }
    }

    /// Whether a run of `batch` other than `except` still wants the batch's process.
    async fn batch_goes_on(
        &self,
        batch: &cosmos_core::BatchId,
        except: &RunId,
    ) -> EngineResult<bool> {
        for other in self.store().batch_runs(batch).await? {
            if &other.id != except
                && !other.status.is_terminal()
                && !self.store().cancel_requested(&other.id).await?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A failed or cancelled run again, as a new queued run linked to it.
    #[tracing::instrument(level = "info", skip(self))]
    pub(crate) async fn retry(&self, id: &RunId) -> EngineResult<Run> {
        let old = self.store().run(id).await?;
        if !matches!(old.status, RunStatus::Failed | RunStatus::Cancelled) {
            return Err(EngineError::Conflict(format!(
                "run {id} is {}: only a failed or cancelled run can be retried",
                old.status
            )));
        }
        self.retry_run(id).await
    }

    /// Pauses or resumes placing queued runs: everywhere, or on one target.
    pub(crate) async fn set_paused(&self, target: Option<&str>, paused: bool) -> EngineResult<()> {
        if let Some(t) = target {
            self.find_target(Some(t)).await?;
        }
        Ok(self.store().set_paused(target, paused).await?)
    }

    /// Sees runs through to their end. With a worker alive it follows them (taking them on
    /// should every worker go); otherwise this process claims each as GPU slots free up and
    /// drives it, with any runs a crash left behind. `stop` turning true stops waiting:
    /// started models run on, the rest stay queued.
    #[tracing::instrument(level = "info", skip(self, stop), fields(runs = ids.len()))]
    pub(crate) async fn see_through(
        &self,
        ids: &[RunId],
        start_queued: bool,
        mut stop: watch::Receiver<bool>,
    ) -> EngineResult<Followed> {
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut driving: HashSet<RunId> = HashSet::new();
        let mut done: HashMap<RunId, Run> = HashMap::new();
        let mut follower = self.bus.follow(self.bus.head().await?, None);
        let mut adopted_at: Option<std::time::Instant> = None;
        let mut followed_a_worker = false;
        let mut waiting: HashSet<RunId> = HashSet::new();
        loop {
            let here = self.live_workers().await?.is_empty();
            if !here {
                followed_a_worker = true;
            } else if followed_a_worker {
                // The worker went away: say so on each run this process now takes on.
                followed_a_worker = false;
                for id in ids.iter().filter(|id| !done.contains_key(*id)) {
                    let run = self.store().run(id).await?;
                    let note = "no worker is left; this process takes the run on";
                    let write = self.store().add_run_event(id, run.status, None, note, None);
                    self.bus.record_event(write).await?;
                }
            }
            if here && adopted_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
                adopted_at = Some(std::time::Instant::now());
                for orphan in self.orphaned_runs().await? {
                    if driving.insert(orphan.id.clone()) {
                        let me = self.clone();
                        tasks.spawn(async move {
                            if let Err(e) = me.drive_run(&orphan.id).await {
                                tracing::warn!(run = %orphan.id, "{e}");
                            }
                        });
                    }
                }
            }
            for id in ids {
                if done.contains_key(id) {
                    continue;
                }
                let run = self.store().run(id).await?;
                if run.status.is_terminal() {
                    done.insert(id.clone(), run);
                    continue;
                }
                if !here || driving.contains(id) {
                    continue;
                }
                // The claim's lease is this process's: the drive takes it on. A run claimed
                // into a batch is driven with the batch, while its claim holds.
                let in_batch = run.batch_id.is_some()
                    && self.store().lease(id).await?.is_some_and(|l| {
                        l.expires_at > cosmos_core::now()
                            && !crate::execute::owner_is_dead(&l.owner)
                    });
                if run.status == RunStatus::Queued && !in_batch {
                    let claimed = start_queued && self.claim_one(Some(id)).await?.is_some();
                    if claimed {
                        self.spawn_here(&mut tasks, &mut driving, id);
                    } else if start_queued && run.attempts == 0 && waiting.insert(id.clone()) {
                        // Said once, so a wait never looks like a hang (a retry's own wait
                        // was said when it was requeued).
                        let note = self.why_waiting(&run).await?;
                        let write =
                            self.store()
                                .add_run_event(id, RunStatus::Queued, None, &note, None);
                        self.bus.record_event(write).await?;
                    }
                }
            }
            if done.len() == ids.len() {
                // Runs adopted beside them are finished too before this process leaves.
                while tasks.join_next().await.is_some() {}
                let runs = ids.iter().filter_map(|id| done.remove(id)).collect();
                return Ok(Followed::Finished(runs));
            }
            tokio::select! {
                // Following a worker: its events say when to look again. Driving here, the
                // drives' own ends do.
                batch = follower.next_batch(), if !here => { batch?; }
                // A retry's wait ends without an event.
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                    // A drive ended: a requeued run is claimed again when due.
                    self.forget_finished(&mut driving).await?;
                }
                _ = stop.wait_for(|s| *s) => {
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    for id in ids {
                        self.release(id).await?;
                    }
                    return Ok(Followed::Stopped);
                }
            }
        }
    }

    /// Why a queued run was not started: a pause (and how to lift it), or GPU slots.
    async fn why_waiting(&self, run: &Run) -> EngineResult<String> {
        if let Some(parent) = &run.upscale_of
            && self.store().run(parent).await?.status != RunStatus::Succeeded
        {
            return Ok(format!(
                "waiting for {parent} to succeed: this upscales its output"
            ));
        }
        let paused = self.store().paused().await?;
        if paused.iter().any(Option::is_none) {
            return Ok(
                "waiting: the queue is paused (`cosmos queue resume` starts placing runs again)"
                    .into(),
            );
        }
        if let Some(pin) = &run.target_pin
            && paused.iter().any(|p| p.as_deref() == Some(pin.as_str()))
        {
            return Ok(format!(
                "waiting: target {pin} is paused (`cosmos queue resume --target {pin}`)"
            ));
        }
        if run.target_pin.is_none() {
            let all = self.store().list_targets().await?;
            let anywhere = crate::targets::takes_unnamed_runs(&all);
            let open: Vec<&cosmos_core::Target> = all.iter().filter(|t| anywhere(t)).collect();
            if !open.is_empty()
                && open
                    .iter()
                    .all(|t| paused.iter().any(|p| p.as_deref() == Some(t.name.as_str())))
            {
                return Ok(
                    "waiting: every target is paused (`cosmos queue resume --target NAME`)".into(),
                );
            }
        }
        Ok("waiting for free GPU slots".into())
    }

    fn spawn_here(&self, tasks: &mut JoinSet<()>, driving: &mut HashSet<RunId>, id: &RunId) {
        driving.insert(id.clone());
        let (me, id) = (self.clone(), id.clone());
        tasks.spawn(async move {
            if let Err(e) = me.drive_run(&id).await {
                tracing::warn!(run = %id, "{e}");
            }
        });
    }

    /// Drops from `driving` the runs no longer driven here (ended or requeued).
    async fn forget_finished(&self, driving: &mut HashSet<RunId>) -> EngineResult<()> {
        let me = crate::execute::owner_id();
        let mut keep = HashSet::new();
        for id in driving.drain() {
            if let Some(l) = self.store().lease(&id).await?
                && l.owner == me
            {
                keep.insert(id);
            }
        }
        *driving = keep;
        Ok(())
    }

    /// Claims a queued run for this process onto free slots, as the scheduler places it.
    pub(crate) async fn claim_one(
        &self,
        only: Option<&RunId>,
    ) -> EngineResult<Option<cosmos_store::Claim>> {
        let targets = self.open_slots().await?;
        let claim = self
            .store()
            .claim_run(&ClaimRequest {
                owner: &crate::execute::owner_id(),
                ttl_ms: self.lease_ttl_ms(),
                targets: &targets,
                only,
                placer: self.scheduler.as_ref(),
            })
            .await?;
        if let Some(c) = &claim {
            // The claim recorded its `placed on …` events in its own transaction.
            self.bus.record_event(async { Ok(c.event.clone()) }).await?;
            for event in c.batch.iter().flat_map(|b| &b.events) {
                self.bus.record_event(async { Ok(event.clone()) }).await?;
            }
        }
        Ok(claim)
    }
}
