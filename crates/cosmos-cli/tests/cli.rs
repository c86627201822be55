//! End-to-end tests of the real `cosmos` binary on a temporary COSMOS_HOME, with control
//! videos made by the real ffmpeg.

/// A test written once and run once per model: `$t1` for Cosmos-Transfer1 and `$t25`, its
/// twin, for Cosmos-Transfer2.5, both calling `$body(model)`.
macro_rules! per_model {
    ($t1:ident, $t25:ident, $body:ident) => {
        #[test]
        fn $t1() {
            $body(super::remote::Model::T1);
        }

        #[test]
        fn $t25() {
            $body(super::remote::Model::T25);
        }
    };
}

mod cli {
    pub mod batches;
    pub mod config;
    pub mod dashboard;
    pub mod enhance;
    pub mod events;
    pub mod export;
    pub mod hooks;
    pub mod inputs;
    pub mod local;
    pub mod misc;
    pub mod models;
    pub mod prompts;
    pub mod queue;
    pub mod remote;
    pub mod runs;
    pub mod serve;
    pub mod setup;
    pub mod support;
    pub mod targets;
    pub mod upscale;
}
