//! The SQLite backend: one file, WAL, foreign keys on, a busy timeout so concurrent processes
//! wait for each other instead of failing.

mod bulk;
mod convert;
mod execution;
mod hooks;
mod inputs;
mod prompts;
mod queue;
mod runs;
mod targets;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use cosmos_core::{
    IdKind, InputSet, InputSetId, Prompt, PromptId, Run, RunEvent, RunId, RunOutput, RunStatus,
    Target,
};

use crate::Store;
use crate::clock::{Clock, SystemClock};
use crate::error::{StoreError, StoreResult};
use crate::model::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// What every SQLite database file starts with.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Refuses a file that exists but cannot be a database: empty (truncated) or with another
/// header. A missing file is fine: it is created.
fn check_not_damaged(path: &Path) -> StoreResult<()> {
    use std::io::Read as _;
    let Ok(mut f) = std::fs::File::open(path) else {
        return Ok(());
    };
    let mut head = [0u8; 16];
    let read = f.read(&mut head).unwrap_or(0);
    let reason = match read {
        0 => "the file is empty (0 bytes), so it was truncated: cosmos never writes an empty one",
        16 if &head == SQLITE_HEADER => return Ok(()),
        _ => "it does not start like an SQLite database",
    };
    Err(StoreError::Damaged {
        path: path.display().to_string(),
        reason: reason.into(),
    })
}

