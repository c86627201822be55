//! 4K upscale runs (reference §1.3): Cosmos-Transfer1's `upscale` control on one video, 10
//! steps, batch size 1, writing three times the video's resolution bucket. Made from a run
//! (`cosmos upscale RUN`, or chained after each run by `cosmos run … --upscale`: the queue
//! holds it until that run succeeds, then sends it to the target that already has the output)
//! or from a video file.

use std::path::{Path, PathBuf};

use cosmos_core::resolution::{MAX_FRAMES, bucket_for, clip_count};
use cosmos_core::{
    Hint, InputFile, InputKind, Run, RunId, RunKind, RunParams, RunStatus, VideoInfo, Weights,
};
use cosmos_store::{NewPrompt, NewRun, PromptName};

use crate::Services;
use crate::error::{EngineError, EngineResult, ErrorKind};

/// The upscaler's control weight in upstream's example (`assets/inference_upscaler.json`).
pub const DEFAULT_WEIGHT: f64 = 0.5;
/// Diffusion steps of an upscale run (upstream's example passes `--num_steps 10`).
pub const STEPS: u32 = 10;

/// What to upscale.
#[derive(Debug, Clone)]
pub enum UpscaleSource {
    /// A run (id or prefix): its output video, now or once it succeeds.
    Run(String),
    /// A video file on this machine.
    Video(PathBuf),
}

#[derive(Debug, Clone)]
pub struct UpscaleRequest {
    pub source: UpscaleSource,
    /// The `upscale` control weight ([`DEFAULT_WEIGHT`] when `None`).
    pub weight: Option<f64>,
    /// Text for the upscaler; `None`: the run's own prompt (a video: Cosmos's default).
    pub prompt: Option<String>,
    /// A target to use instead of the one that has the run's output.
    pub target: Option<String>,
    pub priority: i32,
}

/// The parameters of an upscale of a run with `base`: its seed, guidance, sigma_max, fps
/// and GPUs, the `upscale` control alone at `weight`, and [`STEPS`] steps.
pub(crate) fn upscale_params(base: &RunParams, weight: f64) -> EngineResult<RunParams> {
    if !(0.0..=1.0).contains(&weight) {
        return Err(EngineError::refused(
            ErrorKind::InvalidInput,
            "bad_weight",
            format!("--weight {weight} is out of range: the upscale control weight is 0 to 1"),
        ));
    }
    let weights =
        Weights::new([(Hint::Upscale, weight)]).map_err(|e| EngineError::Invalid(e.to_string()))?;
    // Cosmos-Transfer1's upscaler, whatever made the video.
    Ok(RunParams {
        weights,
        steps: STEPS,
        upsample_prompt: false,
        model: cosmos_core::model::DEFAULT_MODEL.to_owned(),
        num_conditional_frames: None,
        resolution: None,
        mask_prompts: Default::default(),
        mask_files: Default::default(),
        sigma_max_unset: false,
        ..base.clone()
    })
}

/// Refuses a video Cosmos's upscaler cannot enlarge as asked: one above its resolution bucket
/// (Cosmos would shrink it to the bucket first), longer than Cosmos reads, or too short to
/// make a clip.
pub(crate) fn check_upscalable(what: &str, video: &VideoInfo) -> EngineResult<()> {
    let bucket = bucket_for(video.width, video.height);
    let refuse = |message: String| {
        Err(EngineError::refused(
            ErrorKind::InvalidInput,
            "not_upscalable",
            message,
        ))
    };
    if video.width > bucket.width || video.height > bucket.height {
        return refuse(format!(
            "{what} is {}×{}, above the {}×{} Cosmos's 4K upscaler takes for {} video (it would \
             shrink it to that first, then enlarge it to {}×{}): upscale a video at most {}×{}",
            video.width,
            video.height,
            bucket.width,
            bucket.height,
            bucket.aspect,
            bucket.width * 3,
            bucket.height * 3,
            bucket.width,
            bucket.height
        ));
    }
    if video.frames > MAX_FRAMES {
        return refuse(format!(
            "{what} has {} frames; Cosmos reads at most {MAX_FRAMES}: cut it shorter",
            video.frames
        ));
    }
    if clip_count(video.frames) == 0 {
        return refuse(format!(
            "{what} has {} frame(s), too few for Cosmos to make a clip",
            video.frames
        ));
    }
    Ok(())
}

