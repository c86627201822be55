//! Reading Cosmos-Transfer1's log (DESIGN.md Appendix A.4): milestones become a stage and a
//! fraction done, and a failed run's last lines become a reason a user can act on.

use serde::Serialize;

/// Where a run is, as its log tells.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Milestone {
    pub stage: &'static str,
    /// 0..=1.
    pub fraction: f64,
    /// The clip being generated and the clip count, once generation has begun.
    pub clip: Option<(u32, u32)>,
    /// The denoising step within it and the step count, where the log shows them
    /// (Cosmos-Transfer2.5's step bars; its clips are its chunks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<(u32, u32)>,
}

impl Milestone {
    pub fn describe(&self) -> String {
        match (self.clip, self.step) {
            (Some((i, n)), Some((k, s))) => {
                format!("{}: chunk {i}/{n}, step {k}/{s}", self.stage)
            }
            (Some((i, n)), None) => format!("{}: clip {i}/{n}", self.stage),
            _ => self.stage.to_owned(),
        }
    }
}

/// The message part of a loguru line `[MM-DD HH:mm:ss|LEVEL|path:line:function] message`.
/// The header may follow other output on the same line (tqdm's bar on stderr ends in `\r`,
/// not a newline, so a log line can land right after it).
pub fn log_message(line: &str) -> Option<(&str, &str)> {
    line.match_indices('[').find_map(|(at, _)| {
        let rest = &line[at + 1..];
        let close = rest.find("] ")?;
        let mut head = rest[..close].split('|');
        let (_time, level, _site) = (head.next()?, head.next()?, head.next()?);
        level
            .chars()
            .all(|c| c.is_ascii_uppercase())
            .then(|| (level, &rest[close + 2..]))
    })
}

/// Turns log lines into milestones. Clip boundaries come from `Starting latent encoding`.
#[derive(Debug, Clone)]
pub struct ProgressParser {
    clips: u32,
    clip: u32,
}

const GENERATION_START: f64 = 0.15;
const GENERATION_SPAN: f64 = 0.80;

impl ProgressParser {
    /// `clips`: how many clips the input's frame count makes (at least 1).
    pub fn new(clips: u32) -> Self {
        Self {
            clips: clips.max(1),
            clip: 0,
        }
    }

    fn in_clip(&self, part: f64) -> Milestone {
        let done = (f64::from(self.clip.saturating_sub(1)) + part) / f64::from(self.clips);
        Milestone {
            stage: "generating",
            fraction: GENERATION_START + GENERATION_SPAN * done.min(1.0),
            clip: Some((self.clip, self.clips)),
            step: None,
        }
    }

    /// The milestone a line marks, if it marks one.
    pub fn feed(&mut self, line: &str) -> Option<Milestone> {
        let (_, msg) = log_message(line)?;
        let fixed = |stage, fraction| {
            Some(Milestone {
                stage,
                fraction,
                clip: None,
                step: None,
            })
        };
        match msg {
            m if m.starts_with("final args") => fixed("loading model", 0.01),
            "Start creating base model" => fixed("loading model", 0.02),
            "Done creating base model" => fixed("loading model", 0.05),
            "Start creating ctrlnet model" => fixed("loading model", 0.06),
            "Done creating ctrlnet model" => fixed("loading model", 0.08),
            "running preprocessor" => fixed("preprocessing", 0.10),
            m if m.starts_with("Running batch generation") => fixed("preparing", 0.11),
            "Running guardrail checks on all prompts" => fixed("prompt guardrail", 0.12),
            "Running text embedding on all prompts" => fixed("text embedding", 0.14),
            "Run generation" => fixed("generating", GENERATION_START),
            "Starting latent encoding" => {
                self.clip = (self.clip + 1).min(self.clips);
                Some(self.in_clip(0.02))
            }
            "Starting diffusion sampling" => Some(self.in_clip(0.1)),
            "Completed diffusion sampling" => Some(self.in_clip(0.85)),
            "Starting VAE decode" => Some(self.in_clip(0.9)),
            "Completed VAE decode" => Some(self.in_clip(1.0)),
            "Finish generation" => fixed("finishing", 0.96),
            "Run guardrail on generated videos" => fixed("video guardrail", 0.975),
            m if m.starts_with("Saved video to") => fixed("saving", 0.99),
            _ => None,
        }
    }
}

