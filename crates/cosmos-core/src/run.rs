//! Runs: kinds, the status state machine (DESIGN.md §3) and the parameters a user chooses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::weights::Weights;

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RunKind {
    Transfer,
    Upscale,
    Enhance,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Transfer => "transfer",
            RunKind::Upscale => "upscale",
            RunKind::Enhance => "enhance",
        }
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunKind {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, ParseEnumError> {
        [RunKind::Transfer, RunKind::Upscale, RunKind::Enhance]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseEnumError::new("run kind", s, "transfer, upscale, enhance"))
    }
}

/// Where a run is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RunStatus {
    Queued,
    Staging,
    Starting,
    Running,
    Collecting,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Queued,
        RunStatus::Staging,
        RunStatus::Starting,
        RunStatus::Running,
        RunStatus::Collecting,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Staging => "staging",
            RunStatus::Starting => "starting",
            RunStatus::Running => "running",
            RunStatus::Collecting => "collecting",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// The legal transitions of the lifecycle. A run may fail or be cancelled from any live
    /// state; it may go back to `queued` only before the container starts (a requeue).
    pub fn can_become(self, next: RunStatus) -> bool {
        use RunStatus::*;
        match (self, next) {
            (Queued, Staging) | (Staging, Starting) | (Starting, Running) => true,
            (Running, Collecting) | (Starting, Collecting) | (Collecting, Succeeded) => true,
            (Staging, Queued) => true,
            // A batch's unfinished runs go back when its process ran out of GPU memory or
            // stopped at another run's line (the guardrail).
            (Running, Queued) => true,
            (from, Failed | Cancelled) => !from.is_terminal(),
            _ => false,
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, ParseEnumError> {
        let lower = s.trim().to_ascii_lowercase();
        RunStatus::ALL
            .into_iter()
            .find(|k| k.as_str() == lower)
            .ok_or_else(|| {
                let all: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
                ParseEnumError::new("status", s, &all.join(", "))
            })
    }
}

/// A Cosmos preset level (`--blur_strength`, `--canny_threshold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Level {
    VeryLow,
    Low,
    #[default]
    Medium,
    High,
    VeryHigh,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::VeryLow,
        Level::Low,
        Level::Medium,
        Level::High,
        Level::VeryHigh,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::VeryLow => "very_low",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::VeryHigh => "very_high",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, ParseEnumError> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Level::ALL
            .into_iter()
            .find(|l| l.as_str() == norm)
            .ok_or_else(|| {
                ParseEnumError::new("level", s, "very_low, low, medium, high, very_high")
            })
    }
}

/// A word that is not one of an enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{got}`: expected one of {expected}")]
pub struct ParseEnumError {
    what: &'static str,
    got: String,
    expected: String,
}

impl ParseEnumError {
    fn new(what: &'static str, got: &str, expected: &str) -> Self {
        Self {
            what,
            got: got.to_owned(),
            expected: expected.to_owned(),
        }
    }
}

/// GPU counts Cosmos's context parallelism accepts on one node.
pub const GPU_COUNTS: [u32; 4] = [1, 2, 4, 8];

/// Everything a user chooses for a transfer run besides the prompt and the inputs.
/// Defaults are Cosmos-Transfer1's own. Also the `[defaults]` section of the config file, so
/// missing keys take defaults and unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunParams {
    /// Empty: one equal share per control video in the input set.
    pub weights: Weights,
    pub seed: u32,
    pub steps: u32,
    pub guidance: f64,
    pub sigma_max: f64,
    pub fps: u32,
    pub blur_strength: Level,
    pub canny_threshold: Level,
    pub gpus: u32,
    /// Let Cosmos's prompt upsampler (Pixtral-12B, `--upsample_prompt`) rewrite the prompt
    /// before generating; the text the model used is recorded with the run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub upsample_prompt: bool,
    /// The model that runs it, by its adapter's name (`transfer1`, `transfer2.5`).
    #[serde(skip_serializing_if = "is_default_model")]
    pub model: String,
    /// Cosmos-Transfer2.5: frames each chunk is conditioned on from the one before (0–2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_conditional_frames: Option<u32>,
    /// Cosmos-Transfer2.5: the generation resolution (`720`, `480`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Cosmos-Transfer2.5: a spatiotemporal mask per control, described in words
    /// (`mask_prompt`: where the control applies).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, String>))]
    pub mask_prompts: std::collections::BTreeMap<crate::Hint, String>,
    /// Cosmos-Transfer2.5: a spatiotemporal mask per control, as a video (`mask_path`: white
    /// where the control applies), uploaded with the inputs.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, MaskFile>))]
    pub mask_files: std::collections::BTreeMap<crate::Hint, MaskFile>,
    /// Cosmos-Transfer2.5: `sigma_max` left to the model's own default (not sent).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sigma_max_unset: bool,
}

