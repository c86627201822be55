//! Batches (DESIGN.md §4): which queued runs may share one Cosmos process, the JSONL lines
//! they become, and that process's log read back as each run's own progress.
//!
//! In batch mode Cosmos-Transfer1 reads one spec for every line: the negative prompt, seed,
//! steps, guidance, sigma_max, fps, presets and control blocks are global; a line brings only
//! its prompt, its colour video and its control videos (reference §3). With `--batch_size 1`
//! the lines run one after another and line N's files land in `video_<N>/`.

use serde_json::{Map, Value, json};

use crate::InputFile;
use crate::progress::{Milestone, ProgressParser, log_message};
use crate::resolution::bucket_for;

/// The model a signature is for: runs of different models never share a process.
pub const MODEL: &str = "cosmos-transfer1";

/// The largest batch cosmos forms, whatever the GPUs.
pub const MAX_BATCH: u32 = 16;
/// GPU memory per batch line when the limit follows the target's GPUs: 80 GB cards take 8.
const MIB_PER_LINE: u64 = 10_240;
/// The limit when the target's GPU memory is not known yet.
pub const UNKNOWN_MEMORY_BATCH: u32 = 4;

/// The default batch limit of a target whose smallest GPU has `memory_mib` (None: unknown).
pub fn batch_limit_for_memory(memory_mib: Option<u64>) -> u32 {
    match memory_mib {
        Some(m) => u32::try_from(m / MIB_PER_LINE)
            .unwrap_or(MAX_BATCH)
            .clamp(1, MAX_BATCH),
        None => UNKNOWN_MEMORY_BATCH,
    }
}

/// What Cosmos treats as global in batch mode for a run with this spec on `gpus` GPUs and
/// these inputs, as a sha256: the spec without its prompt and paths (whether a path is
/// there stays in), the GPUs, and each input's kind, resolution bucket and frame count (so
/// a batch never mixes buckets or lengths). Equal signatures may share one process.
pub fn signature(spec: &Value, gpus: u32, files: &[InputFile]) -> String {
    let mut global = Map::new();
    if let Value::Object(map) = spec {
        for (key, value) in map {
            match (key.as_str(), value) {
                ("prompt", _) => {}
                ("input_video_path", v) => {
                    global.insert(key.clone(), json!(!v.is_null()));
                }
                (_, Value::Object(block)) => {
                    let mut b = block.clone();
                    if let Some(v) = b.get_mut("input_control") {
                        *v = json!(!v.is_null());
                    }
                    global.insert(key.clone(), Value::Object(b));
                }
                _ => {
                    global.insert(key.clone(), value.clone());
                }
            }
        }
    }
    let mut inputs: Vec<(String, &str, u64)> = files
        .iter()
        .map(|f| {
            let b = bucket_for(f.video.width, f.video.height);
            (f.kind.to_string(), b.aspect, f.video.frames)
        })
        .collect();
    inputs.sort();
    let text = json!({
        "model": MODEL,
        "gpus": gpus,
        "spec": Value::Object(global),
        "inputs": inputs,
    })
    .to_string();
    crate::sha256::hex_digest(text.as_bytes())
}

/// One line of a batch's JSONL file: its prompt, its colour video (`visual_input`) and its
/// control videos (`control_overrides` of blocks the spec has; reference §3).
pub fn jsonl_line(
    prompt: &str,
    visual_input: Option<&str>,
    controls: &[(String, String)],
) -> String {
    let mut line = Map::new();
    line.insert("prompt".into(), json!(prompt));
    if let Some(v) = visual_input {
        line.insert("visual_input".into(), json!(v));
    }
    if !controls.is_empty() {
        let overrides: Map<String, Value> = controls
            .iter()
            .map(|(hint, path)| (hint.clone(), json!({ "input_control": path })))
            .collect();
        line.insert("control_overrides".into(), Value::Object(overrides));
    }
    // One JSON object per line, no blank lines: Cosmos parses each with `json.loads`.
    Value::Object(line).to_string()
}

