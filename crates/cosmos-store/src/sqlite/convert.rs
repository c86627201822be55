//! Conversions between rows and core types, and id-prefix lookup.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use cosmos_core::IdKind;

use crate::error::{Context, StoreError, StoreResult};

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Parses a stored value, reporting which column held garbage.
pub(crate) fn parse<T: FromStr>(what: &'static str, text: &str) -> StoreResult<T>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| StoreError::Corrupt {
        what,
        detail: format!("`{text}`: {e}"),
    })
}

pub(crate) fn parse_opt<T: FromStr>(
    what: &'static str,
    text: Option<&str>,
) -> StoreResult<Option<T>>
where
    T::Err: std::fmt::Display,
{
    text.map(|t| parse(what, t)).transpose()
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: &str,
) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("domain values always serialise to JSON")
}

pub(crate) fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// `id >= prefix AND id < prefix || '~'` is an index range scan; `~` sorts after every
/// character an id can hold.
pub(crate) async fn ids_with_prefix(
    pool: &SqlitePool,
    kind: IdKind,
    prefix: &str,
    limit: u32,
) -> StoreResult<Vec<String>> {
    let table = match kind {
        IdKind::InputSet => "input_sets",
        IdKind::Prompt => "prompts",
        IdKind::Run => "runs",
        IdKind::Batch => return Ok(Vec::new()),
    };
    let sql = format!("SELECT id FROM {table} WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3");
    sqlx::query_scalar(&sql)
        .bind(prefix)
        .bind(format!("{prefix}~"))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .during("look up ids")
}
