//! What executing a run writes besides its status: its target, progress events, verified
//! outputs, the command that started it, and the lease that says which process drives it.
//! A driver's writes carry its [`Fence`]: each one applies only while the lease is still the
//! fence's, so a driver that lost its lease writes nothing.

use sqlx::SqlitePool;

use cosmos_core::{RunEvent, RunId, RunOutput, RunStatus};

use super::convert::{time, to_json};
use crate::error::{Context, StoreError, StoreResult};
use crate::model::{Fence, Lease};

/// The condition a fenced write adds: `?owner IS NULL` leaves it unfenced.
pub(crate) const FENCE_SQL: &str = "(?1 IS NULL OR (lease_owner = ?1 AND lease_token = ?2))";

/// Runs `UPDATE runs SET <set> WHERE id = ?3 AND <fence>`, binding `value` as `?4`; a fence
/// that no longer holds gives [`StoreError::LeaseLost`].
async fn update_fenced<V>(
    pool: &SqlitePool,
    id: &RunId,
    set: &str,
    value: V,
    fence: Option<&Fence>,
    during: &'static str,
) -> StoreResult<()>
where
    V: for<'q> sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send,
{
    let sql = format!("UPDATE runs SET {set} WHERE id = ?3 AND {FENCE_SQL}");
    let done = sqlx::query(&sql)
        .bind(fence.map(|f| f.owner.as_str()))
        .bind(fence.map(|f| f.token))
        .bind(id.as_str())
        .bind(value)
        .execute(pool)
        .await
        .during(during)?;
    if done.rows_affected() == 0 {
        return Err(missing(pool, id, fence).await);
    }
    Ok(())
}

/// Why a write touched nothing: the run is gone, or the fence no longer holds.
pub(crate) async fn missing(pool: &SqlitePool, id: &RunId, fence: Option<&Fence>) -> StoreError {
    let exists: Result<Option<i64>, _> = sqlx::query_scalar("SELECT 1 FROM runs WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(pool)
        .await;
    match exists {
        Ok(Some(_)) if fence.is_some() => StoreError::LeaseLost { id: id.clone() },
        Ok(_) => StoreError::NotFound {
            kind: "run",
            id: id.to_string(),
        },
        Err(e) => StoreError::Database {
            operation: "read a run",
            message: e.to_string(),
        },
    }
}

pub(crate) async fn set_target(
    pool: &SqlitePool,
    id: &RunId,
    target: &str,
    fence: Option<&Fence>,
) -> StoreResult<()> {
    update_fenced(
        pool,
        id,
        "target = ?4",
        target.to_owned(),
        fence,
        "set a run's target",
    )
    .await
}

/// The event that asks a started run's driver to stop the model.
pub(crate) const CANCEL_REQUEST: &str = "cancel requested";

pub(crate) async fn cancel_requested(pool: &SqlitePool, id: &RunId) -> StoreResult<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM run_events WHERE run_id = ? AND message = ?)")
        .bind(id.as_str())
        .bind(CANCEL_REQUEST)
        .fetch_one(pool)
        .await
        .during("look for a cancel request")
}

pub(crate) async fn add_event(
    pool: &SqlitePool,
    now: i64,
    id: &RunId,
    stage: RunStatus,
    progress: Option<f64>,
    message: &str,
    fence: Option<&Fence>,
) -> StoreResult<RunEvent> {
    let inserted: Option<i64> = sqlx::query_scalar(&format!(
        "INSERT INTO run_events (run_id, at, stage, progress, message) \
         SELECT id, ?4, ?5, ?6, ?7 FROM runs WHERE id = ?3 AND {FENCE_SQL} RETURNING id"
    ))
    .bind(fence.map(|f| f.owner.as_str()))
    .bind(fence.map(|f| f.token))
    .bind(id.as_str())
    .bind(now)
    .bind(stage.as_str())
    .bind(progress)
    .bind(message)
    .fetch_optional(pool)
    .await
    .during("record a run event")?;
    match inserted {
        Some(event) => Ok(RunEvent {
            id: event,
            run_id: id.clone(),
            at: time(now),
            stage,
            progress,
            message: message.to_owned(),
        }),
        None => Err(missing(pool, id, fence).await),
    }
}

pub(crate) async fn set_exit_code(
    pool: &SqlitePool,
    id: &RunId,
    code: i32,
    fence: Option<&Fence>,
) -> StoreResult<()> {
    update_fenced(
        pool,
        id,
        "exit_code = ?4",
        code,
        fence,
        "record a run's exit status",
    )
    .await
}

