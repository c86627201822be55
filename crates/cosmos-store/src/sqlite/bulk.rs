//! Loading many records at once, with multi-row inserts in one transaction.

use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use cosmos_core::{InputSetId, PromptId};

use super::convert::{millis, to_json};
use super::inputs::insert_in;
use crate::error::{Context, StoreResult};
use crate::model::ImportBatch;

/// Rows per INSERT statement: well under SQLite's limit on bound parameters.
const CHUNK: usize = 400;

pub(crate) async fn import(pool: &SqlitePool, batch: &ImportBatch) -> StoreResult<()> {
    let mut tx = pool.begin().await.during("begin a transaction")?;
    for set in &batch.input_sets {
        insert_in(&mut tx, set).await?;
    }
    for chunk in batch.prompts.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO prompts (id, name, text, negative, input_set_id, parent_id, model, created_at, updated_at) ",
        );
        qb.push_values(chunk, |mut b, p| {
            b.push_bind(p.id.as_str())
                .push_bind(&p.name)
                .push_bind(&p.text)
                .push_bind(p.negative.as_deref())
                .push_bind(p.input_set_id.as_ref().map(InputSetId::as_str))
                .push_bind(p.parent_id.as_ref().map(PromptId::as_str))
                .push_bind(p.model.as_deref())
                .push_bind(millis(p.created_at))
                .push_bind(millis(p.updated_at));
        });
        qb.build()
            .execute(&mut *tx)
            .await
            .during("import prompts")?;
    }
    for chunk in batch.runs.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO runs (id, prompt_id, kind, status, name, prompt_text, negative_prompt, \
             input_set_id, params, gpus, target, priority, created_at, started_at, finished_at, \
             failure_reason, rating, outputs) ",
        );
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(r.id.as_str())
                .push_bind(r.prompt_id.as_str())
                .push_bind(r.kind.as_str())
                .push_bind(r.status.as_str())
                .push_bind(r.name.as_deref())
                .push_bind(&r.prompt_text)
                .push_bind(r.negative_prompt.as_deref())
                .push_bind(r.input_set_id.as_ref().map(InputSetId::as_str))
                .push_bind(to_json(&r.params))
                .push_bind(i64::from(r.params.gpus))
                .push_bind(r.target.as_deref())
                .push_bind(i64::from(r.priority))
                .push_bind(millis(r.created_at))
                .push_bind(r.started_at.map(millis))
                .push_bind(r.finished_at.map(millis))
                .push_bind(r.failure_reason.as_deref())
                .push_bind(r.rating.map(i64::from))
                .push_bind(to_json(&r.outputs));
        });
        qb.build().execute(&mut *tx).await.during("import runs")?;
    }
    for chunk in batch.events.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO run_events (run_id, at, stage, progress, message) ");
        qb.push_values(chunk, |mut b, e| {
            b.push_bind(e.run_id.as_str())
                .push_bind(millis(e.at))
                .push_bind(e.stage.as_str())
                .push_bind(e.progress)
                .push_bind(&e.message);
        });
        qb.build()
            .execute(&mut *tx)
            .await
            .during("import run events")?;
    }
    tx.commit().await.during("commit an import")
}
