//! The simulator's knobs, read once from the environment (DESIGN.md §6).

use std::path::PathBuf;
use std::time::Duration;

/// Words the blocklist guardrail refuses when `COSMOS_SIM_BLOCKLIST` is not set.
pub const DEFAULT_BLOCKED_WORD: &str = "forbiddenfruit";
/// GPUs `nvidia-smi` and the model see when `COSMOS_SIM_GPUS` is not set.
pub const DEFAULT_GPUS: u32 = 8;
pub const DEFAULT_GPU_NAME: &str = "NVIDIA H100 80GB HBM3";

const DEFAULT_LOAD_SECONDS: f64 = 0.05;
const DEFAULT_CLIP_SECONDS: f64 = 0.02;

/// An injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    /// PyTorch's CUDA out-of-memory error during the first clip's sampling.
    Oom,
    /// The same, once a batch reaches this line (0-based): a batch too big for the GPU.
    OomAtLine(u64),
    /// A CUDA crash once this many clips are done.
    CrashAfterClip(u64),
    /// Stops making progress during the first clip's sampling, until killed.
    Hang,
    /// The video guardrail finds the generated videos unsafe.
    UnsafeVideo,
}

#[derive(Debug, Clone)]
pub struct Knobs {
    pub load: Duration,
    pub clip: Duration,
    pub fail: Option<Fail>,
    pub record: Option<PathBuf>,
    pub blocklist: Vec<String>,
    /// Frame count for inputs that are not real videos.
    pub frames: Option<u64>,
    pub gpus: u32,
    pub gpu_name: String,
    /// Where the model marks its GPUs busy and `nvidia-smi` reads their load.
    pub gpu_state: Option<PathBuf>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn seconds(name: &str, default: f64) -> Result<Duration, String> {
    match var(name) {
        None => Ok(Duration::from_secs_f64(default)),
        Some(raw) => raw
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("{name}={raw}: expected a number of seconds, like 0.5")),
    }
}

fn count<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
    match var(name) {
        None => Ok(None),
        Some(raw) => raw
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={raw}: expected a whole number")),
    }
}

pub fn parse_fail(raw: &str) -> Result<Fail, String> {
    let raw = raw.trim();
    match raw {
        "oom" => Ok(Fail::Oom),
        "hang" => Ok(Fail::Hang),
        "unsafe_video" => Ok(Fail::UnsafeVideo),
        _ => raw
            .strip_prefix("crash_after_clip:")
            .and_then(|n| n.parse().ok())
            .map(Fail::CrashAfterClip)
            .or_else(|| {
                raw.strip_prefix("oom_at_line:")
                    .and_then(|n| n.parse().ok())
                    .map(Fail::OomAtLine)
            })
            .ok_or_else(|| {
                format!(
                    "COSMOS_SIM_FAIL={raw}: expected `oom`, `oom_at_line:N`, `crash_after_clip:N`, `hang` or `unsafe_video`"
                )
            }),
    }
}

impl Knobs {
    pub fn from_env() -> Result<Self, String> {
        let blocklist = match std::env::var("COSMOS_SIM_BLOCKLIST") {
            Ok(list) => list
                .split(',')
                .map(|w| w.trim().to_lowercase())
                .filter(|w| !w.is_empty())
                .collect(),
            Err(_) => vec![DEFAULT_BLOCKED_WORD.to_owned()],
        };
        Ok(Self {
            load: seconds("COSMOS_SIM_LOAD_SECONDS", DEFAULT_LOAD_SECONDS)?,
            clip: seconds("COSMOS_SIM_CLIP_SECONDS", DEFAULT_CLIP_SECONDS)?,
            fail: var("COSMOS_SIM_FAIL").map(|f| parse_fail(&f)).transpose()?,
            record: var("COSMOS_SIM_RECORD").map(PathBuf::from),
            blocklist,
            frames: count("COSMOS_SIM_FRAMES")?,
            gpus: count("COSMOS_SIM_GPUS")?.unwrap_or(DEFAULT_GPUS),
            gpu_name: var("COSMOS_SIM_GPU_NAME").unwrap_or_else(|| DEFAULT_GPU_NAME.to_owned()),
            gpu_state: var("COSMOS_SIM_GPU_STATE").map(PathBuf::from),
        })
    }

    /// GPUs a CUDA process sees: `CUDA_VISIBLE_DEVICES` narrows the machine's set.
    pub fn visible_gpus(&self) -> u32 {
        match std::env::var("CUDA_VISIBLE_DEVICES") {
            Ok(list) if self.gpus > 0 => {
                let n = list.split(',').filter(|d| !d.trim().is_empty()).count();
                u32::try_from(n).unwrap_or(u32::MAX).min(self.gpus)
            }
            _ => self.gpus,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_injection_values_parse() {
        assert_eq!(parse_fail("oom"), Ok(Fail::Oom));
        assert_eq!(parse_fail("hang"), Ok(Fail::Hang));
        assert_eq!(parse_fail("unsafe_video"), Ok(Fail::UnsafeVideo));
        assert_eq!(
            parse_fail("crash_after_clip:2"),
            Ok(Fail::CrashAfterClip(2))
        );
        assert!(
            parse_fail("crash_after_clip:x")
                .unwrap_err()
                .contains("crash_after_clip:N")
        );
        assert_eq!(parse_fail("oom_at_line:3"), Ok(Fail::OomAtLine(3)));
        assert!(parse_fail("explode").is_err());
    }
}
