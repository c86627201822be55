//! Cosmos-Transfer1's spec loading and validation (`load_controlnet_specs` and
//! `validate_controlnet_specs` in `inference_utils.py`), step by step and with the same
//! messages, so our checks and the simulator fail exactly where Cosmos would.

use std::fmt;

use serde_json::{Map, Value};

/// Hint keys exactly as Cosmos spells them, in its order.
pub const VALID_HINT_KEYS: [&str; 8] = [
    "vis", "seg", "edge", "depth", "keypoint", "upscale", "hdmap", "lidar",
];

/// A spec's top level, or one part of it.
pub type SpecMap = Map<String, Value>;

/// An exception Cosmos raises while reading a spec: the Python type and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosmosError {
    pub exception: &'static str,
    pub message: String,
}

impl CosmosError {
    fn value(message: String) -> Self {
        Self {
            exception: "ValueError",
            message,
        }
    }

    fn type_error(message: String) -> Self {
        Self {
            exception: "TypeError",
            message,
        }
    }
}

impl fmt::Display for CosmosError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CosmosError {}

/// A line Cosmos logs while validating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecLog {
    pub level: &'static str,
    pub message: String,
}

fn valid_keys_text() -> String {
    let quoted: Vec<String> = VALID_HINT_KEYS.iter().map(|k| format!("'{k}'")).collect();
    format!("{{{}}}", quoted.join(", "))
}

/// Splits a spec's top level as `load_controlnet_specs` does: hint keys become control
/// blocks, any other object-valued key is an error, every other key is a "json arg" that
/// overrides the command line's default.
pub fn split_spec(spec: &Map<String, Value>) -> Result<(SpecMap, SpecMap), CosmosError> {
    let mut controls = Map::new();
    let mut args = Map::new();
    for (key, value) in spec {
        if VALID_HINT_KEYS.contains(&key.as_str()) {
            controls.insert(key.clone(), value.clone());
        } else if value.is_object() {
            return Err(CosmosError::value(format!(
                "Invalid hint_key: {key}. Must be one of {}",
                valid_keys_text()
            )));
        } else {
            args.insert(key.clone(), value.clone());
        }
    }
    Ok((controls, args))
}

/// The name of a JSON value's Python type, as error messages print it.
pub(crate) fn python_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Python truthiness of `input_video_path`.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python's `key in container` for a block that may not be a dict.
fn contains(block: &Value, key: &str) -> Result<bool, CosmosError> {
    match block {
        Value::Object(o) => Ok(o.contains_key(key)),
        Value::String(s) => Ok(s.contains(key)),
        Value::Array(a) => Ok(a.iter().any(|v| v.as_str() == Some(key))),
        other => Err(CosmosError::type_error(format!(
            "argument of type '{}' is not iterable",
            python_type(other)
        ))),
    }
}

/// Python's `float(x)`.
fn python_float(v: &Value) -> Result<f64, CosmosError> {
    match v {
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| CosmosError::value(format!("could not convert string to float: '{s}'"))),
        other => Err(CosmosError::type_error(format!(
            "float() argument must be a string or a real number, not '{}'",
            python_type(other)
        ))),
    }
}

/// Default control checkpoint per hint, relative to `--checkpoint_dir`.
fn default_checkpoint(hint: &str) -> String {
    match hint {
        "hdmap" | "lidar" => format!("nvidia/Cosmos-Transfer1-7B-Sample-AV/{hint}_control.pt"),
        "upscale" => "nvidia/Cosmos-Transfer1-7B/4kupscaler_control.pt".to_owned(),
        _ => format!("nvidia/Cosmos-Transfer1-7B/{hint}_control.pt"),
    }
}

