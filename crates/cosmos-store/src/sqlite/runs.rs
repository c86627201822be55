//! Runs and their events.

use sqlx::SqlitePool;

use cosmos_core::{InputSetId, PromptId, Run, RunEvent, RunId, RunStatus};

use super::convert::{json, millis, parse, parse_opt, time, to_json, unsigned};
use super::execution::FENCE_SQL;
use crate::error::{Context, StoreError, StoreResult};
use crate::model::{NewRun, RunFilter, StatusChange};

#[derive(sqlx::FromRow)]
struct RunRow {
    id: String,
    prompt_id: String,
    prompt_name: String,
    kind: String,
    status: String,
    name: Option<String>,
    prompt_text: String,
    negative_prompt: Option<String>,
    input_set_id: Option<String>,
    params: String,
    target: Option<String>,
    priority: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    failure_reason: Option<String>,
    rating: Option<i64>,
    outputs: String,
    gpu_devices: Option<String>,
    attempts: i64,
    parent_run_id: Option<String>,
    target_pin: Option<String>,
    exit_code: Option<i64>,
    failure_code: Option<String>,
    launch_command: Option<String>,
    sweep_id: Option<String>,
    supply: Option<String>,
    gpu_usage: Option<String>,
    rehearsal: bool,
    favourite: bool,
    retried_by: Option<String>,
    batch_id: Option<String>,
    batch_line: Option<i64>,
    upscale_of: Option<String>,
    upscaled_by: Option<String>,
    model_prompt: Option<String>,
}

const COLUMNS: &str = "r.id, r.prompt_id, p.name AS prompt_name, r.kind, r.status, r.name, \
    r.prompt_text, r.negative_prompt, r.input_set_id, r.params, r.target, r.priority, \
    r.created_at, r.started_at, r.finished_at, r.failure_reason, r.rating, r.outputs, \
    r.gpu_devices, r.attempts, r.parent_run_id, r.target_pin, r.exit_code, r.failure_code, \
    r.launch_command, r.sweep_id, r.supply, r.gpu_usage, r.rehearsal, r.favourite, \
    (SELECT c.id FROM runs c WHERE c.parent_run_id = r.id LIMIT 1) AS retried_by, \
    r.batch_id, r.batch_line, r.upscale_of, \
    (SELECT json_group_array(u.id) FROM runs u WHERE u.upscale_of = r.id) AS upscaled_by, \
    r.model_prompt";