/// A run's video output on this machine, if it has one.
pub(crate) fn primary_output(run: &Run) -> Option<&cosmos_core::RunOutput> {
    run.outputs
        .iter()
        .find(|o| o.path.ends_with(".mp4") && Path::new(&o.path).is_file())
}

impl Services {
    /// Queues a 4K upscale run.
    pub(crate) async fn upscale(&self, req: &UpscaleRequest) -> EngineResult<Run> {
        let weight = req.weight.unwrap_or(DEFAULT_WEIGHT);
        if let Some(prompt) = &req.prompt {
            crate::prompts::validate_text("prompt", prompt)?;
        }
        if let Some(name) = &req.target {
            self.find_target(Some(name)).await?;
        }
        let new = match &req.source {
            UpscaleSource::Run(text) => {
                let id = self.resolve_run(text).await?;
                let parent = self.store().run(&id).await?;
                self.upscale_of_run(&parent, weight, req).await?
            }
            UpscaleSource::Video(path) => self.upscale_of_video(path, weight, req).await?,
        };
        self.bus.record(self.store().create_run(&new)).await
    }

    async fn upscale_of_run(
        &self,
        parent: &Run,
        weight: f64,
        req: &UpscaleRequest,
    ) -> EngineResult<NewRun> {
        let id = &parent.id;
        if parent.kind != RunKind::Transfer {
            return Err(EngineError::refused(
                ErrorKind::InvalidInput,
                "not_upscalable",
                format!(
                    "run {id} is itself a {} run: only a transfer run's output is upscaled",
                    parent.kind
                ),
            ));
        }
        if parent.params.model != cosmos_core::model::DEFAULT_MODEL {
            let path = primary_output(parent).map_or("VIDEO".to_owned(), |o| o.path.clone());
            return Err(EngineError::refused(
                ErrorKind::InvalidInput,
                "not_upscalable",
                format!(
                    "run {id} ran {}, which has no 4K upscaler of its own: upscale its video with Cosmos-Transfer1's on a target set up for it, `cosmos upscale {path} --target NAME`",
                    parent.params.model
                ),
            ));
        }
        let note = match parent.status {
            RunStatus::Failed | RunStatus::Cancelled => {
                return Err(EngineError::refused(
                    ErrorKind::InvalidInput,
                    "no_output",
                    format!(
                        "run {id} {}: it has no output to upscale (retry it with `cosmos retry {id}`)",
                        parent.status
                    ),
                ));
            }
            RunStatus::Succeeded => {
                let Some(video) = primary_output(parent) else {
                    return Err(EngineError::refused(
                        ErrorKind::InvalidInput,
                        "no_output",
                        format!(
                            "run {id} succeeded but its output video is not on this machine any more: nothing to upscale"
                        ),
                    ));
                };
                let info = self.probe_video(Path::new(&video.path)).await?;
                check_upscalable(&format!("the output of run {id}"), &info)?;
                format!("queued: 4K upscale of {id}")
            }
            _ => format!("queued: 4K upscale of {id}, waiting for it to succeed"),
        };
        Ok(NewRun {
            kind: RunKind::Upscale,
            name: parent.name.as_ref().map(|n| format!("{n}-4k")),
            prompt_text: req
                .prompt
                .clone()
                .unwrap_or_else(|| parent.prompt_text.clone()),
            params: upscale_params(&parent.params, weight)?,
            priority: req.priority,
            // Where its output already is, unless the user chose; a parent still to run
            // pins it when it succeeds.
            target_pin: req.target.clone().or_else(|| {
                (parent.status == RunStatus::Succeeded)
                    .then(|| parent.target.clone())
                    .flatten()
            }),
            upscale_of: Some(parent.id.clone()),
            ..crate::runs::new_run_like(parent, note)
        })
    }

