//! The queue: claiming and placing runs, automatic retries, pauses, workers, and which
//! targets hold which inputs. A claim is one `BEGIN IMMEDIATE` transaction, so claimers in
//! any number of processes are serialised by SQLite's write lock and never share a run or a
//! GPU.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::SqlitePool;

use cosmos_core::queue::TargetSlots;
use cosmos_core::{RunEvent, RunId, RunStatus};

use super::convert::{json, millis, parse, time, to_json};
use super::execution::FENCE_SQL;
use crate::error::{Context, StoreError, StoreResult};
use crate::model::{
    Candidate, Claim, ClaimRequest, ClaimedBatch, Fence, RunStage, TargetHealth, Worker,
};

/// How many queued runs one claim looks through for one that fits (the rest wait their turn).
const LOOKAHEAD: i64 = 64;
/// A run's own batch limit (`None`: no limit of its own).
fn limit_of(limit: Option<i64>) -> u32 {
    limit.map_or(u32::MAX, |l| u32::try_from(l).unwrap_or(1).max(1))
}

/// The scope of a whole-queue pause.
pub(crate) const ALL: &str = "*";

/// A queued run as a claim first sees it.
#[derive(sqlx::FromRow)]
struct CandidateRow {
    id: String,
    gpus: i64,
    target_pin: Option<String>,
    input_set_id: Option<String>,
    avoid_targets: Option<String>,
    signature: Option<String>,
    batch_limit: Option<i64>,
    model: String,
}

