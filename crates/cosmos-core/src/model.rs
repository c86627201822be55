//! Models as adapters (issue 18): what cosmos knows of one model, behind one trait, so the
//! engine, store, queue and front ends can know a model by its name alone. Each adapter owns
//! its parameters (and refuses another model's), its command line, its container settings,
//! its output files and what success is, progress from its log, and its setup recipe.
//!
//! Two adapters: [`Transfer1`] (its spec builder, validation and log reading live in `spec`,
//! `launch` and `progress`, which it names) and [`Transfer25`] (`spec25`, here).

use std::fmt;

use serde_json::{Map, Value, json};

use crate::batch::{BatchReader, BatchShape, BatchSignal};
use crate::modality::Hint;
use crate::progress::Milestone;
use crate::run::RunParams;
use crate::spec::{SpecError, TransferSpec};
use crate::spec25;

/// Every model cosmos has an adapter for, by name.
pub fn models() -> [&'static dyn Model; 2] {
    [&Transfer1, &Transfer25]
}

/// The adapter of the model named `name` (`transfer1`, `transfer2.5`).
pub fn model(name: &str) -> Result<&'static dyn Model, UnknownModel> {
    models()
        .into_iter()
        .find(|m| m.name() == name || m.aliases().contains(&name))
        .ok_or_else(|| UnknownModel(name.to_owned()))
}

/// The model a run uses when it names none.
pub const DEFAULT_MODEL: &str = "transfer1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown model `{0}`: cosmos has adapters for transfer1 (Cosmos-Transfer1) and transfer2.5 (Cosmos-Transfer2.5)"
)]
pub struct UnknownModel(pub String);

/// A parameter one model takes and another does not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{param}` is not a {title} parameter: {why}")]
pub struct ForeignParam {
    pub param: String,
    pub title: &'static str,
    pub why: &'static str,
}

/// How a model's container is set up beyond the checkout at `/workspace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Anonymous volumes: paths inside the image the checkout's mount must not hide.
    pub anonymous_volumes: &'static [&'static str],
    /// Where the model keeps its downloads inside the container (mounted from the target's
    /// cache folder so they persist), if it downloads at run time.
    pub cache: Option<&'static str>,
}

/// Where a model comes from and how a host is prepared for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub repository: &'static str,
    pub commit: &'static str,
    /// The image built from the checkout's Dockerfile.
    pub image_name: &'static str,
    /// How checkpoints arrive: upstream's download script into `checkpoints/`, or the
    /// Hugging Face cache at pinned revisions on first use.
    pub checkpoints: CheckpointSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointSource {
    DownloadScript(&'static str),
    /// Files of Hugging Face repositories at pinned revisions, into the hub cache.
    HubFiles(&'static [HubFile]),
}

/// One file of a Hugging Face repository at a pinned revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubFile {
    pub repo: &'static str,
    pub revision: &'static str,
    pub file: &'static str,
}

impl HubFile {
    /// Where it lands under a hub cache (`HF_HOME/hub`).
    pub fn cache_path(&self, hub: &str) -> String {
        format!(
            "{}/models--{}/snapshots/{}/{}",
            hub.trim_end_matches('/'),
            self.repo.replace('/', "--"),
            self.revision,
            self.file
        )
    }
}

/// What a run gives its model: paths as the model process sees them.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    /// The sample's name (Transfer2.5's `name`, its outputs' base name).
    pub name: &'a str,
    pub prompt: &'a str,
    pub negative_prompt: Option<&'a str>,
    pub params: &'a RunParams,
    pub input_video: Option<&'a str>,
    pub controls: &'a [(Hint, String)],
    /// Where each control's mask video (`params.mask_files`) is staged.
    pub masks: &'a [(Hint, String)],
}

