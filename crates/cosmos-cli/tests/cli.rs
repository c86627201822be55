//! End-to-end tests of the real `cosmos` binary on a temporary COSMOS_HOME, with control
//! videos made by the real ffmpeg.

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
