//! The simulated Cosmos-Transfer2.5 `examples/inference.py` (reference
//! `cosmos-transfer2.5.md`): tyro's command line (`-i` files, `-o` folder, setup flags, any
//! spec scalar as an override that wins), every sample validated as pydantic does (the
//! message after `Error validating parameters from '<path>' at line <i>`, exit 1), unique
//! names, then per sample the documented milestones, one tqdm bar per chunk of denoising
//! steps on stderr (chunk lines in `debug.log`, on stdout with `COSMOS_VERBOSE=1`), and the
//! outputs under upstream's names: `<name>.mp4`, `.txt`, `.json`, `<name>_control_<key>.mp4`,
//! `<name>_mask_<key>.mp4` (for a control with a mask),
//! `config.yaml`, `console.log`, `debug.log`. A prompt the guardrail blocks ends the sample
//! with no video and, with the default `--keep-going`, the process with exit 0.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use cosmos_core::spec25;

use crate::knobs::{Fail, Knobs};
use crate::log::{self, Site, site};
use crate::python::{Failure, Frame, Raised, frame};
use crate::record::Record;
use crate::script::Worker;

const INFERENCE: &str = "cosmos_transfer2/inference.py";
const CONFIG: &str = "cosmos_transfer2/config.py";
const PIPELINE: &str = "cosmos_transfer2/_src/transfer2/inference/inference_pipeline.py";
const GENERATE: Frame = frame(
    INFERENCE,
    236,
    "_generate_sample",
    "video = self.pipe.generate_vid2world(...)",
);

/// Setup flags that take a value, and those that take none.
const VALUED: &[&str] = &[
    "--model",
    "--checkpoint-path",
    "--experiment",
    "--config-file",
    "--context-parallel-size",
    "--compile-tokenizer",
    "--parallel-tokenizer-grid",
];
const FLAGS: &[&str] = &[
    "--disable-guardrails",
    "--no-disable-guardrails",
    "--offload-guardrail-models",
    "--no-offload-guardrail-models",
    "--keep-going",
    "--no-keep-going",
    "--profile",
    "--no-profile",
    "--benchmark",
    "--no-benchmark",
    "--enable-parallel-tokenizer",
    "--no-enable-parallel-tokenizer",
];
const MODELS: &[&str] = &["edge", "depth", "seg", "vis", "edge/distilled"];

const USAGE: &str =
    "usage: inference.py [-h] -i PATH [PATH ...] -o PATH [--model {edge,depth,seg,vis}]
                    [--checkpoint-path STR] [--experiment STR] [--config-file STR]
                    [--context-parallel-size INT] [--disable-guardrails | --no-disable-guardrails]
                    [--offload-guardrail-models | --no-offload-guardrail-models]
                    [--keep-going | --no-keep-going] [--profile | --no-profile]
                    [--benchmark | --no-benchmark] [--compile-tokenizer {none,moderate,aggressive}]
                    [--enable-parallel-tokenizer | --no-enable-parallel-tokenizer]
                    [--parallel-tokenizer-grid INT INT] [--prompt STR] [--seed INT] [--guidance INT]
                    [--num-steps INT] [--sigma-max STR] [...any other sample field]";

/// What the command line chose.
#[derive(Debug, Default)]
struct Cli {
    inputs: Vec<String>,
    output: Option<String>,
    model: String,
    keep_going: bool,
    guardrails: bool,
    overrides: Map<String, Value>,
}

/// tyro's refusal: its message on stderr, exit 2.
fn usage_error(message: &str) -> Failure {
    Failure::Args(crate::argparse::Stop::Error(format!(
        "{USAGE}\n╭─ Parsing error ─────────────────────────────────╮\n│ {message}\n╰─────────────────────────────────────────────────╯\n"
    )))
}