/// One model.
pub trait Model: Send + Sync + fmt::Debug {
    /// The name users type (`--model`), stored with runs and targets.
    fn name(&self) -> &'static str;
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    /// Its title in messages.
    fn title(&self) -> &'static str;
    /// Sets the model's own defaults on parameters a run starts from (before the run's own
    /// choices are applied).
    fn defaults(&self, base: &mut RunParams) {
        let _ = base;
    }
    /// Refuses what this model does not take: each parameter the user set explicitly
    /// (`--fps`, `--num-conditional-frames`, …) and the controls of the weights.
    fn check_given(&self, given: &[&str], params: &RunParams) -> Result<(), ForeignParam>;
    /// The spec it reads for one run (with what the user should know about it), checked as
    /// the model checks it.
    fn build_spec(&self, input: &SpecInput<'_>) -> Result<TransferSpec, SpecError>;
    /// The checkpoints a run of `spec` needs in the checkout's `checkpoints/` folder, checked
    /// before anything is sent (none for a model that downloads its own).
    fn checkpoint_needs(&self, spec: &TransferSpec) -> Vec<crate::setup::Need> {
        let _ = spec;
        Vec::new()
    }
    /// Its entry point, relative to its checkout (checked there before a run is sent).
    fn entry_point(&self) -> &'static str;
    /// The command that runs it on `gpus` GPUs from its checkout.
    fn command(&self, gpus: u32, spec: &str, output_dir: &str, controls: &[Hint]) -> Vec<String>;
    fn container(&self) -> Container;
    /// The output video of sample `name`, relative to the output folder.
    fn primary_output(&self, name: &str) -> String;
    /// Whether a run succeeded: its exit status and whether its video is there.
    fn succeeded(&self, exit: Option<i32>, video_present: bool) -> bool;
    /// Why a run that exited other than 0 failed, from its exit status and log.
    fn classify(&self, exit: Option<i32>, log: &str) -> crate::progress::Failure {
        crate::progress::classify_failure(exit, log)
    }
    /// Why a run that exited 0 has no video, from its log: a failure code and a reason.
    fn missing_video(&self, log: &str) -> (&'static str, String) {
        let _ = log;
        (
            "no_video",
            format!("{} exited 0 but wrote no video", self.title()),
        )
    }
    /// How its runs share one process (a batch file), if they may.
    fn batch_shape(&self) -> Option<BatchShape> {
        None
    }
    /// Whether runs that agree on everything the model treats as global may share one of
    /// its processes.
    fn batches(&self) -> bool {
        self.batch_shape().is_some()
    }
    /// What runs must agree on to share a process, as a digest of a run's spec, GPUs and
    /// inputs: equal signatures may share one.
    fn batch_signature(&self, spec: &Value, gpus: u32, files: &[crate::InputFile]) -> String {
        crate::batch::signature(spec, gpus, files)
    }
    /// Reads a batch's log; `lines`: each line's frame count and parameters, in order.
    fn batch_reader(&self, lines: &[(u32, &RunParams)]) -> Box<dyn BatchReader> {
        let frames = lines.first().map_or(121, |(f, _)| *f);
        let clips = crate::resolution::clip_count(u64::from(frames)) as u32;
        Box::new(crate::batch::BatchLog::new(clips))
    }
    /// Reads its log into milestones.
    fn progress(&self, frames: u32, params: &RunParams) -> Box<dyn LogProgress>;
    fn recipe(&self) -> Recipe;
}

/// Turns a model's log lines into milestones.
pub trait LogProgress: Send + fmt::Debug {
    fn feed(&mut self, line: &str) -> Option<Milestone>;
}

impl LogProgress for crate::progress::ProgressParser {
    fn feed(&mut self, line: &str) -> Option<Milestone> {
        crate::progress::ProgressParser::feed(self, line)
    }
}

/// Cosmos-Transfer1 (`transfer.py`), frozen upstream; the model cosmos began with.
#[derive(Debug, Clone, Copy)]
pub struct Transfer1;

/// Parameters only Transfer1 takes, and why Transfer2.5 does not.
const T1_ONLY: &[(&str, &str)] = &[
    (
        "--fps",
        "Cosmos-Transfer2.5 keeps the input video's frame rate",
    ),
    (
        "--upsample-prompt",
        "Cosmos-Transfer2.5 has no prompt upsampler",
    ),
    ("--upscale", "Cosmos-Transfer2.5 has no 4K upscaler"),
];
/// Parameters only Transfer2.5 takes.
const T25_ONLY: &[(&str, &str)] = &[
    (
        "--num-conditional-frames",
        "Cosmos-Transfer1 conditions on its own fixed frames",
    ),
    ("--resolution", "Cosmos-Transfer1 generates at 720p only"),
    (
        "--mask-prompt",
        "Cosmos-Transfer1 takes no spatiotemporal masks",
    ),
    ("--mask", "Cosmos-Transfer1 takes no spatiotemporal masks"),
];

fn refuse(
    given: &[&str],
    foreign: &[(&'static str, &'static str)],
    title: &'static str,
) -> Result<(), ForeignParam> {
    for g in given {
        if let Some((p, why)) = foreign.iter().find(|(p, _)| p == g) {
            return Err(ForeignParam {
                param: (*p).to_owned(),
                title,
                why,
            });
        }
    }
    Ok(())
}

impl Model for Transfer1 {
    fn name(&self) -> &'static str {
        "transfer1"
    }

