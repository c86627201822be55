//! Requests, filters and summaries the store's operations take and return.

use chrono::{DateTime, Utc};
use serde::Serialize;

use cosmos_core::{
    InputSet, InputSetId, Prompt, PromptId, Run, RunEvent, RunId, RunKind, RunParams, RunStatus,
};

/// How a new prompt is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptName {
    /// A name the user chose: taken means an error.
    Exact(String),
    /// A generated base name: taken means trying `base-2`, `base-3`, …
    Generated(String),
}

#[derive(Debug, Clone)]
pub struct NewPrompt {
    pub id: PromptId,
    pub name: PromptName,
    pub text: String,
    pub negative: Option<String>,
    pub input_set_id: Option<InputSetId>,
    pub parent_id: Option<PromptId>,
    /// The model its runs use when they name none.
    pub model: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Fields to change on a prompt; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct PromptUpdate {
    pub name: Option<String>,
    pub text: Option<String>,
    /// `Some(None)` clears the negative text.
    pub negative: Option<Option<String>>,
    /// `Some(None)` detaches the input set.
    pub input_set_id: Option<Option<InputSetId>>,
    /// `Some(None)` clears the prompt's model.
    pub model: Option<Option<String>>,
}

impl PromptUpdate {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.text.is_none()
            && self.negative.is_none()
            && self.input_set_id.is_none()
            && self.model.is_none()
    }
}

#[derive(Debug, Clone, Default)]
pub struct PromptFilter {
    pub input_set_id: Option<InputSetId>,
    /// Only prompts enhanced from this one.
    pub parent_id: Option<PromptId>,
    pub limit: u32,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PromptSummary {
    #[serde(flatten)]
    pub prompt: Prompt,
    pub runs: u64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InputSetSummary {
    #[serde(flatten)]
    pub set: InputSet,
    pub prompts: u64,
}

/// One full-text search result.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    pub prompt: Prompt,
    /// The best-matching passage with the matches wrapped in the caller's markers.
    pub snippet: String,
    /// bm25 relevance; lower is better.
    pub rank: f64,
}

#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: RunId,
    pub prompt_id: PromptId,
    pub kind: RunKind,
    pub name: Option<String>,
    pub prompt_text: String,
    pub negative_prompt: Option<String>,
    pub input_set_id: Option<InputSetId>,
    pub params: RunParams,
    pub priority: i32,
    pub created_at: DateTime<Utc>,
    /// Why the run was queued the way it was (the first event's message).
    pub note: String,
    /// The failed run this one retries.
    pub retry_of: Option<RunId>,
    /// The target the user chose; `None` lets the scheduler place it.
    pub target_pin: Option<String>,
    /// The sweep it belongs to (the id of the sweep's first run).
    pub sweep_id: Option<RunId>,
    /// What Cosmos treats as global in batch mode, hashed: runs with equal signatures may
    /// share one process. `None` never batches.
    pub signature: Option<String>,
    /// The run whose output this upscale run enlarges: it waits for that run to succeed,
    /// then goes to its target; it is cancelled if that run fails.
    pub upscale_of: Option<RunId>,
}

/// What a worker asks the queue for.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// The lease owner (`cosmos:<host>:<pid>`).
    pub owner: &'a str,
    pub ttl_ms: i64,
    /// Targets that can take work now (reachable).
    pub targets: &'a [TargetOffer],
    /// Only this run (a `cosmos run` executing its own run in-process).
    pub only: Option<&'a RunId>,
    /// Chooses the target and GPUs of a run (the scheduler's decision, not the store's).
    pub placer: &'a dyn Placer,
}

/// A target offered to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetOffer {
    pub name: String,
    /// Its GPU slots.
    pub gpus: u32,
    /// Takes only runs pinned to it.
    pub pinned_only: bool,
    /// Runs cosmos-sim: runs placed there are marked as rehearsal output.
    pub rehearsal: bool,
    /// The most runs one process may take there (1: no batches).
    pub max_batch: u32,
    /// The models it is set up for: only runs of these are placed there.
    pub models: Vec<String>,
}

impl TargetOffer {
    /// An ordinary target with `gpus` slots, running one run per process.
    pub fn new(name: impl Into<String>, gpus: u32) -> Self {
        Self {
            name: name.into(),
            gpus,
            pinned_only: false,
            rehearsal: false,
            max_batch: 1,
            models: vec![cosmos_core::model::DEFAULT_MODEL.to_owned()],
        }
    }
}

