//! Prompts and full-text search over them.

use sqlx::SqlitePool;

use cosmos_core::naming::name_candidates;
use cosmos_core::{InputSetId, Prompt, PromptId};

use super::convert::{millis, parse, parse_opt, time, unsigned};
use crate::error::{Context, StoreError, StoreResult};
use crate::model::{NewPrompt, PromptFilter, PromptName, PromptSummary, PromptUpdate, SearchHit};

#[derive(sqlx::FromRow)]
pub(crate) struct PromptRow {
    id: String,
    name: String,
    text: String,
    negative: Option<String>,
    input_set_id: Option<String>,
    parent_id: Option<String>,
    model: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: &str = "p.id, p.name, p.text, p.negative, p.input_set_id, p.parent_id, p.model, p.created_at, p.updated_at";

impl PromptRow {
    pub(crate) fn into_prompt(self) -> StoreResult<Prompt> {
        Ok(Prompt {
            id: parse("prompt id", &self.id)?,
            name: self.name,
            text: self.text,
            negative: self.negative,
            input_set_id: parse_opt("input set id", self.input_set_id.as_deref())?,
            parent_id: parse_opt("prompt id", self.parent_id.as_deref())?,
            model: self.model,
            created_at: time(self.created_at),
            updated_at: time(self.updated_at),
        })
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Most `base-N` suffixes tried before giving up on a generated name.
const MAX_NAME_TRIES: usize = 10_000;

pub(crate) async fn create(pool: &SqlitePool, new: &NewPrompt) -> StoreResult<Prompt> {
    let mut tx = pool.begin().await.during("begin a transaction")?;
    let name = match &new.name {
        PromptName::Exact(name) => name.clone(),
        PromptName::Generated(base) => {
            let mut chosen = None;
            for candidate in name_candidates(base).take(MAX_NAME_TRIES) {
                let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM prompts WHERE name = ?")
                    .bind(&candidate)
                    .fetch_optional(&mut *tx)
                    .await
                    .during("check a prompt name")?;
                if taken.is_none() {
                    chosen = Some(candidate);
                    break;
                }
            }
            chosen.ok_or_else(|| StoreError::NameTaken(base.clone()))?
        }
    };
    let at = millis(new.created_at);
    let inserted = sqlx::query(
        "INSERT INTO prompts (id, name, text, negative, input_set_id, parent_id, model, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(new.id.as_str())
    .bind(&name)
    .bind(&new.text)
    .bind(new.negative.as_deref())
    .bind(new.input_set_id.as_ref().map(InputSetId::as_str))
    .bind(new.parent_id.as_ref().map(PromptId::as_str))
    .bind(new.model.as_deref())
    .bind(at)
    .bind(at)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => return Err(StoreError::NameTaken(name)),
        other => other.during("insert a prompt")?,
    };
    tx.commit().await.during("commit a prompt")?;
    get(pool, &new.id).await
}

pub(crate) async fn get(pool: &SqlitePool, id: &PromptId) -> StoreResult<Prompt> {
    let row: Option<PromptRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM prompts p WHERE p.id = ?"))
            .bind(id.as_str())
            .fetch_optional(pool)
            .await
            .during("read a prompt")?;
    row.ok_or_else(|| StoreError::NotFound {
        kind: "prompt",
        id: id.to_string(),
    })?
    .into_prompt()
}

pub(crate) async fn by_name(pool: &SqlitePool, name: &str) -> StoreResult<Option<Prompt>> {
    let row: Option<PromptRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM prompts p WHERE p.name = ?"))
            .bind(name)
            .fetch_optional(pool)
            .await
            .during("read a prompt by name")?;
    row.map(PromptRow::into_prompt).transpose()
}

pub(crate) async fn find(
    pool: &SqlitePool,
    text: &str,
    negative: Option<&str>,
    input_set_id: Option<&InputSetId>,
) -> StoreResult<Option<Prompt>> {
    let row: Option<PromptRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM prompts p WHERE p.text = ? AND p.negative IS ? AND p.input_set_id IS ? \
         ORDER BY p.id LIMIT 1"
    ))
    .bind(text)
    .bind(negative)
    .bind(input_set_id.map(InputSetId::as_str))
    .fetch_optional(pool)
    .await
    .during("find a prompt")?;
    row.map(PromptRow::into_prompt).transpose()
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    #[sqlx(flatten)]
    prompt: PromptRow,
    runs: i64,
}

pub(crate) async fn list(
    pool: &SqlitePool,
    filter: &PromptFilter,
) -> StoreResult<Vec<PromptSummary>> {
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {COLUMNS}, (SELECT count(*) FROM runs r WHERE r.prompt_id = p.id) AS runs FROM prompts p"
    ));
    qb.push(" WHERE 1");
    if let Some(set) = &filter.input_set_id {
        qb.push(" AND p.input_set_id = ").push_bind(set.as_str());
    }
    if let Some(parent) = &filter.parent_id {
        qb.push(" AND p.parent_id = ").push_bind(parent.as_str());
    }
    qb.push(" ORDER BY p.created_at DESC, p.id DESC LIMIT ")
        .push_bind(i64::from(filter.limit));
    let rows: Vec<SummaryRow> = qb
        .build_query_as()
        .fetch_all(pool)
        .await
        .during("list prompts")?;
    rows.into_iter()
        .map(|r| {
            Ok(PromptSummary {
                prompt: r.prompt.into_prompt()?,
                runs: unsigned(r.runs),
            })
        })
        .collect()
}