fn parse(args: &[String]) -> Result<Cli, Failure> {
    let mut cli = Cli {
        model: "edge".into(),
        keep_going: true,
        guardrails: true,
        ..Cli::default()
    };
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg, None),
        };
        let value = |i: &mut usize| -> Result<String, Failure> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            *i += 1;
            args.get(*i)
                .filter(|v| !v.starts_with("--"))
                .cloned()
                .ok_or_else(|| usage_error(&format!("Missing value for argument {flag}")))
        };
        match flag {
            "-h" | "--help" => {
                return Err(Failure::Args(crate::argparse::Stop::Help(USAGE.into())));
            }
            "-i" | "--input-files" => {
                let before = cli.inputs.len();
                while let Some(v) = args.get(i + 1).filter(|v| !v.starts_with('-')) {
                    cli.inputs.push(v.clone());
                    i += 1;
                }
                if cli.inputs.len() == before {
                    return Err(usage_error("Missing value for argument -i/--input-files"));
                }
            }
            "-o" | "--output-dir" => cli.output = Some(value(&mut i)?),
            "--keep-going" => cli.keep_going = true,
            "--no-keep-going" => cli.keep_going = false,
            "--disable-guardrails" => cli.guardrails = false,
            "--no-disable-guardrails" => cli.guardrails = true,
            f if FLAGS.contains(&f) => {}
            "--model" => {
                let m = value(&mut i)?;
                if !MODELS.contains(&m.as_str()) {
                    return Err(usage_error(&format!(
                        "Invalid choice: '{m}' for argument --model (choose from 'edge', 'depth', 'seg', 'vis')"
                    )));
                }
                if m == "edge/distilled"
                    && std::env::var("COSMOS_EXPERIMENTAL_CHECKPOINTS").as_deref() != Ok("1")
                {
                    return Err(usage_error(
                        "--model edge/distilled needs COSMOS_EXPERIMENTAL_CHECKPOINTS=1",
                    ));
                }
                cli.model = m;
            }
            f if VALUED.contains(&f) => {
                value(&mut i)?;
            }
            f if f.starts_with("--") => {
                let field = f.trim_start_matches("--").replace('-', "_");
                if !OVERRIDABLE.contains(&field.as_str()) {
                    return Err(usage_error(&format!("Unrecognized options: {f}")));
                }
                let raw = value(&mut i)?;
                cli.overrides.insert(field, override_value(&raw));
            }
            other => return Err(usage_error(&format!("Unrecognized options: {other}"))),
        }
        i += 1;
    }
    if cli.output.is_none() {
        return Err(usage_error("Required options: -o/--output-dir"));
    }
    Ok(cli)
}

/// The spec scalars tyro exposes as overrides (`InferenceOverrides`).
const OVERRIDABLE: &[&str] = &[
    "prompt",
    "prompt_path",
    "negative_prompt",
    "seed",
    "guidance",
    "num_steps",
    "sigma_max",
    "resolution",
    "num_video_frames_per_chunk",
    "num_conditional_frames",
    "max_frames",
    "context_frame_index",
    "image_context_path",
    "keep_input_resolution",
    "show_control_condition",
    "show_input",
    "guided_generation_mask",
    "guided_generation_step_threshold",
];

/// tyro converts by the field's type; integers and booleans look like themselves.
fn override_value(raw: &str) -> Value {
    if let Ok(i) = raw.parse::<i64>() {
        return Value::from(i);
    }
    match raw {
        "True" | "true" => Value::Bool(true),
        "False" | "false" => Value::Bool(false),
        _ => Value::String(raw.to_owned()),
    }
}

/// A sample with where it came from.
struct Sample {
    map: Map<String, Value>,
    base: PathBuf,
}

