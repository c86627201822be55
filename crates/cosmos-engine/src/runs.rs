//! Planning a run — the exact spec and command a target would execute — and queueing it.

use serde::Serialize;

use cosmos_core::launch::{RunLayout, mask_stem};
use cosmos_core::naming::{name_from_text, validate_name};
use cosmos_core::spec::{SpecError, TransferSpec, TransferSpecInput, build_upscale_spec};
use cosmos_core::{
    Hint, InputFile, InputKind, InputSetId, PromptId, Run, RunId, RunKind, RunParams, RunStatus,
    Target, Weights,
};
use cosmos_store::{NewPrompt, NewRun, PromptName, PromptUpdate};

use crate::Services;
use crate::error::{EngineError, EngineResult};
use crate::launch::{LaunchPlan, LaunchSubject, build_launch};
use crate::prompts::{InputsRef, PendingInputs, normalise_negative, validate_text};

/// What the run is about: an existing prompt, or new text (and inputs) to make one from.
#[derive(Debug, Clone)]
pub enum RunSubject {
    Prompt(String),
    /// A prompt with control videos named too: they become its input set when it has none.
    PromptOn {
        prompt: String,
        inputs: InputsRef,
    },
    Text {
        text: String,
        inputs: Option<InputsRef>,
    },
}

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub subject: RunSubject,
    /// Overrides the prompt's negative text for this run (with a prompt), or becomes the new
    /// prompt's negative text (with text).
    pub negative: Option<String>,
    /// Empty weights mean: one equal share per control video in the input set.
    pub params: RunParams,
    pub name: Option<String>,
}

/// Where runs go on a target until targets exist: the layout and image a target would use.
#[derive(Debug, Clone, Serialize)]
pub struct LaunchDefaults {
    pub root: String,
    pub cosmos_dir: String,
    pub image: String,
    pub shm_size: String,
    pub mounts: Vec<String>,
}

impl LaunchDefaults {
    /// A stand-in target with these settings (a Docker host), for planning before any
    /// target exists.
    pub fn as_target(&self) -> Target {
        Target {
            name: "(the [target] settings)".into(),
            config: self.config(cosmos_core::TargetKind::Ssh),
            is_default: false,
        }
    }

    /// A new target's configuration: these settings, Docker with the GPU flag, 8 slots until
    /// the host's GPUs are counted, nothing else set.
    pub(crate) fn config(&self, kind: cosmos_core::TargetKind) -> cosmos_core::TargetConfig {
        cosmos_core::TargetConfig {
            kind,
            host: None,
            user: None,
            port: None,
            key: None,
            jump: None,
            root: self.root.clone(),
            cosmos_dir: self.cosmos_dir.clone(),
            image: self.image.clone(),
            shm_size: self.shm_size.clone(),
            runtime: cosmos_core::RuntimeKind::Docker,
            docker_sudo: false,
            gpu_flag: true,
            gpus: 8,
            gpus_from_host: true,
            env: Default::default(),
            torchrun: None,
            rehearsal: false,
            mounts: self.mounts.clone(),
            image_digest: None,
            checkout_commit: None,
            manifest_hash: None,
            hf_cache_complete: false,
            gpu_memory_mib: None,
            models: Vec::new(),
            floating_image: false,
        }
    }
}

/// The prompt a run will use.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlannedPrompt {
    /// `None` until a new prompt is stored.
    pub id: Option<PromptId>,
    pub name: String,
    pub text: String,
    pub negative: Option<String>,
}

/// Everything about a run before it is stored: what Cosmos will receive and how it will be
/// started.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunPlan {
    pub run_id: RunId,
    pub prompt: PlannedPrompt,
    /// `None` until a new input set is stored.
    pub input_set_id: Option<InputSetId>,
    pub params: RunParams,
    pub spec: serde_json::Value,
    pub model_command: Vec<String>,
    pub container_command: Vec<String>,
    pub notes: Vec<String>,
    pub name: Option<String>,
    /// Queue order: higher first.
    pub priority: i32,
    /// The target the run must use; `None` lets the scheduler place it.
    pub target_pin: Option<String>,
    /// A 4K upscale of its output follows it, with this control weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upscale: Option<f64>,
    #[serde(skip)]
    pending: Option<PendingInputs>,
    /// The prompt had no input set: the run's becomes its own when it is stored.
    #[serde(skip)]
    attach_inputs: bool,
    /// The control videos, for planning variants.
    #[serde(skip)]
    files: Vec<InputFile>,
}

impl std::fmt::Debug for PendingInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PendingInputs::Stored(id) => write!(f, "Stored({id})"),
            PendingInputs::New(i) => write!(f, "New({})", i.dir.display()),
        }
    }
}

