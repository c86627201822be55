//! Turning what a user typed (a whole id or a unique prefix) into one record's id.

use cosmos_core::{IdKind, IdPrefix, InputSetId, PromptId, RunId};

use crate::Services;
use crate::error::{EngineError, EngineResult};

/// Candidates listed when a prefix is ambiguous.
const MAX_CANDIDATES: u32 = 8;

/// The record an id prefix names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    InputSet(InputSetId),
    Prompt(PromptId),
    Run(RunId),
}

impl Services {
    /// Resolves `text` among the ids of `kinds`: exactly one match, or an error that lists
    /// the candidates.
    pub(crate) async fn resolve_any(&self, text: &str, kinds: &[IdKind]) -> EngineResult<Resolved> {
        let prefix = IdPrefix::parse(text)?;
        let mut found: Vec<String> = Vec::new();
        for kind in kinds {
            let Some(full) = prefix.for_kind(*kind) else {
                continue;
            };
            found.extend(
                self.store()
                    .ids_with_prefix(*kind, &full, MAX_CANDIDATES + 1)
                    .await?,
            );
        }
        match found.len() {
            0 => Err(EngineError::NotFound {
                kinds: kinds.to_vec(),
                prefix: prefix.to_string(),
            }),
            1 => {
                let id = found.remove(0);
                Ok(match IdKind::of(&id) {
                    Some(IdKind::InputSet) => Resolved::InputSet(id.parse()?),
                    Some(IdKind::Prompt) => Resolved::Prompt(id.parse()?),
                    _ => Resolved::Run(id.parse()?),
                })
            }
            n => {
                let more = n > MAX_CANDIDATES as usize;
                found.truncate(MAX_CANDIDATES as usize);
                Err(EngineError::Ambiguous {
                    prefix: prefix.to_string(),
                    candidates: found,
                    more,
                })
            }
        }
    }

    pub(crate) async fn resolve_run(&self, text: &str) -> EngineResult<RunId> {
        match self.resolve_any(text, &[IdKind::Run]).await? {
            Resolved::Run(id) => Ok(id),
            other => unexpected(other),
        }
    }

    /// A prompt by id (prefix) or, failing that, by its exact name.
    pub(crate) async fn resolve_prompt(&self, text: &str) -> EngineResult<PromptId> {
        if IdKind::of(&text.trim().to_ascii_lowercase()).is_none()
            && let Some(p) = self.store().prompt_by_name(text.trim()).await?
        {
            return Ok(p.id);
        }
        if IdPrefix::parse(text).is_err() {
            // Not an id, and no prompt has that name.
            return Err(EngineError::NotFound {
                kinds: vec![IdKind::Prompt],
                prefix: text.trim().to_owned(),
            });
        }
        match self.resolve_any(text, &[IdKind::Prompt]).await? {
            Resolved::Prompt(id) => Ok(id),
            other => unexpected(other),
        }
    }

    pub(crate) async fn resolve_input_set(&self, text: &str) -> EngineResult<InputSetId> {
        match self.resolve_any(text, &[IdKind::InputSet]).await? {
            Resolved::InputSet(id) => Ok(id),
            other => unexpected(other),
        }
    }
}

fn unexpected<T>(got: Resolved) -> EngineResult<T> {
    Err(EngineError::Invalid(format!(
        "resolved to an unexpected record: {got:?}"
    )))
}