pub(crate) async fn update(
    pool: &SqlitePool,
    id: &PromptId,
    u: &PromptUpdate,
) -> StoreResult<Prompt> {
    let current = get(pool, id).await?;
    let name = u.name.clone().unwrap_or(current.name);
    let text = u.text.clone().unwrap_or(current.text);
    let negative = u.negative.clone().unwrap_or(current.negative);
    let input_set = u.input_set_id.clone().unwrap_or(current.input_set_id);
    let model = u.model.clone().unwrap_or(current.model);
    let result = sqlx::query(
        "UPDATE prompts SET name = ?, text = ?, negative = ?, input_set_id = ?, model = ?, updated_at = ? WHERE id = ?",
    )
    .bind(&name)
    .bind(&text)
    .bind(negative.as_deref())
    .bind(input_set.as_ref().map(InputSetId::as_str))
    .bind(model.as_deref())
    .bind(millis(chrono::Utc::now()))
    .bind(id.as_str())
    .execute(pool)
    .await;
    match result {
        Err(e) if is_unique_violation(&e) => return Err(StoreError::NameTaken(name)),
        other => other.during("update a prompt")?,
    };
    get(pool, id).await
}

pub(crate) async fn delete(pool: &SqlitePool, id: &PromptId, force: bool) -> StoreResult<u64> {
    let mut tx = pool.begin().await.during("begin a transaction")?;
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE prompt_id = ?")
        .bind(id.as_str())
        .fetch_one(&mut *tx)
        .await
        .during("count a prompt's runs")?;
    let runs = unsigned(runs);
    if runs > 0 && !force {
        return Err(StoreError::InUse {
            kind: "prompt",
            id: id.to_string(),
            count: runs,
            dependents: if runs == 1 { "run" } else { "runs" },
            consequence: "delete the prompt and its runs",
        });
    }
    let gone = sqlx::query("DELETE FROM prompts WHERE id = ?")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .during("delete a prompt")?;
    if gone.rows_affected() == 0 {
        return Err(StoreError::NotFound {
            kind: "prompt",
            id: id.to_string(),
        });
    }
    tx.commit().await.during("commit a prompt deletion")?;
    Ok(runs)
}

#[derive(sqlx::FromRow)]
struct HitRow {
    #[sqlx(flatten)]
    prompt: PromptRow,
    snippet: String,
    score: f64,
}

pub(crate) async fn search(
    pool: &SqlitePool,
    query: &str,
    limit: u32,
    (open, close): (&str, &str),
) -> StoreResult<Vec<SearchHit>> {
    let parsed = cosmos_core::search::Query::parse(query).map_err(|e| StoreError::BadQuery {
        query: query.to_owned(),
        reason: e.to_string(),
    })?;
    // Matches in the name weigh most, then the text, then the negative text.
    let rows: Vec<HitRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS}, snippet(prompts_fts, -1, ?2, ?3, '…', 16) AS snippet, \
                bm25(prompts_fts, 4.0, 1.0, 0.5) AS score \
         FROM prompts_fts JOIN prompts p ON p.seq = prompts_fts.rowid \
         WHERE prompts_fts MATCH ?1 ORDER BY score LIMIT ?4"
    ))
    .bind(parsed.to_fts5())
    .bind(open)
    .bind(close)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .during("search prompts")?;
    rows.into_iter()
        .map(|r| {
            Ok(SearchHit {
                prompt: r.prompt.into_prompt()?,
                snippet: r.snippet,
                rank: r.score,
            })
        })
        .collect()
}
