//! cosmos-engine: the service layer every front end (CLI, HTTP API, dashboard) calls. It owns
//! the workflows — registering input sets, creating prompts, planning and queueing runs,
//! resolving id prefixes — over a [`cosmos_store::Store`]. The scheduler, workers and event
//! bus will live here too.
//!
//! Must not depend on cosmos-web or cosmos-cli.

mod error;
mod inputs;
mod prompts;
mod resolve;
mod runs;
mod seed;

use std::sync::Arc;

use cosmos_media::Ffprobe;
use cosmos_store::Store;

pub use error::{EngineError, EngineResult};
pub use inputs::{AddedInputSet, InspectedInputs};
pub use prompts::{CreatePromptRequest, EditPromptRequest, InputsRef};
pub use resolve::Resolved;
pub use runs::{LaunchDefaults, PlannedPrompt, RunPlan, RunRequest, RunSubject};
pub use seed::{SeedReport, SeedRequest};

/// The services, sharing one store.
#[derive(Debug, Clone)]
pub struct Services {
    store: Arc<dyn Store>,
    ffprobe: Ffprobe,
}

impl Services {
    pub fn new(store: Arc<dyn Store>, ffprobe: Ffprobe) -> Self {
        Self { store, ffprobe }
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}
