//! Prompt enhancement: Cosmos-Transfer1's standalone prompt upsampler (Pixtral-12B,
//! `upsampler_pipeline.py`, reference §1.4) rewrites a prompt from the first frames of one of
//! its control videos. It runs as a queued run of kind `enhance` (it needs a GPU of its own,
//! so it takes a slot like any run), and its result is stored as a child prompt linked to
//! the one it came from.

use cosmos_core::{InputFile, InputKind, Prompt, Run, RunId, RunKind, RunParams};
use cosmos_store::{NewPrompt, NewRun, PromptName};

use crate::Services;
use crate::error::{EngineError, EngineResult, ErrorKind};

#[derive(Debug, Clone)]
pub struct EnhanceRequest {
    /// A prompt id (any unique prefix) or name.
    pub prompt: String,
    /// The target to run on; `None` lets the scheduler place it.
    pub target: Option<String>,
    pub priority: i32,
}

/// The video the upsampler looks at: the one upstream's in-run upsampler prefers, the colour
/// (vis) or edge video, else segmentation or depth, else any.
pub(crate) fn enhance_video(files: &[InputFile]) -> Option<&InputFile> {
    [
        InputKind::Color,
        InputKind::Edge,
        InputKind::Seg,
        InputKind::Depth,
    ]
    .iter()
    .find_map(|k| files.iter().find(|f| f.kind == *k))
    .or_else(|| files.first())
}

impl Services {
    /// Queues an enhance run of a prompt.
    pub(crate) async fn enhance_prompt(&self, req: &EnhanceRequest) -> EngineResult<Run> {
        let id = self.resolve_prompt(&req.prompt).await?;
        let prompt = self.store().prompt(&id).await?;
        let Some(set_id) = &prompt.input_set_id else {
            return Err(EngineError::refused(
                ErrorKind::InvalidInput,
                "needs_inputs",
                format!(
                    "prompt `{}` has no input set: the upsampler reads the first frames of a control video; give it one with `cosmos prompt edit {} --inputs DIR`",
                    prompt.name, prompt.id
                ),
            ));
        };
        let set = self.store().input_set(set_id).await?;
        if enhance_video(&set.files).is_none() {
            return Err(EngineError::Invalid(format!(
                "input set {set_id} has no video for the upsampler to read"
            )));
        }
        if let Some(name) = &req.target {
            self.find_target(Some(name)).await?;
        }
        let new = NewRun {
            id: RunId::new(),
            prompt_id: prompt.id.clone(),
            kind: RunKind::Enhance,
            name: None,
            prompt_text: prompt.text.clone(),
            negative_prompt: prompt.negative.clone(),
            input_set_id: Some(set.id.clone()),
            params: RunParams::default(),
            priority: req.priority,
            created_at: cosmos_core::now(),
            note: format!(
                "queued: enhance prompt `{}` with Cosmos's prompt upsampler",
                prompt.name
            ),
            retry_of: None,
            target_pin: req.target.clone(),
            sweep_id: None,
            signature: None,
            upscale_of: None,
        };
        self.bus.record(self.store().create_run(&new)).await
    }

    /// The child of `parent` with exactly `text`, if one was stored.
    async fn enhanced_child(
        &self,
        parent: &cosmos_core::PromptId,
        text: &str,
    ) -> EngineResult<Option<Prompt>> {
        let children = self
            .store()
            .list_prompts(&cosmos_store::PromptFilter {
                parent_id: Some(parent.clone()),
                limit: u32::MAX,
                ..Default::default()
            })
            .await?;
        Ok(children
            .into_iter()
            .map(|c| c.prompt)
            .find(|p| p.text == text))
    }

    /// The prompt an enhance run stored, once it succeeded.
    pub(crate) async fn enhanced_by(&self, run: &Run) -> EngineResult<Option<Prompt>> {
        match (&run.kind, &run.model_prompt) {
            (RunKind::Enhance, Some(text)) => self.enhanced_child(&run.prompt_id, text).await,
            _ => Ok(None),
        }
    }

    /// Stores what the upsampler made of an enhance run's prompt as a child of that prompt
    /// (or finds the identical child a driver before this one stored).
    pub(crate) async fn store_enhanced(&self, run: &Run, text: &str) -> EngineResult<Prompt> {
        if let Some(same) = self.enhanced_child(&run.prompt_id, text).await? {
            return Ok(same);
        }
        let parent = self.store().prompt(&run.prompt_id).await?;
        let prompt = self
            .store()
            .create_prompt(&NewPrompt {
                id: cosmos_core::PromptId::new(),
                name: PromptName::Generated(format!("{}-enhanced", parent.name)),
                text: text.to_owned(),
                negative: parent.negative.clone(),
                input_set_id: parent.input_set_id.clone(),
                parent_id: Some(parent.id.clone()),
                model: parent.model.clone(),
                created_at: cosmos_core::now(),
            })
            .await?;
        Ok(prompt)
    }
}