    fn title(&self) -> &'static str {
        "Cosmos-Transfer1"
    }

    fn check_given(&self, given: &[&str], _params: &RunParams) -> Result<(), ForeignParam> {
        refuse(given, T25_ONLY, self.title())
    }

    fn build_spec(&self, input: &SpecInput<'_>) -> Result<TransferSpec, SpecError> {
        crate::spec::build_transfer_spec(&crate::spec::TransferSpecInput {
            prompt: input.prompt,
            negative_prompt: input.negative_prompt,
            params: input.params,
            input_video: input.input_video,
            controls: input.controls,
        })
    }

    fn checkpoint_needs(&self, spec: &TransferSpec) -> Vec<crate::setup::Need> {
        crate::setup::needed_checkpoints(&spec.json, spec.is_av, false)
    }

    fn entry_point(&self) -> &'static str {
        crate::launch::TRANSFER_SCRIPT
    }

    fn batch_shape(&self) -> Option<BatchShape> {
        // `--batch_input_path` JSONL, one output folder per line (reference §3).
        Some(BatchShape::SharedSpec)
    }

    fn command(&self, gpus: u32, spec: &str, output_dir: &str, controls: &[Hint]) -> Vec<String> {
        crate::launch::torchrun_argv(&crate::launch::TransferLaunch {
            gpus,
            spec_path: spec,
            output_dir,
            is_av: controls.iter().any(|h| h.is_av()),
            checkpoint_dir: "checkpoints",
            batch_input: None,
        })
    }

    fn container(&self) -> Container {
        Container {
            anonymous_volumes: &[],
            cache: None,
        }
    }

    fn primary_output(&self, _name: &str) -> String {
        crate::launch::PRIMARY_OUTPUT.to_owned()
    }

    fn succeeded(&self, exit: Option<i32>, video_present: bool) -> bool {
        // A guardrail block exits 1 here (reference §4): the exit status decides.
        exit == Some(0) && video_present
    }

    fn progress(&self, frames: u32, _params: &RunParams) -> Box<dyn LogProgress> {
        let clips = crate::resolution::clip_count(u64::from(frames)) as u32;
        Box::new(crate::progress::ProgressParser::new(clips))
    }

    fn recipe(&self) -> Recipe {
        Recipe {
            repository: crate::setup::REPO,
            commit: crate::setup::COMMIT,
            image_name: crate::setup::IMAGE_NAME,
            checkpoints: CheckpointSource::DownloadScript(crate::setup::DOWNLOAD_SCRIPT),
        }
    }
}

/// Cosmos-Transfer2.5 (`examples/inference.py`), what most users run now.
#[derive(Debug, Clone, Copy)]
pub struct Transfer25;

/// Upstream's repository and the commit the reference was read at.
pub const T25_REPO: &str = "https://github.com/nvidia-cosmos/cosmos-transfer2.5.git";
pub const T25_COMMIT: &str = "2ff49d0717af02057ae79bc75c00fbff9da1b4e7";
pub const T25_SCRIPT: &str = "examples/inference.py";
/// The general model's control checkpoints at the revisions upstream pins for them
/// (`packages/cosmos-oss/cosmos_oss/checkpoints_transfer2.py`): what `target setup` puts in
/// the target's hub cache. The text encoder, tokenizer and guardrail models the model fetches
/// on first use through the same cache.
pub const T25_HUB_FILES: &[HubFile] = &[
    HubFile {
        repo: "nvidia/Cosmos-Transfer2.5-2B",
        revision: "b67b64abda3801a9aceddbff2bdb86126c06db74",
        file: "general/edge/61f5694b-0ad5-4ecd-8ad7-c8545627d125_ema_bf16.pt",
    },
    HubFile {
        repo: "nvidia/Cosmos-Transfer2.5-2B",
        revision: "dea7737ca29dd8d9086413c6dc5724b8250a0bb4",
        file: "general/depth/626e6618-bfcd-4d9a-a077-1409e2ce353f_ema_bf16.pt",
    },
    HubFile {
        repo: "nvidia/Cosmos-Transfer2.5-2B",
        revision: "eb5325b77d358944da58a690157dd2b8071bbf85",
        file: "general/blur/ba2f44f2-c726-4fe7-949f-597069d9b91c_ema_bf16.pt",
    },
    HubFile {
        repo: "nvidia/Cosmos-Transfer2.5-2B",
        revision: "23057a4167b89de89a4a397fdbf3887994d115eb",
        file: "general/seg/5136ef49-6d8d-42e8-8abf-7dac722a304a_ema_bf16.pt",
    },
];
const T25_HINTS: [Hint; 4] = [Hint::Edge, Hint::Vis, Hint::Depth, Hint::Seg];