/// A queued run a claim considers placing.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub run: RunId,
    pub gpus: u32,
    pub target_pin: Option<String>,
    /// Targets that already hold the run's inputs.
    pub inputs_on: std::collections::BTreeSet<String>,
    /// Targets the run could not start on: it goes elsewhere.
    pub avoid: std::collections::BTreeSet<String>,
}

/// Decides where a queued run goes (the engine's scheduler implements it); the store only
/// keeps the claim atomic.
pub trait Placer: Send + Sync + std::fmt::Debug {
    /// The target and devices for `run` among `slots`, or `None` when it does not fit now.
    fn place(
        &self,
        run: &Candidate,
        slots: &[cosmos_core::queue::TargetSlots],
    ) -> Option<(String, Vec<u32>)>;
}

/// A run claimed and placed: its lease is held, its target and GPUs chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub run: RunId,
    pub target: String,
    pub devices: Vec<u32>,
    /// The lease the claim took.
    pub fence: Fence,
    /// The `placed on …` event the claim recorded.
    pub event: RunEvent,
    /// When the run was placed with others that share its signature: their batch, and
    /// every run in it by line (this run first), each under a lease of the claimer's.
    pub batch: Option<ClaimedBatch>,
}

/// Runs claimed together to share one process.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedBatch {
    pub id: cosmos_core::BatchId,
    /// Line by line: the run and the fence of its lease.
    pub runs: Vec<(RunId, Fence)>,
    /// The `placed on …` events of the runs after the first.
    pub events: Vec<RunEvent>,
}

/// Where a run stands by its events: its latest message and latest progress.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunStage {
    pub run_id: cosmos_core::RunId,
    /// Its latest event's message (a milestone, a transfer, a status change).
    pub message: Option<String>,
    /// The latest progress it reported (0–1).
    pub progress: Option<f64>,
}

/// Whether a target answered when a worker last tried.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TargetHealth {
    pub target: String,
    pub reachable: bool,
    /// Since when it has been so.
    pub since: chrono::DateTime<chrono::Utc>,
    pub checked_at: chrono::DateTime<chrono::Utc>,
    /// GPUs the target showed when last checked, if known.
    pub gpus: Option<u32>,
}

/// One hook's delivery of one occasion.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HookDelivery {
    pub occasion: String,
    pub hook: String,
    pub event: String,
    pub run_id: Option<RunId>,
    pub claimed_at: chrono::DateTime<chrono::Utc>,
    /// `sending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub detail: Option<String>,
}

/// A live worker process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Worker {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub seen_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub statuses: Vec<RunStatus>,
    pub prompt_id: Option<PromptId>,
    /// Runs of any of these prompts (a search's hits); empty: no such condition.
    pub prompt_ids: Vec<PromptId>,
    pub sweep_id: Option<RunId>,
    pub since: Option<DateTime<Utc>>,
    /// Rated at least this (1–5).
    pub min_rating: Option<u8>,
    /// Only favourites.
    pub favourite: bool,
    /// Runs of this input set.
    pub input_set_id: Option<InputSetId>,
    /// Runs placed on (or pinned to) this target.
    pub target: Option<String>,
    /// A cursor: only runs listed after this one (older, in list order).
    pub before: Option<RunId>,
    pub limit: u32,
}

/// Records to load in bulk (`cosmos dev seed`, imports): written in one transaction.
#[derive(Debug, Clone, Default)]
pub struct ImportBatch {
    pub input_sets: Vec<InputSet>,
    pub prompts: Vec<Prompt>,
    pub runs: Vec<Run>,
    pub events: Vec<RunEvent>,
}

/// Which process drives a run, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub expires_at: DateTime<Utc>,
    pub token: i64,
}

/// Proof that a driver holds a run's lease: its owner and the token the lease had when it was
/// taken. The token changes whenever the lease changes hands, so a driver that lost its lease
/// (paused past its expiry while another took over) cannot write with the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub owner: String,
    pub token: i64,
}

/// A status change: from one status to another, with its event's message; a failure's
/// stable code; and, for a driver, the lease it must still hold.
#[derive(Debug, Clone, Copy)]
pub struct StatusChange<'a> {
    pub from: RunStatus,
    pub to: RunStatus,
    pub message: &'a str,
    /// Why a run failed or was cancelled, as a stable code.
    pub code: Option<&'a str>,
    pub fence: Option<&'a Fence>,
}

impl<'a> StatusChange<'a> {
    pub fn new(from: RunStatus, to: RunStatus, message: &'a str) -> Self {
        Self {
            from,
            to,
            message,
            code: None,
            fence: None,
        }
    }

    pub fn code(mut self, code: &'a str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn fenced(mut self, fence: Option<&'a Fence>) -> Self {
        self.fence = fence;
        self
    }
}