impl RunRow {
    fn into_run(self) -> StoreResult<Run> {
        Ok(Run {
            id: parse("run id", &self.id)?,
            prompt_id: parse("prompt id", &self.prompt_id)?,
            prompt_name: self.prompt_name,
            kind: parse("run kind", &self.kind)?,
            status: parse("run status", &self.status)?,
            name: self.name,
            prompt_text: self.prompt_text,
            negative_prompt: self.negative_prompt,
            input_set_id: parse_opt("input set id", self.input_set_id.as_deref())?,
            params: json("run parameters", &self.params)?,
            target: self.target,
            priority: i32::try_from(self.priority).unwrap_or(0),
            created_at: time(self.created_at),
            started_at: self.started_at.map(time),
            finished_at: self.finished_at.map(time),
            failure_reason: self.failure_reason,
            rating: self.rating.and_then(|r| u8::try_from(r).ok()),
            outputs: json("run outputs", &self.outputs)?,
            devices: match &self.gpu_devices {
                Some(d) => json("run devices", d)?,
                None => Vec::new(),
            },
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            retry_of: parse_opt("run id", self.parent_run_id.as_deref())?,
            target_pin: self.target_pin,
            exit_code: self.exit_code.and_then(|c| i32::try_from(c).ok()),
            failure_code: self.failure_code,
            launch_command: match &self.launch_command {
                Some(c) => Some(json("launch command", c)?),
                None => None,
            },
            sweep_id: parse_opt("run id", self.sweep_id.as_deref())?,
            supply: match &self.supply {
                Some(s) => Some(json("run supply", s)?),
                None => None,
            },
            rehearsal: self.rehearsal,
            favourite: self.favourite,
            retried_by: parse_opt("run id", self.retried_by.as_deref())?,
            gpu_usage: match &self.gpu_usage {
                Some(u) => Some(json("run GPU usage", u)?),
                None => None,
            },
            batch_id: parse_opt("batch id", self.batch_id.as_deref())?,
            batch_line: self.batch_line.and_then(|l| u32::try_from(l).ok()),
            upscale_of: parse_opt("run id", self.upscale_of.as_deref())?,
            upscaled_by: match &self.upscaled_by {
                Some(list) => {
                    let ids: Vec<String> = json("upscale runs", list)?;
                    ids.iter()
                        .map(|id| parse("run id", id))
                        .collect::<StoreResult<_>>()?
                }
                None => Vec::new(),
            },
            model_prompt: self.model_prompt,
        })
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    run_id: String,
    at: i64,
    stage: String,
    progress: Option<f64>,
    message: String,
}

async fn insert_event(
    conn: &mut sqlx::SqliteConnection,
    run: &RunId,
    at: i64,
    stage: RunStatus,
    message: &str,
) -> StoreResult<i64> {
    sqlx::query_scalar(
        "INSERT INTO run_events (run_id, at, stage, progress, message) VALUES (?, ?, ?, NULL, ?) \
         RETURNING id",
    )
    .bind(run.as_str())
    .bind(at)
    .bind(stage.as_str())
    .bind(message)
    .fetch_one(conn)
    .await
    .during("record a run event")
}

pub(crate) async fn create(pool: &SqlitePool, new: &NewRun) -> StoreResult<Run> {
    create_many(pool, std::slice::from_ref(new)).await?;
    get(pool, &new.id).await
}

/// Rows per multi-row INSERT: SQLite takes up to 32766 bound values, a run has 18.
const INSERT_CHUNK: usize = 1000;

/// Inserts runs, each with its first event, in one transaction: a statement per thousand
/// rows, so a sweep of ten thousand holds the write lock for moments.
pub(crate) async fn create_many(pool: &SqlitePool, runs: &[NewRun]) -> StoreResult<()> {
    let began = std::time::Instant::now();
    // Immediate: a retry's check that its run was not retried yet holds until it commits.
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .during("begin a transaction")?;
    for new in runs {
        if let Some(of) = &new.retry_of {
            let by: Option<String> =
                sqlx::query_scalar("SELECT id FROM runs WHERE parent_run_id = ? LIMIT 1")
                    .bind(of.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .during("look for an earlier retry")?;
            if let Some(by) = by {
                return Err(StoreError::AlreadyRetried {
                    id: of.clone(),
                    by: parse("run id", &by)?,
                });
            }
        }
    }
    for chunk in runs.chunks(INSERT_CHUNK) {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO runs (id, prompt_id, kind, status, name, prompt_text, negative_prompt, \
             input_set_id, params, gpus, priority, created_at, parent_run_id, target_pin, target, \
             sweep_id, signature, upscale_of) ",
        );
        qb.push_values(chunk, |mut b, new| {
            b.push_bind(new.id.as_str())
                .push_bind(new.prompt_id.as_str())
                .push_bind(new.kind.as_str())
                .push_bind("queued")
                .push_bind(new.name.as_deref())
                .push_bind(&new.prompt_text)
                .push_bind(new.negative_prompt.as_deref())
                .push_bind(new.input_set_id.as_ref().map(InputSetId::as_str))
                .push_bind(to_json(&new.params))
                .push_bind(i64::from(new.params.gpus))
                .push_bind(i64::from(new.priority))
                .push_bind(millis(new.created_at))
                .push_bind(new.retry_of.as_ref().map(RunId::as_str))
                .push_bind(new.target_pin.as_deref())
                .push_bind(new.target_pin.as_deref())
                .push_bind(new.sweep_id.as_ref().map(RunId::as_str))
                .push_bind(new.signature.as_deref())
                .push_bind(new.upscale_of.as_ref().map(RunId::as_str));
        });
        qb.build().execute(&mut *tx).await.during("insert runs")?;
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO run_events (run_id, at, stage, progress, message) ",
        );
        qb.push_values(chunk, |mut b, new| {
            b.push_bind(new.id.as_str())
                .push_bind(millis(new.created_at))
                .push_bind(RunStatus::Queued.as_str())
                .push_bind(None::<f64>)
                .push_bind(&new.note);
        });
        qb.build()
            .execute(&mut *tx)
            .await
            .during("record the runs' first events")?;
    }
    tx.commit().await.during("commit runs")?;
    tracing::debug!(
        runs = runs.len(),
        "runs inserted; the write lock was held {:.1} ms",
        began.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Runs by id, in the order asked (ids that do not exist are left out).
pub(crate) async fn get_many(pool: &SqlitePool, ids: &[RunId]) -> StoreResult<Vec<Run>> {
    let mut by_id = std::collections::HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(INSERT_CHUNK * 10) {
        let list: Vec<&str> = chunk.iter().map(RunId::as_str).collect();
        let rows: Vec<RunRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM runs r JOIN prompts p ON p.id = r.prompt_id \
             WHERE r.id IN (SELECT value FROM json_each(?))"
        ))
        .bind(to_json(&list))
        .fetch_all(pool)
        .await
        .during("read runs")?;
        for row in rows {
            let run = row.into_run()?;
            by_id.insert(run.id.clone(), run);
        }
    }
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

pub(crate) async fn in_batch(
    pool: &SqlitePool,
    batch: &cosmos_core::BatchId,
) -> StoreResult<Vec<Run>> {
    let rows: Vec<RunRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM runs r JOIN prompts p ON p.id = r.prompt_id \
         WHERE r.batch_id = ? ORDER BY r.batch_line"
    ))
    .bind(batch.as_str())
    .fetch_all(pool)
    .await
    .during("read a batch's runs")?;
    rows.into_iter().map(RunRow::into_run).collect()
}