pub(crate) async fn claim(
    pool: &SqlitePool,
    now: i64,
    req: &ClaimRequest<'_>,
) -> StoreResult<Option<Claim>> {
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .during("begin a claim")?;
    let paused: Vec<String> = sqlx::query_scalar("SELECT scope FROM queue_pauses")
        .fetch_all(&mut *tx)
        .await
        .during("read the queue's pauses")?;
    if paused.iter().any(|p| p == ALL) {
        return Ok(None);
    }
    // Slots held: placed runs whose model has not ended, except queued ones whose claim
    // lapsed. A run collecting its outputs no longer uses its GPUs (its model exited), so the
    // next run starts meanwhile; a batch's run collecting holds them while its batch's model
    // may still run.
    let held: Vec<(String, String)> = sqlx::query_as(
        "SELECT target, gpu_devices FROM runs INDEXED BY runs_placed WHERE gpu_devices IS NOT NULL \
         AND status IN ('queued', 'staging', 'starting', 'running', 'collecting') \
         AND NOT (status = 'collecting' AND batch_id IS NULL) \
         AND NOT (status = 'queued' AND (lease_owner IS NULL OR lease_expires_at < ?))",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .during("read the GPU slots in use")?;
    let mut busy: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for (target, devices) in &held {
        let devices: Vec<u32> = json("run devices", devices)?;
        busy.entry(target.as_str()).or_default().extend(devices);
    }
    let slots: Vec<TargetSlots> = req
        .targets
        .iter()
        .filter(|t| !paused.contains(&t.name))
        .map(|t| TargetSlots {
            name: t.name.clone(),
            gpus: t.gpus,
            busy: busy.get(t.name.as_str()).cloned().unwrap_or_default(),
            pinned_only: t.pinned_only,
        })
        .collect();
    if slots.iter().all(|s| s.free() == 0) {
        return Ok(None);
    }
    // Only runs that could fit now are looked at, so runs pinned to a paused, unreachable
    // or full target, or wanting more GPUs than any target has free, never hold up the rest.
    let open: Vec<&str> = slots
        .iter()
        .filter(|s| s.free() > 0)
        .map(|s| s.name.as_str())
        .collect();
    let most_free = slots.iter().map(TargetSlots::free).max().unwrap_or(0);
    let candidates: Vec<CandidateRow> = sqlx::query_as(
        "SELECT id, gpus, target_pin, input_set_id, avoid_targets, signature, batch_limit, \
         coalesce(json_extract(params, '$.model'), ?6) AS model \
         FROM runs INDEXED BY runs_queue \
         WHERE status = 'queued' AND (lease_owner IS NULL OR lease_expires_at < ?1) \
         AND (not_before IS NULL OR not_before <= ?1) AND (?2 IS NULL OR id = ?2) \
         AND (upscale_of IS NULL OR EXISTS (SELECT 1 FROM runs p \
             WHERE p.id = runs.upscale_of AND p.status = 'succeeded')) \
         AND gpus <= ?4 AND (target_pin IS NULL OR target_pin IN (SELECT value FROM json_each(?5))) \
         ORDER BY priority DESC, created_at LIMIT ?3",
    )
    .bind(now)
    .bind(req.only.map(RunId::as_str))
    .bind(LOOKAHEAD)
    .bind(i64::from(most_free))
    .bind(to_json(&open))
    // A run that names no model is Cosmos-Transfer1's (its params leave the default out).
    .bind(cosmos_core::model::DEFAULT_MODEL)
    .fetch_all(&mut *tx)
    .await
    .during("read the queue")?;
    for CandidateRow {
        id,
        gpus,
        target_pin: target,
        input_set_id: input_set,
        avoid_targets: avoid,
        signature,
        batch_limit,
        model,
    } in candidates
    {
        // Only targets set up for the run's model are offered to it.
        let runs_model = |name: &str| {
            req.targets
                .iter()
                .any(|t| t.name == name && t.models.contains(&model))
        };
        let fitting: Vec<TargetSlots>;
        let slots: &[TargetSlots] = if slots.iter().all(|s| runs_model(&s.name)) {
            &slots
        } else {
            fitting = slots
                .iter()
                .filter(|s| runs_model(&s.name))
                .cloned()
                .collect();
            &fitting
        };
        let holders: BTreeSet<String> = match &input_set {
            Some(set) => {
                sqlx::query_scalar("SELECT target FROM target_inputs WHERE input_set_id = ?")
                    .bind(set)
                    .fetch_all(&mut *tx)
                    .await
                    .during("read where inputs are")?
                    .into_iter()
                    .collect()
            }
            None => BTreeSet::new(),
        };
        let candidate = Candidate {
            run: parse("run id", &id)?,
            gpus: u32::try_from(gpus).unwrap_or(1),
            target_pin: target,
            inputs_on: holders,
            avoid: match &avoid {
                Some(list) => json("targets to avoid", list)?,
                None => BTreeSet::new(),
            },
        };
        let Some((target, devices)) = req.placer.place(&candidate, slots) else {
            continue;
        };
        // The scheduler may only hand out devices that are free on a target offered.
        let offered = slots.iter().find(|s| s.name == target);
        if !offered.is_some_and(|s| devices.iter().all(|d| *d < s.gpus && !s.busy.contains(d))) {
            return Err(StoreError::Corrupt {
                what: "placement",
                detail: format!("GPUs {devices:?} of `{target}` are not free"),
            });
        }
        let offer = req.targets.iter().find(|t| t.name == target);
        let rehearsal = offer.is_some_and(|t| t.rehearsal);
        // Runs that share its signature go with it, as lines of one process.
        let cap = offer.map_or(1, |t| t.max_batch).min(limit_of(batch_limit));
        let mut lines = vec![(id.clone(), cap)];
        if let Some(signature) = signature.as_deref().filter(|_| cap > 1) {
            let pinned_only = offer.is_some_and(|t| t.pinned_only);
            let others: Vec<(String, Option<i64>)> = sqlx::query_as(
                "SELECT id, batch_limit FROM runs INDEXED BY runs_signature \
                 WHERE status = 'queued' AND signature = ?1 AND id != ?2 \
                 AND (lease_owner IS NULL OR lease_expires_at < ?3) \
                 AND (not_before IS NULL OR not_before <= ?3) \
                 AND (target_pin = ?4 OR (target_pin IS NULL AND NOT ?5)) \
                 AND NOT EXISTS (SELECT 1 FROM json_each(coalesce(avoid_targets, '[]')) \
                     WHERE value = ?4) \
                 ORDER BY priority DESC, created_at LIMIT ?6",
            )
            .bind(signature)
            .bind(&id)
            .bind(now)
            .bind(&target)
            .bind(pinned_only)
            .bind(LOOKAHEAD)
            .fetch_all(&mut *tx)
            .await
            .during("read runs to batch with")?;
            // Spread over the free slots: 32 runs on 4 free GPUs go as 4 batches of 8, not
            // one of 16 with GPUs idle beside it.
            let open: u32 = slots
                .iter()
                .filter(|s| match &candidate.target_pin {
                    Some(pin) => &s.name == pin,
                    None => !s.pinned_only,
                })
                .map(|s| s.free() / candidate.gpus.max(1))
                .sum();
            let spread = (others.len() as u32 + 1).div_ceil(open.max(1));
            lines[0].1 = lines[0].1.min(spread.max(1));
            for (other, limit) in others {
                let size = lines.len() as u32 + 1;
                let room = lines.iter().map(|l| l.1).min().unwrap_or(1);
                if size > room {
                    break;
                }
                let limit = limit_of(limit);
                if limit >= size {
                    lines.push((other, limit));
                }
            }
        }
        let batch = (lines.len() > 1).then(cosmos_core::BatchId::new);
        let shown: Vec<String> = devices.iter().map(u32::to_string).collect();
        let mut placed = Vec::with_capacity(lines.len());
        for (line, (run, _)) in lines.iter().enumerate() {
            let token: i64 = sqlx::query_scalar(
                "UPDATE runs SET lease_owner = ?, lease_expires_at = ?, lease_token = lease_token + 1, \
                 target = ?, gpu_devices = ?, rehearsal = ?, batch_id = ?, batch_line = ? \
                 WHERE id = ? RETURNING lease_token",
            )
            .bind(req.owner)
            .bind(now + req.ttl_ms)
            .bind(&target)
            .bind(to_json(&devices))
            .bind(rehearsal)
            .bind(batch.as_ref().map(|b| b.as_str()))
            .bind(batch.as_ref().map(|_| line as i64))
            .bind(run)
            .fetch_one(&mut *tx)
            .await
            .during("claim a run")?;
            let mut message = format!("placed on {target} (GPU {})", shown.join(","));
            if let Some(b) = &batch {
                message.push_str(&format!(
                    " in batch {b}, line {} of {}: one model load for {} runs",
                    line + 1,
                    lines.len(),
                    lines.len()
                ));
            }
            let event: i64 = sqlx::query_scalar(
                "INSERT INTO run_events (run_id, at, stage, progress, message) \
                 VALUES (?, ?, 'queued', NULL, ?) RETURNING id",
            )
            .bind(run)
            .bind(now)
            .bind(&message)
            .fetch_one(&mut *tx)
            .await
            .during("record a claim")?;
            let run: RunId = parse("run id", run)?;
            placed.push((
                Fence {
                    owner: req.owner.to_owned(),
                    token,
                },
                RunEvent {
                    id: event,
                    run_id: run,
                    at: time(now),
                    stage: RunStatus::Queued,
                    progress: None,
                    message,
                },
            ));
        }
        tx.commit().await.during("commit a claim")?;
        let mut placed = placed.into_iter();
        let Some((fence, event)) = placed.next() else {
            return Ok(None);
        };
        let batch = batch.map(|id| {
            let rest: Vec<(Fence, RunEvent)> = placed.collect();
            let mut runs = vec![(candidate.run.clone(), fence.clone())];
            runs.extend(rest.iter().map(|(f, e)| (e.run_id.clone(), f.clone())));
            ClaimedBatch {
                id,
                runs,
                events: rest.into_iter().map(|(_, e)| e).collect(),
            }
        });
        return Ok(Some(Claim {
            event,
            run: candidate.run,
            target,
            devices,
            fence,
            batch,
        }));
    }
    Ok(None)
}

pub(crate) async fn avoided(pool: &SqlitePool, id: &RunId) -> StoreResult<Vec<String>> {
    let list: Option<Option<String>> =
        sqlx::query_scalar("SELECT avoid_targets FROM runs WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(pool)
            .await
            .during("read the targets a run avoids")?;
    match list.flatten() {
        Some(text) => json("targets to avoid", &text),
        None => Ok(Vec::new()),
    }
}

/// Why and how a run goes back to the queue.
pub(crate) struct Requeue<'a> {
    pub from: RunStatus,
    pub not_before: chrono::DateTime<chrono::Utc>,
    pub message: &'a str,
    pub fence: Option<&'a Fence>,
    /// A target it must not be placed on again.
    pub avoid: Option<&'a str>,
    /// From a batch: no attempt counted, and the largest batch it may join from now on.
    pub batch_limit: Option<Option<u32>>,
}

/// Puts a run that met an infrastructure error back in the queue, not before `not_before`.
pub(crate) async fn requeue(
    pool: &SqlitePool,
    now: i64,
    id: &RunId,
    why: &Requeue<'_>,
) -> StoreResult<()> {
    let mut tx = pool.begin().await.during("begin a transaction")?;
    requeue_in(&mut tx, now, id, why).await?;
    tx.commit().await.during("commit a requeue")
}

/// Puts several runs back in one transaction (a batch's: no claim sees half of them). A run
/// that moved on meanwhile (a user's cancel) is left where it is.
pub(crate) async fn requeue_many(
    pool: &SqlitePool,
    now: i64,
    runs: &[(&RunId, Requeue<'_>)],
) -> StoreResult<()> {
    let mut tx = pool.begin().await.during("begin a transaction")?;
    for (id, why) in runs {
        match requeue_in(&mut tx, now, id, why).await {
            Ok(()) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    tx.commit().await.during("commit a requeue")
}

async fn requeue_in(
    tx: &mut sqlx::SqliteConnection,
    now: i64,
    id: &RunId,
    why: &Requeue<'_>,
) -> StoreResult<()> {
    let Requeue {
        from,
        not_before,
        message,
        fence,
        avoid,
        batch_limit,
    } = *why;
    // Out of a batch: not the run's own attempt; its batch limit changes only when given.
    let counted = if batch_limit.is_some() {
        "batch_limit = coalesce(?7, batch_limit)"
    } else {
        "attempts = attempts + 1"
    };
    let changed = sqlx::query(&format!(
        "UPDATE runs SET status = 'queued', {counted}, not_before = ?4, \
         lease_owner = NULL, lease_expires_at = NULL, gpu_devices = NULL, target = target_pin, \
         batch_id = NULL, batch_line = NULL, \
         avoid_targets = CASE WHEN ?6 IS NULL THEN avoid_targets \
             ELSE json_insert(coalesce(avoid_targets, '[]'), '$[#]', ?6) END \
         WHERE id = ?3 AND status = ?5 AND {FENCE_SQL}"
    ))
    .bind(fence.map(|f| f.owner.as_str()))
    .bind(fence.map(|f| f.token))
    .bind(id.as_str())
    .bind(millis(not_before))
    .bind(from.as_str())
    .bind(avoid)
    .bind(batch_limit.flatten().map(i64::from))
    .execute(&mut *tx)
    .await
    .during("requeue a run")?;
    if changed.rows_affected() == 0 {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM runs WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .during("read a run's status")?;
        return Err(match status {
            Some(s) if s != from.as_str() => StoreError::Conflict {
                id: id.clone(),
                expected: from,
                actual: parse("run status", &s)?,
            },
            Some(_) if fence.is_some() => StoreError::LeaseLost { id: id.clone() },
            _ => StoreError::NotFound {
                kind: "run",
                id: id.to_string(),
            },
        });
    }
    sqlx::query(
        "INSERT INTO run_events (run_id, at, stage, progress, message) VALUES (?, ?, 'queued', NULL, ?)",
    )
    .bind(id.as_str())
    .bind(now)
    .bind(message)
    .execute(&mut *tx)
    .await
    .during("record a run event")?;
    Ok(())
}

pub(crate) async fn set_paused(
    pool: &SqlitePool,
    now: i64,
    scope: &str,
    paused: bool,
) -> StoreResult<()> {
    let q = if paused {
        sqlx::query("INSERT OR IGNORE INTO queue_pauses (scope, since) VALUES (?, ?)")
            .bind(scope)
            .bind(now)
    } else {
        sqlx::query("DELETE FROM queue_pauses WHERE scope = ?").bind(scope)
    };
    q.execute(pool).await.during("pause or resume").map(drop)
}

pub(crate) async fn paused(pool: &SqlitePool) -> StoreResult<Vec<String>> {
    sqlx::query_scalar("SELECT scope FROM queue_pauses ORDER BY scope")
        .fetch_all(pool)
        .await
        .during("read the queue's pauses")
}

pub(crate) async fn note_inputs(
    pool: &SqlitePool,
    target: &str,
    input_set: &cosmos_core::InputSetId,
) -> StoreResult<()> {
    sqlx::query("INSERT OR IGNORE INTO target_inputs (target, input_set_id) VALUES (?, ?)")
        .bind(target)
        .bind(input_set.as_str())
        .execute(pool)
        .await
        .during("record inputs on a target")
        .map(drop)
}

pub(crate) async fn worker_seen(
    pool: &SqlitePool,
    now: i64,
    id: &str,
    host: &str,
    pid: u32,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO workers (id, host, pid, started_at, seen_at) VALUES (?1, ?2, ?3, ?4, ?4) \
         ON CONFLICT (id) DO UPDATE SET seen_at = ?4",
    )
    .bind(id)
    .bind(host)
    .bind(i64::from(pid))
    .bind(now)
    .execute(pool)
    .await
    .during("record a worker")
    .map(drop)
}

pub(crate) async fn worker_gone(pool: &SqlitePool, id: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM workers WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await
        .during("remove a worker")
        .map(drop)
}

/// Workers seen within `ttl_ms`.
pub(crate) async fn workers(pool: &SqlitePool, now: i64, ttl_ms: i64) -> StoreResult<Vec<Worker>> {
    let since = now - ttl_ms;
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT id, host, pid, started_at, seen_at FROM workers WHERE seen_at >= ? ORDER BY started_at",
    )
    .bind(since)
    .fetch_all(pool)
    .await
    .during("read the workers")?;
    Ok(rows
        .into_iter()
        .map(|(id, host, pid, started, seen)| Worker {
            id,
            host,
            pid: u32::try_from(pid).unwrap_or(0),
            started_at: time(started),
            seen_at: time(seen),
        })
        .collect())
}

pub(crate) async fn recent_durations(pool: &SqlitePool, limit: u32) -> StoreResult<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT finished_at - started_at FROM runs INDEXED BY runs_finished \
         WHERE status = 'succeeded' AND started_at IS NOT NULL AND finished_at IS NOT NULL \
         ORDER BY finished_at DESC LIMIT ?",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .during("read recent run durations")
}

/// Each of `ids`' latest message and progress, by the `run_events_run` index.
pub(crate) async fn stages_of(pool: &SqlitePool, ids: &[RunId]) -> StoreResult<Vec<RunStage>> {
    let mut stages = Vec::with_capacity(ids.len());
    // Within SQLite's limit on bound parameters, however many runs are live.
    for chunk in ids.chunks(10_000) {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT r.id, \
               (SELECT e.message FROM run_events e WHERE e.run_id = r.id ORDER BY e.id DESC LIMIT 1), \
               (SELECT e.progress FROM run_events e WHERE e.run_id = r.id AND e.progress IS NOT NULL \
                ORDER BY e.id DESC LIMIT 1) \
             FROM runs r WHERE r.id IN (",
        );
        let mut list = qb.separated(", ");
        for id in chunk {
            list.push_bind(id.as_str());
        }
        qb.push(")");
        let rows: Vec<(String, Option<String>, Option<f64>)> = qb
            .build_query_as()
            .fetch_all(pool)
            .await
            .during("read runs' stages")?;
        for (id, message, progress) in rows {
            stages.push(RunStage {
                run_id: parse("run id", &id)?,
                message,
                progress,
            });
        }
    }
    Ok(stages)
}

pub(crate) async fn set_health(
    pool: &SqlitePool,
    now: i64,
    target: &str,
    reachable: bool,
    gpus: Option<u32>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO target_health (target, reachable, since, checked_at, gpus) \
         VALUES (?1, ?2, ?3, ?3, ?4) \
         ON CONFLICT (target) DO UPDATE SET checked_at = ?3, \
         since = CASE WHEN reachable = ?2 THEN since ELSE ?3 END, reachable = ?2, \
         gpus = COALESCE(?4, gpus)",
    )
    .bind(target)
    .bind(reachable)
    .bind(now)
    .bind(gpus.map(i64::from))
    .execute(pool)
    .await
    .during("record a target's health")
    .map(drop)
}

pub(crate) async fn health(pool: &SqlitePool) -> StoreResult<Vec<TargetHealth>> {
    let rows: Vec<(String, bool, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT target, reachable, since, checked_at, gpus FROM target_health ORDER BY target",
    )
    .fetch_all(pool)
    .await
    .during("read target health")?;
    Ok(rows
        .into_iter()
        .map(|(target, reachable, since, checked, gpus)| TargetHealth {
            target,
            reachable,
            since: time(since),
            checked_at: time(checked),
            gpus: gpus.and_then(|g| u32::try_from(g).ok()),
        })
        .collect())
}

pub(crate) async fn length(pool: &SqlitePool) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM runs INDEXED BY runs_queue WHERE status = 'queued'",
    )
    .fetch_one(pool)
    .await
    .during("count the queue")?;
    Ok(u64::try_from(n).unwrap_or(0))
}
