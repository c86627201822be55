//! The Pixtral prompt upsampler, inside `transfer.py` (`--upsample_prompt`) and standalone
//! (`upsampler_pipeline.py --prompt P --input_video V`): a deterministic, richer prompt.

use std::path::Path;

use serde_json::Value;

use crate::argparse::{Kind, Opt, Parser};
use crate::knobs::Knobs;
use crate::log;
use crate::python::{Failure, Raised, frame};
use crate::script::Worker;

pub const CHECKPOINT: &str = "nvidia/Cosmos-UpsamplePrompt1-12B-Transfer";
const SCRIPT: &str = "cosmos_transfer1/auxiliary/upsampler/inference/upsampler_pipeline.py";

/// What the upsampler makes of `prompt` (an empty prompt asks it to describe the frames).
pub fn upsample(prompt: &str) -> String {
    let prompt = prompt.trim();
    let base = if prompt.is_empty() {
        "A scene described from the first frames of the control video".to_owned()
    } else {
        prompt.trim_end_matches('.').to_owned()
    };
    format!(
        "{base}. The camera moves smoothly through the scene, which is rendered in photorealistic detail with natural lighting, realistic materials and crisp textures."
    )
}

/// `KeyError: 'RANK'`: the upsampler reads torchrun's environment.
pub fn require_rank(worker: &Worker) -> Result<(), Failure> {
    if worker.has_rank {
        Ok(())
    } else {
        Err(Raised::new(
            "KeyError",
            "'RANK'",
            &[frame(
                SCRIPT,
                112,
                "<module>",
                "rank = int(os.environ[\"RANK\"])",
            )],
        )
        .into())
    }
}

fn parser() -> Parser {
    Parser::new(
        "upsampler_pipeline.py",
        vec![
            Opt::new("--prompt", Kind::Str, Value::Null),
            Opt::new("--input_video", Kind::Str, Value::Null).required(),
            Opt::new("--checkpoint_dir", Kind::Str, "checkpoints".into()),
            Opt::flag("--offload_prompt_upsampler"),
        ],
    )
}

/// The standalone pipeline: prints `Upsampled prompt: …` on stdout.
pub fn main(args: &[String], worker: &Worker, knobs: &Knobs) -> Result<(), Failure> {
    let parsed = parser().parse(args, false).map_err(Failure::Args)?;
    let v = &parsed.values;
    require_rank(worker)?;
    let ckpt_dir = v["checkpoint_dir"].as_str().unwrap_or("checkpoints");
    let ckpt = format!("{}/{CHECKPOINT}", ckpt_dir.trim_end_matches('/'));
    if !Path::new(&ckpt).is_dir() {
        return Err(Raised::file_not_found(
            &ckpt,
            &[frame(
                log::src::UPSAMPLER,
                41,
                "__init__",
                "self.model = LLM(model=checkpoint_dir, …)",
            )],
        )
        .into());
    }
    let video = v["input_video"].as_str().unwrap_or_default();
    if !Path::new(video).is_file() {
        return Err(Raised::file_not_found(
            video,
            &[frame(
                "cosmos_transfer1/utils/misc.py",
                380,
                "extract_video_frames",
                "cap = cv2.VideoCapture(video_path)",
            )],
        )
        .into());
    }
    std::thread::sleep(knobs.load);
    let prompt = v["prompt"].as_str().unwrap_or_default();
    log::print(&format!("Upsampled prompt: {}", upsample(prompt)));
    Ok(())
}
