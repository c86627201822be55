//! Hook deliveries: who sends an occasion to a hook (the first to claim it), and how it ended.

use sqlx::SqlitePool;

use cosmos_core::RunId;

use super::convert::{parse_opt, time};
use crate::error::{Context, StoreResult};
use crate::model::HookDelivery;

pub(crate) async fn claim(
    pool: &SqlitePool,
    now: i64,
    occasion: &str,
    hook: &str,
    event: &str,
    run: Option<&RunId>,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO hook_deliveries (occasion, hook, event, run_id, claimed_at) \
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (occasion, hook) DO NOTHING",
    )
    .bind(occasion)
    .bind(hook)
    .bind(event)
    .bind(run.map(RunId::as_str))
    .bind(now)
    .execute(pool)
    .await
    .during("claim a hook delivery")?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn finish(
    pool: &SqlitePool,
    now: i64,
    occasion: &str,
    hook: &str,
    delivered: bool,
    attempts: u32,
    detail: &str,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE hook_deliveries SET state = ?, attempts = ?, detail = ?, ended_at = ? \
         WHERE occasion = ? AND hook = ?",
    )
    .bind(if delivered { "delivered" } else { "failed" })
    .bind(i64::from(attempts))
    .bind(detail)
    .bind(now)
    .bind(occasion)
    .bind(hook)
    .execute(pool)
    .await
    .during("record a hook delivery")
    .map(drop)
}

type Row = (
    String,
    String,
    String,
    Option<String>,
    i64,
    String,
    i64,
    Option<String>,
);

pub(crate) async fn latest(
    pool: &SqlitePool,
    hook: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<HookDelivery>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT occasion, hook, event, run_id, claimed_at, state, attempts, detail \
         FROM hook_deliveries WHERE ?1 IS NULL OR hook = ?1 \
         ORDER BY claimed_at DESC, rowid DESC LIMIT ?2",
    )
    .bind(hook)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .during("read hook deliveries")?;
    rows.into_iter()
        .map(
            |(occasion, hook, event, run, at, state, attempts, detail)| {
                Ok(HookDelivery {
                    occasion,
                    hook,
                    event,
                    run_id: parse_opt("run id", run.as_deref())?,
                    claimed_at: time(at),
                    state,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    detail,
                })
            },
        )
        .collect()
}
