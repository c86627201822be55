//! Cosmos-Transfer2.5's spec (reference `cosmos-transfer2.5.md` §2, §4): the pydantic model
//! `examples/inference.py` validates each sample against, reproduced with pydantic v2's own
//! error text, so our checks and the simulator refuse exactly what Transfer2.5 refuses.
//!
//! Top level: `extra="forbid"` (an unknown key is an error); `name` and `video_path`
//! required; `guidance` an integer 0–7; `sigma_max` a string or null (pydantic does not
//! coerce a JSON number to `str`); `num_conditional_frames` 0, 1 or 2; at least one control
//! block of `edge`, `vis`, `depth`, `seg`, whose unknown keys are ignored.

use std::path::Path;

use serde_json::{Map, Value};

/// The control blocks Transfer2.5's general model reads, in its order (`CONTROL_KEYS`).
pub const CONTROL_KEYS: [&str; 4] = ["edge", "vis", "depth", "seg"];
/// The preset levels of `preset_edge_threshold` and `preset_blur_strength`.
pub const PRESETS: [&str; 5] = ["very_low", "low", "medium", "high", "very_high"];
/// What pydantic names the model in its error header.
pub const MODEL_NAME: &str = "InferenceArguments";
/// Upstream's defaults for what we send when a run does not choose.
pub const DEFAULT_SEED: u32 = 2025;
pub const DEFAULT_GUIDANCE: u32 = 3;
pub const DEFAULT_STEPS: u32 = 35;
pub const CHUNK_FRAMES: u32 = 93;

/// One pydantic error: where, what, its type and the input it was about.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub loc: String,
    pub msg: String,
    pub kind: &'static str,
    pub input: Value,
}

/// A sample pydantic refused: every error, rendered as pydantic renders them.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationError {
    pub errors: Vec<FieldError>,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{n} validation error{} for {MODEL_NAME}",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(
                f,
                "\n{}\n  {} [type={}, input_value={}, input_type={}]\n    For further information visit https://errors.pydantic.dev/2.11/v/{}",
                e.loc,
                e.msg,
                e.kind,
                py_repr_short(&e.input),
                crate::spec::validate::python_type(&e.input),
                e.kind
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}

/// Python's `repr` of a JSON value (strings in single quotes, `True`, `None`).
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let escaped = s
                .replace('\\', "\\\\")
                .replace('\'', "\\'")
                .replace('\n', "\\n");
            format!("'{escaped}'")
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// pydantic shortens long inputs in its messages to their first and last 50 characters.
fn py_repr_short(v: &Value) -> String {
    let full = py_repr(v);
    let chars: Vec<char> = full.chars().collect();
    if chars.len() <= 100 {
        return full;
    }
    let head: String = chars[..50].iter().collect();
    let tail: String = chars[chars.len() - 49..].iter().collect();
    format!("{head}...{tail}")
}

#[derive(Clone, Copy)]
enum Ty {
    Str,
    OptStr,
    Int,
    OptInt,
    Bool,
    Num,
    /// An existing file (pydantic's `FilePath`), relative to the spec's folder.
    File,
    OptList,
}