impl Transfer25 {
    /// Its spec JSON for one run.
    fn spec_json(&self, input: &SpecInput<'_>) -> Result<Value, String> {
        let p = input.params;
        let Some(video) = input.input_video else {
            return Err(
                "Cosmos-Transfer2.5 needs the input set's colour video (its `video_path`)".into(),
            );
        };
        if p.weights.is_empty() {
            return Err(
                "no control weights: pass `--weights`, e.g. `--weights edge=0.5,depth=0.5`".into(),
            );
        }
        let mut spec = Map::new();
        spec.insert("name".into(), json!(input.name));
        spec.insert("prompt".into(), json!(input.prompt));
        if let Some(n) = input.negative_prompt {
            spec.insert("negative_prompt".into(), json!(n));
        }
        spec.insert("video_path".into(), json!(video));
        spec.insert("seed".into(), json!(p.seed));
        spec.insert("guidance".into(), json!(Self::guidance(p.guidance)?));
        spec.insert("num_steps".into(), json!(p.steps));
        // A string, as pydantic there takes it ("0–200, 200 = pure noise").
        if !p.sigma_max_unset {
            spec.insert("sigma_max".into(), json!(format_sigma(p.sigma_max)));
        }
        if let Some(n) = p.num_conditional_frames {
            spec.insert("num_conditional_frames".into(), json!(n));
        }
        if let Some(r) = &p.resolution {
            spec.insert("resolution".into(), json!(r));
        }
        for (hint, weight) in p.weights.iter() {
            if !(0.0..=1.0).contains(&weight) {
                return Err(format!(
                    "--weights {hint}={weight}: Cosmos-Transfer2.5 takes a control weight from 0 to 1"
                ));
            }
            let mut block = Map::new();
            if let Some((_, path)) = input.controls.iter().find(|(h, _)| *h == hint) {
                block.insert("control_path".into(), json!(path));
            }
            block.insert("control_weight".into(), json!(weight));
            match hint {
                Hint::Edge => {
                    block.insert(
                        "preset_edge_threshold".into(),
                        json!(p.canny_threshold.as_str()),
                    );
                }
                Hint::Vis => {
                    block.insert(
                        "preset_blur_strength".into(),
                        json!(p.blur_strength.as_str()),
                    );
                }
                _ => {}
            }
            if let Some(words) = p.mask_prompts.get(&hint) {
                block.insert("mask_prompt".into(), json!(words));
            }
            if let Some((_, path)) = input.masks.iter().find(|(h, _)| *h == hint) {
                block.insert("mask_path".into(), json!(path));
            }
            spec.insert(hint.as_str().into(), Value::Object(block));
        }
        let spec = Value::Object(spec);
        spec25::validate_shape(&spec)
            .map_err(|e| format!("Cosmos-Transfer2.5 would reject this spec: {e}"))?;
        Ok(spec)
    }

    /// `torchrun … examples/inference.py -i SPEC -o OUT [--model KEY]`.
    fn argv(&self, gpus: u32, spec: &str, output_dir: &str, controls: &[Hint]) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            "torchrun".into(),
            format!("--nproc_per_node={}", gpus.max(1)),
            "--master_port=12341".into(),
            T25_SCRIPT.into(),
            "-i".into(),
            spec.into(),
            "-o".into(),
            output_dir.into(),
        ];
        // One control picks its own model; several load the multicontrol model by
        // themselves.
        if let [one] = controls {
            argv.extend(["--model".into(), one.as_str().into()]);
        }
        argv
    }

    /// A Transfer2.5 guidance: an integer 0–7.
    fn guidance(g: f64) -> Result<i64, String> {
        if g.fract() != 0.0 || !(0.0..=7.0).contains(&g) {
            return Err(format!(
                "--guidance {g}: Cosmos-Transfer2.5 takes a whole number from 0 to 7 (its default is {})",
                spec25::DEFAULT_GUIDANCE
            ));
        }
        Ok(g as i64)
    }
}

