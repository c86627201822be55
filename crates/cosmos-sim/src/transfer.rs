//! The simulated `transfer.py`: loads and validates the spec with Cosmos's own rules and
//! messages, "loads" the models (checking the checkpoints exist), then generates each video
//! clip by clip with the documented milestones (reference §4.3) and writes the outputs under
//! Cosmos's names. The output video is the input video's bytes: a playable mp4.

mod args;
mod clips;
mod items;
mod model;

use std::path::Path;

use cosmos_core::spec::{split_spec, validate_controls};
use serde_json::{Map, Value};

use crate::knobs::{Fail, Knobs};
use crate::log::{self, Site, site, src};
use crate::python::{Failure, Frame, Raised, dumps, frame};
use crate::record::Record;
use crate::script::Worker;
use crate::{guardrail, upsampler};
use args::Cfg;
use items::{Item, join};

const LOAD_SPECS: Frame = frame(
    src::UTILS,
    1205,
    "load_controlnet_specs",
    "controlnet_specs_in = json.load(f)",
);
const VALIDATE: Frame = frame(
    src::UTILS,
    1216,
    "validate_controlnet_specs",
    "raise ValueError(...)",
);
const SAMPLE: Frame = frame(
    src::PIPELINE,
    615,
    "_run_model",
    "latents = generate_world_from_control(...)",
);
const UNPACK: Frame = frame(
    src::TRANSFER,
    372,
    "demo",
    "videos, final_prompts = batch_outputs",
);

fn raise_spec(e: cosmos_core::spec::CosmosError, at: Frame) -> Failure {
    Raised::new(e.exception, e.message, &[at])
        .kind("spec")
        .into()
}

/// Reads the spec JSON and splits it into control blocks and json args.
type Split = (Map<String, Value>, Map<String, Value>);

/// Reads the spec JSON once (recording its hash) and splits it into control blocks and
/// json args.
fn load_specs(path: &str, record: &mut Record) -> Result<Split, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|_| Raised::file_not_found(path, &[LOAD_SPECS]))?;
    record.spec_sha256 = Some(cosmos_core::sha256::hex_digest(text.as_bytes()));
    let spec: Value = serde_json::from_str(&text).map_err(|e| {
        Raised::new(
            "json.decoder.JSONDecodeError",
            format!(
                "Expecting value: line {} column {} (char {})",
                e.line(),
                e.column(),
                e.column().saturating_sub(1)
            ),
            &[LOAD_SPECS],
        )
        .kind("spec")
    })?;
    let Value::Object(obj) = spec else {
        return Err(Raised::new(
            "AttributeError",
            "'list' object has no attribute 'items'",
            &[frame(
                src::UTILS,
                1207,
                "load_controlnet_specs",
                "for hint_key, config in controlnet_specs_in.items():",
            )],
        )
        .kind("spec")
        .into());
    };
    split_spec(&obj).map_err(|e| raise_spec(e, LOAD_SPECS))
}

/// Everything one invocation carries between stages.
struct Run<'a> {
    cfg: Cfg,
    worker: &'a Worker,
    knobs: &'a Knobs,
    ckpt_dir: String,
    upsample_hint: Option<&'static str>,
    num_gpus: i64,
}

