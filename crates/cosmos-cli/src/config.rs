//! Configuration: one TOML file, `COSMOS_<SECTION>_<KEY>` environment overrides, then flags.
//! `COSMOS_HOME` relocates everything (config, database, outputs, logs). Resolved once, in
//! [`Settings::load`]; commands never read the environment or files themselves.

pub(crate) mod hooks;
pub(crate) mod keyring;
pub(crate) mod load;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use cosmos_core::RunParams;

/// The configuration file's contents, every key optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub store: StoreConfig,
    pub media: MediaConfig,
    /// Run parameters used when a run does not give them.
    pub defaults: RunParams,
    pub target: TargetDefaults,
    pub queue: QueueConfig,
    pub ssh: SshConfig,
    pub setup: SetupConfig,
    pub secrets: Secrets,
    /// `[[hooks]]`: programs or URLs told when runs end, the queue empties or a target is lost.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookConfig>,
}

/// One `[[hooks]]` table, as written; [`hooks::build`] checks it into an engine hook.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    pub name: String,
    /// The events it listens for: run.succeeded, run.failed, run.cancelled, queue.empty,
    /// target.unreachable.
    pub on: Vec<String>,
    /// A program and its arguments (a list: no shell ever runs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<toml::Value>,
    /// A URL the event is POSTed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The webhook's signing secret (the config file must then be owner-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The environment variable that holds the signing secret instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    #[serde(default = "hooks::default_timeout")]
    pub timeout_seconds: f64,
    #[serde(default = "hooks::default_retries")]
    pub retries: u32,
    #[serde(default = "hooks::default_backoff")]
    pub backoff_seconds: f64,
}

impl std::fmt::Debug for HookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookConfig")
            .field("name", &self.name)
            .field("on", &self.on)
            .field("command", &self.command)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_env", &self.secret_env)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SetupConfig {
    pub checkpoint_space_gb: f64,
}