impl Model for Transfer25 {
    fn name(&self) -> &'static str {
        "transfer2.5"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["transfer25", "transfer2_5"]
    }

    fn title(&self) -> &'static str {
        "Cosmos-Transfer2.5"
    }

    fn defaults(&self, base: &mut RunParams) {
        base.seed = spec25::DEFAULT_SEED;
        base.guidance = f64::from(spec25::DEFAULT_GUIDANCE);
        base.steps = spec25::DEFAULT_STEPS;
        // Its own default noise level (`sigma_max: null`), unless a run gives one.
        base.sigma_max_unset = true;
    }

    fn check_given(&self, given: &[&str], params: &RunParams) -> Result<(), ForeignParam> {
        refuse(given, T1_ONLY, self.title())?;
        let unused = |h: &&Hint| params.weights.get(**h).is_none();
        if let Some(hint) = params.mask_prompts.keys().find(unused) {
            return Err(ForeignParam {
                param: format!("--mask-prompt {hint}=…"),
                title: self.title(),
                why: "a mask applies to a control the run uses: add it to --weights",
            });
        }
        if let Some(hint) = params.mask_files.keys().find(unused) {
            return Err(ForeignParam {
                param: format!("--mask {hint}=…"),
                title: self.title(),
                why: "a mask applies to a control the run uses: add it to --weights",
            });
        }
        if let Some((hint, _)) = params.weights.iter().find(|(h, _)| !T25_HINTS.contains(h)) {
            return Err(ForeignParam {
                param: format!("--weights {hint}=…"),
                title: self.title(),
                why: "its general model reads edge, vis, depth and seg only",
            });
        }
        Ok(())
    }

    fn build_spec(&self, input: &SpecInput<'_>) -> Result<TransferSpec, SpecError> {
        self.spec_json(input)
            .map(|json| TransferSpec {
                json,
                is_av: false,
                notes: Vec::new(),
            })
            .map_err(SpecError::Model)
    }

    fn command(&self, gpus: u32, spec: &str, output_dir: &str, controls: &[Hint]) -> Vec<String> {
        self.argv(gpus, spec, output_dir, controls)
    }

    fn container(&self) -> Container {
        Container {
            anonymous_volumes: &["/workspace/.venv"],
            cache: Some("/root/.cache"),
        }
    }

    fn primary_output(&self, name: &str) -> String {
        format!("{name}.mp4")
    }

    fn entry_point(&self) -> &'static str {
        T25_SCRIPT
    }

    fn batch_shape(&self) -> Option<BatchShape> {
        // Several specs in one `-i` JSONL file, the model loaded once; every sample keeps
        // its own parameters (reference §1).
        Some(BatchShape::SpecPerLine)
    }

    fn batch_signature(&self, spec: &Value, gpus: u32, _files: &[crate::InputFile]) -> String {
        // Only the setup is shared: the GPUs, and the model the control keys load (one
        // control its own, several the multicontrol model, for every sample of the file).
        // Everything else is each sample's own.
        let empty = Map::new();
        let controls = spec25::controls_of(spec.as_object().unwrap_or(&empty));
        let text = json!({"model": self.name(), "gpus": gpus, "controls": controls}).to_string();
        crate::sha256::hex_digest(text.as_bytes())
    }

    fn batch_reader(&self, lines: &[(u32, &RunParams)]) -> Box<dyn BatchReader> {
        Box::new(SampleLog {
            lines: lines.iter().map(|(f, p)| self.progress(*f, p)).collect(),
            current: None,
            saved: Vec::new(),
            blocked: None,
            said: Vec::new(),
        })
    }

    fn succeeded(&self, exit: Option<i32>, video_present: bool) -> bool {
        // Its guardrail ends a blocked sample with exit 0 and no video (`--keep-going`):
        // the video decides.
        exit == Some(0) && video_present
    }

    fn classify(&self, exit: Option<i32>, log: &str) -> crate::progress::Failure {
        // Its own refusal of a spec: `Error validating parameters from '<path>' at line <i>`
        // and pydantic's errors, then exit 1 (no traceback to read).
        if let Some(at) = log.find("Error validating parameters from ") {
            let said: Vec<&str> = log[at..]
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("For further information"))
                .take(6)
                .collect();
            return crate::progress::Failure {
                kind: crate::progress::FailureKind::SpecRejected,
                reason: format!("Cosmos-Transfer2.5 rejected the spec: {}", said.join(" | ")),
            };
        }
        crate::progress::classify_failure(exit, log)
    }

    fn missing_video(&self, log: &str) -> (&'static str, String) {
        if let Some(line) = log
            .lines()
            .rev()
            .find(|l| l.contains("Guardrail blocked generation"))
        {
            let said = crate::progress::log_message(line).map_or(line, |(_, m)| m);
            return (
                "guardrail_blocked",
                format!(
                    "Cosmos-Transfer2.5's prompt guardrail blocked the prompt (it exits 0 without a video): {}",
                    said.trim()
                ),
            );
        }
        if log.contains("Running guardrail check on video")
            && !log.contains("Passed guardrail on generated video")
        {
            return (
                "guardrail_video_blocked",
                "Cosmos-Transfer2.5's video guardrail found the generated video unsafe and kept no video (it exits 0 without one)".into(),
            );
        }
        (
            "no_video",
            "Cosmos-Transfer2.5 exited 0 but wrote no video".into(),
        )
    }

    fn progress(&self, frames: u32, params: &RunParams) -> Box<dyn LogProgress> {
        Box::new(StepProgress {
            chunks: spec25::chunk_count(frames, spec25::CHUNK_FRAMES, 1),
            steps: params.steps.max(1),
            chunk: 0,
            last_step: None,
        })
    }

    fn recipe(&self) -> Recipe {
        Recipe {
            repository: T25_REPO,
            commit: T25_COMMIT,
            image_name: "cosmos-transfer2.5",
            checkpoints: CheckpointSource::HubFiles(T25_HUB_FILES),
        }
    }
}

