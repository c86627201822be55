//! Builds the spec JSON for a transfer run.

use serde_json::{Map, Value, json};

use super::{SpecError, split_spec, validate_controls};
use crate::modality::Hint;
use crate::run::RunParams;

/// What a transfer spec is made from. Paths are as the model process will see them.
#[derive(Debug, Clone)]
pub struct TransferSpecInput<'a> {
    pub prompt: &'a str,
    pub negative_prompt: Option<&'a str>,
    pub params: &'a RunParams,
    /// The colour video (`input_video_path`), when the input set has one.
    pub input_video: Option<&'a str>,
    /// Control videos the input set supplies, by hint.
    pub controls: &'a [(Hint, String)],
}

/// A built spec: the JSON `transfer.py` reads and what the user should know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferSpec {
    pub json: Value,
    /// The run needs the Sample-AV base model (`--is_av_sample`).
    pub is_av: bool,
    /// Things Cosmos will do that the user may not expect (normalised weights, generated
    /// controls). Reported, not rejected.
    pub notes: Vec<String>,
}

/// The top-level scalars every spec carries, in the order Cosmos documents them: prompt,
/// negative prompt, input video, sigma_max, seed, guidance, steps, fps.
fn scalars(input: &TransferSpecInput<'_>, video: Option<&str>) -> Map<String, Value> {
    let params = input.params;
    let mut spec = Map::new();
    spec.insert("prompt".into(), json!(input.prompt));
    if let Some(negative) = input.negative_prompt {
        spec.insert("negative_prompt".into(), json!(negative));
    }
    if let Some(video) = video {
        spec.insert("input_video_path".into(), json!(video));
    }
    spec.insert("sigma_max".into(), json!(params.sigma_max));
    spec.insert("seed".into(), json!(params.seed));
    spec.insert("guidance".into(), json!(params.guidance));
    spec.insert("num_steps".into(), json!(params.steps));
    spec.insert("fps".into(), json!(params.fps));
    spec
}

/// Cosmos's own checks, run on exactly what we will send.
fn cosmos_checks(spec: &Map<String, Value>, sigma_max: f64) -> Result<(), SpecError> {
    let (mut controls, args) = split_spec(spec)?;
    let input_video = args.get("input_video_path").cloned().unwrap_or(json!(""));
    validate_controls(
        &mut controls,
        &input_video,
        &json!(sigma_max),
        "checkpoints",
    )?;
    Ok(())
}

