//! The Cosmos-Transfer1 controlnet spec (DESIGN.md Appendix A.2): Cosmos's own validation,
//! reproduced with its exact messages, and the builder that turns a prompt, an input set and
//! run parameters into the JSON `transfer.py` reads.

mod build;
pub(crate) mod validate;

pub use build::{TransferSpec, TransferSpecInput, build_transfer_spec, build_upscale_spec};
pub use validate::{CosmosError, SpecLog, VALID_HINT_KEYS, split_spec, validate_controls};

/// Why a run's spec could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// Cosmos itself would refuse the spec; the message is Cosmos's own.
    #[error("Cosmos-Transfer1 would reject this spec: {0}")]
    Cosmos(#[from] CosmosError),
    #[error(transparent)]
    Params(#[from] crate::run::ParamError),
    #[error("no control weights: pass `--weights`, e.g. `--weights edge=0.5,depth=0.5`")]
    NoWeights,
    #[error(
        "`{av}` needs the Sample-AV model and `{general}` the general model; one run cannot \
         mix them: keep only hdmap/lidar, or only vis/seg/edge/depth/keypoint"
    )]
    MixedModels {
        av: crate::Hint,
        general: crate::Hint,
    },
    #[error(
        "`{0}` has no control video in the input set and Cosmos cannot generate one: add a \
         `{0}.mp4` to the input set or drop `{0}` from `--weights`"
    )]
    MissingControl(crate::Hint),
    #[error(
        "`upscale` is not a transfer control: the 4K upscaler is a run of its own, made by \
         `cosmos upscale RUN|VIDEO` or `cosmos run … --upscale`"
    )]
    UpscaleInTransfer,
    #[error("the 4K upscaler runs alone: an upscale run's only control is `upscale`")]
    UpscaleAlone,
    #[error("the 4K upscaler enlarges an input video, and this run has none")]
    UpscaleNeedsVideo,
    /// The model's adapter refused the run, in its own words.
    #[error("{0}")]
    Model(String),
    /// A target setting that would land in the command line is not what its position takes.
    #[error("target `{target}`: {message}; fix it with `cosmos target edit {target}`")]
    TargetSetting { target: String, message: String },
}