/// `70.0` as `"70"`, as a user would write it.
fn format_sigma(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{}", s as i64)
    } else {
        s.to_string()
    }
}

/// Transfer2.5's progress: `Generating chunk i/N` where the log shows it, and tqdm's
/// `Generating samples: … k/S` bars, one per chunk (a bar starting again is the next chunk).
#[derive(Debug)]
struct StepProgress {
    chunks: u32,
    steps: u32,
    chunk: u32,
    last_step: Option<u32>,
}

/// Cosmos-Transfer2.5's log over a file of several samples: `[i/N] Processing sample NAME`
/// starts line i-1, its step bars are that line's progress, `Generated video saved to …`
/// ends it saved; a guardrail block ends it without a video and the process goes on.
#[derive(Debug)]
struct SampleLog {
    lines: Vec<Box<dyn LogProgress>>,
    current: Option<u32>,
    saved: Vec<u32>,
    blocked: Option<u32>,
    /// What each line's part of the log said (its last lines).
    said: Vec<String>,
}

/// The most of a line's log kept to say why it ended.
const SAID_KEPT: usize = 8 * 1024;

impl BatchReader for SampleLog {
    fn feed(&mut self, line: &str) -> Option<BatchSignal> {
        if let Some((_, msg)) = crate::progress::log_message(line) {
            if let Some(rest) = msg.strip_prefix('[')
                && let Some((count, tail)) = rest.split_once("] Processing sample ")
                && !tail.is_empty()
            {
                let i: u32 = count.split('/').next()?.trim().parse().ok()?;
                let n = i.checked_sub(1)?;
                self.current = Some(n);
                return None;
            }
            let n = self.current?;
            let said = self.said_mut(n);
            said.push_str(line);
            said.push('\n');
            if said.len() > SAID_KEPT {
                let cut = said.len() - SAID_KEPT;
                let at = (cut..said.len())
                    .find(|i| said.is_char_boundary(*i))
                    .unwrap_or(said.len());
                said.drain(..at);
            }
            if msg.contains("Guardrail blocked generation") && self.blocked.is_none() {
                self.blocked = Some(n);
            }
            if msg.starts_with("Generated video saved to ") {
                if !self.saved.contains(&n) {
                    self.saved.push(n);
                }
                return Some(BatchSignal::Saved(n));
            }
        }
        let n = self.current?;
        let m = self.lines.get_mut(n as usize)?.feed(line)?;
        Some(BatchSignal::Line(n, m))
    }

    fn saved(&self) -> &[u32] {
        &self.saved
    }

    fn blocked_in(&self) -> Option<u32> {
        self.blocked
    }

    fn said_in(&self, n: u32) -> String {
        self.said.get(n as usize).cloned().unwrap_or_default()
    }
}

impl SampleLog {
    fn said_mut(&mut self, n: u32) -> &mut String {
        let n = n as usize;
        if self.said.len() <= n {
            self.said.resize(n + 1, String::new());
        }
        &mut self.said[n]
    }
}