pub fn main(
    argv: &[String],
    worker: &Worker,
    knobs: &Knobs,
    record: &mut Record,
) -> Result<(), Failure> {
    let parsed = args::parser().parse(argv, false).map_err(Failure::Args)?;
    let mut cfg = parsed.values;
    let spec_path = crate::python::py_str(&cfg["controlnet_specs"]);
    let (mut controls, json_args) = load_specs(&spec_path, record)?;
    args::merge_json_args(&mut cfg, &json_args, argv);
    let cfg = Cfg(cfg);
    let at = site(src::TRANSFER, 189, "parse_arguments");
    log::info(
        at,
        &format!(
            "control_inputs: {}",
            dumps(&Value::Object(controls.clone()))
        ),
    );
    log::info(
        at,
        &format!("args in json: {}", dumps(&Value::Object(json_args))),
    );
    log::info(
        at,
        &format!("final args: {}", dumps(&Value::Object(cfg.0.clone()))),
    );

    let ckpt_dir = cfg.text("checkpoint_dir");
    if cfg.flag("use_distilled") {
        distilled_defaults(&cfg, &mut controls, &ckpt_dir)?;
    }
    let logs = validate_controls(
        &mut controls,
        cfg.value("input_video_path"),
        cfg.value("sigma_max"),
        &ckpt_dir,
    )
    .map_err(|e| raise_spec(e, VALIDATE))?;
    for line in logs {
        let at = site(src::UTILS, 1230, "validate_controlnet_specs");
        match line.level {
            "WARNING" => log::warning(at, &line.message),
            _ => log::info(at, &line.message),
        }
    }
    let seed = cfg.int("seed")?;
    log::info(
        site(src::MISC, 147, "set_random_seed"),
        &format!("Using random seed {seed}."),
    );

    let num_gpus = cfg.int("num_gpus")?;
    model::check_devices(worker, knobs, num_gpus)?;
    let folder = cfg.text("video_save_folder");
    std::fs::create_dir_all(&folder).map_err(|e| items::os_error(&folder, &e))?;

    let mut run = Run {
        cfg,
        worker,
        knobs,
        ckpt_dir,
        upsample_hint: None,
        num_gpus,
    };
    model::load_models(&run, &controls)?;
    if run.cfg.flag("upsample_prompt") {
        run.upsample_hint = model::init_upsampler(&run, &controls)?;
    }

    let mut items = match run.cfg.value("batch_input_path") {
        Value::Null => vec![items::single(&run.cfg, &controls)],
        path => {
            let path = crate::python::py_str(path);
            items::batch(&path, &run.cfg, &controls, record)?
        }
    };
    let batch_size = if controls.contains_key("upscale") {
        1
    } else {
        usize::try_from(run.cfg.int("batch_size")?)
            .unwrap_or(1)
            .max(1)
    };
    let batched = !run.cfg.value("batch_input_path").is_null();
    let mut start = 0;
    for chunk in items.chunks_mut(batch_size) {
        generate(&run, chunk, start, batched, record)?;
        start += chunk.len();
    }
    Ok(())
}

/// The distilled edge model: one control, no Sample-AV, no noise dump, and a default
/// checkpoint only for edge.
fn distilled_defaults(
    cfg: &Cfg,
    controls: &mut Map<String, Value>,
    ckpt_dir: &str,
) -> Result<(), Failure> {
    if cfg.flag("is_av_sample") || cfg.flag("save_input_noise") {
        return Err(Raised::new("AssertionError", "", &[VALIDATE])
            .kind("spec")
            .into());
    }
    if controls.len() != 1 {
        return Err(Raised::new(
            "AssertionError",
            "Distilled model only supports single control",
            &[VALIDATE],
        )
        .kind("spec")
        .into());
    }
    for (hint, block) in controls.iter_mut() {
        let Value::Object(block) = block else {
            continue;
        };
        if block.contains_key("ckpt_path") {
            continue;
        }
        if hint != "edge" {
            return Err(Raised::new(
                "ValueError",
                format!("No default distilled checkpoint for {hint}. Users must specify ckpt_path in config."),
                &[VALIDATE],
            )
            .kind("spec")
            .into());
        }
        block.insert(
            "ckpt_path".into(),
            Value::String(format!(
                "{}/nvidia/Cosmos-Transfer1-7B/edge_control_distilled.pt",
                ckpt_dir.trim_end_matches('/')
            )),
        );
    }
    Ok(())
}

