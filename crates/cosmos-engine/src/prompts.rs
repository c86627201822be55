//! Creating and editing prompts.

use std::path::PathBuf;

use cosmos_core::naming::{name_from_text, validate_name};
use cosmos_core::{InputSetId, Prompt, PromptId};
use cosmos_store::{NewPrompt, PromptName, PromptUpdate};

use crate::Services;
use crate::error::{EngineError, EngineResult};
use crate::inputs::{AddedInputSet, InspectedInputs};

/// Longest prompt text accepted, in characters (T5 reads at most 512 tokens anyway).
const MAX_TEXT_CHARS: usize = 4000;

/// An input set given by id (prefix) or by a folder to register on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputsRef {
    Id(String),
    Dir(PathBuf),
}

impl InputsRef {
    /// A folder when `text` names an existing directory or looks like a path (has a `/`,
    /// or starts with `.` or `~`: ids never do), an id otherwise.
    pub fn parse(text: &str) -> Self {
        let path = PathBuf::from(text);
        let path_like = text.contains('/') || text.starts_with('.') || text.starts_with('~');
        if path.is_dir() || path_like {
            InputsRef::Dir(path)
        } else {
            InputsRef::Id(text.to_owned())
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CreatePromptRequest {
    pub text: String,
    pub negative: Option<String>,
    pub name: Option<String>,
    pub inputs: Option<InputsRef>,
    /// A new prompt even when one with the same text, negative text and input set exists
    /// (otherwise that one is reused, as `cosmos run "text" DIR` does).
    pub new: bool,
    /// The model its runs use when they name none (`transfer2.5`).
    pub model: Option<String>,
}

/// A prompt as `create` left it: made now, or an identical one reused.
#[derive(Debug, Clone)]
pub struct CreatedPrompt {
    pub prompt: Prompt,
    /// The input set registered on the way, if one was.
    pub added: Option<AddedInputSet>,
    /// An existing identical prompt was returned rather than a duplicate made.
    pub reused: bool,
}

#[derive(Debug, Clone, Default)]
pub struct EditPromptRequest {
    pub text: Option<String>,
    /// `Some("")` clears the negative text.
    pub negative: Option<String>,
    pub name: Option<String>,
    /// `Some(None)` detaches the input set.
    pub inputs: Option<Option<InputsRef>>,
    /// The model its runs use when they name none; `Some("")` clears it.
    pub model: Option<String>,
}

/// A model named for a prompt, by its adapter's name.
fn prompt_model(name: &str) -> EngineResult<String> {
    cosmos_core::model::model(name)
        .map(|m| m.name().to_owned())
        .map_err(|e| {
            EngineError::refused(
                crate::ErrorKind::InvalidInput,
                "unknown_model",
                e.to_string(),
            )
        })
}

/// Checks prompt text; returns it trimmed.
pub(crate) fn validate_text(what: &str, text: &str) -> EngineResult<String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(EngineError::Invalid(format!(
            "the {what} is empty: write what the video should show"
        )));
    }
    if text.contains('\0') {
        return Err(EngineError::Invalid(format!(
            "the {what} contains a NUL character"
        )));
    }
    let n = text.chars().count();
    if n > MAX_TEXT_CHARS {
        return Err(EngineError::Invalid(format!(
            "the {what} is {n} characters long; keep it under {MAX_TEXT_CHARS}"
        )));
    }
    Ok(text.to_owned())
}

/// An empty negative text means none.
pub(crate) fn normalise_negative(negative: Option<&str>) -> EngineResult<Option<String>> {
    match negative.map(str::trim) {
        None | Some("") => Ok(None),
        Some(n) => validate_text("negative prompt", n).map(Some),
    }
}

/// An input set that is either registered already or inspected and waiting to be stored.
pub(crate) enum PendingInputs {
    Stored(InputSetId),
    New(Box<InspectedInputs>),
}

impl Services {
    /// Resolves an id, or inspects a folder (checking it, storing nothing yet).
    pub(crate) async fn pending_inputs(&self, inputs: &InputsRef) -> EngineResult<PendingInputs> {
        match inputs {
            InputsRef::Id(text) => Ok(PendingInputs::Stored(self.resolve_input_set(text).await?)),
            InputsRef::Dir(dir) => {
                let inspected = self.inspect_inputs(dir).await?;
                if !inspected.report.problems.is_empty() {
                    return Err(EngineError::InputProblems {
                        dir: inspected.dir,
                        problems: inspected.report.problems,
                    });
                }
                if let Some(set) = self
                    .store()
                    .input_set_by_fingerprint(&inspected.fingerprint)
                    .await?
                {
                    return Ok(PendingInputs::Stored(set.id));
                }
                Ok(PendingInputs::New(Box::new(inspected)))
            }
        }
    }

