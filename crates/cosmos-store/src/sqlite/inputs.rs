//! Input sets and their files.

use std::collections::HashMap;

use sqlx::SqlitePool;

use cosmos_core::{InputFile, InputSet, InputSetId, VideoInfo};

use super::convert::{millis, parse, time, unsigned};
use crate::error::{Context, StoreError, StoreResult};
use crate::model::InputSetSummary;

#[derive(sqlx::FromRow)]
struct SetRow {
    id: String,
    name: String,
    dir: String,
    fingerprint: String,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct FileRow {
    input_set_id: String,
    kind: String,
    path: String,
    size: i64,
    sha256: String,
    frames: i64,
    fps: f64,
    width: i64,
    height: i64,
    duration: f64,
    codec: String,
}

const SET_COLUMNS: &str = "id, name, dir, fingerprint, created_at";
const FILE_COLUMNS: &str =
    "input_set_id, kind, path, size, sha256, frames, fps, width, height, duration, codec";

fn file_from(row: FileRow) -> StoreResult<InputFile> {
    let kind = parse_kind(&row.kind)?;
    Ok(InputFile {
        kind,
        path: row.path,
        size: unsigned(row.size),
        sha256: row.sha256,
        video: VideoInfo {
            frames: unsigned(row.frames),
            fps: row.fps,
            width: u32::try_from(row.width).unwrap_or(0),
            height: u32::try_from(row.height).unwrap_or(0),
            duration_seconds: row.duration,
            codec: row.codec,
        },
    })
}

fn parse_kind(text: &str) -> StoreResult<cosmos_core::InputKind> {
    cosmos_core::InputKind::ALL
        .into_iter()
        .find(|k| k.as_str() == text)
        .ok_or_else(|| StoreError::Corrupt {
            what: "input file kind",
            detail: text.to_owned(),
        })
}

/// Attaches files to set rows with one query for all of them.
async fn assemble(pool: &SqlitePool, rows: Vec<SetRow>) -> StoreResult<Vec<InputSet>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {FILE_COLUMNS} FROM input_files WHERE input_set_id IN ("
    ));
    let mut sep = qb.separated(", ");
    for row in &rows {
        sep.push_bind(&row.id);
    }
    qb.push(") ORDER BY input_set_id");
    let files: Vec<FileRow> = qb
        .build_query_as()
        .fetch_all(pool)
        .await
        .during("read input files")?;
    let mut by_set: HashMap<String, Vec<InputFile>> = HashMap::new();
    for f in files {
        by_set
            .entry(f.input_set_id.clone())
            .or_default()
            .push(file_from(f)?);
    }
    rows.into_iter()
        .map(|row| {
            let mut files = by_set.remove(&row.id).unwrap_or_default();
            files.sort_by_key(|f| f.kind);
            Ok(InputSet {
                id: parse("input set id", &row.id)?,
                name: row.name,
                dir: row.dir,
                fingerprint: row.fingerprint,
                created_at: time(row.created_at),
                files,
            })
        })
        .collect()
}

pub(crate) async fn insert(pool: &SqlitePool, set: &InputSet) -> StoreResult<()> {
    let mut tx = pool.begin().await.during("begin a transaction")?;
    insert_in(&mut tx, set).await?;
    tx.commit().await.during("commit an input set")
}