/// One equal share per control video; `edge` alone when there are none.
fn default_weights(files: &[InputFile]) -> Weights {
    let hints: Vec<Hint> = files.iter().filter_map(|f| f.kind.hint()).collect();
    let general: Vec<Hint> = hints.iter().copied().filter(|h| !h.is_av()).collect();
    let chosen = if !general.is_empty() {
        general
    } else if !hints.is_empty() {
        hints
    } else {
        vec![Hint::Edge]
    };
    Weights::equal(&chosen)
}

pub(crate) fn extension(path: &str) -> &str {
    std::path::Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("mp4")
}

/// A new queued run like `run`: its kind, prompt, inputs, parameters, priority, target choice
/// and the run it upscales (a retry, or a run derived from it, changes what differs).
pub(crate) fn new_run_like(run: &Run, note: String) -> NewRun {
    NewRun {
        id: RunId::new(),
        prompt_id: run.prompt_id.clone(),
        kind: run.kind,
        name: run.name.clone(),
        prompt_text: run.prompt_text.clone(),
        negative_prompt: run.negative_prompt.clone(),
        input_set_id: run.input_set_id.clone(),
        params: run.params.clone(),
        priority: run.priority,
        created_at: cosmos_core::now(),
        note,
        retry_of: None,
        upscale_of: run.upscale_of.clone(),
        target_pin: run.target_pin.clone(),
        sweep_id: None,
        signature: None,
    }
}

/// The spec Cosmos receives for a run whose inputs sit in `layout`'s inputs folder.
/// The batch signature of a transfer run (`cosmos_core::batch::signature`): what Cosmos
/// treats as global in batch mode, so runs that agree on it may share one process.
pub(crate) fn signature_for(
    text: &str,
    negative: Option<&str>,
    params: &RunParams,
    files: &[InputFile],
) -> Option<String> {
    // Only a model whose adapter batches shares a process between runs.
    let model = model_of(params).ok().filter(|m| m.batches())?;
    let layout = RunLayout::new("/", "signature");
    let spec = spec_for(
        RunKind::Transfer,
        "signature",
        text,
        negative,
        params,
        files,
        &layout,
    )
    .ok()?;
    Some(model.batch_signature(&spec.json, params.gpus, files))
}

/// The spec of run `name` (its id) whose inputs are in `layout`'s inputs folder.
pub(crate) fn spec_for(
    kind: RunKind,
    name: &str,
    text: &str,
    negative: Option<&str>,
    params: &RunParams,
    files: &[InputFile],
    layout: &RunLayout,
) -> Result<TransferSpec, SpecError> {
    spec_with_inputs(kind, name, text, negative, params, files, &|stem, ext| {
        layout.input(stem, ext)
    })
}

/// Where a run's colour video and control videos are, by `path_of(stem, extension)`.
fn input_paths(
    files: &[InputFile],
    path_of: &dyn Fn(&str, &str) -> String,
) -> (Option<String>, Vec<(Hint, String)>) {
    let input_video = files
        .iter()
        .find(|f| f.kind == InputKind::Color)
        .map(|f| path_of(InputKind::Color.as_str(), extension(&f.path)));
    let controls: Vec<(Hint, String)> = files
        .iter()
        .filter_map(|f| {
            f.kind
                .hint()
                .map(|h| (h, path_of(f.kind.as_str(), extension(&f.path))))
        })
        .collect();
    (input_video, controls)
}

/// Where a run's mask videos are staged, by `path_of(stem, extension)`.
fn mask_paths(params: &RunParams, path_of: &dyn Fn(&str, &str) -> String) -> Vec<(Hint, String)> {
    params
        .mask_files
        .iter()
        .map(|(hint, m)| (*hint, path_of(&mask_stem(*hint), &m.extension())))
        .collect()
}

/// The spec of a run whose input files are where `path_of(stem, extension)` says (a batch's
/// lines each have their own folder).
pub(crate) fn spec_with_inputs(
    kind: RunKind,
    name: &str,
    text: &str,
    negative: Option<&str>,
    params: &RunParams,
    files: &[InputFile],
    path_of: &dyn Fn(&str, &str) -> String,
) -> Result<TransferSpec, SpecError> {
    let (input_video, controls) = input_paths(files, path_of);
    let masks = mask_paths(params, path_of);
    // An upscale run is Cosmos-Transfer1's upscaler, whatever made its video.
    if kind == RunKind::Upscale {
        return build_upscale_spec(&TransferSpecInput {
            prompt: text,
            negative_prompt: negative,
            params,
            input_video: input_video.as_deref(),
            controls: &controls,
        });
    }
    // A transfer run's spec is its model's (which refuses the `upscale` control itself).
    model_of(params)?.build_spec(&cosmos_core::model::SpecInput {
        name,
        prompt: text,
        negative_prompt: negative,
        params,
        input_video: input_video.as_deref(),
        controls: &controls,
        masks: &masks,
    })
}

