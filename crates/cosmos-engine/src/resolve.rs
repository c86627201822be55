//! Turning what a user typed (a name, a whole id or a unique prefix) into one record's id.

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
    /// Resolves `text` among the records of `kinds`: by name first where the kind has names
    /// (prompts, input sets) and `text` is not an id, then as an id or unique id prefix.
    /// Exactly one match, or an error that lists the candidates.
    pub(crate) async fn resolve_any(&self, text: &str, kinds: &[IdKind]) -> EngineResult<Resolved> {
        let trimmed = text.trim();
        let id_like = IdKind::of(&trimmed.to_ascii_lowercase()).is_some();
        if !id_like {
            let named = self.resolve_name(trimmed, kinds).await?;
            if !named.is_empty() {
                return one_of(trimmed, named);
            }
        }
        let prefix = match IdPrefix::parse(text) {
            Ok(p) => p,
            // What starts like an id is told why it is not one.
            Err(e) if id_like => return Err(e.into()),
            // Not an id, and nothing has that name.
            Err(_) => {
                return Err(EngineError::NotFound {
                    kinds: kinds.to_vec(),
                    prefix: trimmed.to_owned(),
                });
            }
        };
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
        if found.is_empty() {
            return Err(EngineError::NotFound {
                kinds: kinds.to_vec(),
                prefix: prefix.to_string(),
            });
        }
        one_of(prefix.as_str(), found)
    }

    /// The ids of the records of `kinds` named exactly `name`.
    async fn resolve_name(&self, name: &str, kinds: &[IdKind]) -> EngineResult<Vec<String>> {
        let mut found = Vec::new();
        for kind in kinds {
            match kind {
                IdKind::Prompt => {
                    if let Some(p) = self.store().prompt_by_name(name).await? {
                        found.push(p.id.to_string());
                    }
                }
                IdKind::InputSet => found.extend(
                    self.store()
                        .input_sets_named(name, MAX_CANDIDATES + 1)
                        .await?
                        .iter()
                        .map(ToString::to_string),
                ),
                // Runs and batches have no names.
                _ => {}
            }
        }
        Ok(found)
    }

    pub(crate) async fn resolve_run(&self, text: &str) -> EngineResult<RunId> {
        match self.resolve_any(text, &[IdKind::Run]).await? {
            Resolved::Run(id) => Ok(id),
            other => unexpected(other),
        }
    }

    /// A prompt by its exact name or by id (prefix).
    pub(crate) async fn resolve_prompt(&self, text: &str) -> EngineResult<PromptId> {
        match self.resolve_any(text, &[IdKind::Prompt]).await? {
            Resolved::Prompt(id) => Ok(id),
            other => unexpected(other),
        }
    }

    /// An input set by its name (when only one set has it) or by id (prefix).
    pub(crate) async fn resolve_input_set(&self, text: &str) -> EngineResult<InputSetId> {
        match self.resolve_any(text, &[IdKind::InputSet]).await? {
            Resolved::InputSet(id) => Ok(id),
            other => unexpected(other),
        }
    }
}

/// The one id found for `text`, or the candidates when there are several.
fn one_of(text: &str, mut found: Vec<String>) -> EngineResult<Resolved> {
    if found.len() == 1 {
        let id = found.remove(0);
        return Ok(match IdKind::of(&id) {
            Some(IdKind::InputSet) => Resolved::InputSet(id.parse()?),
            Some(IdKind::Prompt) => Resolved::Prompt(id.parse()?),
            _ => Resolved::Run(id.parse()?),
        });
    }
    let more = found.len() > MAX_CANDIDATES as usize;
    found.truncate(MAX_CANDIDATES as usize);
    Err(EngineError::Ambiguous {
        prefix: text.to_owned(),
        candidates: found,
        more,
    })
}

fn unexpected<T>(got: Resolved) -> EngineResult<T> {
    Err(EngineError::Invalid(format!(
        "resolved to an unexpected record: {got:?}"
    )))
}