/// Why a run failed, in categories a user can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The guardrail refused the prompt (blocklist, Llama Guard).
    GuardrailBlocked,
    /// The guardrail refused the generated video (unsafe frames).
    VideoBlocked,
    OutOfMemory,
    MissingCheckpoint,
    MissingFile,
    SpecRejected,
    DiskFull,
    Killed,
    Exit,
}

impl FailureKind {
    /// The stable code a failed run is stored with.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::GuardrailBlocked => "guardrail_blocked",
            FailureKind::VideoBlocked => "guardrail_video_blocked",
            FailureKind::OutOfMemory => "out_of_memory",
            FailureKind::MissingCheckpoint => "checkpoint_missing",
            FailureKind::MissingFile => "file_missing",
            FailureKind::SpecRejected => "spec_rejected",
            FailureKind::DiskFull => "disk_full",
            FailureKind::Killed => "model_killed",
            FailureKind::Exit => "model_failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// One line for `failure_reason`.
    pub reason: String,
}

/// The exception a Python traceback ended with: `(type, message)`.
fn last_exception(lines: &[&str]) -> Option<(String, String)> {
    lines.iter().rev().find_map(|l| {
        let l = l.trim_end();
        let (name, message) = match l.split_once(": ") {
            Some((n, m)) => (n, m),
            None => (l, ""),
        };
        let is_name = !name.is_empty()
            && !name.starts_with(' ')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && (name.ends_with("Error") || name.ends_with("Exception"));
        is_name.then(|| (name.to_owned(), message.to_owned()))
    })
}