/// The top-level fields: name, type, and (for integers) the range.
type Field = (&'static str, Ty, Option<(i64, i64)>);

const FIELDS: &[Field] = &[
    ("name", Ty::Str, None),
    ("prompt", Ty::OptStr, None),
    ("prompt_path", Ty::OptStr, None),
    ("video_path", Ty::File, None),
    ("negative_prompt", Ty::OptStr, None),
    ("seed", Ty::Int, None),
    ("guidance", Ty::Int, Some((0, 7))),
    ("num_steps", Ty::Int, Some((1, i64::MAX))),
    ("sigma_max", Ty::OptStr, None),
    ("resolution", Ty::Str, None),
    ("num_video_frames_per_chunk", Ty::Int, Some((1, i64::MAX))),
    ("num_conditional_frames", Ty::Int, Some((0, 2))),
    ("max_frames", Ty::OptInt, None),
    ("context_frame_index", Ty::OptInt, None),
    ("image_context_path", Ty::OptStr, None),
    ("keep_input_resolution", Ty::Bool, None),
    ("show_control_condition", Ty::Bool, None),
    ("show_input", Ty::Bool, None),
    ("guided_generation_mask", Ty::OptStr, None),
    ("guided_generation_step_threshold", Ty::Int, None),
    ("guided_generation_foreground_labels", Ty::OptList, None),
];

/// The fields of a control block that have a type; others are ignored.
const CONTROL_FIELDS: &[(&str, Ty)] = &[
    ("control_path", Ty::OptStr),
    ("control_weight", Ty::Num),
    ("mask_path", Ty::OptStr),
    ("mask_prompt", Ty::OptStr),
    ("control_prompt", Ty::OptStr),
];

fn err(loc: &str, msg: impl Into<String>, kind: &'static str, input: &Value) -> FieldError {
    FieldError {
        loc: loc.to_owned(),
        msg: msg.into(),
        kind,
        input: input.clone(),
    }
}

/// pydantic's lax integer: an integer, a float without a fraction, or a string of one;
/// otherwise its message and error type.
fn as_int(v: &Value) -> Result<i64, (&'static str, &'static str)> {
    const NOT_INT: (&str, &str) = ("Input should be a valid integer", "int_type");
    match v {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(i),
            (None, Some(f)) if f.fract() == 0.0 && f.is_finite() => Ok(f as i64),
            (None, Some(_)) => Err((
                "Input should be a valid integer, got a number with a fractional part",
                "int_from_float",
            )),
            _ => Err(NOT_INT),
        },
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| {
            (
                "Input should be a valid integer, unable to parse string as an integer",
                "int_parsing",
            )
        }),
        Value::Bool(b) => Ok(i64::from(*b)),
        _ => Err(NOT_INT),
    }
}

fn check(
    loc: &str,
    ty: Ty,
    range: Option<(i64, i64)>,
    v: &Value,
    base: Option<&Path>,
) -> Option<FieldError> {
    match ty {
        Ty::OptStr | Ty::OptInt | Ty::OptList if v.is_null() => None,
        Ty::Str | Ty::OptStr => {
            (!v.is_string()).then(|| err(loc, "Input should be a valid string", "string_type", v))
        }
        Ty::Int | Ty::OptInt => match as_int(v) {
            Err((msg, kind)) => Some(err(loc, msg, kind, v)),
            Ok(i) => match range {
                Some((lo, _)) if i < lo => Some(err(
                    loc,
                    format!("Input should be greater than or equal to {lo}"),
                    "greater_than_equal",
                    v,
                )),
                Some((_, hi)) if i > hi => Some(err(
                    loc,
                    format!("Input should be less than or equal to {hi}"),
                    "less_than_equal",
                    v,
                )),
                _ => None,
            },
        },
        Ty::Bool => {
            (!v.is_boolean()).then(|| err(loc, "Input should be a valid boolean", "bool_type", v))
        }
        Ty::Num => {
            (!v.is_number()).then(|| err(loc, "Input should be a valid number", "float_type", v))
        }
        Ty::OptList => {
            (!v.is_array()).then(|| err(loc, "Input should be a valid list", "list_type", v))
        }
        Ty::File => match v.as_str() {
            None => Some(err(loc, "Input should be a valid path", "path_type", v)),
            Some(p) if base.is_none_or(|b| b.join(p).is_file()) => None,
            Some(_) => Some(err(
                loc,
                "Path does not point to a file",
                "path_not_file",
                v,
            )),
        },
    }
}