fn read_samples(cli: &Cli) -> Result<Vec<Sample>, Failure> {
    let mut out = Vec::new();
    for path in &cli.inputs {
        let text = std::fs::read_to_string(path).map_err(|_| {
            Raised::file_not_found(
                path,
                &[frame(CONFIG, 360, "load_samples", "with open(path) as f:")],
            )
        })?;
        let base = Path::new(path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let lines: Vec<&str> = if path.ends_with(".jsonl") {
            text.lines().filter(|l| !l.trim().is_empty()).collect()
        } else {
            vec![text.as_str()]
        };
        for (line, raw) in lines.into_iter().enumerate() {
            let mut value: Value = serde_json::from_str(raw).map_err(|e| {
                Raised::new(
                    "json.decoder.JSONDecodeError",
                    format!("Expecting value: line {} column {}", e.line(), e.column()),
                    &[frame(
                        CONFIG,
                        366,
                        "load_samples",
                        "data = json.loads(line)",
                    )],
                )
                .kind("spec")
            })?;
            if let Some(map) = value.as_object_mut() {
                for (k, v) in &cli.overrides {
                    map.insert(k.clone(), v.clone());
                }
            }
            if let Err(e) = spec25::validate(&value, &base) {
                return Err(Failure::Exit(
                    1,
                    format!("Error validating parameters from '{path}' at line {line}\n{e}\n"),
                    "spec",
                ));
            }
            let map = value.as_object().cloned().unwrap_or_default();
            out.push(Sample {
                map,
                base: base.clone(),
            });
        }
    }
    if out.is_empty() {
        return Err(Failure::Exit(
            1,
            "No input files given: pass one or more with -i\n".into(),
            "spec",
        ));
    }
    let mut names: Vec<&str> = out.iter().filter_map(|s| s.map["name"].as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Failure::Exit(
            1,
            format!(
                "Sample names must be unique; '{}' is used more than once\n",
                w[0]
            ),
            "spec",
        ));
    }
    Ok(out)
}

/// stdout (INFO and above, not `_src` modules unless verbose) and `console.log`/`debug.log`.
struct Logs {
    console: Option<std::fs::File>,
    debug: Option<std::fs::File>,
    verbose: bool,
}

impl Logs {
    fn open(out: &Path) -> Self {
        let open = |n: &str| std::fs::File::create(out.join(n)).ok();
        Self {
            console: open("console.log"),
            debug: open("debug.log"),
            verbose: std::env::var("COSMOS_VERBOSE").as_deref() == Ok("1"),
        }
    }

    fn line(&mut self, level: &str, at: Site, message: &str) {
        let line = log::format_line(level, at, message);
        let hidden = at.file.contains("/_src/") && !self.verbose;
        if let Some(f) = self.debug.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        if level == "DEBUG" || hidden {
            return;
        }
        if let Some(f) = self.console.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        log::print(&line);
    }

    fn info(&mut self, at: Site, m: &str) {
        self.line("INFO", at, m);
    }
}