impl LogProgress for StepProgress {
    fn feed(&mut self, line: &str) -> Option<Milestone> {
        if let Some(rest) = line.split("Generating chunk ").nth(1) {
            let (i, n) = rest.trim().split_once('/')?;
            self.chunk = i.trim().parse().ok()?;
            self.chunks = n.trim().parse().unwrap_or(self.chunks).max(1);
            self.last_step = None;
            return Some(self.at(0));
        }
        // The last bar drawn on the line (tqdm redraws with `\r`).
        let bar = line
            .rsplit("Generating samples:")
            .next()
            .filter(|_| line.contains("Generating samples:"))?;
        let counts = bar.split('|').nth(2)?.split('[').next()?.trim();
        let (k, s) = counts.split_once('/')?;
        let (k, s): (u32, u32) = (k.trim().parse().ok()?, s.trim().parse().ok()?);
        self.steps = s.max(1);
        let tenth = |step: u32| step * 10 / self.steps;
        let new_chunk = self.last_step.is_some_and(|last| k < last) || self.chunk == 0;
        if new_chunk {
            self.chunk = (self.chunk + 1).min(self.chunks);
        }
        // A tenth of a chunk at a time (and its end): progress without an event per step.
        let worth = new_chunk
            || k == self.steps
            || self.last_step.is_none_or(|last| tenth(k) > tenth(last));
        self.last_step = Some(k);
        worth.then(|| self.at(k))
    }
}