fn check_control(key: &str, v: &Value, base: Option<&Path>, out: &mut Vec<FieldError>) {
    let Some(block) = v.as_object() else {
        if !v.is_null() {
            out.push(err(
                key,
                "Input should be a valid dictionary or instance of ControlConfig",
                "model_type",
                v,
            ));
        }
        return;
    };
    for (field, ty) in CONTROL_FIELDS {
        if let Some(value) = block.get(*field)
            && let Some(e) = check(&format!("{key}.{field}"), *ty, None, value, base)
        {
            out.push(e);
        }
    }
    if let Some(w) = block.get("control_weight").and_then(Value::as_f64) {
        let loc = format!("{key}.control_weight");
        if w < 0.0 {
            out.push(err(
                &loc,
                "Input should be greater than or equal to 0",
                "greater_than_equal",
                &block["control_weight"],
            ));
        } else if w > 1.0 {
            out.push(err(
                &loc,
                "Input should be less than or equal to 1",
                "less_than_equal",
                &block["control_weight"],
            ));
        }
    }
    for preset in ["preset_edge_threshold", "preset_blur_strength"] {
        if let Some(value) = block.get(preset)
            && !value.as_str().is_some_and(|s| PRESETS.contains(&s))
        {
            out.push(err(
                &format!("{key}.{preset}"),
                "Input should be 'very_low', 'low', 'medium', 'high' or 'very_high'",
                "literal_error",
                value,
            ));
        }
    }
    if block.get("mask_path").is_some_and(|m| !m.is_null())
        && block.get("mask_prompt").is_some_and(|m| !m.is_null())
    {
        out.push(err(
            key,
            "Value error, Only one of mask_path or mask_prompt can be provided",
            "value_error",
            v,
        ));
    }
}

/// Validates one sample as `examples/inference.py` does; relative paths are resolved
/// against `base` (the spec file's folder).
pub fn validate(sample: &Value, base: &Path) -> Result<(), ValidationError> {
    validate_in(sample, Some(base))
}

/// [`validate`] for a spec whose files are elsewhere (on a target): every check but that
/// `video_path` exists.
pub fn validate_shape(sample: &Value) -> Result<(), ValidationError> {
    validate_in(sample, None)
}