pub(crate) async fn get(pool: &SqlitePool, id: &RunId) -> StoreResult<Run> {
    let row: Option<RunRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM runs r JOIN prompts p ON p.id = r.prompt_id WHERE r.id = ?"
    ))
    .bind(id.as_str())
    .fetch_optional(pool)
    .await
    .during("read a run")?;
    row.ok_or_else(|| StoreError::NotFound {
        kind: "run",
        id: id.to_string(),
    })?
    .into_run()
}

/// Appends `filter`'s conditions to a query over `runs r`.
fn push_filter<'a>(qb: &mut sqlx::QueryBuilder<'a, sqlx::Sqlite>, filter: &'a RunFilter) {
    if !filter.statuses.is_empty() {
        qb.push(" AND r.status IN (");
        let mut sep = qb.separated(", ");
        for s in &filter.statuses {
            sep.push_bind(s.as_str());
        }
        qb.push(")");
    }
    if let Some(prompt) = &filter.prompt_id {
        qb.push(" AND r.prompt_id = ").push_bind(prompt.as_str());
    }
    if !filter.prompt_ids.is_empty() {
        qb.push(" AND r.prompt_id IN (");
        let mut sep = qb.separated(", ");
        for p in &filter.prompt_ids {
            sep.push_bind(p.as_str());
        }
        qb.push(")");
    }
    if let Some(sweep) = &filter.sweep_id {
        qb.push(" AND r.sweep_id = ").push_bind(sweep.as_str());
    }
    if let Some(since) = filter.since {
        qb.push(" AND r.created_at >= ").push_bind(millis(since));
    }
    if let Some(rating) = filter.min_rating {
        qb.push(" AND r.rating >= ").push_bind(i64::from(rating));
    }
    if filter.favourite {
        qb.push(" AND r.favourite = 1");
    }
    if let Some(set) = &filter.input_set_id {
        qb.push(" AND r.input_set_id = ").push_bind(set.as_str());
    }
    if let Some(target) = &filter.target {
        qb.push(" AND (r.target = ")
            .push_bind(target.as_str())
            .push(" OR (r.target IS NULL AND r.target_pin = ")
            .push_bind(target.as_str())
            .push("))");
    }
    if let Some(before) = &filter.before {
        // List order is (created_at, rowid) descending; a cursor whose run is gone yields
        // nothing rather than starting over.
        qb.push(" AND (r.created_at, r.rowid) < (SELECT c.created_at, c.rowid FROM runs c WHERE c.id = ")
            .push_bind(before.as_str())
            .push(")");
    }
}

pub(crate) async fn list(pool: &SqlitePool, filter: &RunFilter) -> StoreResult<Vec<Run>> {
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM runs r JOIN prompts p ON p.id = r.prompt_id WHERE 1 = 1"
    ));
    push_filter(&mut qb, filter);
    // Runs created in the same millisecond (a sweep) keep the order they were stored in.
    qb.push(" ORDER BY r.created_at DESC, r.rowid DESC LIMIT ")
        .push_bind(i64::from(filter.limit));
    let rows: Vec<RunRow> = qb
        .build_query_as()
        .fetch_all(pool)
        .await
        .during("list runs")?;
    rows.into_iter().map(RunRow::into_run).collect()
}

pub(crate) async fn count_matching(pool: &SqlitePool, filter: &RunFilter) -> StoreResult<u64> {
    let mut qb = sqlx::QueryBuilder::new("SELECT COUNT(*) FROM runs r WHERE 1 = 1");
    push_filter(&mut qb, filter);
    let n: i64 = qb
        .build_query_scalar()
        .fetch_one(pool)
        .await
        .during("count runs")?;
    Ok(unsigned(n))
}

