//! cosmos-engine: the service layer every front end (CLI, HTTP API, dashboard) calls. It owns
//! the workflows — registering input sets, creating prompts, planning and queueing runs,
//! resolving id prefixes, executing runs on targets, and the workers that drain the queue —
//! over a [`cosmos_store::Store`].
//!
//! Must not depend on cosmos-web or cosmos-cli.

mod error;
mod execute;
mod inputs;
mod prompts;
mod resolve;
mod runs;
mod seed;
mod status;
mod targets;
mod worker;

use std::sync::Arc;

use cosmos_media::Ffprobe;
use cosmos_store::Store;

pub use error::{EngineError, EngineResult};
pub use execute::{DriveOutcome, Observer, Update, owner_id};
pub use inputs::{AddedInputSet, InspectedInputs};
pub use prompts::{CreatePromptRequest, EditPromptRequest, InputsRef};
pub use resolve::Resolved;
pub use runs::{LaunchDefaults, PlannedPrompt, RunPlan, RunRequest, RunSubject};
pub use seed::{SeedReport, SeedRequest};
pub use status::{QueuedView, RunningView, StatusView, TargetView};
pub use targets::{CheckItem, Connected, ExecEnv, Gpu, RetryPolicy, runtime_of, ssh_spec};
pub use worker::{WORKER_TTL_MS, WorkerNote, WorkerObserver};

/// Where a run's files go locally.
pub mod execute_paths {
    pub use crate::execute::{local_log, local_outputs};
}

/// The services, sharing one store.
#[derive(Debug, Clone)]
pub struct Services {
    store: Arc<dyn Store>,
    ffprobe: Ffprobe,
    exec: Option<Arc<ExecEnv>>,
}

impl Services {
    pub fn new(store: Arc<dyn Store>, ffprobe: Ffprobe) -> Self {
        Self {
            store,
            ffprobe,
            exec: None,
        }
    }

    /// Enables executing runs on targets.
    pub fn with_exec(mut self, exec: ExecEnv) -> Self {
        self.exec = Some(Arc::new(exec));
        self
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}