    async fn upscale_of_video(
        &self,
        path: &Path,
        weight: f64,
        req: &UpscaleRequest,
    ) -> EngineResult<NewRun> {
        let path = std::fs::canonicalize(path).map_err(|source| cosmos_media::MediaError::Io {
            path: path.to_owned(),
            source,
        })?;
        if !path.is_file() {
            return Err(EngineError::Invalid(format!(
                "{} is not a video file",
                path.display()
            )));
        }
        let files = self.inspect_one(&path).await?;
        check_upscalable(&path.display().to_string(), &files[0].video)?;
        let dir = path.parent().unwrap_or(Path::new("/")).to_owned();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("video")
            .to_owned();
        let inspected = crate::InspectedInputs {
            dir,
            report: cosmos_core::inputs::check_input_files(&files),
            fingerprint: cosmos_core::inputs::fingerprint(&files),
            files,
            skipped: Vec::new(),
        };
        let set = self
            .store_inspected(
                inspected,
                Some(&cosmos_core::naming::name_from_text(&stem)),
                true,
            )
            .await?
            .set;
        let text = req.prompt.clone().unwrap_or_default();
        let prompt = match self.store().find_prompt(&text, None, Some(&set.id)).await? {
            Some(p) => p,
            None => {
                self.store()
                    .create_prompt(&NewPrompt {
                        id: cosmos_core::PromptId::new(),
                        name: PromptName::Generated(cosmos_core::naming::name_from_text(&format!(
                            "{stem} 4k"
                        ))),
                        text: text.clone(),
                        negative: None,
                        input_set_id: Some(set.id.clone()),
                        parent_id: None,
                        model: None,
                        created_at: cosmos_core::now(),
                    })
                    .await?
            }
        };
        let fps = set.files[0].video.fps.round();
        let base = RunParams {
            fps: if (1.0..=240.0).contains(&fps) {
                fps as u32
            } else {
                RunParams::default().fps
            },
            ..RunParams::default()
        };
        Ok(NewRun {
            id: RunId::new(),
            prompt_id: prompt.id,
            kind: RunKind::Upscale,
            name: None,
            prompt_text: text,
            negative_prompt: None,
            input_set_id: Some(set.id),
            params: upscale_params(&base, weight)?,
            priority: req.priority,
            created_at: cosmos_core::now(),
            note: format!("queued: 4K upscale of {}", path.display()),
            retry_of: None,
            target_pin: req.target.clone(),
            sweep_id: None,
            signature: None,
            upscale_of: None,
        })
    }

    /// Probes and hashes one video as the colour input.
    async fn inspect_one(&self, path: &Path) -> EngineResult<Vec<InputFile>> {
        let ffprobe = self.ffprobe.clone();
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            cosmos_media::inspect_files(&ffprobe, &[(InputKind::Color, path)])
        })
        .await
        .map_err(|e| EngineError::Internal(format!("probing stopped: {e}")))?
        .map_err(Into::into)
    }

    /// What ffprobe says of a video.
    pub(crate) async fn probe_video(&self, path: &Path) -> EngineResult<VideoInfo> {
        let ffprobe = self.ffprobe.clone();
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || ffprobe.probe(&path))
            .await
            .map_err(|e| EngineError::Internal(format!("probing stopped: {e}")))?
            .map_err(Into::into)
    }

    /// The input of an upscale run of another run: that run's output video as it was recorded
    /// when downloaded (probed for its size and length; its bytes are checked once, by
    /// [`Services::check_upscale_input`] when the run is staged).
    pub(crate) async fn upscale_input(&self, parent_id: &RunId) -> EngineResult<Vec<InputFile>> {
        let parent = self.store().run(parent_id).await?;
        let recorded = primary_output(&parent).cloned().ok_or_else(|| {
            EngineError::refused(
                ErrorKind::InvalidInput,
                "no_output",
                format!("run {parent_id} has no output video on this machine to upscale"),
            )
        })?;
        let video = self.probe_video(Path::new(&recorded.path)).await?;
        Ok(vec![InputFile {
            kind: InputKind::Color,
            path: recorded.path,
            size: recorded.size,
            sha256: recorded.sha256,
            video,
        }])
    }

    /// Before an upscale's input is staged: it still holds the bytes verified when it was
    /// downloaded, and Cosmos's upscaler can enlarge it.
    pub(crate) async fn check_upscale_input(
        &self,
        parent_id: &RunId,
        file: &InputFile,
    ) -> EngineResult<()> {
        let path = std::path::PathBuf::from(&file.path);
        let (sha256, _) =
            tokio::task::spawn_blocking(move || cosmos_remote::blobs::hash_local(&path))
                .await
                .map_err(|e| EngineError::Internal(format!("hashing stopped: {e}")))??;
        if sha256 != file.sha256 {
            return Err(EngineError::refused(
                ErrorKind::InvalidInput,
                "output_changed",
                format!(
                    "the output of run {parent_id} ({}) changed since it was downloaded and verified: its sha256 is {sha256}, not {}",
                    file.path, file.sha256
                ),
            ));
        }
        check_upscalable(&format!("the output of run {parent_id}"), &file.video)
    }
}