pub(crate) async fn count_by_status(pool: &SqlitePool) -> StoreResult<Vec<(RunStatus, u64)>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM runs GROUP BY status")
            .fetch_all(pool)
            .await
            .during("count runs by status")?;
    rows.into_iter()
        .map(|(status, n)| Ok((parse("run status", &status)?, unsigned(n))))
        .collect()
}

pub(crate) async fn set_priority(
    pool: &SqlitePool,
    id: &RunId,
    priority: i32,
) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE runs SET priority = ? WHERE id = ? AND status = 'queued'")
        .bind(priority)
        .bind(id.as_str())
        .execute(pool)
        .await
        .during("change a run's priority")?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn rate(
    pool: &SqlitePool,
    ids: &[RunId],
    rating: Option<Option<u8>>,
    favourite: Option<bool>,
) -> StoreResult<()> {
    if rating.is_none() && favourite.is_none() {
        return Ok(());
    }
    let mut tx = pool.begin().await.during("begin rating runs")?;
    for id in ids {
        let mut qb = sqlx::QueryBuilder::new("UPDATE runs SET ");
        let mut set = qb.separated(", ");
        if let Some(r) = rating {
            set.push("rating = ")
                .push_bind_unseparated(r.map(i64::from));
        }
        if let Some(f) = favourite {
            set.push("favourite = ").push_bind_unseparated(f);
        }
        qb.push(" WHERE id = ").push_bind(id.as_str());
        let done = qb.build().execute(&mut *tx).await.during("rate a run")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "run",
                id: id.to_string(),
            });
        }
    }
    tx.commit().await.during("commit ratings")?;
    Ok(())
}

/// Queued runs in claim order.
pub(crate) async fn queued(pool: &SqlitePool, limit: u32) -> StoreResult<Vec<Run>> {
    let rows: Vec<RunRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM runs r INDEXED BY runs_queue JOIN prompts p ON p.id = r.prompt_id \
         WHERE r.status = 'queued' ORDER BY r.priority DESC, r.created_at LIMIT ?"
    ))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .during("read the queue")?;
    rows.into_iter().map(RunRow::into_run).collect()
}

pub(crate) async fn count_for_prompt(pool: &SqlitePool, prompt: &PromptId) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE prompt_id = ?")
        .bind(prompt.as_str())
        .fetch_one(pool)
        .await
        .during("count runs")?;
    Ok(unsigned(n))
}

fn event(r: EventRow) -> StoreResult<RunEvent> {
    Ok(RunEvent {
        id: r.id,
        run_id: parse("run id", &r.run_id)?,
        at: time(r.at),
        stage: parse("event stage", &r.stage)?,
        progress: r.progress,
        message: r.message,
    })
}

pub(crate) async fn events(pool: &SqlitePool, id: &RunId) -> StoreResult<Vec<RunEvent>> {
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT id, run_id, at, stage, progress, message FROM run_events WHERE run_id = ? ORDER BY id",
    )
    .bind(id.as_str())
    .fetch_all(pool)
    .await
    .during("read run events")?;
    rows.into_iter().map(event).collect()
}

/// Events after a sequence number, of all runs or of one, oldest first.
pub(crate) async fn events_after(
    pool: &SqlitePool,
    after: i64,
    run: Option<&RunId>,
    limit: u32,
) -> StoreResult<Vec<RunEvent>> {
    let rows: Vec<EventRow> = match run {
        Some(run) => {
            sqlx::query_as(
                "SELECT id, run_id, at, stage, progress, message FROM run_events \
                 WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?",
            )
            .bind(run.as_str())
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        }
        None => {
            sqlx::query_as(
                "SELECT id, run_id, at, stage, progress, message FROM run_events \
                 WHERE id > ? ORDER BY id LIMIT ?",
            )
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        }
    }
    .during("read events")?;
    rows.into_iter().map(event).collect()
}

pub(crate) async fn last_event_id(pool: &SqlitePool) -> StoreResult<i64> {
    let id: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM run_events")
        .fetch_one(pool)
        .await
        .during("read the newest event")?;
    Ok(id.unwrap_or(0))
}

