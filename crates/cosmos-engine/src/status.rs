//! What `cosmos status` shows (DESIGN.md §4): the queue with estimated start and finish
//! times from observed durations, the running runs with their stage and progress, and the
//! targets with their GPU slots and whether they answer. Read from the store only: it never
//! asks a target.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use cosmos_core::{Run, RunStatus};
use cosmos_store::{TargetHealth, Worker};

use crate::Services;
use crate::error::EngineResult;

/// A queued run and when it should start and end.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueuedView {
    pub position: usize,
    pub run: Run,
    pub estimated_start: Option<DateTime<Utc>>,
    pub estimated_finish: Option<DateTime<Utc>>,
}

/// A run under way.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunningView {
    pub run: Run,
    /// The last thing it reported (a milestone, a transfer, a status change).
    pub stage: String,
    pub progress: Option<f64>,
    pub estimated_finish: Option<DateTime<Utc>>,
}

/// A target's slots and health.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TargetView {
    pub name: String,
    /// The slots runs can take: as configured, but no more than the GPUs seen.
    pub slots: u32,
    /// The configured slots.
    pub configured_slots: u32,
    /// GPUs the target showed when a worker last checked it.
    pub gpus_seen: Option<u32>,
    pub used: u32,
    pub free: u32,
    pub paused: bool,
    /// As a worker last saw it; `None` when no worker has tried it.
    pub reachable: Option<bool>,
    pub since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusView {
    pub paused: bool,
    pub queue: Vec<QueuedView>,
    /// Queued runs beyond those listed.
    pub queued_total: usize,
    pub running: Vec<RunningView>,
    pub targets: Vec<TargetView>,
    pub workers: Vec<Worker>,
    /// The median duration of recent succeeded runs, the basis of the estimates.
    pub typical_run_seconds: Option<f64>,
}

const LIVE: [RunStatus; 4] = [
    RunStatus::Staging,
    RunStatus::Starting,
    RunStatus::Running,
    RunStatus::Collecting,
];

impl Services {
    /// The queue, running runs, targets and workers; `listed` caps the queue shown.
    pub(crate) async fn status_view(&self, listed: u32) -> EngineResult<StatusView> {
        let store = self.store();
        let now = Utc::now();
        let paused = store.paused().await?;
        let mut durations = store.recent_durations_ms(50).await?;
        durations.sort_unstable();
        let typical = durations
            .get(durations.len() / 2)
            .map(|ms| *ms as f64 / 1000.0);
        let health: BTreeMap<String, TargetHealth> = store
            .target_health()
            .await?
            .into_iter()
            .map(|h| (h.target.clone(), h))
            .collect();

        let live = store
            .list_runs(&cosmos_store::RunFilter {
                statuses: LIVE.to_vec(),
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        let ids: Vec<_> = live.iter().map(|r| r.id.clone()).collect();
        let mut stages: BTreeMap<_, _> = store
            .stages_of(&ids)
            .await?
            .into_iter()
            .map(|s| (s.run_id.clone(), s))
            .collect();
        let mut used: BTreeMap<String, u32> = BTreeMap::new();
        let mut running = Vec::new();
        for run in live {
            if let Some(t) = &run.target {
                *used.entry(t.clone()).or_default() += run.devices.len() as u32;
            }
            let stage = stages.remove(&run.id);
            let progress = stage.as_ref().and_then(|s| s.progress);
            let elapsed = run
                .started_at
                .map(|s| (now - s).as_seconds_f64())
                .unwrap_or(0.0);
            let remaining = match (progress, typical) {
                (Some(p), _) if (0.1..1.0).contains(&p) => Some(elapsed * (1.0 - p) / p),
                (_, Some(t)) => Some((t - elapsed).max(0.0)),
                _ => None,
            };
            running.push(RunningView {
                stage: stage.and_then(|s| s.message).unwrap_or_default(),
                progress,
                estimated_finish: remaining.map(|r| now + secs(r)),
                run,
            });
        }

        let targets: Vec<TargetView> = store
            .list_targets()
            .await?
            .into_iter()
            .map(|t| {
                let used = used.get(&t.name).copied().unwrap_or(0);
                let h = health.get(&t.name);
                let gpus_seen = h.and_then(|h| h.gpus);
                let slots = gpus_seen.map_or(t.config.gpus, |g| g.min(t.config.gpus));
                TargetView {
                    paused: paused.iter().any(|p| p.as_deref() == Some(t.name.as_str())),
                    slots,
                    configured_slots: t.config.gpus,
                    gpus_seen,
                    used,
                    free: slots.saturating_sub(used),
                    reachable: h.map(|h| h.reachable),
                    since: h.map(|h| h.since),
                    name: t.name,
                }
            })
            .collect();

        // Estimates: queued runs take the earliest free slots, in claim order, each for
        // the typical duration, on targets that take work now.
        let queued = store.queued_runs(listed.max(1)).await?;
        let mut slots: BinaryHeap<Reverse<i64>> = BinaryHeap::new();
        for t in targets
            .iter()
            .filter(|t| !t.paused && t.reachable != Some(false))
        {
            for _ in 0..t.free {
                slots.push(Reverse(0));
            }
        }
        for r in &running {
            let at = r
                .estimated_finish
                .map(|f| (f - now).num_milliseconds().max(0))
                .unwrap_or(0);
            for _ in 0..r.run.devices.len().max(1) {
                if targets
                    .iter()
                    .any(|t| Some(&t.name) == r.run.target.as_ref())
                {
                    slots.push(Reverse(at));
                }
            }
        }
        let whole_queue_paused = paused.iter().any(Option::is_none);
        // When runs are expected to end (ms from now): an upscale starts after its parent.
        let mut ends: std::collections::HashMap<cosmos_core::RunId, i64> = running
            .iter()
            .filter_map(|r| {
                let f = r.estimated_finish?;
                Some((r.run.id.clone(), (f - now).num_milliseconds().max(0)))
            })
            .collect();
        let mut queue = Vec::with_capacity(queued.len());
        for (i, run) in queued.into_iter().enumerate() {
            let want = run.params.gpus.max(1) as usize;
            let (start, finish) = match typical {
                Some(t) if !whole_queue_paused && slots.len() >= want => {
                    let mut taken = Vec::with_capacity(want);
                    for _ in 0..want {
                        taken.push(slots.pop().map(|Reverse(v)| v).unwrap_or(0));
                    }
                    let begin = taken.iter().copied().max().unwrap_or(0);
                    let due = run
                        .created_at
                        .signed_duration_since(now)
                        .num_milliseconds()
                        .max(0);
                    let after = run
                        .upscale_of
                        .as_ref()
                        .and_then(|p| ends.get(p))
                        .copied()
                        .unwrap_or(0);
                    let begin = begin.max(due).max(after);
                    let end = begin + (t * 1000.0) as i64;
                    ends.insert(run.id.clone(), end);
                    for _ in 0..want {
                        slots.push(Reverse(end));
                    }
                    (
                        Some(now + Duration::milliseconds(begin)),
                        Some(now + Duration::milliseconds(end)),
                    )
                }
                _ => (None, None),
            };
            queue.push(QueuedView {
                position: i + 1,
                run,
                estimated_start: start,
                estimated_finish: finish,
            });
        }
        let queued_total = (store.queue_length().await? as usize).max(queue.len());
        Ok(StatusView {
            paused: whole_queue_paused,
            queue,
            queued_total,
            running,
            targets,
            workers: self.live_workers().await?,
            typical_run_seconds: typical,
        })
    }
}

fn secs(s: f64) -> Duration {
    Duration::milliseconds((s * 1000.0) as i64)
}