/// Inserts a set and its files inside the caller's transaction.
pub(crate) async fn insert_in(tx: &mut sqlx::SqliteConnection, set: &InputSet) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO input_sets (id, name, dir, fingerprint, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(set.id.as_str())
    .bind(&set.name)
    .bind(&set.dir)
    .bind(&set.fingerprint)
    .bind(millis(set.created_at))
    .execute(&mut *tx)
    .await
    .during("insert an input set")?;
    for f in &set.files {
        sqlx::query(&format!(
            "INSERT INTO input_files ({FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(set.id.as_str())
        .bind(f.kind.as_str())
        .bind(&f.path)
        .bind(i64::try_from(f.size).unwrap_or(i64::MAX))
        .bind(&f.sha256)
        .bind(i64::try_from(f.video.frames).unwrap_or(i64::MAX))
        .bind(f.video.fps)
        .bind(i64::from(f.video.width))
        .bind(i64::from(f.video.height))
        .bind(f.video.duration_seconds)
        .bind(&f.video.codec)
        .execute(&mut *tx)
        .await
        .during("insert an input file")?;
    }
    Ok(())
}

pub(crate) async fn get(pool: &SqlitePool, id: &InputSetId) -> StoreResult<InputSet> {
    let row: Option<SetRow> = sqlx::query_as(&format!(
        "SELECT {SET_COLUMNS} FROM input_sets WHERE id = ?"
    ))
    .bind(id.as_str())
    .fetch_optional(pool)
    .await
    .during("read an input set")?;
    let row = row.ok_or_else(|| StoreError::NotFound {
        kind: "input set",
        id: id.to_string(),
    })?;
    Ok(assemble(pool, vec![row]).await?.remove(0))
}

pub(crate) async fn by_fingerprint(
    pool: &SqlitePool,
    fingerprint: &str,
) -> StoreResult<Option<InputSet>> {
    let rows: Vec<SetRow> = sqlx::query_as(&format!(
        "SELECT {SET_COLUMNS} FROM input_sets WHERE fingerprint = ? ORDER BY id LIMIT 1"
    ))
    .bind(fingerprint)
    .fetch_all(pool)
    .await
    .during("find an input set by content")?;
    Ok(assemble(pool, rows).await?.into_iter().next())
}

pub(crate) async fn named(
    pool: &SqlitePool,
    name: &str,
    limit: u32,
) -> StoreResult<Vec<InputSetId>> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM input_sets WHERE name = ? ORDER BY id LIMIT ?")
            .bind(name)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .during("find input sets by name")?;
    ids.iter().map(|id| parse("input set id", id)).collect()
}

pub(crate) async fn list(pool: &SqlitePool, limit: u32) -> StoreResult<Vec<InputSetSummary>> {
    let rows: Vec<SetRow> = sqlx::query_as(&format!(
        "SELECT {SET_COLUMNS} FROM input_sets ORDER BY created_at DESC, id DESC LIMIT ?"
    ))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .during("list input sets")?;
    let sets = assemble(pool, rows).await?;
    let mut out = Vec::with_capacity(sets.len());
    for set in sets {
        let prompts = count_prompts(pool, &set.id).await?;
        out.push(InputSetSummary { set, prompts });
    }
    Ok(out)
}

async fn count_prompts<'e, E: sqlx::SqliteExecutor<'e>>(
    exec: E,
    id: &InputSetId,
) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM prompts WHERE input_set_id = ?")
        .bind(id.as_str())
        .fetch_one(exec)
        .await
        .during("count prompts of an input set")?;
    Ok(unsigned(n))
}

pub(crate) async fn delete(pool: &SqlitePool, id: &InputSetId, force: bool) -> StoreResult<u64> {
    let mut tx = pool.begin().await.during("begin a transaction")?;
    let prompts = count_prompts(&mut *tx, id).await?;
    if prompts > 0 && !force {
        return Err(StoreError::InUse {
            kind: "input set",
            id: id.to_string(),
            count: prompts,
            dependents: if prompts == 1 { "prompt" } else { "prompts" },
            consequence: "delete it anyway and detach them",
        });
    }
    let gone = sqlx::query("DELETE FROM input_sets WHERE id = ?")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .during("delete an input set")?;
    if gone.rows_affected() == 0 {
        return Err(StoreError::NotFound {
            kind: "input set",
            id: id.to_string(),
        });
    }
    tx.commit().await.during("commit an input set deletion")?;
    Ok(prompts)
}