/// The adapter of a run's model.
pub(crate) fn model_of(
    params: &RunParams,
) -> Result<&'static dyn cosmos_core::model::Model, SpecError> {
    cosmos_core::model::model(&params.model).map_err(|e| SpecError::Model(e.to_string()))
}

impl Services {
    /// Works out the run without writing anything: resolves the prompt and inputs, builds and
    /// validates the spec, and composes the commands.
    pub(crate) async fn plan_run(
        &self,
        req: &RunRequest,
        target: &Target,
    ) -> EngineResult<RunPlan> {
        req.params.validate().map_err(SpecError::from)?;
        let name = req.name.as_deref().map(validate_name).transpose()?;
        let negative_override = normalise_negative(req.negative.as_deref())?;
        let mut attach = false;
        let (prompt, pending, files) = match &req.subject {
            RunSubject::PromptOn { prompt, inputs } => {
                let id = self.resolve_prompt(prompt).await?;
                let p = self.store().prompt(&id).await?;
                let pending = self.pending_inputs(inputs).await?;
                let files = match (&p.input_set_id, &pending) {
                    (Some(own), PendingInputs::Stored(given)) if own == given => {
                        self.store().input_set(own).await?.files
                    }
                    (Some(own), _) => {
                        return Err(EngineError::refused(
                            crate::ErrorKind::InvalidInput,
                            "prompt_has_inputs",
                            format!(
                                "prompt `{}` already has its input set `{own}`: drop the folder to run it on those videos",
                                p.name
                            ),
                        ));
                    }
                    // The prompt has no videos yet: these become its own.
                    (None, PendingInputs::Stored(given)) => {
                        attach = true;
                        self.store().input_set(given).await?.files
                    }
                    (None, PendingInputs::New(inspected)) => {
                        attach = true;
                        inspected.files.clone()
                    }
                };
                let planned = PlannedPrompt {
                    id: Some(p.id),
                    name: p.name,
                    text: p.text,
                    negative: negative_override.or(p.negative),
                };
                (planned, pending, files)
            }
            RunSubject::Prompt(text) => {
                let id = self.resolve_prompt(text).await?;
                let p = self.store().prompt(&id).await?;
                let set_id = p
                    .input_set_id
                    .clone()
                    .ok_or_else(|| EngineError::NoInputSet(p.id.to_string()))?;
                let set = self.store().input_set(&set_id).await?;
                let negative = negative_override.or(p.negative);
                let planned = PlannedPrompt {
                    id: Some(p.id),
                    name: p.name,
                    text: p.text,
                    negative,
                };
                (planned, PendingInputs::Stored(set_id), set.files)
            }
            RunSubject::Text { text, inputs } => {
                let text = validate_text("prompt text", text)?;
                let inputs = inputs.as_ref().ok_or_else(|| {
                    // One word is more likely a prompt's name mistyped than new text.
                    let lookup = if text.split_whitespace().count() == 1 {
                        format!("no prompt has the name or id `{text}`; as new text, ")
                    } else {
                        String::new()
                    };
                    EngineError::refused(
                        crate::ErrorKind::InvalidInput,
                        "needs_inputs",
                        format!("{lookup}a run needs control videos: give an input folder or input set id after the text"),
                    )
                })?;
                let pending = self.pending_inputs(inputs).await?;
                let (files, existing) = match &pending {
                    PendingInputs::Stored(id) => {
                        let set = self.store().input_set(id).await?;
                        let existing = self
                            .store()
                            .find_prompt(&text, negative_override.as_deref(), Some(id))
                            .await?;
                        (set.files, existing)
                    }
                    PendingInputs::New(inspected) => (inspected.files.clone(), None),
                };
                let planned = match existing {
                    Some(p) => PlannedPrompt {
                        id: Some(p.id),
                        name: p.name,
                        text: p.text,
                        negative: p.negative,
                    },
                    None => PlannedPrompt {
                        id: None,
                        name: name.clone().unwrap_or_else(|| name_from_text(&text)),
                        text,
                        negative: negative_override,
                    },
                };
                (planned, pending, files)
            }
        };

        let input_set_id = match &pending {
            PendingInputs::Stored(id) => Some(id.clone()),
            PendingInputs::New(_) => None,
        };
        let mut plan = self.plan_with(prompt, files, req.params.clone(), target)?;
        plan.input_set_id = input_set_id;
        plan.name = name;
        plan.pending = Some(pending);
        if attach {
            plan.attach_inputs = true;
            plan.notes.push(format!(
                "prompt `{}` had no input set: these control videos become its own",
                plan.prompt.name
            ));
        }
        Ok(plan)
    }

