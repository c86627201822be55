//! cosmos-store: the database, the single source of truth (DESIGN.md §2, §5). A [`Store`]
//! trait of domain operations — not CRUD — and its SQLite backend (WAL, foreign keys, busy
//! timeout, FTS5 search, forward-only migrations). No SQL exists outside this crate.
//!
//! Must not depend on cosmos-remote, cosmos-media, cosmos-engine or the front ends.

mod clock;
mod error;
mod model;
mod sqlite;

use async_trait::async_trait;

use cosmos_core::{
    IdKind, InputSet, InputSetId, Prompt, PromptId, Run, RunEvent, RunId, RunOutput, RunStatus,
    Target,
};

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{StoreError, StoreResult};
pub use model::{
    Candidate, Claim, ClaimRequest, ClaimedBatch, Fence, HookDelivery, ImportBatch,
    InputSetSummary, Lease, NewPrompt, NewRun, Placer, PromptFilter, PromptName, PromptSummary,
    PromptUpdate, RunFilter, RunStage, SearchHit, StatusChange, TargetHealth, TargetOffer, Worker,
};
pub use sqlite::SqliteStore;

/// Everything cosmos keeps, as domain operations. Each multi-row write is one transaction.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Up to `limit` ids of `kind` that start with `prefix`, in id order.
    async fn ids_with_prefix(
        &self,
        kind: IdKind,
        prefix: &str,
        limit: u32,
    ) -> StoreResult<Vec<String>>;

    async fn insert_input_set(&self, set: &InputSet) -> StoreResult<()>;
    async fn input_set(&self, id: &InputSetId) -> StoreResult<InputSet>;
    /// The input set with exactly this content, if one is registered.
    async fn input_set_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Option<InputSet>>;
    /// The ids of input sets with exactly this name (names need not be unique), oldest first.
    async fn input_sets_named(&self, name: &str, limit: u32) -> StoreResult<Vec<InputSetId>>;
    async fn list_input_sets(&self, limit: u32) -> StoreResult<Vec<InputSetSummary>>;
    /// Deletes an input set. Prompts using it are detached only with `force`; otherwise the
    /// call fails with [`StoreError::InUse`]. Returns how many prompts were detached.
    async fn delete_input_set(&self, id: &InputSetId, force: bool) -> StoreResult<u64>;

    async fn create_prompt(&self, new: &NewPrompt) -> StoreResult<Prompt>;
    async fn prompt(&self, id: &PromptId) -> StoreResult<Prompt>;
    async fn prompt_by_name(&self, name: &str) -> StoreResult<Option<Prompt>>;
    /// A prompt with exactly this text, negative text and input set, if one exists.
    async fn find_prompt(
        &self,
        text: &str,
        negative: Option<&str>,
        input_set_id: Option<&InputSetId>,
    ) -> StoreResult<Option<Prompt>>;
    async fn list_prompts(&self, filter: &PromptFilter) -> StoreResult<Vec<PromptSummary>>;
    async fn update_prompt(&self, id: &PromptId, update: &PromptUpdate) -> StoreResult<Prompt>;
    /// Deletes a prompt; its runs go too, but only with `force` (otherwise
    /// [`StoreError::InUse`]). Returns how many runs were deleted.
    async fn delete_prompt(&self, id: &PromptId, force: bool) -> StoreResult<u64>;
    /// Full-text search over prompt names, texts and negative texts (FTS5 query syntax),
    /// best first, with matches wrapped in `marks`.
    async fn search_prompts(
        &self,
        query: &str,
        limit: u32,
        marks: (&str, &str),
    ) -> StoreResult<Vec<SearchHit>>;

    /// Stores a new run as `queued`, with its first event.
    async fn create_run(&self, new: &NewRun) -> StoreResult<Run>;
    /// Creates many queued runs in one transaction (a sweep): all or none.
    async fn create_runs(&self, runs: &[NewRun]) -> StoreResult<()>;
    async fn run(&self, id: &RunId) -> StoreResult<Run>;
    /// Runs by id, in the order given (missing ones left out): one query, not one per run.
    async fn runs(&self, ids: &[RunId]) -> StoreResult<Vec<Run>>;
    /// Runs, newest first (runs created together, a sweep, in reverse order of creation).
    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<Run>>;
    /// How many runs match `filter`, ignoring its limit.
    async fn count_matching_runs(&self, filter: &RunFilter) -> StoreResult<u64>;
    /// Sets the rating (1–5, `None` clears it) and/or the favourite mark of runs, in one
    /// transaction; a run that does not exist fails the whole change.
    async fn rate_runs(
        &self,
        ids: &[RunId],
        rating: Option<Option<u8>>,
        favourite: Option<bool>,
    ) -> StoreResult<()>;
    /// How many runs are in each status (statuses without runs left out).
    async fn count_runs_by_status(&self) -> StoreResult<Vec<(RunStatus, u64)>>;
    /// Changes a queued run's priority; false when the run is not queued (any more).
    async fn set_priority(&self, id: &RunId, priority: i32) -> StoreResult<bool>;
    async fn count_runs(&self, prompt_id: &PromptId) -> StoreResult<u64>;
    async fn run_events(&self, id: &RunId) -> StoreResult<Vec<RunEvent>>;
    /// Up to `limit` events with a sequence number above `after`, of every run or of one,
    /// in sequence order: how any process follows what happens, by cursor.
    async fn events_after(
        &self,
        after: i64,
        run: Option<&RunId>,
        limit: u32,
    ) -> StoreResult<Vec<RunEvent>>;
    /// The sequence number of the newest event (0 when there is none): a cheap question
    /// whose answer changes whenever anything happens to any run.
    async fn last_event_id(&self) -> StoreResult<i64>;
    /// Applies a status change if, and only if, the run is still in `change.from` (and, when
    /// fenced, its lease is still the fence's), and records the event; a run that moved
    /// meanwhile gives [`StoreError::Conflict`], a lease that changed hands
    /// [`StoreError::LeaseLost`].
    async fn change_status(&self, id: &RunId, change: &StatusChange<'_>) -> StoreResult<RunEvent>;
    /// [`Store::change_status`] without a code or a fence (the user's own changes).
    async fn transition(
        &self,
        id: &RunId,
        from: RunStatus,
        to: RunStatus,
        message: &str,
    ) -> StoreResult<()> {
        self.change_status(id, &StatusChange::new(from, to, message))
            .await
            .map(drop)
    }

    /// Records the target a run executes on.
    async fn set_run_target(
        &self,
        id: &RunId,
        target: &str,
        fence: Option<&Fence>,
    ) -> StoreResult<()>;
    /// Records that the user asked a started run to stop (an event its driver looks for).
    async fn request_cancel(&self, id: &RunId, stage: RunStatus) -> StoreResult<RunEvent>;
    /// Whether [`Store::request_cancel`] was called for the run.
    async fn cancel_requested(&self, id: &RunId) -> StoreResult<bool>;
    /// Appends an event (progress, or a note) without changing the run's status.
    async fn add_run_event(
        &self,
        id: &RunId,
        stage: RunStatus,
        progress: Option<f64>,
        message: &str,
        fence: Option<&Fence>,
    ) -> StoreResult<RunEvent>;
    /// Records the model's exit status.
    async fn set_exit_code(&self, id: &RunId, code: i32, fence: Option<&Fence>) -> StoreResult<()>;
    /// The prompt the model used, when its upsampler rewrote the run's.
    async fn set_model_prompt(&self, id: &RunId, text: &str, fence: &Fence) -> StoreResult<()>;
    /// The run's line in its batch's JSONL file, as its driver wrote the file.
    async fn set_batch_line(&self, id: &RunId, line: u32, fence: &Fence) -> StoreResult<()>;
    /// Records a run's verified outputs.
    async fn set_run_outputs(
        &self,
        id: &RunId,
        outputs: &[RunOutput],
        fence: Option<&Fence>,
    ) -> StoreResult<()>;
    /// Records the exact command that started the model.
    async fn set_launch_command(
        &self,
        id: &RunId,
        argv: &[String],
        fence: Option<&Fence>,
    ) -> StoreResult<()>;
    /// Records what a run ran on (image digest, checkout commit, manifest hash).
    async fn set_supply(
        &self,
        id: &RunId,
        supply: &cosmos_core::Supply,
        fence: Option<&Fence>,
    ) -> StoreResult<()>;
    /// Records a run's GPU usage so far (samples while its model runs).
    async fn set_gpu_usage(
        &self,
        id: &RunId,
        usage: &cosmos_core::GpuUsage,
        fence: Option<&Fence>,
    ) -> StoreResult<()>;
    /// Takes the lease on a run for `owner` (free, expired, already `owner`'s, or held by
    /// `steal_from`, a holder the caller knows to be dead); `None` when someone else holds
    /// it. The token changes unless the lease was already `owner`'s and unexpired.
    async fn take_lease(
        &self,
        id: &RunId,
        owner: &str,
        ttl_ms: i64,
        steal_from: Option<&str>,
    ) -> StoreResult<Option<Fence>>;
    /// Extends a lease still held with `fence`; false when it changed hands.
    async fn renew_lease(&self, id: &RunId, fence: &Fence, ttl_ms: i64) -> StoreResult<bool>;
    /// Gives a lease up, if `fence` still holds it.
    async fn release_lease(&self, id: &RunId, fence: &Fence) -> StoreResult<()>;
    async fn lease(&self, id: &RunId) -> StoreResult<Option<Lease>>;

    /// Claims the first queued run (priority, then age) that fits a target's free GPU slots,
    /// and places it there: lease, target and devices, in one transaction.
    async fn claim_run(&self, req: &ClaimRequest<'_>) -> StoreResult<Option<Claim>>;
    /// Back to the queue after an infrastructure error: one more attempt, not before
    /// `not_before`, its slots freed; `avoid` names a target it must not be placed on again.
    async fn requeue_run(
        &self,
        id: &RunId,
        from: RunStatus,
        not_before: chrono::DateTime<chrono::Utc>,
        message: &str,
        fence: Option<&Fence>,
        avoid: Option<&str>,
    ) -> StoreResult<()>;
    /// Back to the queue, together, from a batch that stopped before their lines were done
    /// (not the runs' fault: no attempt is counted): each `(run, its status, its fence)`; they
    /// may join batches of at most `batch_limit` from now on (`None` leaves theirs).
    async fn requeue_from_batch(
        &self,
        runs: &[(RunId, RunStatus, Fence)],
        message: &str,
        batch_limit: Option<u32>,
    ) -> StoreResult<()>;
    /// The runs placed in a batch, by line.
    async fn batch_runs(&self, batch: &cosmos_core::BatchId) -> StoreResult<Vec<Run>>;
    /// The targets a run could not start on.
    async fn avoided_targets(&self, id: &RunId) -> StoreResult<Vec<String>>;
    /// Pauses or resumes the whole queue (`None`) or one target.
    async fn set_paused(&self, target: Option<&str>, paused: bool) -> StoreResult<()>;
    /// What is paused: `None` for the whole queue, else target names.
    async fn paused(&self) -> StoreResult<Vec<Option<String>>>;
    /// Remembers that a target holds an input set's blobs.
    async fn note_inputs_on_target(&self, target: &str, set: &InputSetId) -> StoreResult<()>;
    /// Records (or renews) a live worker.
    async fn worker_seen(&self, id: &str, host: &str, pid: u32) -> StoreResult<()>;
    async fn worker_gone(&self, id: &str) -> StoreResult<()>;
    /// Workers seen within `ttl_ms`.
    async fn live_workers(&self, ttl_ms: i64) -> StoreResult<Vec<Worker>>;

    /// Claims the delivery of `occasion` to `hook`: true for the one caller that may send it.
    async fn claim_hook_delivery(
        &self,
        occasion: &str,
        hook: &str,
        event: &str,
        run: Option<&RunId>,
    ) -> StoreResult<bool>;
    /// Records how a claimed delivery ended.
    async fn finish_hook_delivery(
        &self,
        occasion: &str,
        hook: &str,
        delivered: bool,
        attempts: u32,
        detail: &str,
    ) -> StoreResult<()>;
    /// The latest deliveries, newest first, of one hook or of all.
    async fn hook_deliveries(
        &self,
        hook: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<HookDelivery>>;

    /// How many runs are queued.
    async fn queue_length(&self) -> StoreResult<u64>;
    /// Queued runs in the order they will be claimed (priority, then age).
    async fn queued_runs(&self, limit: u32) -> StoreResult<Vec<Run>>;
    /// How long the latest succeeded runs took, start to finish, in milliseconds.
    async fn recent_durations_ms(&self, limit: u32) -> StoreResult<Vec<i64>>;
    /// Each named run's latest message and progress, in one read (not one per run).
    async fn stages_of(&self, ids: &[RunId]) -> StoreResult<Vec<RunStage>>;
    /// Records whether a target answered (a change of state keeps its `since`) and, when
    /// known, how many GPUs it showed (`None` keeps the last count).
    async fn set_target_health(
        &self,
        target: &str,
        reachable: bool,
        gpus: Option<u32>,
    ) -> StoreResult<()>;
    /// What the workers last saw of each target.
    async fn target_health(&self) -> StoreResult<Vec<TargetHealth>>;

    /// Stores a target; an existing name is an error unless `replace`.
    async fn put_target(&self, target: &Target, replace: bool) -> StoreResult<()>;
    async fn target(&self, name: &str) -> StoreResult<Option<Target>>;
    async fn list_targets(&self) -> StoreResult<Vec<Target>>;
    /// True when a target was removed.
    async fn delete_target(&self, name: &str) -> StoreResult<bool>;
    /// How many runs started on a target have not finished.
    async fn unfinished_runs_on(&self, target: &str) -> StoreResult<u64>;
    /// Queued runs that may only run on a target (`--target`).
    async fn queued_runs_pinned_to(&self, target: &str) -> StoreResult<Vec<RunId>>;

    /// Loads many records at once, in one transaction.
    async fn import(&self, batch: &ImportBatch) -> StoreResult<()>;
}