pub fn main(
    args: &[String],
    worker: &Worker,
    knobs: &Knobs,
    record: &mut Record,
) -> Result<(), Failure> {
    let cli = parse(args)?;
    let samples = read_samples(&cli)?;
    let out = PathBuf::from(cli.output.clone().unwrap_or_default());
    std::fs::create_dir_all(&out)
        .map_err(|e| Raised::new("PermissionError", format!("{e}: '{}'", out.display()), &[]))?;
    record.spec_sha256 = cli
        .inputs
        .first()
        .and_then(|p| std::fs::read(p).ok())
        .map(|b| cosmos_core::sha256::hex_digest(&b));
    let mut logs = Logs::open(&out);
    let at = site(INFERENCE, 140, "__init__");
    let mut keys: Vec<&str> = Vec::new();
    for s in &samples {
        for k in spec25::controls_of(&s.map) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    logs.info(
        at,
        &format!("Found {} hint keys across all samples", keys.len()),
    );
    if keys.len() > 1 {
        logs.line(
            "WARNING",
            at,
            "Loading the multicontrol model, as the samples use more than one hint key",
        );
    }
    std::thread::sleep(knobs.load);
    let config = out.join("config.yaml");
    write_out(
        &config,
        format!(
            "model: {}\ncontext_parallel_size: {}\nkeep_going: {}\n",
            cli.model, worker.world_size, cli.keep_going
        ),
    )?;
    logs.info(
        site(INFERENCE, 156, "__init__"),
        &format!("Saved config to {}", config.display()),
    );
    let names: Vec<String> = samples
        .iter()
        .map(|s| format!("'{}'", s.map["name"].as_str().unwrap_or_default()))
        .collect();
    let gen_at = site(INFERENCE, 318, "generate");
    logs.info(
        gen_at,
        &format!(
            "Generating {} samples: [{}]",
            samples.len(),
            names.join(", ")
        ),
    );
    for (i, sample) in samples.iter().enumerate() {
        let name = sample.map["name"].as_str().unwrap_or_default().to_owned();
        logs.info(
            gen_at,
            &format!("[{}/{}] Processing sample {name}", i + 1, samples.len()),
        );
        if let Some(path) = one_sample(sample, i, &name, &out, &cli, knobs, &mut logs)? {
            record.outputs.push(path);
        }
    }
    Ok(())
}

/// Writes one of its files; a failure is Python's `OSError` (`[Errno 28] No space left on
/// device: '<path>'`), raised from where it saves.
fn write_out(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), Failure> {
    std::fs::write(path, bytes).map_err(|e| {
        let errno = e.raw_os_error().unwrap_or(5);
        let words = e.to_string();
        let words = words
            .split(" (os error")
            .next()
            .unwrap_or_default()
            .to_owned();
        let exception = match errno {
            2 => "FileNotFoundError",
            13 => "PermissionError",
            _ => "OSError",
        };
        let message = format!("[Errno {errno}] {words}: '{}'", path.display());
        Raised::new(exception, message, &[GENERATE]).into()
    })
}

/// One sample, to its video (returned) or to the guardrail's block (`None`).
fn one_sample(
    sample: &Sample,
    index: usize,
    name: &str,
    out: &Path,
    cli: &Cli,
    knobs: &Knobs,
    logs: &mut Logs,
) -> Result<Option<String>, Failure> {
    let map = &sample.map;
    let at = site(INFERENCE, 206, "_generate_sample");
    let args_file = out.join(format!("{name}.json"));
    write_out(
        &args_file,
        serde_json::to_string_pretty(&Value::Object(map.clone())).unwrap_or_default(),
    )?;
    logs.info(at, &format!("Saved arguments to {}", args_file.display()));
    let prompt = match (
        map.get("prompt").and_then(Value::as_str),
        map.get("prompt_path").and_then(Value::as_str),
    ) {
        (Some(p), _) => p.to_owned(),
        (None, Some(path)) => std::fs::read_to_string(sample.base.join(path))
            .map(|t| t.trim().to_owned())
            .unwrap_or_default(),
        _ => String::new(),
    };
    if cli.guardrails {
        logs.info(at, "Running guardrail check on prompt...");
        if crate::guardrail::blocked(Some(&prompt), &knobs.blocklist).is_some() {
            let g = site(INFERENCE, 218, "_generate_sample");
            logs.line(
                "CRITICAL",
                g,
                &format!("Guardrail blocked generation. Prompt: {prompt}"),
            );
            if cli.keep_going {
                return Ok(None);
            }
            return Err(
                Raised::new("RuntimeError", "Guardrail blocked generation.", &[GENERATE])
                    .kind("guardrail")
                    .into(),
            );
        }
        logs.line("SUCCESS", at, "Passed guardrail on prompt");
    }
    let video = sample
        .base
        .join(map["video_path"].as_str().unwrap_or_default());
    let controls = spec25::controls_of(map);
    let mut paths = Map::new();
    paths.insert(
        "video_path".into(),
        Value::from(video.display().to_string()),
    );
    for key in &controls {
        let given = map[*key].get("control_path").and_then(Value::as_str);
        paths.insert(
            format!("{key}_path"),
            given.map_or(Value::Null, |g| {
                Value::from(sample.base.join(g).display().to_string())
            }),
        );
    }
    logs.info(
        at,
        &format!(
            "Processing the following paths: {}",
            spec25::py_repr(&Value::Object(paths))
        ),
    );
    let bytes = std::fs::read(&video).unwrap_or_default();
    for key in &controls {
        // A control given is saved as given; one computed on the fly (Canny, blur, depth,
        // segmentation of the input video) is the input's frames here.
        let source = map[*key]
            .get("control_path")
            .and_then(Value::as_str)
            .and_then(|p| std::fs::read(sample.base.join(p)).ok())
            .unwrap_or_else(|| bytes.clone());
        let path = out.join(format!("{name}_control_{key}.mp4"));
        write_out(&path, source)?;
        logs.info(
            site(INFERENCE, 310, "_generate_sample"),
            &format!("{key} control video saved to {}", path.display()),
        );
    }
    for key in &controls {
        // A mask given as a video is saved as given; one described in words (segmented from
        // the input video upstream) is the input's frames here.
        let block = &map[*key];
        let source = if let Some(p) = block.get("mask_path").and_then(Value::as_str) {
            let path = sample.base.join(p);
            match std::fs::read(&path) {
                Ok(b) => b,
                Err(_) => {
                    return Err(Raised::new(
                        "FileNotFoundError",
                        format!("[Errno 2] No such file or directory: '{}'", path.display()),
                        &[GENERATE],
                    )
                    .into());
                }
            }
        } else if block.get("mask_prompt").and_then(Value::as_str).is_some() {
            bytes.clone()
        } else {
            continue;
        };
        let path = out.join(format!("{name}_mask_{key}.mp4"));
        write_out(&path, source)?;
        logs.info(
            site(INFERENCE, 315, "_generate_sample"),
            &format!("{key} mask video saved to {}", path.display()),
        );
    }
    let frames = crate::mp4::probe(&video)
        .map(|f| f.frames)
        .ok()
        .or(knobs.frames)
        .unwrap_or(93) as u32;
    let chunk = map
        .get("num_video_frames_per_chunk")
        .and_then(Value::as_u64)
        .unwrap_or(u64::from(spec25::CHUNK_FRAMES)) as u32;
    let conditional = map
        .get("num_conditional_frames")
        .and_then(Value::as_u64)
        .unwrap_or(1) as u32;
    let steps = map
        .get("num_steps")
        .and_then(Value::as_u64)
        .unwrap_or(u64::from(spec25::DEFAULT_STEPS));
    let chunks = spec25::chunk_count(frames, chunk, conditional);
    let per_step = knobs
        .clip
        .checked_div(steps.max(1) as u32)
        .unwrap_or_default();
    // Denoising is what keeps GPUs busy; nvidia-smi says so meanwhile.
    let busy = crate::gpu_state::Busy::start(knobs);
    for c in 1..=chunks {
        logs.info(
            site(PIPELINE, 554, "generate_vid2world"),
            &format!("Generating chunk {c}/{chunks}"),
        );
        let started = std::time::Instant::now();
        for k in 0..=steps {
            if k == 1 && c == 1 {
                // Out of memory in every sample, or (in a file of several) in sample N only.
                let oom = match knobs.fail {
                    Some(Fail::Oom) => true,
                    Some(Fail::OomAtLine(n)) => n == index as u64,
                    _ => false,
                };
                if oom {
                    return Err(Raised::new(
                        "torch.OutOfMemoryError",
                        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB of which 1.05 GiB is free.",
                        &[GENERATE],
                    )
                    .kind("oom")
                    .into());
                }
                if knobs.fail == Some(Fail::Hang) {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(3600));
                    }
                }
            }
            log::stderr(&format!(
                "\rGenerating samples: {}",
                log::render_bar(k, steps, started.elapsed())
            ));
            if k < steps {
                std::thread::sleep(per_step);
            }
        }
        log::stderr("\n");
    }
    drop(busy);
    if cli.guardrails {
        logs.info(at, "Running guardrail check on video...");
        if knobs.fail == Some(Fail::UnsafeVideo) {
            // The blocking line comes from an `_src` module the console hides.
            logs.line(
                "CRITICAL",
                site(
                    "cosmos_transfer2/_src/guardrail/common/presets.py",
                    88,
                    "run_video_guardrail",
                ),
                "GUARDRAIL BLOCKED: VIDEO_CONTENT_SAFETY",
            );
            if cli.keep_going {
                return Ok(None);
            }
            return Err(
                Raised::new("RuntimeError", "Guardrail blocked generation.", &[GENERATE])
                    .kind("guardrail")
                    .into(),
            );
        }
        logs.line("SUCCESS", at, "Passed guardrail on generated video");
    }
    write_out(&out.join(format!("{name}.txt")), &prompt)?;
    let output = out.join(format!("{name}.mp4"));
    write_out(&output, &bytes)?;
    logs.line(
        "SUCCESS",
        site(INFERENCE, 330, "_generate_sample"),
        &format!("Generated video saved to {}", output.display()),
    );
    Ok(Some(output.display().to_string()))
}