    /// The same run with other parameters (a sweep): each variant is validated and gets its
    /// own id and spec, and is stored with the base plan's prompt and inputs.
    pub(crate) fn plan_variant(
        &self,
        base: &RunPlan,
        params: &RunParams,
        target: &Target,
    ) -> EngineResult<RunPlan> {
        params.validate().map_err(SpecError::from)?;
        let mut plan = self.plan_with(
            base.prompt.clone(),
            base.files.clone(),
            params.clone(),
            target,
        )?;
        plan.input_set_id = base.input_set_id.clone();
        plan.name = base.name.clone();
        plan.priority = base.priority;
        plan.target_pin = base.target_pin.clone();
        plan.upscale = base.upscale;
        Ok(plan)
    }

    /// A new run id with its spec and commands, for a prompt on these control videos.
    fn plan_with(
        &self,
        prompt: PlannedPrompt,
        files: Vec<InputFile>,
        mut params: RunParams,
        target: &Target,
    ) -> EngineResult<RunPlan> {
        if params.weights.is_empty() {
            params.weights = default_weights(&files);
        }
        let run_id = RunId::new();
        let devices: Vec<u32> = (0..params.gpus).collect();
        let subject = LaunchSubject {
            run_id: &run_id,
            kind: RunKind::Transfer,
            text: &prompt.text,
            negative: prompt.negative.as_deref(),
            params: &params,
        };
        let LaunchPlan {
            spec,
            model_command,
            start_command,
        } = build_launch(target, subject, &files, &devices)?;
        Ok(RunPlan {
            run_id,
            prompt,
            input_set_id: None,
            params,
            spec: spec.json,
            model_command,
            container_command: start_command,
            notes: spec.notes,
            name: None,
            priority: 0,
            target_pin: None,
            upscale: None,
            pending: None,
            attach_inputs: false,
            files,
        })
    }

    /// A failed or cancelled run again: a new queued run with the same prompt, inputs,
    /// parameters and target choice, linked to the old one.
    pub(crate) async fn retry_run(&self, id: &RunId) -> EngineResult<Run> {
        let old = self.store().run(id).await?;
        // An upscale cancelled with its parent comes back with the parent's retry.
        if let Some(parent) = &old.upscale_of {
            let p = self.store().run(parent).await?;
            if matches!(p.status, RunStatus::Failed | RunStatus::Cancelled) {
                return Err(EngineError::refused(
                    crate::ErrorKind::Conflict,
                    "parent_failed",
                    format!(
                        "run {id} upscales the output of {parent}, which {}: retry that run (`cosmos retry {parent}`) and its upscale comes with it",
                        p.status
                    ),
                ));
            }
        }
        let new = NewRun {
            retry_of: Some(id.clone()),
            signature: match old.kind {
                RunKind::Transfer => {
                    let files = self.input_files(&old).await?;
                    signature_for(
                        &old.prompt_text,
                        old.negative_prompt.as_deref(),
                        &old.params,
                        &files,
                    )
                }
                _ => None,
            },
            ..new_run_like(&old, format!("retry of {id}"))
        };
        let mut news = vec![new];
        for child in self.store().runs(&old.upscaled_by).await? {
            if child.failure_code.as_deref() != Some("parent_failed") || child.retried_by.is_some()
            {
                continue;
            }
            let note = format!(
                "retry of {}: 4K upscale of {}, waiting for it to succeed",
                child.id, news[0].id
            );
            news.push(NewRun {
                retry_of: Some(child.id.clone()),
                upscale_of: Some(news[0].id.clone()),
                ..new_run_like(&child, note)
            });
        }
        self.bus.record(self.store().create_runs(&news)).await?;
        Ok(self.store().run(&news[0].id).await?)
    }

    /// Stores what the plan needs (input set, prompt) and the run itself, as `queued`;
    /// `pin` keeps it on one target.
    pub(crate) async fn submit_run(
        &self,
        mut plan: RunPlan,
        note: &str,
        pin: Option<&str>,
    ) -> EngineResult<Run> {
        if let Some(pin) = pin {
            plan.target_pin = Some(pin.to_owned());
        }
        let mut runs = self.submit_runs(vec![plan], note).await?;
        runs.pop()
            .ok_or_else(|| EngineError::Internal("no run was stored".into()))
    }