/// A guardrail blocked everything in the batch: Cosmos says so, then `transfer.py` unpacks the
/// `None` it got back.
fn batch_blocked(pipe: Site, tr: Site, all_failed: &str) -> Failure {
    log::critical(pipe, all_failed);
    log::critical(tr, "Guardrail blocked generation for entire batch.");
    Raised::new(
        "TypeError",
        "cannot unpack non-iterable NoneType object",
        &[UNPACK],
    )
    .kind("guardrail")
    .into()
}

/// One batch: preprocessing, guardrail, text embedding, the clip loop, outputs.
fn generate(
    run: &Run<'_>,
    batch: &mut [Item],
    start: usize,
    batched: bool,
    record: &mut Record,
) -> Result<(), Failure> {
    for item in batch.iter_mut() {
        items::preprocess(item, &run.cfg, run.knobs, run.worker.world_size)?;
    }
    let tr = site(src::TRANSFER, 345, "demo");
    let pipe = site(src::PIPELINE, 1010, "generate");
    log::info(
        tr,
        &format!("Running batch generation with batch_size={}", batch.len()),
    );
    let mut prompts: Vec<Option<String>> = batch.iter().map(|i| i.prompt.clone()).collect();
    if run.upsample_hint.is_some() {
        for (i, prompt) in prompts.iter_mut().enumerate() {
            let p = prompt.clone().unwrap_or_default();
            log::info(
                pipe,
                &format!("Upsampling prompt {}/{}: {p}", i + 1, batch.len()),
            );
            let up = upsampler::upsample(&p);
            log::info(pipe, &format!("Upsampled prompt {}: {up}", i + 1));
            *prompt = Some(up);
        }
    }
    log::info(pipe, "Running guardrail checks on all prompts");
    let mut safe = Vec::new();
    for (i, (item, prompt)) in batch.iter().zip(&prompts).enumerate() {
        match guardrail::blocked(prompt.as_deref(), &run.knobs.blocklist) {
            Some(reason) => {
                log::critical(
                    site(src::GUARDRAIL, 52, "run_text_guardrail"),
                    &format!("GUARDRAIL BLOCKED: {reason}"),
                );
                log::critical(pipe, &format!("Input text prompt {} is not safe", i + 1));
            }
            None => safe.push((item, prompt.clone().unwrap_or_default())),
        }
    }
    if safe.is_empty() {
        return Err(batch_blocked(pipe, tr, "All prompts failed safety checks"));
    }
    log::info(pipe, "Running text embedding on all prompts");
    log::info(site(src::T5, 120, "encode_prompts"), "Starting T5 compute");
    log::info(site(src::T5, 131, "encode_prompts"), "Completed T5 compute");
    log::info(pipe, "Finish text embedding on prompt");

    let run_at = site(src::PIPELINE, 528, "_run_model");
    log::info(run_at, "Run generation");
    let aug = site(src::AUGMENT, 210, "__call__");
    log::info(aug, "Starting data augmentation");
    let first = safe[0].0;
    for (hint, block) in &first.controls {
        if let Some(Value::String(file)) = block.get("input_control") {
            log::info(
                aug,
                &format!("reading control input {file} for hint {hint}"),
            );
        }
    }
    let frames = first.frames;
    if safe.iter().any(|(i, _)| i.frames != frames) {
        return Err(Raised::new(
            "RuntimeError",
            "Sizes of tensors must match except in dimension 0",
            &[SAMPLE],
        )
        .into());
    }
    log::info(
        aug,
        &format!("Making all control and input videos to be length of {frames} frames."),
    );
    log::info(aug, "Completed data augmentation");
    let clips = cosmos_core::resolution::clip_count(frames);
    if clips == 0 {
        return Err(Raised::new(
            "RuntimeError",
            "torch.cat(): expected a non-empty list of Tensors",
            &[SAMPLE],
        )
        .into());
    }
    let benchmark = run.cfg.flag("benchmark");
    // Sampling is what keeps GPUs busy; nvidia-smi says so meanwhile.
    let _busy = crate::gpu_state::Busy::start(run.knobs);
    // A batch that reaches the line set by `oom_at_line:N` runs out of memory there.
    let oom_here;
    let knobs = match run.knobs.fail {
        Some(Fail::OomAtLine(n)) if n == start as u64 => {
            oom_here = Knobs {
                fail: Some(Fail::Oom),
                ..run.knobs.clone()
            };
            &oom_here
        }
        _ => run.knobs,
    };
    clips::sample(
        knobs,
        clips,
        run.worker.world_size,
        run.num_gpus,
        benchmark,
        record,
    )?;
    log::info(pipe, "Finish generation");
    log::info(pipe, "Run guardrail on generated videos");
    if run.knobs.fail == Some(Fail::UnsafeVideo) {
        for i in 0..safe.len() {
            log::critical(
                site(src::GUARDRAIL, 77, "run_video_guardrail"),
                "GUARDRAIL BLOCKED: VIDEOCONTENTSAFETYFILTER: unsafe frames detected",
            );
            log::critical(pipe, &format!("Generated video {} is not safe", i + 1));
        }
        return Err(batch_blocked(
            pipe,
            tr,
            "All generated videos failed safety checks",
        ));
    }

    let folder = run.cfg.text("video_save_folder");
    for (slot, (item, prompt)) in safe.into_iter().enumerate() {
        // Survivors of a partly blocked batch are numbered from the batch start, as in Cosmos.
        let (video, text) = if batched {
            let dir = join(&folder, &format!("video_{}", start + slot));
            (join(&dir, "output.mp4"), join(&dir, "prompt.txt"))
        } else {
            let name = run.cfg.text("video_save_name");
            (
                join(&folder, &format!("{name}.mp4")),
                join(&folder, &format!("{name}.txt")),
            )
        };
        let fps = u32::try_from(run.cfg.int("fps")?).unwrap_or(24);
        save(
            item,
            &video,
            &text,
            &prompt,
            run.cfg.flag("save_input_noise"),
            fps,
            record,
        )?;
    }
    Ok(())
}