    /// Stores a pending input set; returns its id and, when it was new, what was stored.
    pub(crate) async fn commit_inputs(
        &self,
        pending: PendingInputs,
    ) -> EngineResult<(InputSetId, Option<AddedInputSet>)> {
        match pending {
            PendingInputs::Stored(id) => Ok((id, None)),
            PendingInputs::New(inspected) => {
                let added = self.store_inspected(*inspected, None, false).await?;
                Ok((added.set.id.clone(), Some(added)))
            }
        }
    }

    /// Creates a prompt, registering a folder of inputs on the way. Everything is checked
    /// before anything is written.
    pub(crate) async fn create_prompt(
        &self,
        req: &CreatePromptRequest,
    ) -> EngineResult<CreatedPrompt> {
        let text = validate_text("prompt text", &req.text)?;
        let negative = normalise_negative(req.negative.as_deref())?;
        let model = req.model.as_deref().map(prompt_model).transpose()?;
        let name = match &req.name {
            Some(n) => {
                let n = validate_name(n)?;
                if self.store().prompt_by_name(&n).await?.is_some() {
                    return Err(cosmos_store::StoreError::NameTaken(n).into());
                }
                PromptName::Exact(n)
            }
            None => PromptName::Generated(name_from_text(&text)),
        };
        let pending = match &req.inputs {
            Some(inputs) => Some(self.pending_inputs(inputs).await?),
            None => None,
        };
        let (input_set_id, added) = match pending {
            Some(p) => {
                let (id, added) = self.commit_inputs(p).await?;
                (Some(id), added)
            }
            None => (None, None),
        };
        // The same words on the same videos are the same prompt, unless a new one is asked
        // for (by `new`, or by naming it).
        if !req.new
            && req.name.is_none()
            && let Some(prompt) = self
                .store()
                .find_prompt(&text, negative.as_deref(), input_set_id.as_ref())
                .await?
            && prompt.model == model
        {
            return Ok(CreatedPrompt {
                prompt,
                added,
                reused: true,
            });
        }
        let prompt = self
            .store()
            .create_prompt(&NewPrompt {
                id: PromptId::new(),
                name,
                text,
                negative,
                input_set_id,
                parent_id: None,
                model,
                created_at: cosmos_core::now(),
            })
            .await?;
        Ok(CreatedPrompt {
            prompt,
            added,
            reused: false,
        })
    }

    /// Edits a prompt. Runs keep the text they were created with.
    pub(crate) async fn edit_prompt(
        &self,
        id: &PromptId,
        req: &EditPromptRequest,
    ) -> EngineResult<Prompt> {
        let mut update = PromptUpdate::default();
        if let Some(text) = &req.text {
            update.text = Some(validate_text("prompt text", text)?);
        }
        if let Some(negative) = &req.negative {
            update.negative = Some(normalise_negative(Some(negative))?);
        }
        if let Some(name) = &req.name {
            update.name = Some(validate_name(name)?);
        }
        if let Some(model) = &req.model {
            update.model = Some(match model.trim() {
                "" => None,
                name => Some(prompt_model(name)?),
            });
        }
        if update.is_empty() && req.inputs.is_none() {
            return Err(EngineError::Invalid(
                "nothing to change: pass --text, --negative, --name, --inputs, --no-inputs, --model or --no-model"
                    .into(),
            ));
        }
        self.store().prompt(id).await?;
        if let Some(inputs) = &req.inputs {
            update.input_set_id = Some(match inputs {
                None => None,
                Some(inputs) => {
                    let pending = self.pending_inputs(inputs).await?;
                    Some(self.commit_inputs(pending).await?.0)
                }
            });
        }
        Ok(self.store().update_prompt(id, &update).await?)
    }
}