/// The upscale runs waiting for a run that just ended: sent to its target when it succeeded
/// (its output is there), cancelled otherwise. Their events follow the parent's.
async fn settle_upscales(
    tx: &mut sqlx::SqliteConnection,
    now: i64,
    parent: &RunId,
    ended: RunStatus,
) -> StoreResult<()> {
    let waiting: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE upscale_of = ? AND status = 'queued' ORDER BY created_at, id",
    )
    .bind(parent.as_str())
    .fetch_all(&mut *tx)
    .await
    .during("read the upscale runs waiting")?;
    if waiting.is_empty() {
        return Ok(());
    }
    let target: Option<String> = sqlx::query_scalar("SELECT target FROM runs WHERE id = ?")
        .bind(parent.as_str())
        .fetch_one(&mut *tx)
        .await
        .during("read where a run ran")?;
    for child in &waiting {
        let child: RunId = parse("run id", child)?;
        if ended == RunStatus::Succeeded {
            // Pinned only when it was free to go anywhere: a target the user chose stays.
            sqlx::query(
                "UPDATE runs SET target_pin = coalesce(target_pin, ?), \
                 target = coalesce(target_pin, ?) WHERE id = ?",
            )
            .bind(target.as_deref())
            .bind(target.as_deref())
            .bind(child.as_str())
            .execute(&mut *tx)
            .await
            .during("release an upscale run")?;
            let message = match &target {
                Some(t) => format!("{parent} succeeded: ready to upscale its output on {t}"),
                None => format!("{parent} succeeded: ready to upscale its output"),
            };
            insert_event(&mut *tx, &child, now, RunStatus::Queued, &message).await?;
        } else {
            let message = format!(
                "not run: the run it would upscale, {parent}, {}",
                if ended == RunStatus::Failed {
                    "failed"
                } else {
                    "was cancelled"
                }
            );
            sqlx::query(
                "UPDATE runs SET status = 'cancelled', finished_at = ?, failure_reason = ?, \
                 failure_code = 'parent_failed', lease_owner = NULL, lease_expires_at = NULL \
                 WHERE id = ? AND status = 'queued'",
            )
            .bind(now)
            .bind(&message)
            .bind(child.as_str())
            .execute(&mut *tx)
            .await
            .during("cancel an upscale run")?;
            insert_event(&mut *tx, &child, now, RunStatus::Cancelled, &message).await?;
        }
    }
    Ok(())
}

pub(crate) async fn change_status(
    pool: &SqlitePool,
    now: i64,
    id: &RunId,
    change: &StatusChange<'_>,
) -> StoreResult<RunEvent> {
    let StatusChange {
        from,
        to,
        message,
        code,
        fence,
    } = *change;
    if !from.can_become(to) {
        return Err(StoreError::IllegalTransition {
            id: id.clone(),
            from,
            to,
        });
    }
    let mut tx = pool.begin().await.during("begin a transaction")?;
    let started = (to == RunStatus::Staging).then_some(now);
    let finished = to.is_terminal().then_some(now);
    // Why it did not succeed: the message of a failure or a cancel.
    let reason = matches!(to, RunStatus::Failed | RunStatus::Cancelled).then_some(message);
    let code = code.filter(|_| to.is_terminal());
    let changed = sqlx::query(&format!(
        "UPDATE runs SET status = ?4, started_at = coalesce(started_at, ?5), \
         finished_at = coalesce(?6, finished_at), failure_reason = coalesce(?7, failure_reason), \
         failure_code = coalesce(?8, failure_code) \
         WHERE id = ?3 AND status = ?9 AND {FENCE_SQL}"
    ))
    .bind(fence.map(|f| f.owner.as_str()))
    .bind(fence.map(|f| f.token))
    .bind(id.as_str())
    .bind(to.as_str())
    .bind(started)
    .bind(finished)
    .bind(reason)
    .bind(code)
    .bind(from.as_str())
    .execute(&mut *tx)
    .await
    .during("change a run's status")?;
    if changed.rows_affected() == 0 {
        let actual: Option<String> = sqlx::query_scalar("SELECT status FROM runs WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .during("read a run's status")?;
        return match actual {
            None => Err(StoreError::NotFound {
                kind: "run",
                id: id.to_string(),
            }),
            Some(actual) if actual != from.as_str() => Err(StoreError::Conflict {
                id: id.clone(),
                expected: from,
                actual: parse("run status", &actual)?,
            }),
            Some(_) => Err(StoreError::LeaseLost { id: id.clone() }),
        };
    }
    let event = insert_event(&mut tx, id, now, to, message).await?;
    if to.is_terminal() {
        settle_upscales(&mut tx, now, id, to).await?;
    }
    tx.commit().await.during("commit a status change")?;
    Ok(RunEvent {
        id: event,
        run_id: id.clone(),
        at: time(now),
        stage: to,
        progress: None,
        message: message.to_owned(),
    })
}