    /// Stores several planned runs (a sweep, a file of runs): their prompts and inputs
    /// first, then every run in one transaction. A variant ([`Services::plan_variant`])
    /// shares the prompt and inputs of the plan before it.
    pub(crate) async fn submit_runs(
        &self,
        plans: Vec<RunPlan>,
        note: &str,
    ) -> EngineResult<Vec<Run>> {
        let mut news = Vec::with_capacity(plans.len());
        let mut last: Option<(InputSetId, PromptId)> = None;
        let sweep_id = (plans.len() > 1).then(|| plans[0].run_id.clone());
        for mut plan in plans {
            let (input_set_id, prompt_id) = match plan.pending.take() {
                Some(pending) => {
                    let (input_set_id, _) = self.commit_inputs(pending).await?;
                    let prompt_id = match &plan.prompt.id {
                        Some(id) if plan.attach_inputs => {
                            let update = PromptUpdate {
                                input_set_id: Some(Some(input_set_id.clone())),
                                ..Default::default()
                            };
                            self.store().update_prompt(id, &update).await?;
                            id.clone()
                        }
                        Some(id) => id.clone(),
                        None => {
                            self.store()
                                .create_prompt(&NewPrompt {
                                    id: PromptId::new(),
                                    name: PromptName::Generated(plan.prompt.name.clone()),
                                    text: plan.prompt.text.clone(),
                                    negative: plan.prompt.negative.clone(),
                                    input_set_id: Some(input_set_id.clone()),
                                    parent_id: None,
                                    model: None,
                                    created_at: cosmos_core::now(),
                                })
                                .await?
                                .id
                        }
                    };
                    (input_set_id, prompt_id)
                }
                None => last.clone().ok_or_else(|| {
                    EngineError::Internal("a variant must follow the plan it varies".into())
                })?,
            };
            last = Some((input_set_id.clone(), prompt_id.clone()));
            news.push(NewRun {
                id: plan.run_id.clone(),
                prompt_id,
                kind: RunKind::Transfer,
                name: plan.name.clone(),
                prompt_text: plan.prompt.text.clone(),
                negative_prompt: plan.prompt.negative.clone(),
                input_set_id: Some(input_set_id),
                params: plan.params.clone(),
                priority: plan.priority,
                created_at: cosmos_core::now(),
                note: note.to_owned(),
                retry_of: None,
                target_pin: plan.target_pin.clone(),
                sweep_id: sweep_id.clone(),
                signature: signature_for(
                    &plan.prompt.text,
                    plan.prompt.negative.as_deref(),
                    &plan.params,
                    &plan.files,
                ),
                upscale_of: None,
            });
            if let Some(weight) = plan.upscale {
                let parent = &news[news.len() - 1];
                news.push(NewRun {
                    id: RunId::new(),
                    kind: RunKind::Upscale,
                    name: parent.name.as_ref().map(|n| format!("{n}-4k")),
                    params: crate::upscale::upscale_params(&parent.params, weight)?,
                    note: format!(
                        "queued: 4K upscale of {}, waiting for it to succeed",
                        parent.id
                    ),
                    signature: None,
                    upscale_of: Some(parent.id.clone()),
                    ..parent.clone()
                });
            }
        }
        self.bus.record(self.store().create_runs(&news)).await?;
        let ids: Vec<RunId> = news.into_iter().map(|n| n.id).collect();
        Ok(self.store().runs(&ids).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cosmos_core::VideoInfo;

    fn file(kind: InputKind) -> InputFile {
        InputFile {
            kind,
            path: format!("/s/{kind}.mp4"),
            size: 1,
            sha256: String::new(),
            video: VideoInfo {
                frames: 1,
                fps: 24.0,
                width: 8,
                height: 8,
                duration_seconds: 1.0,
                codec: "h264".into(),
            },
        }
    }

    #[test]
    fn default_weights_share_the_controls_present() {
        use InputKind::*;
        let cases: [(&[InputKind], &str); 4] = [
            (&[Color], "edge=1"),
            (&[Color, Depth, Seg], "seg=0.5,depth=0.5"),
            (&[Hdmap, Lidar], "hdmap=0.5,lidar=0.5"),
            (&[Color, Depth, Hdmap], "depth=1"),
        ];
        for (kinds, want) in cases {
            let files: Vec<InputFile> = kinds.iter().map(|k| file(*k)).collect();
            assert_eq!(default_weights(&files).to_string(), want, "{kinds:?}");
        }
    }
}
