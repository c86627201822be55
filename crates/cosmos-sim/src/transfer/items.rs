//! The videos one invocation generates: the single `--input_video_path` job or one per line
//! of `--batch_input_path` (reference §3), and the preprocessing each gets (§2.6).

use std::path::Path;

use serde_json::{Map, Value};

use crate::knobs::Knobs;
use crate::log::{self, site, src};
use crate::mp4::{self, ProbeError};
use crate::python::{Failure, Frame, Raised, frame, py_str};
use crate::record::Record;
use crate::transfer::args::Cfg;

/// Hints Cosmos generates from the input video when `input_control` is missing, and the
/// model its preprocessor names.
const GENERATED: [(&str, &str); 5] = [
    ("depth", "DepthAnythingModel"),
    ("seg", "SAM"),
    ("keypoint", "Openpose"),
    ("vis", "VisControlModel"),
    ("edge", "EdgeControlModel"),
];

const READ_VIDEO: Frame = frame(
    src::UTILS,
    700,
    "read_video_or_image_into_frames_BCTHW",
    "reader = imageio.get_reader(input_path, \"ffmpeg\")",
);
const PREPROCESS: Frame = frame(
    src::PREPROCESSORS,
    64,
    "__call__",
    "assert os.path.exists(input_video)",
);
const READ_BATCH: Frame = frame(
    "cosmos_transfer1/utils/io.py",
    31,
    "read_prompts_from_file",
    "prompts.append(json.loads(line.strip()))",
);

/// One video to generate.
#[derive(Debug, Clone)]
pub struct Item {
    pub prompt: Option<String>,
    /// `None` for a batch line without `visual_input` (Cosmos does not fall back to the
    /// global `--input_video_path`: `p.get("visual_input", None)`).
    pub input_video: Option<String>,
    pub controls: Map<String, Value>,
    /// Where its intermediates go.
    pub save_dir: String,
    /// Frames generated (the shortest input), set by `preprocess`.
    pub frames: u64,
    /// The file whose bytes become the output video.
    pub source: Option<String>,
}

/// `os.path.join(dir, name)`.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

pub fn single(cfg: &Cfg, controls: &Map<String, Value>) -> Item {
    Item {
        prompt: match cfg.value("prompt") {
            Value::Null => None,
            v => Some(py_str(v)),
        },
        input_video: Some(cfg.text("input_video_path")),
        controls: controls.clone(),
        save_dir: cfg.text("video_save_folder"),
        frames: 0,
        source: None,
    }
}

/// Reads the JSONL batch file, applying each line's `control_overrides`.
pub fn batch(
    path: &str,
    cfg: &Cfg,
    controls: &Map<String, Value>,
    record: &mut Record,
) -> Result<Vec<Item>, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|_| Raised::file_not_found(path, &[READ_BATCH]))?;
    record.batch_sha256 = Some(cosmos_core::sha256::hex_digest(text.as_bytes()));
    let folder = cfg.text("video_save_folder");
    let mut items = Vec::new();
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    for (index, line) in lines.into_iter().enumerate() {
        let trimmed = line.trim();
        let parsed: Value = serde_json::from_str(trimmed).map_err(|e| {
            let col = if trimmed.is_empty() {
                1
            } else {
                e.column().max(1)
            };
            Raised::new(
                "json.decoder.JSONDecodeError",
                format!("Expecting value: line 1 column {col} (char {})", col - 1),
                &[READ_BATCH],
            )
        })?;
        let Value::Object(obj) = parsed else {
            return Err(Raised::new(
                "AttributeError",
                format!(
                    "'{}' object has no attribute 'get'",
                    if parsed.is_array() { "list" } else { "str" }
                ),
                &[frame(
                    src::TRANSFER,
                    300,
                    "demo",
                    "input_video = prompt_entry.get(\"visual_input\")",
                )],
            )
            .into());
        };
        let mut item_controls = controls.clone();
        if let Some(Value::Object(overrides)) = obj.get("control_overrides") {
            for (hint, fields) in overrides {
                match (item_controls.get_mut(hint), fields) {
                    (Some(Value::Object(block)), Value::Object(fields)) => {
                        for (k, v) in fields {
                            block.insert(k.clone(), v.clone());
                        }
                    }
                    (Some(_), _) => {
                        return Err(Raised::new(
                            "TypeError",
                            "'NoneType' object is not iterable",
                            &[frame(
                                src::TRANSFER,
                                312,
                                "demo",
                                "current_control_inputs[hint_key].update(override)",
                            )],
                        )
                        .into());
                    }
                    (None, _) => log::warning(
                        site(src::TRANSFER, 309, "demo"),
                        &format!("Ignoring unknown control key in override: {hint}"),
                    ),
                }
            }
        }
        items.push(Item {
            prompt: obj.get("prompt").filter(|p| !p.is_null()).map(py_str),
            input_video: obj.get("visual_input").filter(|v| !v.is_null()).map(py_str),
            controls: item_controls,
            save_dir: join(&folder, &format!("video_{index}")),
            frames: 0,
            source: None,
        });
    }
    Ok(items)
}

