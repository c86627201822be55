//! cosmos-core: the domain of cosmos — ids, input sets, prompts, runs and their state machine,
//! the Cosmos-Transfer1 spec builder with Cosmos's own validation, launch command lines,
//! shell quoting and name generation.
//!
//! Pure: no I/O, no async runtime, and no dependency on any other cosmos crate.

pub mod batch;
pub mod id;
pub mod inputs;
pub mod launch;
pub mod modality;
pub mod model;
pub mod naming;
pub mod progress;
pub mod queue;
pub mod quote;
pub mod resolution;
pub mod run;
#[cfg(feature = "openapi")]
mod schema;
pub mod search;
pub mod setup;
pub mod sha256;
pub mod spec;
pub mod spec25;
pub mod target;
pub mod types;
pub mod weights;

pub use id::{BatchId, IdError, IdKind, IdPrefix, InputSetId, PromptId, RunId};
pub use modality::{Hint, InputKind, UnknownHint};
pub use run::{Level, MaskFile, ParamError, RunKind, RunParams, RunStatus};
pub use target::{RuntimeKind, Target, TargetConfig, TargetKind};
pub use types::{
    GpuUsage, InputFile, InputSet, Prompt, Run, RunEvent, RunOutput, Supply, VideoInfo,
};
pub use weights::{Weights, WeightsError};

/// The current time at the precision the store keeps (milliseconds), so a record read back
/// equals the one written.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(3)
}
