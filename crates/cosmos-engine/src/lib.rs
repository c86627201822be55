//! cosmos-engine: the one place that decides and executes (DESIGN.md §2). Every front end
//! (CLI, HTTP API, dashboard) parses a request, calls one workflow here and renders its
//! result or its events; none touches the store. The engine owns registering input sets,
//! prompts, planning and submitting runs and sweeps, targets and their checks, the queue
//! (claims through a [`Scheduler`], workers, reconciliation, retries, cancels), executing
//! runs under fenced leases, and the [`EventBus`] every state change is published on.
//!
//! Must not depend on cosmos-web or cosmos-cli.

mod api;
mod bus;
mod control;
mod enhance;
mod error;
mod execute;
mod export;
mod hooks;
mod inputs;
mod launch;
mod lines;
mod prompts;
mod reads;
mod resolve;
mod runs;
mod scheduler;
#[cfg(feature = "dev-seed")]
mod seed;
mod setup;
mod status;
mod stills;
mod submit;
mod targets;
mod upscale;
mod worker;

use std::sync::Arc;

use cosmos_media::Ffprobe;
use cosmos_store::Store;

pub use api::{Inputs, Prompts, Queue, Runs, Targets};
pub use bus::{CROSS_PROCESS_POLL, EventBus, Follower, Subscription};
pub use control::{CancelScope, Cancelled, Followed};
pub use cosmos_remote::RemoteError;
pub use cosmos_remote::blobs::Verify;
pub use cosmos_remote::ssh::ConnectNotice;
pub use cosmos_remote::ssh::hostkeys::HostKeyVerdict;
pub use cosmos_store::{PromptFilter, RunFilter};
pub use enhance::EnhanceRequest;
pub use error::{EngineError, EngineResult, ErrorKind};
pub use execute::owner_id;
pub use execute::stage::uploaded_bytes;
pub use export::{EXPORT_SCHEMA, ExportReport, ExportRequest};
pub use hooks::{Hook, HookAction, HookEvent, HookReport, UNREACHABLE_WINDOW, hooks_settled};
pub use inputs::{AddedInputSet, InspectedInputs};
pub use launch::LaunchPlan;
pub use prompts::{CreatePromptRequest, CreatedPrompt, EditPromptRequest, InputsRef};
pub use reads::{PromptDetail, RateRequest};
pub use resolve::Resolved;
pub use runs::{LaunchDefaults, PlannedPrompt, RunPlan, RunRequest, RunSubject};
pub use scheduler::{DirectScheduler, Scheduler};
#[cfg(feature = "dev-seed")]
pub use seed::{SeedReport, SeedRequest};
pub use setup::{SetupEvent, SetupReport, SetupRequest, StepOutcome, VerifyRequest};
pub use status::{QueuedView, RunningView, StatusView, TargetView};
pub use submit::{
    MAX_RUNS, RunEntry, SeedField, SubmitRequest, Submitted, parse_runs_text, parse_seeds,
    parse_weight_grid, read_runs_file,
};
pub use targets::{
    AddTargetRequest, CheckItem, Connected, ExecEnv, Fix, Gpu, RetryPolicy, TargetSettings,
    runtime_of, ssh_spec,
};
pub use upscale::{UpscaleRequest, UpscaleSource};
pub use worker::{WORKER_TTL_MS, WorkerEvent};

/// Where a run's files go locally.
pub mod execute_paths {
    pub use crate::execute::{local_job_log, local_log, local_outputs, local_poster, run_log};
}

/// The engine: one store, the event bus, the scheduler, and (for executing runs) the
/// execution environment. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    store: Arc<dyn Store>,
    ffprobe: Ffprobe,
    exec: Option<Arc<ExecEnv>>,
    bus: Arc<EventBus>,
    scheduler: Arc<dyn Scheduler>,
    hooks: Option<Arc<hooks::HookRunner>>,
    hook_list: Arc<Vec<Hook>>,
}

impl Services {
    pub fn new(store: Arc<dyn Store>, ffprobe: Ffprobe) -> Self {
        Self {
            bus: Arc::new(EventBus::new(store.clone())),
            store,
            ffprobe,
            exec: None,
            scheduler: Arc::new(DirectScheduler),
            hooks: None,
            hook_list: Arc::default(),
        }
    }

    /// Enables executing runs on targets.
    pub fn with_exec(mut self, exec: ExecEnv) -> Self {
        self.exec = Some(Arc::new(exec));
        self
    }

    /// The event bus: subscribe in this process, or follow any process's events by cursor.
    pub fn events(&self) -> &EventBus {
        &self.bus
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// How long a driver's lease lasts without a renewal.
    pub(crate) fn lease_ttl_ms(&self) -> i64 {
        self.exec
            .as_ref()
            .map_or(execute::LEASE_TTL_MS, |e| e.lease_ttl_ms)
    }
}

/// Opens (creating if needed) the SQLite database at `path`, brings its schema up to date,
/// and returns the engine over it.
pub async fn open_sqlite(path: &std::path::Path, ffprobe: Ffprobe) -> EngineResult<Services> {
    let store = cosmos_store::SqliteStore::open(path).await?;
    Ok(Services::new(Arc::new(store), ffprobe))
}
