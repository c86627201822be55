//! The one launch builder: the spec a run gives Cosmos and the exact command that starts the
//! model on a target. `cosmos run --dry-run` and the driver both call [`build_launch`], so a
//! dry run shows precisely what would run there.

use serde::Serialize;

use cosmos_core::launch::{RunLayout, TransferLaunch, torchrun_argv, upsampler_argv};
use cosmos_core::spec::{SpecError, TransferSpec};
use cosmos_core::{BatchId, InputFile, Run, RunId, RunKind, RunParams, Target};
use cosmos_remote::runtime::Launch;

use crate::runs::spec_for;
use crate::targets::runtime_of;

/// What starting a run sends: the spec file's content and the commands.
#[derive(Debug, Clone, Serialize)]
pub struct LaunchPlan {
    #[serde(skip)]
    pub spec: TransferSpec,
    /// `torchrun … transfer.py …`, as the model process sees it.
    pub model_command: Vec<String>,
    /// The command the target runs to start it (`docker run …`, or the detached process).
    pub start_command: Vec<String>,
}

/// What a launch is built from: a run's prompt, parameters and id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaunchSubject<'a> {
    pub run_id: &'a RunId,
    pub kind: RunKind,
    pub text: &'a str,
    pub negative: Option<&'a str>,
    pub params: &'a RunParams,
}

impl<'a> From<&'a Run> for LaunchSubject<'a> {
    fn from(run: &'a Run) -> Self {
        Self {
            run_id: &run.id,
            kind: run.kind,
            text: &run.prompt_text,
            negative: run.negative_prompt.as_deref(),
            params: &run.params,
        }
    }
}

/// The spec and commands of a run on `target`, its model on `devices`.
pub(crate) fn build_launch<'a>(
    target: &Target,
    subject: impl Into<LaunchSubject<'a>>,
    files: &[InputFile],
    devices: &[u32],
) -> Result<LaunchPlan, SpecError> {
    let s = subject.into();
    let cfg = checked_settings(target)?;
    let layout = RunLayout::new(&cfg.root, s.run_id);
    if s.kind == RunKind::Enhance {
        return Ok(enhance_launch(target, s, files, &layout, devices));
    }
    let spec = spec_for(
        s.kind,
        s.run_id.as_str(),
        s.text,
        s.negative,
        s.params,
        files,
        &layout,
    )?;
    if s.kind == RunKind::Upscale {
        // Cosmos-Transfer1's upscaler, whatever made the video.
        let model_command = transfer_command(cfg, &layout, &spec, s.params.gpus, None);
        return Ok(launch_of(
            target,
            s.run_id.as_str(),
            &layout,
            spec,
            model_command,
            devices,
        ));
    }
    let spec_path = layout.spec();
    model_launch(
        target,
        s.run_id.as_str(),
        s.params,
        (spec, &spec_path),
        &layout,
        devices,
    )
}

/// Job `job` (a run, or a batch whose lines share `params`' model and GPUs): its model's
/// command on the spec file at `spec.1` and the model's container settings (extra volumes,
/// its download cache kept on the target).
fn model_launch(
    target: &Target,
    job: &str,
    params: &RunParams,
    spec: (TransferSpec, &str),
    layout: &RunLayout,
    devices: &[u32],
) -> Result<LaunchPlan, SpecError> {
    let (spec, spec_path) = spec;
    let model = crate::runs::model_of(params)?;
    let hints: Vec<cosmos_core::Hint> = params.weights.iter().map(|(h, _)| h).collect();
    let mut model_command = model.command(params.gpus, spec_path, &layout.outputs(), &hints);
    if let Some(t) = &target.config.torchrun {
        model_command[0] = t.clone();
    }
    let container = model.container();
    let mut extra: Vec<String> = container
        .anonymous_volumes
        .iter()
        .map(|v| (*v).to_owned())
        .collect();
    if let Some(cache) = container.cache {
        extra.push(format!(
            "{}/model-cache/{}:{cache}",
            target.config.root.trim_end_matches('/'),
            model.name()
        ));
    }
    Ok(launch_with(
        target,
        job,
        layout,
        spec,
        model_command,
        devices,
        &extra,
    ))
}

/// The standalone prompt upsampler on the run's one video, its prompt read from the file
/// staging wrote (reference §1.4). Its "spec" records what it was given, for `cosmos show`.
fn enhance_launch(
    target: &Target,
    s: LaunchSubject<'_>,
    files: &[InputFile],
    layout: &RunLayout,
    devices: &[u32],
) -> LaunchPlan {
    let cfg = &target.config;
    let video = files
        .first()
        .map(|f| layout.input(f.kind, crate::runs::extension(&f.path)))
        .unwrap_or_default();
    let torchrun = cfg.torchrun.as_deref().unwrap_or("torchrun");
    let model_command = upsampler_argv(torchrun, &layout.prompt_file(), &video);
    let spec = TransferSpec {
        json: serde_json::json!({ "prompt": s.text, "input_video": video }),
        is_av: false,
        notes: Vec::new(),
    };
    launch_of(
        target,
        s.run_id.as_str(),
        layout,
        spec,
        model_command,
        devices,
    )
}

