//! What executing a run writes besides its status: its target, progress events, verified
//! outputs, and the lease that says which process is driving it.

use sqlx::SqlitePool;

use cosmos_core::{RunId, RunOutput, RunStatus};

use super::convert::{millis, to_json};
use crate::error::{Context, StoreResult};
use crate::model::Lease;

pub(crate) async fn set_target(pool: &SqlitePool, id: &RunId, target: &str) -> StoreResult<()> {
    sqlx::query("UPDATE runs SET target = ? WHERE id = ?")
        .bind(target)
        .bind(id.as_str())
        .execute(pool)
        .await
        .during("set a run's target")
        .map(drop)
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
    id: &RunId,
    stage: RunStatus,
    progress: Option<f64>,
    message: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO run_events (run_id, at, stage, progress, message) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id.as_str())
    .bind(millis(chrono::Utc::now()))
    .bind(stage.as_str())
    .bind(progress)
    .bind(message)
    .execute(pool)
    .await
    .during("record a run event")
    .map(drop)
}

pub(crate) async fn set_exit_code(pool: &SqlitePool, id: &RunId, code: i32) -> StoreResult<()> {
    sqlx::query("UPDATE runs SET exit_code = ? WHERE id = ?")
        .bind(code)
        .bind(id.as_str())
        .execute(pool)
        .await
        .during("record a run's exit status")
        .map(drop)
}

pub(crate) async fn set_outputs(
    pool: &SqlitePool,
    id: &RunId,
    outputs: &[RunOutput],
) -> StoreResult<()> {
    sqlx::query("UPDATE runs SET outputs = ? WHERE id = ?")
        .bind(to_json(&outputs))
        .bind(id.as_str())
        .execute(pool)
        .await
        .during("record a run's outputs")
        .map(drop)
}

/// Takes (or renews) the run's lease for `owner` when it is free, expired, already ours, or
/// held by `steal_from` (a holder the caller proved dead).
pub(crate) async fn take_lease(
    pool: &SqlitePool,
    id: &RunId,
    owner: &str,
    ttl_ms: i64,
    steal_from: Option<&str>,
) -> StoreResult<bool> {
    let now = millis(chrono::Utc::now());
    let done = sqlx::query(
        "UPDATE runs SET lease_owner = ?1, lease_expires_at = ?2 WHERE id = ?3 AND \
         (lease_owner IS NULL OR lease_owner = ?1 OR lease_expires_at < ?4 OR lease_owner = ?5)",
    )
    .bind(owner)
    .bind(now + ttl_ms)
    .bind(id.as_str())
    .bind(now)
    .bind(steal_from)
    .execute(pool)
    .await
    .during("take a run's lease")?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn release_lease(pool: &SqlitePool, id: &RunId, owner: &str) -> StoreResult<()> {
    sqlx::query(
        "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
    )
    .bind(id.as_str())
    .bind(owner)
    .execute(pool)
    .await
    .during("release a run's lease")
    .map(drop)
}

pub(crate) async fn lease(pool: &SqlitePool, id: &RunId) -> StoreResult<Option<Lease>> {
    let row: Option<(Option<String>, Option<i64>)> =
        sqlx::query_as("SELECT lease_owner, lease_expires_at FROM runs WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(pool)
            .await
            .during("read a run's lease")?;
    Ok(match row {
        Some((Some(owner), Some(expires))) => Some(Lease {
            owner,
            expires_at: super::convert::time(expires),
        }),
        _ => None,
    })
}