/// SQLite's NOTADB (26) and CORRUPT (11) mean a damaged file; anything else is `other`.
fn damaged_or(path: &str, e: &sqlx::Error, other: impl FnOnce(String) -> StoreError) -> StoreError {
    if let sqlx::Error::Database(db) = e
        && let Some(code) = db.code().and_then(|c| c.parse::<i32>().ok())
        && matches!(code & 0xff, 11 | 26)
    {
        return StoreError::Damaged {
            path: path.to_owned(),
            reason: db.message().to_owned(),
        };
    }
    other(e.to_string())
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    clock: std::sync::Arc<dyn Clock>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    #[tracing::instrument(level = "debug")]
    pub async fn open(path: &Path) -> StoreResult<Self> {
        Self::open_with_busy_timeout(path, Duration::from_secs(10)).await
    }

    /// [`SqliteStore::open`], waiting at most `busy` for another process's write lock before
    /// a write gives up with [`StoreError::Unavailable`].
    pub async fn open_with_busy_timeout(path: &Path, busy: Duration) -> StoreResult<Self> {
        let shown = path.display().to_string();
        check_not_damaged(path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Open {
                path: shown.clone(),
                message: format!("cannot create `{}`: {e}", parent.display()),
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| StoreError::Open {
                path: shown.clone(),
                message: e.to_string(),
            })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(busy);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| {
                damaged_or(&shown, &e, |m| StoreError::Open {
                    path: shown.clone(),
                    message: m,
                })
            })?;
        let store = Self {
            pool,
            clock: std::sync::Arc::new(SystemClock),
        };
        store.migrate(&shown).await?;
        Ok(store)
    }

    async fn migrate(&self, shown: &str) -> StoreResult<()> {
        let newest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        // A quick look first: most commands find the schema current and skip the migrator.
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .unwrap_or(None);
        match applied {
            Some(v) if v > newest => Err(StoreError::TooNew {
                path: shown.to_owned(),
                found: v,
            }),
            Some(v) if v == newest => Ok(()),
            _ => MIGRATOR.run(&self.pool).await.map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => {
                    damaged_or(shown, &e, StoreError::Migrate)
                }
                other => StoreError::Migrate(other.to_string()),
            }),
        }
    }

    /// The same store judging time by `clock` (tests move a [`crate::ManualClock`]).
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ids_with_prefix(
        &self,
        kind: IdKind,
        prefix: &str,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        convert::ids_with_prefix(&self.pool, kind, prefix, limit).await
    }

    async fn insert_input_set(&self, set: &InputSet) -> StoreResult<()> {
        inputs::insert(&self.pool, set).await
    }

    async fn input_set(&self, id: &InputSetId) -> StoreResult<InputSet> {
        inputs::get(&self.pool, id).await
    }

    async fn input_set_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Option<InputSet>> {
        inputs::by_fingerprint(&self.pool, fingerprint).await
    }

    async fn input_sets_named(&self, name: &str, limit: u32) -> StoreResult<Vec<InputSetId>> {
        inputs::named(&self.pool, name, limit).await
    }

    async fn list_input_sets(&self, limit: u32) -> StoreResult<Vec<InputSetSummary>> {
        inputs::list(&self.pool, limit).await
    }

    async fn delete_input_set(&self, id: &InputSetId, force: bool) -> StoreResult<u64> {
        inputs::delete(&self.pool, id, force).await
    }

    async fn create_prompt(&self, new: &NewPrompt) -> StoreResult<Prompt> {
        prompts::create(&self.pool, new).await
    }

    async fn prompt(&self, id: &PromptId) -> StoreResult<Prompt> {
        prompts::get(&self.pool, id).await
    }

    async fn prompt_by_name(&self, name: &str) -> StoreResult<Option<Prompt>> {
        prompts::by_name(&self.pool, name).await
    }

    async fn find_prompt(
        &self,
        text: &str,
        negative: Option<&str>,
        input_set_id: Option<&InputSetId>,
    ) -> StoreResult<Option<Prompt>> {
        prompts::find(&self.pool, text, negative, input_set_id).await
    }

    async fn list_prompts(&self, filter: &PromptFilter) -> StoreResult<Vec<PromptSummary>> {
        prompts::list(&self.pool, filter).await
    }

    async fn update_prompt(&self, id: &PromptId, update: &PromptUpdate) -> StoreResult<Prompt> {
        prompts::update(&self.pool, id, update).await
    }

    async fn delete_prompt(&self, id: &PromptId, force: bool) -> StoreResult<u64> {
        prompts::delete(&self.pool, id, force).await
    }

    async fn search_prompts(
        &self,
        query: &str,
        limit: u32,
        marks: (&str, &str),
    ) -> StoreResult<Vec<SearchHit>> {
        prompts::search(&self.pool, query, limit, marks).await
    }

    async fn create_runs(&self, runs: &[NewRun]) -> StoreResult<()> {
        runs::create_many(&self.pool, runs).await
    }

    async fn create_run(&self, new: &NewRun) -> StoreResult<Run> {
        runs::create(&self.pool, new).await
    }

    async fn run(&self, id: &RunId) -> StoreResult<Run> {
        runs::get(&self.pool, id).await
    }

    async fn runs(&self, ids: &[RunId]) -> StoreResult<Vec<Run>> {
        runs::get_many(&self.pool, ids).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<Run>> {
        runs::list(&self.pool, filter).await
    }

    async fn count_matching_runs(&self, filter: &RunFilter) -> StoreResult<u64> {
        runs::count_matching(&self.pool, filter).await
    }

    async fn count_runs_by_status(&self) -> StoreResult<Vec<(RunStatus, u64)>> {
        runs::count_by_status(&self.pool).await
    }

    async fn set_priority(&self, id: &RunId, priority: i32) -> StoreResult<bool> {
        runs::set_priority(&self.pool, id, priority).await
    }

    async fn rate_runs(
        &self,
        ids: &[RunId],
        rating: Option<Option<u8>>,
        favourite: Option<bool>,
    ) -> StoreResult<()> {
        runs::rate(&self.pool, ids, rating, favourite).await
    }

    async fn count_runs(&self, prompt_id: &PromptId) -> StoreResult<u64> {
        runs::count_for_prompt(&self.pool, prompt_id).await
    }

    async fn run_events(&self, id: &RunId) -> StoreResult<Vec<RunEvent>> {
        runs::events(&self.pool, id).await
    }

    async fn events_after(
        &self,
        after: i64,
        run: Option<&RunId>,
        limit: u32,
    ) -> StoreResult<Vec<RunEvent>> {
        runs::events_after(&self.pool, after, run, limit).await
    }

    async fn last_event_id(&self) -> StoreResult<i64> {
        runs::last_event_id(&self.pool).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(run = %id, from = %change.from, to = %change.to))]
    async fn change_status(&self, id: &RunId, change: &StatusChange<'_>) -> StoreResult<RunEvent> {
        runs::change_status(&self.pool, self.now(), id, change).await
    }

    async fn set_run_target(
        &self,
        id: &RunId,
        target: &str,
        fence: Option<&Fence>,
    ) -> StoreResult<()> {
        execution::set_target(&self.pool, id, target, fence).await
    }

    async fn request_cancel(&self, id: &RunId, stage: RunStatus) -> StoreResult<RunEvent> {
        let message = execution::CANCEL_REQUEST;
        execution::add_event(&self.pool, self.now(), id, stage, None, message, None).await
    }

    async fn cancel_requested(&self, id: &RunId) -> StoreResult<bool> {
        execution::cancel_requested(&self.pool, id).await
    }

    #[tracing::instrument(level = "trace", skip(self, fence), fields(run = %id))]
    async fn add_run_event(
        &self,
        id: &RunId,
        stage: RunStatus,
        progress: Option<f64>,
        message: &str,
        fence: Option<&Fence>,
    ) -> StoreResult<RunEvent> {
        execution::add_event(&self.pool, self.now(), id, stage, progress, message, fence).await
    }

    async fn set_run_outputs(
        &self,
        id: &RunId,
        outputs: &[RunOutput],
        fence: Option<&Fence>,
    ) -> StoreResult<()> {
        execution::set_outputs(&self.pool, id, outputs, fence).await
    }

    async fn set_launch_command(
        &self,
        id: &RunId,
        argv: &[String],
        fence: Option<&Fence>,
    ) -> StoreResult<()> {
        execution::set_launch_command(&self.pool, id, argv, fence).await
    }

    async fn set_supply(
        &self,
        id: &RunId,
        supply: &cosmos_core::Supply,
        fence: Option<&Fence>,
    ) -> StoreResult<()> {
        execution::set_supply(&self.pool, id, supply, fence).await
    }

    async fn set_gpu_usage(
        &self,
        id: &RunId,
        usage: &cosmos_core::GpuUsage,
        fence: Option<&Fence>,
    ) -> StoreResult<()> {
        execution::set_gpu_usage(&self.pool, id, usage, fence).await
    }

    #[tracing::instrument(level = "debug", skip(self), fields(run = %id))]
    async fn take_lease(
        &self,
        id: &RunId,
        owner: &str,
        ttl_ms: i64,
        steal_from: Option<&str>,
    ) -> StoreResult<Option<Fence>> {
        execution::take_lease(&self.pool, self.now(), id, owner, ttl_ms, steal_from).await
    }

    #[tracing::instrument(level = "trace", skip(self, fence), fields(run = %id))]
    async fn renew_lease(&self, id: &RunId, fence: &Fence, ttl_ms: i64) -> StoreResult<bool> {
        execution::renew_lease(&self.pool, self.now(), id, fence, ttl_ms).await
    }

    async fn set_exit_code(&self, id: &RunId, code: i32, fence: Option<&Fence>) -> StoreResult<()> {
        execution::set_exit_code(&self.pool, id, code, fence).await
    }

    async fn set_model_prompt(&self, id: &RunId, text: &str, fence: &Fence) -> StoreResult<()> {
        execution::set_model_prompt(&self.pool, id, text, fence).await
    }

    async fn set_batch_line(&self, id: &RunId, line: u32, fence: &Fence) -> StoreResult<()> {
        execution::set_batch_line(&self.pool, id, line, fence).await
    }

    async fn queue_length(&self) -> StoreResult<u64> {
        queue::length(&self.pool).await
    }

    async fn queued_runs(&self, limit: u32) -> StoreResult<Vec<Run>> {
        runs::queued(&self.pool, limit).await
    }

    async fn recent_durations_ms(&self, limit: u32) -> StoreResult<Vec<i64>> {
        queue::recent_durations(&self.pool, limit).await
    }

    async fn stages_of(&self, ids: &[RunId]) -> StoreResult<Vec<RunStage>> {
        queue::stages_of(&self.pool, ids).await
    }

    async fn set_target_health(
        &self,
        target: &str,
        reachable: bool,
        gpus: Option<u32>,
    ) -> StoreResult<()> {
        queue::set_health(&self.pool, self.now(), target, reachable, gpus).await
    }

    async fn target_health(&self) -> StoreResult<Vec<TargetHealth>> {
        queue::health(&self.pool).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(owner = req.owner, only = ?req.only))]
    async fn claim_run(&self, req: &ClaimRequest<'_>) -> StoreResult<Option<Claim>> {
        queue::claim(&self.pool, self.now(), req).await
    }

    async fn avoided_targets(&self, id: &RunId) -> StoreResult<Vec<String>> {
        queue::avoided(&self.pool, id).await
    }

    #[tracing::instrument(level = "debug", skip(self, fence), fields(run = %id))]
    async fn requeue_run(
        &self,
        id: &RunId,
        from: RunStatus,
        not_before: chrono::DateTime<chrono::Utc>,
        message: &str,
        fence: Option<&Fence>,
        avoid: Option<&str>,
    ) -> StoreResult<()> {
        let why = queue::Requeue {
            from,
            not_before,
            message,
            fence,
            avoid,
            batch_limit: None,
        };
        queue::requeue(&self.pool, self.now(), id, &why).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(runs = runs.len()))]
    async fn requeue_from_batch(
        &self,
        runs: &[(RunId, RunStatus, Fence)],
        message: &str,
        batch_limit: Option<u32>,
    ) -> StoreResult<()> {
        let now = self.now();
        let each: Vec<(&RunId, queue::Requeue<'_>)> = runs
            .iter()
            .map(|(id, from, fence)| {
                (
                    id,
                    queue::Requeue {
                        from: *from,
                        not_before: convert::time(now),
                        message,
                        fence: Some(fence),
                        avoid: None,
                        batch_limit: Some(batch_limit),
                    },
                )
            })
            .collect();
        queue::requeue_many(&self.pool, now, &each).await
    }

    async fn batch_runs(&self, batch: &cosmos_core::BatchId) -> StoreResult<Vec<Run>> {
        runs::in_batch(&self.pool, batch).await
    }

    async fn set_paused(&self, target: Option<&str>, paused: bool) -> StoreResult<()> {
        queue::set_paused(&self.pool, self.now(), target.unwrap_or(queue::ALL), paused).await
    }

    async fn paused(&self) -> StoreResult<Vec<Option<String>>> {
        Ok(queue::paused(&self.pool)
            .await?
            .into_iter()
            .map(|s| (s != queue::ALL).then_some(s))
            .collect())
    }

    async fn note_inputs_on_target(&self, target: &str, set: &InputSetId) -> StoreResult<()> {
        queue::note_inputs(&self.pool, target, set).await
    }

    async fn worker_seen(&self, id: &str, host: &str, pid: u32) -> StoreResult<()> {
        queue::worker_seen(&self.pool, self.now(), id, host, pid).await
    }

    async fn worker_gone(&self, id: &str) -> StoreResult<()> {
        queue::worker_gone(&self.pool, id).await
    }

    async fn live_workers(&self, ttl_ms: i64) -> StoreResult<Vec<Worker>> {
        queue::workers(&self.pool, self.now(), ttl_ms).await
    }

    async fn claim_hook_delivery(
        &self,
        occasion: &str,
        hook: &str,
        event: &str,
        run: Option<&RunId>,
    ) -> StoreResult<bool> {
        hooks::claim(&self.pool, self.now(), occasion, hook, event, run).await
    }

    async fn finish_hook_delivery(
        &self,
        occasion: &str,
        hook: &str,
        delivered: bool,
        attempts: u32,
        detail: &str,
    ) -> StoreResult<()> {
        hooks::finish(
            &self.pool,
            self.now(),
            occasion,
            hook,
            delivered,
            attempts,
            detail,
        )
        .await
    }

    async fn hook_deliveries(
        &self,
        hook: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<HookDelivery>> {
        hooks::latest(&self.pool, hook, limit).await
    }

    async fn release_lease(&self, id: &RunId, fence: &Fence) -> StoreResult<()> {
        execution::release_lease(&self.pool, id, fence).await
    }

    async fn lease(&self, id: &RunId) -> StoreResult<Option<Lease>> {
        execution::lease(&self.pool, id).await
    }

    async fn put_target(&self, target: &Target, replace: bool) -> StoreResult<()> {
        targets::put(&self.pool, target, replace).await
    }

    async fn target(&self, name: &str) -> StoreResult<Option<Target>> {
        targets::get(&self.pool, name).await
    }

    async fn list_targets(&self) -> StoreResult<Vec<Target>> {
        targets::list(&self.pool).await
    }

    async fn delete_target(&self, name: &str) -> StoreResult<bool> {
        targets::delete(&self.pool, name).await
    }

    async fn unfinished_runs_on(&self, target: &str) -> StoreResult<u64> {
        targets::unfinished_runs_on(&self.pool, target).await
    }

    async fn queued_runs_pinned_to(&self, target: &str) -> StoreResult<Vec<RunId>> {
        targets::queued_pinned_to(&self.pool, target).await
    }

    async fn import(&self, batch: &ImportBatch) -> StoreResult<()> {
        bulk::import(&self.pool, batch).await
    }
}