/// A mask video given by file: where it is on this machine and what it held when the run was
/// submitted (checked again before it is uploaded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaskFile {
    /// Absolute path on this machine.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl MaskFile {
    /// Its extension, lower case (`mp4` when it has none).
    pub fn extension(&self) -> String {
        std::path::Path::new(&self.path)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("mp4")
            .to_ascii_lowercase()
    }
}

fn is_default_model(name: &String) -> bool {
    name == crate::model::DEFAULT_MODEL
}

impl Default for RunParams {
    fn default() -> Self {
        Self {
            weights: Weights::default(),
            seed: 1,
            steps: 35,
            guidance: 5.0,
            sigma_max: 70.0,
            fps: 24,
            blur_strength: Level::Medium,
            canny_threshold: Level::Medium,
            gpus: 1,
            upsample_prompt: false,
            model: crate::model::DEFAULT_MODEL.to_owned(),
            num_conditional_frames: None,
            resolution: None,
            mask_prompts: std::collections::BTreeMap::new(),
            mask_files: std::collections::BTreeMap::new(),
            sigma_max_unset: false,
        }
    }
}

/// A parameter outside the range Cosmos accepts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

impl RunParams {
    /// Checks the ranges Cosmos (or the hardware) imposes, with a message that says what to fix.
    pub fn validate(&self) -> Result<(), ParamError> {
        let bad = |m: String| Err(ParamError(m));
        if !GPU_COUNTS.contains(&self.gpus) {
            return bad(format!(
                "--gpus {} is not supported: use 1, 2, 4 or 8",
                self.gpus
            ));
        }
        if self.steps == 0 || self.steps > 1000 {
            return bad(format!(
                "--steps {} is out of range: use 1 to 1000",
                self.steps
            ));
        }
        if !(self.guidance.is_finite() && self.guidance >= 0.0) {
            return bad(format!(
                "--guidance {} must be a non-negative number",
                self.guidance
            ));
        }
        if !(self.sigma_max.is_finite() && self.sigma_max > 0.0) {
            return bad(format!(
                "--sigma-max {} must be a positive number",
                self.sigma_max
            ));
        }
        if self.fps == 0 || self.fps > 240 {
            return bad(format!("--fps {} is out of range: use 1 to 240", self.fps));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_transitions() {
        use RunStatus::*;
        let legal = [
            (Queued, Staging),
            (Staging, Starting),
            (Starting, Running),
            (Running, Collecting),
            (Collecting, Succeeded),
            (Staging, Queued),
            (Running, Failed),
            (Queued, Cancelled),
            (Collecting, Failed),
            // A batch's unfinished runs go back to the queue (issue 17).
            (Running, Queued),
        ];
        let illegal = [
            (Queued, Running),
            (Succeeded, Failed),
            (Failed, Queued),
            (Cancelled, Cancelled),
            (Collecting, Queued),
            (Collecting, Running),
            (Queued, Succeeded),
        ];
        for (a, b) in legal {
            assert!(a.can_become(b), "{a} -> {b} should be legal");
        }
        for (a, b) in illegal {
            assert!(!a.can_become(b), "{a} -> {b} should be illegal");
        }
    }

    #[test]
    fn params_validation_names_the_flag() {
        let cases = [
            (
                RunParams {
                    gpus: 3,
                    ..Default::default()
                },
                Some("--gpus 3"),
            ),
            (
                RunParams {
                    steps: 0,
                    ..Default::default()
                },
                Some("--steps 0"),
            ),
            (
                RunParams {
                    guidance: -1.0,
                    ..Default::default()
                },
                Some("--guidance -1"),
            ),
            (
                RunParams {
                    sigma_max: f64::NAN,
                    ..Default::default()
                },
                Some("--sigma-max NaN"),
            ),
            (
                RunParams {
                    fps: 0,
                    ..Default::default()
                },
                Some("--fps 0"),
            ),
            (
                RunParams {
                    gpus: 8,
                    ..Default::default()
                },
                None,
            ),
        ];
        for (params, want) in cases {
            let got = params.validate().err().map(|e| e.0);
            match want {
                None => assert_eq!(got, None),
                Some(w) => assert!(got.as_deref().is_some_and(|g| g.starts_with(w)), "{got:?}"),
            }
        }
    }

    #[test]
    fn levels_and_statuses_parse_loosely() {
        assert_eq!("very-high".parse::<Level>().unwrap(), Level::VeryHigh);
        assert_eq!("FAILED".parse::<RunStatus>().unwrap(), RunStatus::Failed);
        assert!(
            "done"
                .parse::<RunStatus>()
                .unwrap_err()
                .to_string()
                .contains("succeeded")
        );
    }
}
