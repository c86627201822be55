//! Targets.

use sqlx::SqlitePool;

use cosmos_core::{RunId, Target};

use super::convert::{json, millis, parse, to_json};
use crate::error::{Context, StoreError, StoreResult};

#[derive(sqlx::FromRow)]
struct TargetRow {
    name: String,
    config: String,
    is_default: i64,
}

impl TargetRow {
    fn into_target(self) -> StoreResult<Target> {
        Ok(Target {
            name: self.name,
            config: json("target config", &self.config)?,
            is_default: self.is_default != 0,
        })
    }
}

/// Inserts a target (or replaces it, with `replace`); a default target takes the default
/// from any other.
pub(crate) async fn put(pool: &SqlitePool, t: &Target, replace: bool) -> StoreResult<()> {
    let now = millis(chrono::Utc::now());
    let mut tx = pool.begin().await.during("begin a transaction")?;
    if t.is_default {
        sqlx::query("UPDATE targets SET is_default = 0 WHERE is_default = 1 AND name <> ?")
            .bind(&t.name)
            .execute(&mut *tx)
            .await
            .during("clear the default target")?;
    }
    let sql = if replace {
        "INSERT INTO targets (name, config, is_default, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4) \
         ON CONFLICT (name) DO UPDATE SET config = excluded.config, is_default = excluded.is_default, \
         updated_at = excluded.updated_at"
    } else {
        "INSERT INTO targets (name, config, is_default, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4) \
         ON CONFLICT (name) DO NOTHING"
    };
    let done = sqlx::query(sql)
        .bind(&t.name)
        .bind(to_json(&t.config))
        .bind(i64::from(t.is_default))
        .bind(now)
        .execute(&mut *tx)
        .await
        .during("store a target")?;
    if done.rows_affected() == 0 {
        return Err(StoreError::TargetExists(t.name.clone()));
    }
    tx.commit().await.during("commit a target")
}

pub(crate) async fn get(pool: &SqlitePool, name: &str) -> StoreResult<Option<Target>> {
    let row: Option<TargetRow> =
        sqlx::query_as("SELECT name, config, is_default FROM targets WHERE name = ?")
            .bind(name)
            .fetch_optional(pool)
            .await
            .during("read a target")?;
    row.map(TargetRow::into_target).transpose()
}

pub(crate) async fn list(pool: &SqlitePool) -> StoreResult<Vec<Target>> {
    let rows: Vec<TargetRow> =
        sqlx::query_as("SELECT name, config, is_default FROM targets ORDER BY name")
            .fetch_all(pool)
            .await
            .during("list targets")?;
    rows.into_iter().map(TargetRow::into_target).collect()
}

pub(crate) async fn unfinished_runs_on(pool: &SqlitePool, target: &str) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM runs WHERE target = ? \
         AND status IN ('staging', 'starting', 'running', 'collecting')",
    )
    .bind(target)
    .fetch_one(pool)
    .await
    .during("count a target's unfinished runs")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(crate) async fn queued_pinned_to(pool: &SqlitePool, target: &str) -> StoreResult<Vec<RunId>> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM runs WHERE status = 'queued' AND target_pin = ?")
            .bind(target)
            .fetch_all(pool)
            .await
            .during("list the runs pinned to a target")?;
    ids.iter().map(|id| parse("run id", id)).collect()
}

pub(crate) async fn delete(pool: &SqlitePool, name: &str) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM targets WHERE name = ?")
        .bind(name)
        .execute(pool)
        .await
        .during("delete a target")?;
    Ok(done.rows_affected() > 0)
}