fn validate_in(sample: &Value, base: Option<&Path>) -> Result<(), ValidationError> {
    let Some(map) = sample.as_object() else {
        return Err(ValidationError {
            errors: vec![err(
                "",
                format!("Input should be a valid dictionary or instance of {MODEL_NAME}"),
                "model_type",
                sample,
            )],
        });
    };
    let mut errors = Vec::new();
    for (field, ty, range) in FIELDS {
        match map.get(*field) {
            Some(v) => {
                if let Some(e) = check(field, *ty, *range, v, base) {
                    errors.push(e);
                }
            }
            None if matches!(field, &"name" | &"video_path") => {
                errors.push(err(field, "Field required", "missing", sample));
            }
            None => {}
        }
    }
    for key in CONTROL_KEYS {
        if let Some(v) = map.get(key) {
            check_control(key, v, base, &mut errors);
        }
    }
    let known = |k: &str| FIELDS.iter().any(|(f, ..)| *f == k) || CONTROL_KEYS.contains(&k);
    for (k, v) in map {
        if !known(k) {
            errors.push(err(
                k,
                "Extra inputs are not permitted",
                "extra_forbidden",
                v,
            ));
        }
    }
    if errors.is_empty() {
        // The model's own checks, once every field has its type.
        let has = |k: &str| map.get(k).is_some_and(|v| !v.is_null());
        if !CONTROL_KEYS.iter().any(|k| has(k)) {
            errors.push(err(
                "",
                format!(
                    "Value error, No controls provided, please provide at least one of {}",
                    CONTROL_KEYS.join(", ")
                ),
                "value_error",
                sample,
            ));
        } else if !has("prompt") && !has("prompt_path") {
            errors.push(err(
                "",
                "Value error, Either prompt or prompt_path must be provided",
                "value_error",
                sample,
            ));
        } else if has("prompt") && has("prompt_path") {
            errors.push(err(
                "",
                "Value error, Only one of prompt or prompt_path can be provided",
                "value_error",
                sample,
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        // pydantic names model-level errors by no field.
        for e in &mut errors {
            if e.loc.is_empty() {
                e.loc = String::new();
            }
        }
        Err(ValidationError { errors })
    }
}

/// The controls a validated sample uses, in Transfer2.5's order.
pub fn controls_of(sample: &Map<String, Value>) -> Vec<&'static str> {
    CONTROL_KEYS
        .into_iter()
        .filter(|k| sample.get(*k).is_some_and(|v| !v.is_null()))
        .collect()
}

/// How many chunks Transfer2.5 generates for `frames` input frames (`_get_num_chunks`).
pub fn chunk_count(frames: u32, chunk: u32, conditional: u32) -> u32 {
    let chunk = chunk.max(1);
    if frames <= chunk {
        return 1;
    }
    let stride = chunk.saturating_sub(conditional).max(1);
    1 + (frames - chunk).div_ceil(stride)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("in.mp4"), b"x").expect("video");
        let p = dir.path().to_path_buf();
        (dir, p)
    }

    #[test]
    fn the_minimal_documented_spec_is_valid() {
        let (_d, b) = base();
        let spec = json!({"name": "shot010_s7", "prompt": "a street", "video_path": "in.mp4",
            "seed": 7, "guidance": 3, "num_steps": 35,
            "depth": {"control_path": "in.mp4", "control_weight": 0.5},
            "edge": {"control_weight": 0.5, "preset_edge_threshold": "medium"}});
        validate(&spec, &b).expect("valid");
        assert_eq!(
            controls_of(spec.as_object().expect("map")),
            ["edge", "depth"]
        );
    }

    #[test]
    fn refusals_read_as_pydantic_writes_them() {
        let (_d, b) = base();
        let e = validate(&json!({"prompt": "p", "edge": {}, "output_dir": "o"}), &b).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("3 validation errors for InferenceArguments\nname\n  Field required [type=missing, input_value={'prompt': 'p', 'edge': {}, 'output_dir': 'o'}, input_type=dict]"), "{text}");
        assert!(
            text.contains("\nvideo_path\n  Field required [type=missing"),
            "{text}"
        );
        assert!(text.contains("\noutput_dir\n  Extra inputs are not permitted [type=extra_forbidden, input_value='o', input_type=str]"), "{text}");

        let ok = json!({"name": "n", "prompt": "p", "video_path": "in.mp4", "edge": {}});
        let with = |k: &str, v: Value| {
            let mut s = ok.clone();
            s[k] = v;
            validate(&s, &b).unwrap_err().to_string()
        };
        assert!(with("guidance", json!(3.5)).contains("guidance\n  Input should be a valid integer, got a number with a fractional part [type=int_from_float, input_value=3.5, input_type=float]"));
        assert!(
            with("guidance", json!(8))
                .contains("Input should be less than or equal to 7 [type=less_than_equal")
        );
        assert!(with("sigma_max", json!(70)).contains("sigma_max\n  Input should be a valid string [type=string_type, input_value=70, input_type=int]"));
        assert!(with("video_path", json!("gone.mp4")).contains("video_path\n  Path does not point to a file [type=path_not_file, input_value='gone.mp4'"));
        assert!(
            with("edge", json!({"control_weight": 1.5}))
                .contains("edge.control_weight\n  Input should be less than or equal to 1")
        );
        assert!(with("num_conditional_frames", json!(3)).contains("less_than_equal"));
        let none = validate(
            &json!({"name": "n", "prompt": "p", "video_path": "in.mp4"}),
            &b,
        )
        .unwrap_err();
        assert!(none.to_string().contains("No controls provided"), "{none}");
        // Unknown keys inside a block are ignored, as upstream does.
        let mut loose = ok.clone();
        loose["edge"] = json!({"threshold": 3});
        validate(&loose, &b).expect("ignored");
    }

    #[test]
    fn chunks_follow_upstream() {
        assert_eq!(chunk_count(93, 93, 1), 1);
        assert_eq!(chunk_count(121, 93, 1), 2);
        assert_eq!(chunk_count(300, 93, 1), 1 + (207_u32).div_ceil(92));
    }
}
