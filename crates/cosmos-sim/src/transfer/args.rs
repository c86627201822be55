//! `transfer.py`'s arguments (reference §1.1) and how the spec's scalar keys override them.

use serde_json::{Map, Value};

use crate::argparse::{Kind, Opt, Parser};
use crate::python::{Raised, frame, py_str};

pub const DEFAULT_PROMPT: &str = "The video captures a stunning, photorealistic scene with remarkable attention to detail, giving it a lifelike appearance that is almost indistinguishable from reality. It appears to be from a high-budget 4K movie, showcasing ultra-high-definition quality with impeccable resolution.";
pub const DEFAULT_NEGATIVE_PROMPT: &str = "The video captures a game playing, with bad crappy graphics and cartoonish frames. It represents a recording of old outdated games. The lighting looks very fake. The textures are very raw and basic. The geometries are very primitive. The images are very pixelated and of poor CG quality. There are many subtitles in the footage. Overall, the video is unrealistic at all.";

const PRESETS: &[&str] = &["very_low", "low", "medium", "high", "very_high"];

pub fn parser() -> Parser {
    let flags = [
        "--is_av_sample",
        "--offload_diffusion_transformer",
        "--offload_text_encoder_model",
        "--offload_guardrail_models",
        "--upsample_prompt",
        "--offload_prompt_upsampler",
        "--use_distilled",
        "--save_input_noise",
        "--benchmark",
    ];
    let mut opts = vec![
        Opt::new("--prompt", Kind::Str, DEFAULT_PROMPT.into()),
        Opt::new(
            "--negative_prompt",
            Kind::Str,
            DEFAULT_NEGATIVE_PROMPT.into(),
        ),
        Opt::new("--input_video_path", Kind::Str, "".into()),
        Opt::new("--num_input_frames", Kind::IntChoice(&[1]), Value::from(1)),
        Opt::new("--sigma_max", Kind::Float, Value::from(70.0)),
        Opt::new("--blur_strength", Kind::Choice(PRESETS), "medium".into()),
        Opt::new("--canny_threshold", Kind::Choice(PRESETS), "medium".into()),
        Opt::new("--controlnet_specs", Kind::Str, Value::Null).required(),
        Opt::new("--checkpoint_dir", Kind::Str, "checkpoints".into()),
        Opt::new(
            "--tokenizer_dir",
            Kind::Str,
            "Cosmos-Tokenize1-CV8x8x8-720p".into(),
        ),
        Opt::new("--video_save_name", Kind::Str, "output".into()),
        Opt::new("--video_save_folder", Kind::Str, "outputs/".into()),
        Opt::new("--batch_input_path", Kind::Str, Value::Null),
        Opt::new("--batch_size", Kind::Int, Value::from(1)),
        Opt::new("--num_steps", Kind::Int, Value::from(35)),
        Opt::new("--guidance", Kind::Float, Value::from(5)),
        Opt::new("--fps", Kind::Int, Value::from(24)),
        Opt::new("--seed", Kind::Int, Value::from(1)),
        Opt::new("--num_gpus", Kind::Int, Value::from(1)),
    ];
    opts.extend(flags.into_iter().map(Opt::flag));
    Parser::new("transfer.py", opts)
}

/// transfer.py's `setattr(cfg, key, value)` for each json arg, unless `--key` was typed
/// literally (space-separated) on the command line.
pub fn merge_json_args(
    cfg: &mut Map<String, Value>,
    json_args: &Map<String, Value>,
    argv: &[String],
) {
    for (key, value) in json_args {
        let literal = format!("--{key}");
        if !argv.contains(&literal) {
            cfg.insert(key.clone(), value.clone());
        }
    }
}

/// Typed views of the merged arguments; a JSON value of the wrong type fails where Python's
/// arithmetic would.
#[derive(Debug)]
pub struct Cfg(pub Map<String, Value>);

impl Cfg {
    pub fn value(&self, key: &str) -> &Value {
        self.0.get(key).unwrap_or(&Value::Null)
    }

    pub fn text(&self, key: &str) -> String {
        py_str(self.value(key))
    }

    /// Python truthiness.
    pub fn flag(&self, key: &str) -> bool {
        match self.value(key) {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        }
    }

    pub fn number(&self, key: &str) -> Result<f64, Raised> {
        match self.value(key) {
            Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
            Value::Bool(b) => Ok(f64::from(u8::from(*b))),
            other => Err(Raised::new(
                "TypeError",
                format!(
                    "unsupported operand type(s) for +: '{}' and 'int'",
                    match other {
                        Value::String(_) => "str",
                        Value::Null => "NoneType",
                        Value::Array(_) => "list",
                        _ => "dict",
                    }
                ),
                &[frame(
                    crate::log::src::TRANSFER,
                    228,
                    "demo",
                    "misc.set_random_seed(cfg.seed)",
                )],
            )),
        }
    }

    pub fn int(&self, key: &str) -> Result<i64, Raised> {
        self.number(key).map(|n| n as i64)
    }
}