/// The last non-empty lines of a log, joined for a reason.
fn tail(lines: &[&str], n: usize) -> String {
    let picked: Vec<&str> = lines
        .iter()
        .rev()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .take(n)
        .collect();
    picked.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// Classifies a finished model run from its exit code (`None`: the process vanished without
/// one) and its log.
pub fn classify_failure(exit: Option<i32>, log: &str) -> Failure {
    let lines: Vec<&str> = log
        .split(['\n', '\r'])
        .filter(|l| !l.trim().is_empty())
        .collect();
    let fail = |kind, reason: String| Failure { kind, reason };
    if let Some(blocked) = lines
        .iter()
        .filter_map(|l| log_message(l).map(|(_, m)| m).or(Some(l)))
        .find(|m| m.contains("GUARDRAIL BLOCKED"))
    {
        let what = blocked[blocked.find("GUARDRAIL BLOCKED").unwrap_or(0)..].trim();
        // The video check runs after generation, on the frames: the prompt passed.
        if what.contains("VIDEOCONTENTSAFETYFILTER") {
            return fail(
                FailureKind::VideoBlocked,
                format!(
                    "the guardrail blocked the generated video ({what}); the prompt passed: try another seed, or change the prompt or the controls"
                ),
            );
        }
        return fail(
            FailureKind::GuardrailBlocked,
            format!("the guardrail blocked the prompt ({what}); rephrase the prompt"),
        );
    }
    if let Some(line) = lines.iter().find(|l| l.contains("No space left on device")) {
        return fail(
            FailureKind::DiskFull,
            format!(
                "the target ran out of disk space ({}): free space under the target's root",
                line.trim()
            ),
        );
    }
    let exception = last_exception(&lines);
    if let Some((name, message)) = &exception {
        if name.ends_with("OutOfMemoryError") || message.contains("CUDA out of memory") {
            return fail(
                FailureKind::OutOfMemory,
                "CUDA out of memory: use more GPUs, a shorter input, or a GPU with more memory"
                    .into(),
            );
        }
        if name == "FileNotFoundError" || message.contains("No such file or directory") {
            if message.contains("checkpoints") || message.contains(".pt'") {
                return fail(
                    FailureKind::MissingCheckpoint,
                    format!(
                        "a checkpoint is missing on the target ({message}); download the checkpoints into the cosmos checkout"
                    ),
                );
            }
            return fail(
                FailureKind::MissingFile,
                format!("a file is missing on the target: {message}"),
            );
        }
        let spec_errors = [
            "AssertionError",
            "ValueError",
            "TypeError",
            "json.decoder.JSONDecodeError",
        ];
        if spec_errors.contains(&name.as_str()) && !message.is_empty() {
            return fail(
                FailureKind::SpecRejected,
                format!("Cosmos rejected the spec: {message}"),
            );
        }
    }
    match exit {
        None => fail(
            FailureKind::Killed,
            "killed: the model process disappeared without an exit status".into(),
        ),
        Some(code @ (137 | 143 | -9 | -15)) => fail(
            FailureKind::Killed,
            format!("killed (exit {code}): the model was stopped from outside"),
        ),
        Some(code) => {
            let detail = match exception {
                Some((name, message)) if !message.is_empty() => format!("{name}: {message}"),
                _ => tail(&lines, 3),
            };
            fail(
                FailureKind::Exit,
                format!("the model exited with code {code}: {detail}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(msg: &str) -> String {
        format!("[11-24 10:00:00|INFO|cosmos_transfer1/x.py:1:f] {msg}")
    }

    #[test]
    fn milestones_advance_through_clips() {
        let mut p = ProgressParser::new(2);
        let mut seen = Vec::new();
        for m in [
            "final args: x",
            "Start creating base model",
            "Run generation",
            "Starting latent encoding",
            "Completed VAE decode",
            "Starting latent encoding",
            "Starting diffusion sampling",
            "Completed VAE decode",
            "Finish generation",
            "Saved video to /o/output.mp4",
            "something else",
        ] {
            if let Some(ms) = p.feed(&line(m)) {
                seen.push(ms);
            }
        }
        assert_eq!(seen.len(), 10);
        let fractions: Vec<f64> = seen.iter().map(|m| m.fraction).collect();
        assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
        assert_eq!(seen[4].clip, Some((1, 2)));
        assert!((seen[4].fraction - 0.55).abs() < 1e-9);
        assert_eq!(seen[6].describe(), "generating: clip 2/2");
        assert!(p.feed("not a log line").is_none());
        let after_bar = format!(
            "  0%|          | 0/1 [00:00<?, ?it/s]{}",
            line("Starting latent encoding")
        );
        let mut p = ProgressParser::new(1);
        assert_eq!(p.feed(&after_bar).and_then(|m| m.clip), Some((1, 1)));
    }

    #[test]
    fn failures_are_classified() {
        let cases: [(Option<i32>, &str, FailureKind, &str); 10] = [
            (
                Some(1),
                "[11-24 10:00:00|CRITICAL|p.py:1:f] GUARDRAIL BLOCKED: BLOCKLIST: bad word\nTraceback\nTypeError: x",
                FailureKind::GuardrailBlocked,
                "GUARDRAIL BLOCKED: BLOCKLIST: bad word",
            ),
            (
                Some(1),
                "[11-24 10:00:00|CRITICAL|p.py:1:f] GUARDRAIL BLOCKED: VIDEOCONTENTSAFETYFILTER: unsafe frames detected\nTraceback\nValueError: Guardrail check failed: Generated video is unsafe",
                FailureKind::VideoBlocked,
                "blocked the generated video (GUARDRAIL BLOCKED: VIDEOCONTENTSAFETYFILTER: unsafe frames detected); the prompt passed",
            ),
            (
                Some(1),
                "Traceback (most recent call last):\n  File \"x\"\ntorch.OutOfMemoryError: CUDA out of memory. Tried",
                FailureKind::OutOfMemory,
                "CUDA out of memory",
            ),
            (
                Some(1),
                "FileNotFoundError: [Errno 2] No such file or directory: 'checkpoints/nvidia/Cosmos-Transfer1-7B/base_model.pt'",
                FailureKind::MissingCheckpoint,
                "base_model.pt",
            ),
            (
                Some(1),
                "FileNotFoundError: [Errno 2] No such file or directory: '/r/inputs/color.mp4'",
                FailureKind::MissingFile,
                "/r/inputs/color.mp4",
            ),
            (
                Some(1),
                "ValueError: Must have 'input_video' specified if sigma_max < 80",
                FailureKind::SpecRejected,
                "Cosmos rejected the spec: Must have 'input_video' specified if sigma_max < 80",
            ),
            (
                Some(1),
                "Traceback (most recent call last):\nOSError: [Errno 28] No space left on device: '/r/outputs/o.mp4'",
                FailureKind::DiskFull,
                "ran out of disk space",
            ),
            (Some(137), "clip 1", FailureKind::Killed, "exit 137"),
            (None, "", FailureKind::Killed, "disappeared"),
            (
                Some(3),
                "a\nb\nc\nd\n",
                FailureKind::Exit,
                "exited with code 3: b | c | d",
            ),
        ];
        for (exit, log, kind, needle) in cases {
            let f = classify_failure(exit, log);
            assert_eq!(f.kind, kind, "{log}");
            assert!(f.reason.contains(needle), "{}", f.reason);
        }
    }
}