impl StepProgress {
    fn at(&self, step: u32) -> Milestone {
        let chunk = self.chunk.max(1);
        let done = (f64::from(chunk - 1) + f64::from(step) / f64::from(self.steps))
            / f64::from(self.chunks);
        Milestone {
            stage: "generating",
            fraction: 0.10 + 0.85 * done.clamp(0.0, 1.0),
            clip: Some((chunk, self.chunks)),
            step: Some((step, self.steps)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Weights;

    fn params(weights: &str) -> RunParams {
        RunParams {
            weights: weights.parse::<Weights>().expect("weights"),
            guidance: 3.0,
            ..RunParams::default()
        }
    }

    #[test]
    fn models_are_found_by_name() {
        assert_eq!(
            model("transfer1").map(|m| m.title()),
            Ok("Cosmos-Transfer1")
        );
        assert_eq!(
            model("transfer2.5").map(|m| m.title()),
            Ok("Cosmos-Transfer2.5")
        );
        assert!(
            model("transfer3")
                .unwrap_err()
                .to_string()
                .contains("transfer2.5")
        );
    }

    #[test]
    fn each_model_refuses_the_others_parameters_by_name() {
        let e = Transfer25
            .check_given(&["--seed", "--fps"], &params("edge=1"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "`--fps` is not a Cosmos-Transfer2.5 parameter: Cosmos-Transfer2.5 keeps the input video's frame rate"
        );
        let e = Transfer1
            .check_given(&["--num-conditional-frames"], &params("edge=1"))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("`--num-conditional-frames` is not a Cosmos-Transfer1 parameter")
        );
        let e = Transfer25.check_given(&[], &params("hdmap=1")).unwrap_err();
        assert!(e.to_string().contains("--weights hdmap"), "{e}");
    }

    #[test]
    fn a_transfer25_spec_is_what_its_pydantic_model_takes() {
        let p = params("edge=0.5,depth=0.5");
        let controls = [(Hint::Depth, "/r/in/depth.mp4".to_owned())];
        let spec = Transfer25
            .build_spec(&SpecInput {
                name: "rs_1",
                prompt: "a street",
                negative_prompt: None,
                params: &p,
                input_video: Some("/r/in/color.mp4"),
                controls: &controls,
                masks: &[],
            })
            .expect("spec")
            .json;
        assert_eq!(spec["name"], "rs_1");
        assert_eq!(spec["guidance"], 3);
        assert_eq!(spec["sigma_max"], "70");
        assert_eq!(spec["depth"]["control_path"], "/r/in/depth.mp4");
        assert_eq!(spec["edge"]["preset_edge_threshold"], "medium");
        assert!(spec["edge"].get("control_path").is_none());
        let bad = RunParams {
            guidance: 3.5,
            ..p.clone()
        };
        let e = Transfer25
            .build_spec(&SpecInput {
                name: "rs_1",
                prompt: "x",
                negative_prompt: None,
                params: &bad,
                input_video: Some("/v.mp4"),
                controls: &[],
                masks: &[],
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("whole number from 0 to 7"), "{e}");
        let argv = Transfer25.command(2, "/r/spec.json", "/r/out", &[Hint::Edge]);
        assert_eq!(
            argv.join(" "),
            "torchrun --nproc_per_node=2 --master_port=12341 examples/inference.py -i /r/spec.json -o /r/out --model edge"
        );
        assert_eq!(Transfer25.primary_output("rs_1"), "rs_1.mp4");
        // Exit 0 without a video is the guardrail's block, not a success.
        assert!(!Transfer25.succeeded(Some(0), false));
        assert!(Transfer25.succeeded(Some(0), true));
    }

    #[test]
    fn transfer25_failures_read_its_own_words() {
        let log = "Error validating parameters from '/r/spec.json' at line 0\n1 validation error for InferenceArguments\nguidance\n  Input should be less than or equal to 7 [type=less_than_equal, input_value=9, input_type=int]\n    For further information visit https://errors.pydantic.dev/2.11/v/less_than_equal\n";
        let f = Transfer25.classify(Some(1), log);
        assert_eq!(f.kind.code(), "spec_rejected");
        assert!(
            f.reason
                .contains("guidance | Input should be less than or equal to 7"),
            "{}",
            f.reason
        );
        let oom = Transfer25.classify(
            Some(1),
            "Traceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n",
        );
        assert_eq!(oom.kind.code(), "out_of_memory");
    }

    #[test]
    fn transfer25_progress_follows_chunks_and_steps() {
        let p = RunParams {
            steps: 4,
            ..RunParams::default()
        };
        let mut feed = Transfer25.progress(121, &p);
        let m = feed
            .feed("Generating samples:  50%|█████     | 2/4 [00:02<00:02, 1.00s/it]")
            .expect("bar");
        assert_eq!(m.clip, Some((1, 2)));
        let m = feed
            .feed("Generating samples:   0%|          | 0/4 [00:00<?, ?it/s]")
            .expect("next bar");
        assert_eq!(m.clip, Some((2, 2)));
        let m = feed.feed("\rGenerating samples:  25%|██ | 1/4 [00:01<00:03, 1.00s/it]\rGenerating samples: 100%|██████████| 4/4 [00:04<00:00, 1.00s/it]").expect("redrawn");
        assert!((m.fraction - 0.95).abs() < 1e-9, "{m:?}");
        let m = feed.feed("[12-08 00:15:10|INFO|cosmos_transfer2/_src/x.py:554:generate_vid2world] Generating chunk 1/3").expect("chunk");
        assert_eq!(m.clip, Some((1, 3)));
        assert!(feed.feed("unrelated").is_none());
    }

    #[test]
    fn transfer25_batches_read_each_sample_and_agree_on_setup_only() {
        let p = RunParams {
            steps: 4,
            ..RunParams::default()
        };
        let at = |msg: &str| {
            format!("[12-08 00:15:10|INFO|cosmos_transfer2/inference.py:318:generate] {msg}")
        };
        let mut log = Transfer25.batch_reader(&[(93, &p), (93, &p)]);
        assert!(log.feed(&at("Generating 2 samples: ['a', 'b']")).is_none());
        assert!(log.feed(&at("[1/2] Processing sample a")).is_none());
        let bar = "Generating samples: 100%|██████████| 4/4 [00:04<00:00, 1.00s/it]";
        assert!(matches!(log.feed(bar), Some(BatchSignal::Line(0, _))));
        assert_eq!(
            log.feed(&at("Generated video saved to out/a.mp4")),
            Some(BatchSignal::Saved(0))
        );
        assert!(log.feed(&at("[2/2] Processing sample b")).is_none());
        let blocked = "[12-08 00:15:11|CRITICAL|cosmos_transfer2/inference.py:218:_generate_sample] Guardrail blocked generation. Prompt: b";
        assert!(log.feed(blocked).is_none());
        assert_eq!(log.saved(), &[0]);
        assert_eq!(log.blocked_in(), Some(1));
        assert!(log.said_in(1).contains("Guardrail blocked generation"));
        assert!(!log.said_in(0).contains("Guardrail"));
        assert_eq!(
            Transfer25.missing_video(&log.said_in(1)).0,
            "guardrail_blocked"
        );

        // Seeds, prompts and weights are each sample's; the GPUs and the controls (which
        // model loads) are the file's.
        let spec = |seed: u32, controls: &[&str]| {
            let mut m = Map::new();
            m.insert("seed".into(), json!(seed));
            for c in controls {
                m.insert((*c).into(), json!({"control_weight": 0.5}));
            }
            Value::Object(m)
        };
        let sig = |v: &Value, gpus| Transfer25.batch_signature(v, gpus, &[]);
        assert_eq!(sig(&spec(1, &["edge"]), 1), sig(&spec(2, &["edge"]), 1));
        assert_ne!(sig(&spec(1, &["edge"]), 1), sig(&spec(1, &["depth"]), 1));
        assert_ne!(
            sig(&spec(1, &["edge"]), 1),
            sig(&spec(1, &["edge", "depth"]), 1)
        );
        assert_ne!(sig(&spec(1, &["edge"]), 1), sig(&spec(1, &["edge"]), 2));
    }
}