/// Builds and validates the spec for one transfer run. Every parameter goes into the JSON
/// (Cosmos applies top-level scalars over its defaults), so the prompt never appears on a
/// command line.
pub fn build_transfer_spec(input: &TransferSpecInput<'_>) -> Result<TransferSpec, SpecError> {
    let params = input.params;
    params.validate()?;
    if params.weights.is_empty() {
        return Err(SpecError::NoWeights);
    }
    if params.weights.get(Hint::Upscale).is_some() {
        return Err(SpecError::UpscaleInTransfer);
    }
    let av = params.weights.iter().map(|(h, _)| h).find(|h| h.is_av());
    let general = params.weights.iter().map(|(h, _)| h).find(|h| !h.is_av());
    if let (Some(av), Some(general)) = (av, general) {
        return Err(SpecError::MixedModels { av, general });
    }

    let mut spec = scalars(input, input.input_video);
    spec.insert("blur_strength".into(), json!(params.blur_strength.as_str()));
    spec.insert(
        "canny_threshold".into(),
        json!(params.canny_threshold.as_str()),
    );
    // A top-level scalar is set on Cosmos's arguments: `--upsample_prompt` without a command
    // line flag (and in the batch signature, as the flag is global in batch mode).
    if params.upsample_prompt {
        spec.insert("upsample_prompt".into(), json!(true));
    }

    let mut notes = Vec::new();
    for (hint, weight) in params.weights.iter() {
        let mut block = Map::new();
        block.insert("control_weight".into(), json!(weight));
        match input.controls.iter().find(|(h, _)| *h == hint) {
            Some((_, path)) => {
                block.insert("input_control".into(), json!(path));
            }
            None if !hint.is_generated_from_color() => return Err(SpecError::MissingControl(hint)),
            None if input.input_video.is_some() => notes.push(format!(
                "`{hint}` has no control video in the input set: Cosmos will compute it from the colour video"
            )),
            // Without a colour video Cosmos's own validation below says what is wrong.
            None => {}
        }
        spec.insert(hint.as_str().into(), Value::Object(block));
    }

    cosmos_checks(&spec, params.sigma_max)?;

    let sum = params.weights.sum();
    if sum > 1.0 {
        notes.push(format!(
            "weights sum to {sum:.3} (> 1): Cosmos will normalise them to {}",
            params
                .weights
                .effective()
                .iter()
                .map(|(h, w)| format!("{h}={w:.3}"))
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if params.sigma_max >= 80.0 && input.input_video.is_some() {
        notes.push(format!(
            "sigma_max {} (>= 80) starts from pure noise: Cosmos ignores the colour video's pixels",
            params.sigma_max
        ));
    }
    Ok(TransferSpec {
        json: Value::Object(spec),
        is_av: av.is_some(),
        notes,
    })
}

/// Builds the spec of a 4K upscale run (reference §1.3): the `upscale` control alone, on the
/// input video, whose frames it enlarges to three times their bucket. The prompt is optional
/// (empty: Cosmos's default prompt); the other parameters are as for a transfer run.
pub fn build_upscale_spec(input: &TransferSpecInput<'_>) -> Result<TransferSpec, SpecError> {
    let params = input.params;
    params.validate()?;
    let weight = match (
        params.weights.get(Hint::Upscale),
        params.weights.iter().count(),
    ) {
        (Some(w), 1) => w,
        _ => return Err(SpecError::UpscaleAlone),
    };
    let Some(video) = input.input_video else {
        return Err(SpecError::UpscaleNeedsVideo);
    };
    let mut spec = scalars(input, Some(video));
    if input.prompt.trim().is_empty() {
        spec.remove("prompt");
    }
    spec.insert("upscale".into(), json!({ "control_weight": weight }));
    cosmos_checks(&spec, params.sigma_max)?;
    Ok(TransferSpec {
        json: Value::Object(spec),
        is_av: false,
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::Weights;

    fn params(weights: &str) -> RunParams {
        RunParams {
            weights: weights.parse::<Weights>().unwrap(),
            ..RunParams::default()
        }
    }

    fn build(
        p: &RunParams,
        input_video: Option<&str>,
        controls: &[(Hint, &str)],
    ) -> Result<TransferSpec, SpecError> {
        let controls: Vec<(Hint, String)> = controls
            .iter()
            .map(|(h, p)| (*h, (*p).to_owned()))
            .collect();
        build_transfer_spec(&TransferSpecInput {
            prompt: "a harbour at dawn",
            negative_prompt: None,
            params: p,
            input_video,
            controls: &controls,
        })
    }

    #[test]
    fn spec_carries_every_parameter_and_the_controls() {
        let p = RunParams {
            seed: 7,
            ..params("edge=0.4,depth=0.6")
        };
        let spec = build(
            &p,
            Some("/r/inputs/color.mp4"),
            &[(Hint::Depth, "/r/inputs/depth.mp4")],
        )
        .unwrap();
        let want = serde_json::json!({
            "prompt": "a harbour at dawn",
            "input_video_path": "/r/inputs/color.mp4",
            "sigma_max": 70.0, "seed": 7, "guidance": 5.0, "num_steps": 35, "fps": 24,
            "blur_strength": "medium", "canny_threshold": "medium",
            "edge": {"control_weight": 0.4},
            "depth": {"control_weight": 0.6, "input_control": "/r/inputs/depth.mp4"},
        });
        assert_eq!(spec.json, want);
        assert!(!spec.is_av);
        assert_eq!(spec.notes.len(), 1, "{:?}", spec.notes);
        assert!(spec.notes[0].contains("`edge` has no control video"));
        // Key order is the order Cosmos documents: scalars first, then blocks.
        let keys: Vec<&String> = spec.json.as_object().unwrap().keys().collect();
        assert_eq!(keys.first().map(|k| k.as_str()), Some("prompt"));
        assert_eq!(keys.last().map(|k| k.as_str()), Some("depth"));
    }

    #[test]
    fn an_upscale_spec_is_the_upscale_control_on_the_input_video() {
        let p = RunParams {
            steps: 10,
            ..params("upscale=0.5")
        };
        let spec = build_upscale_spec(&TransferSpecInput {
            prompt: "",
            negative_prompt: None,
            params: &p,
            input_video: Some("/r/inputs/color.mp4"),
            controls: &[],
        })
        .unwrap();
        let want = serde_json::json!({
            "input_video_path": "/r/inputs/color.mp4",
            "sigma_max": 70.0, "seed": 1, "guidance": 5.0, "num_steps": 10, "fps": 24,
            "upscale": {"control_weight": 0.5},
        });
        assert_eq!(spec.json, want, "no prompt: Cosmos's default");
        let refused = |p: &RunParams, video: Option<&str>| {
            build_upscale_spec(&TransferSpecInput {
                prompt: "x",
                negative_prompt: None,
                params: p,
                input_video: video,
                controls: &[],
            })
            .unwrap_err()
            .to_string()
        };
        assert!(refused(&params("upscale=0.5,edge=0.5"), Some("c.mp4")).contains("alone"));
        assert!(refused(&p, None).contains("input video"));
    }

    #[test]
    fn builder_rules_table() {
        let depth = [(Hint::Depth, "d.mp4")];
        type Case<'a> = (RunParams, Option<&'a str>, &'a [(Hint, &'a str)], &'a str);
        let cases: Vec<Case> = vec![
            (
                RunParams::default(),
                Some("c.mp4"),
                &[],
                "no control weights",
            ),
            (
                params("upscale=0.5"),
                Some("c.mp4"),
                &[],
                "4K upscaler is a run of its own",
            ),
            (
                params("hdmap=0.5,edge=0.5"),
                Some("c.mp4"),
                &[],
                "cannot mix them",
            ),
            (
                params("lidar=0.5"),
                Some("c.mp4"),
                &[],
                "`lidar` has no control video",
            ),
            (
                params("depth=0.5"),
                None,
                &depth,
                "Cosmos-Transfer1 would reject this spec: Must have 'input_video' specified if sigma_max < 80",
            ),
            (
                RunParams {
                    sigma_max: 80.0,
                    ..params("edge=0.5")
                },
                None,
                &[],
                "would reject this spec: edge controlnet must have 'input_control' video specified if no 'input_video' specified.",
            ),
            (
                RunParams {
                    gpus: 3,
                    ..params("edge=1")
                },
                Some("c.mp4"),
                &[],
                "--gpus 3",
            ),
        ];
        for (p, input, controls, want) in cases {
            let err = build(&p, input, controls).unwrap_err().to_string();
            assert!(err.contains(want), "want {want:?} in {err:?}");
        }
    }

    #[test]
    fn av_specs_need_their_controls_and_no_colour() {
        let p = RunParams {
            sigma_max: 80.0,
            ..params("hdmap=0.3,lidar=0.7")
        };
        let spec = build(&p, None, &[(Hint::Hdmap, "h.mp4"), (Hint::Lidar, "l.mp4")]).unwrap();
        assert!(spec.is_av);
        assert!(spec.json.get("input_video_path").is_none());
        assert!(spec.notes.is_empty(), "{:?}", spec.notes);
    }

    #[test]
    fn weights_above_one_are_reported_not_rejected() {
        let spec = build(&params("vis=0.6,edge=0.9"), Some("c.mp4"), &[]).unwrap();
        let note = spec.notes.iter().find(|n| n.contains("normalise")).unwrap();
        assert!(
            note.contains("sum to 1.500") && note.contains("vis=0.400,edge=0.600"),
            "{note}"
        );
        assert_eq!(spec.json["vis"]["control_weight"], 0.6);
    }

    #[test]
    fn pure_noise_start_is_reported() {
        let p = RunParams {
            sigma_max: 90.0,
            ..params("edge=1")
        };
        let spec = build(&p, Some("c.mp4"), &[(Hint::Edge, "e.mp4")]).unwrap();
        assert!(
            spec.notes
                .iter()
                .any(|n| n.contains("ignores the colour video"))
        );
    }
}