/// What a line of a batch's log says about the batch.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchSignal {
    /// Before the first line starts (the model loading): every run's progress.
    All(Milestone),
    /// Progress of the line being generated.
    Line(u32, Milestone),
    /// Line N's video and prompt are saved.
    Saved(u32),
}

/// Reads a batch's process log for its model: each line's progress, the lines saved, and
/// where a guardrail block was logged.
pub trait BatchReader: Send + std::fmt::Debug {
    fn feed(&mut self, line: &str) -> Option<BatchSignal>;
    /// Lines whose outputs are saved.
    fn saved(&self) -> &[u32];
    /// The line a guardrail block was logged in, if one was.
    fn blocked_in(&self) -> Option<u32>;
    /// What the log said while line `n` ran (to read why it ended without a video).
    fn said_in(&self, n: u32) -> String {
        let _ = n;
        String::new()
    }
}

impl BatchReader for BatchLog {
    fn feed(&mut self, line: &str) -> Option<BatchSignal> {
        BatchLog::feed(self, line)
    }

    fn saved(&self) -> &[u32] {
        BatchLog::saved(self)
    }

    fn blocked_in(&self) -> Option<u32> {
        BatchLog::blocked_in(self)
    }
}

/// How a model's batch is laid out on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchShape {
    /// Cosmos-Transfer1: one spec (line 0's) holds what is global, a JSONL file of per-line
    /// overrides (`--batch_input_path`), and line N's files in `outputs/video_<N>/`.
    SharedSpec,
    /// Cosmos-Transfer2.5: a JSONL file of whole specs, one per run and named after it
    /// (`-i batch.jsonl`), and every file in `outputs/` under its run's id.
    SpecPerLine,
}

/// Reads a batch's log: lines start at each `Running batch generation` (batch size 1), and
/// end when their prompt file is saved.
#[derive(Debug, Clone)]
pub struct BatchLog {
    clips: u32,
    started: u32,
    current: Option<u32>,
    parser: ProgressParser,
    saved: Vec<u32>,
    blocked_in: Option<u32>,
}

impl BatchLog {
    /// `clips`: the clip count of every line (a batch shares its frame count).
    pub fn new(clips: u32) -> Self {
        Self {
            clips,
            started: 0,
            current: None,
            parser: ProgressParser::new(clips),
            saved: Vec::new(),
            blocked_in: None,
        }
    }

    /// The line being generated, once one has started.
    pub fn current(&self) -> Option<u32> {
        self.current
    }

    /// Lines whose outputs are saved.
    pub fn saved(&self) -> &[u32] {
        &self.saved
    }

    /// The line a guardrail block was logged in, if one was.
    pub fn blocked_in(&self) -> Option<u32> {
        self.blocked_in
    }

    pub fn feed(&mut self, line: &str) -> Option<BatchSignal> {
        let (_, msg) = log_message(line)?;
        if msg.starts_with("Running batch generation") {
            let n = self.started;
            self.started += 1;
            self.current = Some(n);
            self.parser = ProgressParser::new(self.clips);
            return self.parser.feed(line).map(|m| BatchSignal::Line(n, m));
        }
        if msg.contains("GUARDRAIL BLOCKED") && self.blocked_in.is_none() {
            self.blocked_in = self.current;
        }
        if let Some(path) = msg.strip_prefix("Saved prompt to ") {
            let n = line_of(path).or(self.current)?;
            if !self.saved.contains(&n) {
                self.saved.push(n);
            }
            return Some(BatchSignal::Saved(n));
        }
        let m = self.parser.feed(line)?;
        Some(match self.current {
            Some(n) => BatchSignal::Line(n, m),
            None => BatchSignal::All(m),
        })
    }
}