fn frames_of(path: &str, knobs: &Knobs) -> Result<u64, Raised> {
    match mp4::probe(Path::new(path)) {
        Ok(facts) => Ok(facts.frames),
        Err(ProbeError::NotAVideo(why)) => knobs.frames.ok_or_else(|| {
            Raised::new(
                "OSError",
                format!(
                    "Could not load meta information\n=== stderr ===\n\n{path}: Invalid data found when processing input ({why})"
                ),
                &[READ_VIDEO],
            )
        }),
        Err(ProbeError::Io) => Err(Raised::file_not_found(path, &[READ_VIDEO])),
    }
}

fn copy(from: &str, to: &str) -> Result<(), Raised> {
    if let Some(parent) = Path::new(to).parent() {
        std::fs::create_dir_all(parent).map_err(|e| os_error(to, &e))?;
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| os_error(to, &e))
}

pub fn os_error(path: &str, e: &std::io::Error) -> Raised {
    let errno = e.raw_os_error().unwrap_or(5);
    let text = match e.kind() {
        std::io::ErrorKind::StorageFull => "No space left on device".to_owned(),
        std::io::ErrorKind::PermissionDenied => "Permission denied".to_owned(),
        _ => e.to_string(),
    };
    Raised::new("OSError", format!("[Errno {errno}] {text}: '{path}'"), &[]).kind("os_error")
}

/// `Preprocessors.__call__`: generates missing control videos from the input video (one file
/// per rank, as every rank runs it), then reads every video to fix the frame count.
pub fn preprocess(item: &mut Item, cfg: &Cfg, knobs: &Knobs, ranks: u32) -> Result<(), Failure> {
    log::info(
        site(src::PREPROCESSORS, 52, "__call__"),
        "running preprocessor",
    );
    let given = item.input_video.clone();
    let input = given.clone().unwrap_or_default();
    let input_exists = !input.is_empty() && Path::new(&input).is_file();
    for (hint, model) in GENERATED {
        let Some(Value::Object(block)) = item.controls.get_mut(hint) else {
            continue;
        };
        if !block.get("input_control").is_none_or(Value::is_null) {
            continue;
        }
        if given.is_none() {
            // `os.path.exists(None)`.
            return Err(Raised::new(
                "TypeError",
                "stat: path should be string, bytes, os.PathLike or integer, not NoneType",
                &[PREPROCESS],
            )
            .into());
        }
        if !input_exists {
            return Err(Raised::new("AssertionError", "", &[PREPROCESS])
                .kind("missing_file")
                .into());
        }
        log::info(
            site(src::PREPROCESSORS, 71, "__call__"),
            &format!(
                "no input_control provided for {hint}. generating input control video with {model}"
            ),
        );
        for rank in 0..ranks {
            let made = join(&item.save_dir, &format!("{hint}_input_control_{rank}.mp4"));
            copy(&input, &made)?;
        }
        // Each rank reads its own file; rank 0's is the one that shapes the output.
        let made = join(&item.save_dir, &format!("{hint}_input_control_0.mp4"));
        block.insert("input_control".into(), Value::String(made));
    }
    let needs_input =
        cfg.number("sigma_max").is_ok_and(|s| s < 80.0) || item.controls.contains_key("upscale");
    let mut videos = Vec::new();
    // Without an input video at all, generation starts from noise: only the controls shape it.
    if given.is_some() && (needs_input || input_exists) {
        if !input_exists {
            return Err(Raised::file_not_found(&input, &[READ_VIDEO]).into());
        }
        videos.push(input.clone());
    }
    for (hint, block) in &item.controls {
        match block.get("input_control") {
            Some(Value::String(path)) => {
                if !Path::new(path).is_file() {
                    return Err(Raised::file_not_found(path, &[READ_VIDEO]).into());
                }
                videos.push(path.clone());
            }
            Some(Value::Null) | None if hint == "hdmap" || hint == "lidar" => {
                return Err(Raised::new(
                    "KeyError",
                    "'input_control'",
                    &[frame(
                        src::UTILS,
                        880,
                        "get_ctrl_batch",
                        "control_input = control_inputs[hint_key][\"input_control\"]",
                    )],
                )
                .into());
            }
            _ => {}
        }
    }
    let mut frames = None::<u64>;
    for video in &videos {
        let n = frames_of(video, knobs)?;
        frames = Some(frames.map_or(n, |f| f.min(n)));
    }
    item.frames = frames.unwrap_or(0).min(cosmos_core::resolution::MAX_FRAMES);
    item.source = videos.first().cloned();
    Ok(())
}