/// `validate_controlnet_specs`: checks each block in order, filling in the default checkpoint
/// and weight as Cosmos does, and returns what Cosmos logs on the way.
pub fn validate_controls(
    controls: &mut Map<String, Value>,
    input_video_path: &Value,
    sigma_max: &Value,
    checkpoint_dir: &str,
) -> Result<Vec<SpecLog>, CosmosError> {
    let mut logs = Vec::new();
    let has_input = truthy(input_video_path);
    for (hint, block) in controls.iter_mut() {
        if !VALID_HINT_KEYS.contains(&hint.as_str()) {
            return Err(CosmosError::value(format!(
                "Invalid hint_key: {hint}. Must be one of {}",
                valid_keys_text()
            )));
        }
        if !has_input {
            let sigma = match sigma_max {
                Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                Value::Bool(b) => f64::from(u8::from(*b)),
                other => {
                    return Err(CosmosError::type_error(format!(
                        "'<' not supported between instances of '{}' and 'int'",
                        python_type(other)
                    )));
                }
            };
            if sigma < 80.0 {
                return Err(CosmosError::value(
                    "Must have 'input_video' specified if sigma_max < 80".to_owned(),
                ));
            }
        }
        if !has_input && !contains(block, "input_control")? {
            return Err(CosmosError::value(format!(
                "{hint} controlnet must have 'input_control' video specified if no 'input_video' specified."
            )));
        }
        if !contains(block, "ckpt_path")? {
            let Value::Object(obj) = block else {
                let msg = match block {
                    Value::Array(_) => "list indices must be integers or slices, not str".into(),
                    other => format!(
                        "'{}' object does not support item assignment",
                        python_type(other)
                    ),
                };
                return Err(CosmosError::type_error(msg));
            };
            logs.push(SpecLog {
                level: "INFO",
                message: format!("No checkpoint path specified for {hint}. Using default."),
            });
            let path = format!(
                "{}/{}",
                checkpoint_dir.trim_end_matches('/'),
                default_checkpoint(hint)
            );
            logs.push(SpecLog {
                level: "INFO",
                message: format!("Using default checkpoint path: {path}"),
            });
            obj.insert("ckpt_path".into(), Value::String(path));
        }
        let Value::Object(obj) = block else {
            return Err(CosmosError::type_error(format!(
                "'{}' object is not subscriptable",
                python_type(block)
            )));
        };
        match obj.get("control_weight") {
            None => {
                logs.push(SpecLog {
                    level: "WARNING",
                    message: format!("No control weight specified for {hint}. Setting to 0.5."),
                });
                obj.insert("control_weight".into(), Value::String("0.5".into()));
            }
            Some(Value::String(s)) if s.ends_with(".pt") => {}
            Some(weight) => {
                let invalid = || {
                    CosmosError::value(format!(
                        "Control weight for {hint} must be a valid non-negative float or a path to a .pt file."
                    ))
                };
                match python_float(weight) {
                    Ok(x) if x < 0.0 => return Err(invalid()),
                    Ok(_) => {}
                    Err(e) if e.exception == "ValueError" => return Err(invalid()),
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(logs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(spec: Value, input: Value, sigma: Value) -> Result<Vec<SpecLog>, CosmosError> {
        let (mut controls, _) = split_spec(spec.as_object().unwrap())?;
        validate_controls(&mut controls, &input, &sigma, "checkpoints")
    }

    #[test]
    fn every_cosmos_rule_gives_cosmos_message() {
        let with_input = json!("in.mp4");
        let none = json!("");
        let cases: Vec<(Value, Value, Value, Result<(), &str>)> = vec![
            (
                json!({"edge": {"control_weight": 1.0}}),
                with_input.clone(),
                json!(70.0),
                Ok(()),
            ),
            (
                json!({"colour": {"control_weight": 1.0}}),
                with_input.clone(),
                json!(70.0),
                Err(
                    "Invalid hint_key: colour. Must be one of {'vis', 'seg', 'edge', 'depth', 'keypoint', 'upscale', 'hdmap', 'lidar'}",
                ),
            ),
            (
                json!({"edge": {"control_weight": 1.0, "input_control": "e.mp4"}}),
                none.clone(),
                json!(70.0),
                Err("Must have 'input_video' specified if sigma_max < 80"),
            ),
            (
                json!({"depth": {"control_weight": 1.0}}),
                none.clone(),
                json!(80.0),
                Err(
                    "depth controlnet must have 'input_control' video specified if no 'input_video' specified.",
                ),
            ),
            (
                json!({"hdmap": {"control_weight": 0.3, "input_control": "h.mp4"}}),
                json!(null),
                json!(80),
                Ok(()),
            ),
            (
                json!({"seg": {"control_weight": -0.1}}),
                with_input.clone(),
                json!(70.0),
                Err(
                    "Control weight for seg must be a valid non-negative float or a path to a .pt file.",
                ),
            ),
            (
                json!({"seg": {"control_weight": "heavy"}}),
                with_input.clone(),
                json!(70.0),
                Err(
                    "Control weight for seg must be a valid non-negative float or a path to a .pt file.",
                ),
            ),
            (
                json!({"seg": {"control_weight": "0.25"}}),
                with_input.clone(),
                json!(70.0),
                Ok(()),
            ),
            (
                json!({"seg": {"control_weight": "mask.pt"}}),
                with_input.clone(),
                json!(70.0),
                Ok(()),
            ),
            (
                json!({"vis": {"control_weight": null}}),
                with_input.clone(),
                json!(70.0),
                Err("float() argument must be a string or a real number, not 'NoneType'"),
            ),
            (
                json!({"vis": 0.5}),
                with_input.clone(),
                json!(70.0),
                Err("argument of type 'float' is not iterable"),
            ),
            // Scalar keys that are not hints are json args, not errors.
            (
                json!({"prompt": "p", "seed": 3, "vis": {}}),
                with_input.clone(),
                json!(70.0),
                Ok(()),
            ),
        ];
        for (spec, input, sigma, want) in cases {
            let got = check(spec.clone(), input, sigma)
                .map(|_| ())
                .map_err(|e| e.message);
            assert_eq!(got, want.map_err(str::to_owned), "{spec}");
        }
    }

    #[test]
    fn defaults_are_filled_and_logged_as_cosmos_does() {
        let spec = json!({"vis": {}, "hdmap": {"control_weight": 0.2, "ckpt_path": "x.pt"}});
        let (mut controls, _) = split_spec(spec.as_object().unwrap()).unwrap();
        let logs = validate_controls(
            &mut controls,
            &json!("in.mp4"),
            &json!(70.0),
            "checkpoints/",
        )
        .unwrap();
        let messages: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "No checkpoint path specified for vis. Using default.",
                "Using default checkpoint path: checkpoints/nvidia/Cosmos-Transfer1-7B/vis_control.pt",
                "No control weight specified for vis. Setting to 0.5.",
            ]
        );
        assert_eq!(logs[2].level, "WARNING");
        assert_eq!(controls["vis"]["control_weight"], json!("0.5"));
        assert_eq!(controls["hdmap"]["ckpt_path"], json!("x.pt"));
    }
}