/// N of a `…/video_<N>/…` path.
fn line_of(path: &str) -> Option<u32> {
    path.split('/')
        .find_map(|part| part.strip_prefix("video_")?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InputKind, VideoInfo};

    fn file(kind: InputKind, w: u32, h: u32, frames: u64) -> InputFile {
        InputFile {
            kind,
            path: format!("/in/{kind}.mp4"),
            size: 1,
            sha256: "0".repeat(64),
            video: VideoInfo {
                width: w,
                height: h,
                frames,
                fps: 24.0,
                duration_seconds: frames as f64 / 24.0,
                codec: "h264".into(),
            },
        }
    }

    #[test]
    fn signatures_ignore_prompts_and_paths_but_not_globals_or_shapes() {
        let spec = |prompt: &str, path: &str, seed: u32| {
            json!({"prompt": prompt, "input_video_path": path, "seed": seed,
                   "edge": {"control_weight": 0.5, "input_control": format!("{path}.edge")}})
        };
        let files = [file(InputKind::Color, 1280, 704, 121)];
        let a = signature(&spec("a cat", "/r/1/color.mp4", 1), 1, &files);
        assert_eq!(a, signature(&spec("a dog", "/r/2/color.mp4", 1), 1, &files));
        assert_ne!(a, signature(&spec("a cat", "/r/1/color.mp4", 2), 1, &files));
        assert_ne!(a, signature(&spec("a cat", "/r/1/color.mp4", 1), 2, &files));
        let longer = [file(InputKind::Color, 1280, 704, 241)];
        assert_ne!(
            a,
            signature(&spec("a cat", "/r/1/color.mp4", 1), 1, &longer)
        );
        let square = [file(InputKind::Color, 960, 960, 121)];
        assert_ne!(
            a,
            signature(&spec("a cat", "/r/1/color.mp4", 1), 1, &square)
        );
        let no_control = json!({"prompt": "a", "input_video_path": "/x", "seed": 1,
                                "edge": {"control_weight": 0.5}});
        assert_ne!(a, signature(&no_control, 1, &files));
    }

    #[test]
    fn limits_follow_gpu_memory() {
        assert_eq!(batch_limit_for_memory(Some(81_559)), 7);
        assert_eq!(batch_limit_for_memory(Some(24_576)), 2);
        assert_eq!(batch_limit_for_memory(Some(4_096)), 1);
        assert_eq!(batch_limit_for_memory(Some(1 << 30)), MAX_BATCH);
        assert_eq!(batch_limit_for_memory(None), UNKNOWN_MEMORY_BATCH);
    }

    #[test]
    fn lines_are_json_objects_with_overrides() {
        let l = jsonl_line(
            "a \"quoted\" cat\nsecond line",
            Some("/r/inputs/1/color.mp4"),
            &[("edge".into(), "/r/inputs/1/edge.mp4".into())],
        );
        assert!(!l.contains('\n'));
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["prompt"], "a \"quoted\" cat\nsecond line");
        assert_eq!(v["visual_input"], "/r/inputs/1/color.mp4");
        assert_eq!(
            v["control_overrides"]["edge"]["input_control"],
            "/r/inputs/1/edge.mp4"
        );
    }

    #[test]
    fn the_log_is_split_into_lines() {
        let l = |m: &str| format!("[11-24 10:00:00|INFO|x.py:1:f] {m}");
        let mut log = BatchLog::new(1);
        let got: Vec<BatchSignal> = [
            l("Start creating base model"),
            l("Running batch generation with batch_size=1"),
            l("Starting latent encoding"),
            l("Saved video to /r/outputs/video_0/output.mp4"),
            l("Saved prompt to /r/outputs/video_0/prompt.txt"),
            l("Running batch generation with batch_size=1"),
            "[11-24 10:00:01|CRITICAL|g.py:1:f] GUARDRAIL BLOCKED: BLOCKLIST: bad".to_owned(),
        ]
        .iter()
        .filter_map(|x| log.feed(x))
        .collect();
        assert!(matches!(&got[0], BatchSignal::All(m) if m.stage == "loading model"));
        assert!(matches!(&got[1], BatchSignal::Line(0, m) if m.stage == "preparing"));
        assert!(matches!(&got[2], BatchSignal::Line(0, m) if m.clip == Some((1, 1))));
        assert!(matches!(&got[3], BatchSignal::Line(0, m) if m.stage == "saving"));
        assert_eq!(got[4], BatchSignal::Saved(0));
        assert!(matches!(&got[5], BatchSignal::Line(1, _)));
        assert_eq!(log.saved(), &[0]);
        assert_eq!(log.current(), Some(1));
        assert_eq!(log.blocked_in(), Some(1));
    }
}