impl Default for SetupConfig {
    fn default() -> Self {
        Self {
            checkpoint_space_gb: cosmos_core::setup::CHECKPOINT_SPACE_GB,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshConfig {
    pub connect_timeout_seconds: f64,
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            connect_timeout_seconds: 20.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub max_retries: u32,
    pub retry_backoff_seconds: f64,
    pub staging_patience_seconds: f64,
    pub lease_seconds: f64,
    pub verify_inputs: String,
    pub gpu_sample_seconds: f64,
    pub max_batch: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            retry_backoff_seconds: 5.0,
            staging_patience_seconds: 20.0,
            lease_seconds: 30.0,
            verify_inputs: "stamp".into(),
            gpu_sample_seconds: 5.0,
            max_batch: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub database: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            database: PathBuf::from("cosmos.db"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    pub ffprobe: PathBuf,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            ffprobe: PathBuf::from("ffprobe"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetDefaults {
    pub root: String,
    pub cosmos_dir: String,
    pub image: String,
    pub shm_size: String,
}

impl Default for TargetDefaults {
    fn default() -> Self {
        Self {
            root: "/srv/cosmos".into(),
            cosmos_dir: "/opt/cosmos-transfer1".into(),
            image: cosmos_core::setup::image_tag(cosmos_core::setup::COMMIT),
            shm_size: "16g".into(),
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Secrets {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hf_token: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("hf_token", &self.hf_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Every key, documented: the source of `cosmos config default` and of the environment
/// variable names. A test checks it against [`Config`].
pub(crate) const KEYS: &[(&str, &str, &str, &str)] = &[
    (
        "store",
        "database",
        "\"cosmos.db\"",
        "SQLite database file; a relative path is relative to the data directory.",
    ),
    (
        "media",
        "ffprobe",
        "\"ffprobe\"",
        "The ffprobe program used to probe control videos.",
    ),
    (
        "defaults",
        "seed",
        "1",
        "Random seed (clip i uses seed + i).",
    ),
    ("defaults", "steps", "35", "Diffusion steps."),
    (
        "defaults",
        "guidance",
        "5.0",
        "Classifier-free guidance scale.",
    ),
    (
        "defaults",
        "sigma_max",
        "70.0",
        "Noise level applied to the colour video; 80 or more ignores its pixels.",
    ),
    ("defaults", "fps", "24", "Frame rate of the output video."),
    (
        "defaults",
        "blur_strength",
        "\"medium\"",
        "vis control blur: very_low, low, medium, high, very_high.",
    ),
    (
        "defaults",
        "canny_threshold",
        "\"medium\"",
        "edge control threshold: very_low, low, medium, high, very_high.",
    ),
    ("defaults", "gpus", "1", "GPUs per run: 1, 2, 4 or 8."),
    (
        "defaults",
        "model",
        "\"transfer1\"",
        "The model runs use when they name none: transfer1 (Cosmos-Transfer1) or transfer2.5\n# (Cosmos-Transfer2.5, which then takes its own defaults: seed 2025, guidance 3, its sigma_max).",
    ),
    (
        "defaults",
        "weights",
        "\"\"",
        "Control weights when a run gives none, e.g. \"edge=0.5,depth=0.5\";\n# empty means one equal share per control video in the input set.",
    ),
    (
        "target",
        "root",
        "\"/srv/cosmos\"",
        "Root directory for runs on a GPU host (blobs/, runs/).",
    ),
    (
        "target",
        "cosmos_dir",
        "\"/opt/cosmos-transfer1\"",
        "The cosmos-transfer1 checkout on the GPU host, mounted at /workspace.",
    ),
    (
        "target",
        "image",
        "\"cosmos-transfer1:5005e823dbd4\"",
        "Docker image built from cosmos-transfer1's Dockerfile: the tag `cosmos target setup`\n# builds at the commit cosmos was tested against. A floating tag (`:latest`, none) is\n# refused unless `--allow-floating`.",
    ),
    (
        "target",
        "shm_size",
        "\"16g\"",
        "Shared memory for the container (docker --shm-size).",
    ),
    (
        "queue",
        "max_retries",
        "3",
        "Automatic retries of a run that could not be staged (target unreachable) before it fails.",
    ),
    (
        "queue",
        "retry_backoff_seconds",
        "5.0",
        "Wait before the first automatic retry; each further one waits twice as long.",
    ),
    (
        "queue",
        "staging_patience_seconds",
        "20.0",
        "How long staging waits for a target that does not answer before the run goes back\n# to the queue (nothing has started yet, so another target may take it).",
    ),
    (
        "queue",
        "lease_seconds",
        "30.0",
        "How long a driver's claim on a run lasts without renewal: a worker that stops (paused,\n# crashed, cut off) longer than this loses the run to another worker, and can then no\n# longer change it.",
    ),
    (
        "queue",
        "verify_inputs",
        "\"stamp\"",
        "How far an input already on a target is trusted: \"stamp\" re-hashes it only when its\n# size, times or inode changed since it was verified; \"full\" re-hashes it for every run.",
    ),
    (
        "queue",
        "gpu_sample_seconds",
        "5.0",
        "How often a running model's GPUs are sampled (nvidia-smi on its target): each run keeps\n# its peak and mean utilisation and memory (`cosmos show`, the HTTP API).",
    ),
    (
        "queue",
        "max_batch",
        "0",
        "The most queued runs one Cosmos process takes (a JSONL batch: the model loads once).\n# Runs share a process only when everything Cosmos treats as global in batch mode is\n# equal (parameters, negative prompt, controls and their weights, seed, GPUs, resolution\n# bucket, frame count). 0 sizes each target's batches to its GPUs' memory (one run per\n# 10 GiB of its smallest GPU, at most 16; 4 before its GPUs were seen); 1 turns batching off.",
    ),
    (
        "ssh",
        "connect_timeout_seconds",
        "20.0",
        "One deadline for reaching an SSH target: TCP, the SSH handshake and logging in\n# together, every attempt and any jump host included. Every command keeps to it.",
    ),
    (
        "setup",
        "checkpoint_space_gb",
        "300.0",
        "Free space `cosmos target setup` wants before it downloads the checkpoints (less what\n# is already there): Cosmos-Transfer1's checkpoints take about 300 GB.",
    ),
    (
        "secrets",
        "hf_token",
        "",
        "Hugging Face token, needed only to download checkpoints. Never stored in the\n# database or logged; prefer `cosmos secret set hf_token` or COSMOS_SECRETS_HF_TOKEN.",
    ),
];

/// Keys whose values `config show` hides.
pub(crate) const SECRET_KEYS: &[(&str, &str)] = &[("secrets", "hf_token")];

pub(crate) fn env_name(section: &str, key: &str) -> String {
    format!(
        "COSMOS_{}_{}",
        section.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
}

/// The annotated reference configuration file.
pub fn default_file() -> String {
    let mut out = String::from(
        "# cosmos configuration (cosmos.toml). Every key is optional; the values shown are the\n\
         # defaults. Each key can be overridden by an environment variable named\n\
         # COSMOS_<SECTION>_<KEY>, e.g. COSMOS_DEFAULTS_STEPS=20; flags override both.\n",
    );
    let mut section = "";
    for (s, key, value, doc) in KEYS {
        if *s != section {
            section = s;
            out.push_str(&format!("\n[{s}]\n"));
        }
        out.push_str(&format!("# {doc}\n"));
        if value.is_empty() {
            out.push_str(&format!("# {key} = \"…\"\n"));
        } else {
            out.push_str(&format!("{key} = {value}\n"));
        }
    }
    out.push_str(hooks::EXAMPLE);
    out
}

pub use load::Settings;