fn save(
    item: &Item,
    video: &str,
    text: &str,
    prompt: &str,
    noise: bool,
    fps: u32,
    record: &mut Record,
) -> Result<(), Failure> {
    let at = site(src::TRANSFER, 410, "demo");
    if let Some(parent) = Path::new(video).parent() {
        std::fs::create_dir_all(parent).map_err(|e| items::os_error(video, &e))?;
    }
    let source = item.source.as_deref().unwrap_or_default();
    if item.controls.contains_key("upscale") {
        // The upscaler decodes 3x3 overlapping tiles and resizes to three times the input's
        // bucket (reference 1.3): a video of that size and length.
        let (w, h) = crate::mp4::probe(Path::new(source))
            .map(|f| (f.width, f.height))
            .unwrap_or((1280, 704));
        let bucket = cosmos_core::resolution::bucket_for(w, h);
        let frames = u32::try_from(item.frames).unwrap_or(u32::MAX);
        crate::h264::write_grey(
            Path::new(video),
            3 * bucket.width,
            3 * bucket.height,
            frames,
            fps,
        )
        .map_err(|e| items::os_error(video, &e))?;
    } else {
        std::fs::copy(source, video).map_err(|e| items::os_error(video, &e))?;
    }
    record.outputs.push(video.to_owned());
    log::info(at, &format!("Saved video to {video}"));
    std::fs::write(text, prompt).map_err(|e| items::os_error(text, &e))?;
    record.outputs.push(text.to_owned());
    log::info(at, &format!("Saved prompt to {text}"));
    if noise {
        let dir = Path::new(video)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let path = join(&dir, "noise.pickle");
        std::fs::write(&path, b"cosmos-sim: input noise placeholder\n")
            .map_err(|e| items::os_error(&path, &e))?;
        record.outputs.push(path.clone());
        log::info(at, &format!("Saved input noise to {path}"));
    }
    Ok(())
}