pub(crate) async fn set_model_prompt(
    pool: &SqlitePool,
    id: &RunId,
    text: &str,
    fence: &Fence,
) -> StoreResult<()> {
    update_fenced(
        pool,
        id,
        "model_prompt = ?4",
        text.to_owned(),
        Some(fence),
        "record the prompt the model used",
    )
    .await
}

pub(crate) async fn set_batch_line(
    pool: &SqlitePool,
    id: &RunId,
    line: u32,
    fence: &Fence,
) -> StoreResult<()> {
    update_fenced(
        pool,
        id,
        "batch_line = ?4",
        i64::from(line),
        Some(fence),
        "record a run's batch line",
    )
    .await
}

pub(crate) async fn set_outputs(
    pool: &SqlitePool,
    id: &RunId,
    outputs: &[RunOutput],
    fence: Option<&Fence>,
) -> StoreResult<()> {
    update_fenced(
        pool,
        id,
        "outputs = ?4",
        to_json(&outputs),
        fence,
        "record a run's outputs",
    )
    .await
}

pub(crate) async fn set_launch_command(
    pool: &SqlitePool,
    id: &RunId,
    argv: &[String],
    fence: Option<&Fence>,
) -> StoreResult<()> {
    update_fenced(
        pool,
        id,
        "launch_command = ?4",
        to_json(&argv),
        fence,
        "record the command that started a run",
    )
    .await
}

pub(crate) async fn set_supply(
    pool: &SqlitePool,
    id: &RunId,
    supply: &cosmos_core::Supply,
    fence: Option<&Fence>,
) -> StoreResult<()> {
    update_fenced(
        pool,
        id,
        "supply = ?4",
        to_json(supply),
        fence,
        "record what a run ran on",
    )
    .await
}

pub(crate) async fn set_gpu_usage(
    pool: &SqlitePool,
    id: &RunId,
    usage: &cosmos_core::GpuUsage,
    fence: Option<&Fence>,
) -> StoreResult<()> {
    update_fenced(
        pool,
        id,
        "gpu_usage = ?4",
        to_json(usage),
        fence,
        "record a run's GPU usage",
    )
    .await
}

/// Takes the run's lease for `owner` when it is free, expired, already ours, or held by
/// `steal_from` (a holder the caller proved dead). The token moves on unless the lease was
/// ours and still running.
pub(crate) async fn take_lease(
    pool: &SqlitePool,
    now: i64,
    id: &RunId,
    owner: &str,
    ttl_ms: i64,
    steal_from: Option<&str>,
) -> StoreResult<Option<Fence>> {
    let token: Option<i64> = sqlx::query_scalar(
        "UPDATE runs SET lease_token = CASE WHEN lease_owner = ?1 AND lease_expires_at >= ?4 \
         THEN lease_token ELSE lease_token + 1 END, lease_owner = ?1, lease_expires_at = ?2 \
         WHERE id = ?3 AND (lease_owner IS NULL OR lease_owner = ?1 OR lease_expires_at < ?4 \
         OR lease_owner = ?5) RETURNING lease_token",
    )
    .bind(owner)
    .bind(now + ttl_ms)
    .bind(id.as_str())
    .bind(now)
    .bind(steal_from)
    .fetch_optional(pool)
    .await
    .during("take a run's lease")?;
    Ok(token.map(|token| Fence {
        owner: owner.to_owned(),
        token,
    }))
}

pub(crate) async fn renew_lease(
    pool: &SqlitePool,
    now: i64,
    id: &RunId,
    fence: &Fence,
    ttl_ms: i64,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE runs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND lease_token = ?",
    )
    .bind(now + ttl_ms)
    .bind(id.as_str())
    .bind(&fence.owner)
    .bind(fence.token)
    .execute(pool)
    .await
    .during("renew a run's lease")?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn release_lease(pool: &SqlitePool, id: &RunId, fence: &Fence) -> StoreResult<()> {
    sqlx::query(
        "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = ? AND lease_owner = ? AND lease_token = ?",
    )
    .bind(id.as_str())
    .bind(&fence.owner)
    .bind(fence.token)
    .execute(pool)
    .await
    .during("release a run's lease")
    .map(drop)
}

pub(crate) async fn lease(pool: &SqlitePool, id: &RunId) -> StoreResult<Option<Lease>> {
    let row: Option<(Option<String>, Option<i64>, i64)> =
        sqlx::query_as("SELECT lease_owner, lease_expires_at, lease_token FROM runs WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(pool)
            .await
            .during("read a run's lease")?;
    Ok(match row {
        Some((Some(owner), Some(expires), token)) => Some(Lease {
            owner,
            expires_at: time(expires),
            token,
        }),
        _ => None,
    })
}
