//! Domain records: what the store keeps and every front end shows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{InputSetId, PromptId, RunId};
use crate::modality::InputKind;
use crate::run::{RunKind, RunParams, RunStatus};

/// What ffprobe says about a video stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VideoInfo {
    pub frames: u64,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub duration_seconds: f64,
    pub codec: String,
}

/// One control video of an input set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InputFile {
    pub kind: InputKind,
    /// Absolute path on this machine.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub video: VideoInfo,
}

/// A folder of control videos for one scene.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InputSet {
    pub id: InputSetId,
    pub name: String,
    /// The folder it was registered from.
    pub dir: String,
    /// sha256 over the files' kinds and hashes: equal content, equal fingerprint.
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
    pub files: Vec<InputFile>,
}

impl InputSet {
    pub fn file(&self, kind: InputKind) -> Option<&InputFile> {
        self.files.iter().find(|f| f.kind == kind)
    }
}

/// A prompt: text, negative text and the scene it applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Prompt {
    pub id: PromptId,
    pub name: String,
    pub text: String,
    pub negative: Option<String>,
    pub input_set_id: Option<InputSetId>,
    pub parent_id: Option<PromptId>,
    /// The model its runs use when a run names none (`transfer2.5`); none: the configured
    /// default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A file a run produced, verified by its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunOutput {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// One execution of the model. The prompt text, negative text and input set are copied in
/// when the run is created, so editing the prompt later never changes what a run records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Run {
    pub id: RunId,
    pub prompt_id: PromptId,
    /// The prompt's name when the run was read (for display).
    pub prompt_name: String,
    pub kind: RunKind,
    pub status: RunStatus,
    pub name: Option<String>,
    pub prompt_text: String,
    pub negative_prompt: Option<String>,
    pub input_set_id: Option<InputSetId>,
    pub params: RunParams,
    pub target: Option<String>,
    pub priority: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub rating: Option<u8>,
    pub outputs: Vec<RunOutput>,
    /// The GPUs of its target the scheduler gave it (empty until placed).
    #[serde(default)]
    pub devices: Vec<u32>,
    /// Automatic retries after infrastructure errors so far.
    #[serde(default)]
    pub attempts: u32,
    /// The failed run this one retries (`cosmos retry`).
    #[serde(default)]
    pub retry_of: Option<RunId>,
    /// The target the user asked for (`--target`); otherwise the scheduler places the run.
    #[serde(default)]
    pub target_pin: Option<String>,
    /// The model's exit status, once read.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it failed, as a stable code (`guardrail_blocked`, `out_of_memory`, …) beside
    /// `failure_reason`, the message.
    #[serde(default)]
    pub failure_code: Option<String>,
    /// The exact command that started the model, once it was started.
    #[serde(default)]
    pub launch_command: Option<Vec<String>>,
    /// The sweep it was submitted in: the id of the sweep's first run.
    #[serde(default)]
    pub sweep_id: Option<RunId>,
    /// What it ran on (image digest, checkout commit, manifest hash), once it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supply: Option<Supply>,
    /// Placed on a rehearsal target: cosmos-sim made its output (a copy of the input), not
    /// Cosmos.
    #[serde(default)]
    pub rehearsal: bool,
    /// Marked as a favourite (`cosmos rate --favourite`).
    #[serde(default)]
    pub favourite: bool,
    /// The run that retries this one (`cosmos retry`), once there is one.
    #[serde(default)]
    pub retried_by: Option<RunId>,
    /// Its GPUs' load while the model ran, sampled from `nvidia-smi` on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_usage: Option<GpuUsage>,
    /// The batch it was last placed in (one Cosmos process for several runs), if any.
    #[serde(default)]
    pub batch_id: Option<crate::BatchId>,
    /// Its line in that batch's JSONL file (0-based; its outputs were `video_<line>`).
    #[serde(default)]
    pub batch_line: Option<u32>,
    /// The run whose output this upscale run enlarges (`cosmos upscale RUN`, `run --upscale`).
    #[serde(default)]
    pub upscale_of: Option<RunId>,
    /// Upscale runs of this one.
    #[serde(default)]
    pub upscaled_by: Vec<RunId>,
    /// The prompt the model used when it differs from `prompt_text` (`--upsample-prompt`:
    /// Cosmos's upsampler rewrote it), read from the prompt file it saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_prompt: Option<String>,
}

/// A run's GPUs while its model ran: utilisation (percent, the busiest of its GPUs at its
/// peak; the mean over samples of their mean) and memory in use (MiB, summed over its GPUs).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuUsage {
    pub samples: u32,
    pub utilization_peak: u32,
    pub utilization_mean: f64,
    pub memory_peak_mib: u64,
    pub memory_mean_mib: f64,
}

impl GpuUsage {
    /// Adds one sample: each of the run's GPUs as (utilisation %, memory used MiB).
    pub fn add(&mut self, gpus: &[(u32, u64)]) {
        if gpus.is_empty() {
            return;
        }
        let util_peak = gpus.iter().map(|g| g.0).max().unwrap_or(0);
        let util_mean = gpus.iter().map(|g| f64::from(g.0)).sum::<f64>() / gpus.len() as f64;
        let memory: u64 = gpus.iter().map(|g| g.1).sum();
        let n = f64::from(self.samples);
        self.utilization_peak = self.utilization_peak.max(util_peak);
        self.memory_peak_mib = self.memory_peak_mib.max(memory);
        self.utilization_mean = (self.utilization_mean * n + util_mean) / (n + 1.0);
        self.memory_mean_mib = (self.memory_mean_mib * n + memory as f64) / (n + 1.0);
        self.samples += 1;
    }
}

/// An append-only record of something that happened to a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunEvent {
    pub id: i64,
    pub run_id: RunId,
    pub at: DateTime<Utc>,
    pub stage: RunStatus,
    pub progress: Option<f64>,
    pub message: String,
}

/// What a run ran on: two runs with the same supply ran the same model code on the same
/// checkpoints. Each part is `None` when the target could not tell (a hand-prepared host
/// has no manifest; a plain process has no image).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Supply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_hash: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::GpuUsage;

    #[test]
    fn gpu_usage_keeps_peaks_and_running_means() {
        let mut u = GpuUsage::default();
        u.add(&[]);
        assert_eq!(u.samples, 0);
        u.add(&[(90, 30_000), (70, 20_000)]);
        u.add(&[(10, 1_000), (30, 1_000)]);
        assert_eq!(
            (u.samples, u.utilization_peak, u.memory_peak_mib),
            (2, 90, 50_000)
        );
        assert!((u.utilization_mean - 50.0).abs() < 1e-9);
        assert!((u.memory_mean_mib - 26_000.0).abs() < 1e-9);
    }
}