/// `torchrun … transfer.py …` for `spec` (the target's own torchrun where it names one).
fn transfer_command(
    cfg: &cosmos_core::TargetConfig,
    layout: &RunLayout,
    spec: &TransferSpec,
    gpus: u32,
    batch_input: Option<&str>,
) -> Vec<String> {
    let mut model_command = torchrun_argv(&TransferLaunch {
        gpus,
        spec_path: &layout.spec(),
        output_dir: &layout.outputs(),
        is_av: spec.is_av,
        checkpoint_dir: "checkpoints",
        batch_input,
    });
    if let Some(t) = &cfg.torchrun {
        model_command[0] = t.clone();
    }
    model_command
}

/// The spec and commands of a batch on `target`: the spec of its first line (whose inputs
/// are `inputs/0/`, so Cosmos's check of the global input video holds) and its JSONL file.
pub(crate) fn build_batch_launch(
    target: &Target,
    batch: &BatchId,
    first: &Run,
    first_files: &[InputFile],
    devices: &[u32],
) -> Result<LaunchPlan, SpecError> {
    let cfg = checked_settings(target)?;
    let layout = RunLayout::new(&cfg.root, batch);
    let spec = batch_spec(&layout, first, first_files)?;
    let file = layout.batch_file();
    // A model that reads a file of whole specs starts on that file like on one spec.
    let model = crate::runs::model_of(&first.params)?;
    if model.batch_shape() == Some(cosmos_core::batch::BatchShape::SpecPerLine) {
        return model_launch(
            target,
            batch.as_str(),
            &first.params,
            (spec, &file),
            &layout,
            devices,
        );
    }
    let model_command = transfer_command(cfg, &layout, &spec, first.params.gpus, Some(&file));
    Ok(launch_of(
        target,
        batch.as_str(),
        &layout,
        spec,
        model_command,
        devices,
    ))
}

/// The target's settings, once checked to be safe on a command line.
fn checked_settings(target: &Target) -> Result<&cosmos_core::TargetConfig, SpecError> {
    let cfg = &target.config;
    cfg.validate_argv_values()
        .map_err(|message| SpecError::TargetSetting {
            target: target.name.clone(),
            message,
        })?;
    Ok(cfg)
}

/// A batch's spec: its first run's, with that run's inputs in `inputs/0/`.
pub(crate) fn batch_spec(
    layout: &RunLayout,
    first: &Run,
    first_files: &[InputFile],
) -> Result<TransferSpec, SpecError> {
    crate::runs::spec_with_inputs(
        first.kind,
        first.id.as_str(),
        &first.prompt_text,
        first.negative_prompt.as_deref(),
        &first.params,
        first_files,
        &|stem, ext| layout.line_input(0, stem, ext),
    )
}

/// The commands that start `spec` as job `job` (a run's id or a batch's).
fn launch_of(
    target: &Target,
    job: &str,
    layout: &RunLayout,
    spec: TransferSpec,
    model_command: Vec<String>,
    devices: &[u32],
) -> LaunchPlan {
    launch_with(target, job, layout, spec, model_command, devices, &[])
}

/// [`launch_of`] with more container volumes than the target's own.
fn launch_with(
    target: &Target,
    job: &str,
    layout: &RunLayout,
    spec: TransferSpec,
    model_command: Vec<String>,
    devices: &[u32],
    volumes: &[String],
) -> LaunchPlan {
    let cfg = &target.config;
    let mounts: Vec<String> = cfg.mounts.iter().chain(volumes).cloned().collect();
    let start_command = runtime_of(target).start_argv(&Launch {
        job,
        layout,
        root: &cfg.root,
        cosmos_dir: &cfg.cosmos_dir,
        image: &cfg.image,
        shm_size: &cfg.shm_size,
        gpu_devices: devices,
        mounts: &mounts,
        command: model_command.clone(),
    });
    LaunchPlan {
        spec,
        model_command,
        start_command,
    }
}

impl crate::Services {
    /// The spec a placed run gives (or gave) Cosmos, rebuilt by the one launch builder from
    /// what the run records; `None` before it is placed, or when its target is gone.
    pub(crate) async fn run_spec(
        &self,
        id: &RunId,
    ) -> crate::error::EngineResult<Option<serde_json::Value>> {
        let run = self.store().run(id).await?;
        let Some(name) = &run.target else {
            return Ok(None);
        };
        let Ok(target) = self.find_target(Some(name)).await else {
            return Ok(None);
        };
        let files = self.input_files(&run).await?;
        let plan = build_launch(&target, &run, &files, &crate::execute::devices_of(&run))?;
        Ok(Some(plan.spec.json))
    }
}
