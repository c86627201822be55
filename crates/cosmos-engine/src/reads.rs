//! What front ends read: runs with their events, prompts, input sets, search. Answered from
//! the store alone — no read ever waits on a target.

use cosmos_core::{InputSet, InputSetId, Prompt, PromptId, Run, RunEvent, RunId};
use cosmos_store::{InputSetSummary, PromptFilter, PromptSummary, RunFilter, SearchHit};

use crate::Services;
use crate::error::{EngineError, EngineResult};

/// A prompt with its input set and recent runs.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PromptDetail {
    pub prompt: Prompt,
    pub input_set: Option<InputSet>,
    pub runs: Vec<Run>,
    /// Every run of the prompt, not only those listed.
    pub run_count: u64,
    /// Prompts enhanced from this one (`cosmos prompt enhance`), newest first.
    pub enhanced: Vec<Prompt>,
}

/// A rating and/or a favourite mark for runs (`cosmos rate`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateRequest {
    /// 1–5, or 0 to clear.
    pub rating: Option<u8>,
    pub favourite: Option<bool>,
}

impl Services {
    pub(crate) async fn run(&self, id: &RunId) -> EngineResult<Run> {
        Ok(self.store().run(id).await?)
    }

    /// A run's history, oldest first.
    pub(crate) async fn run_events(&self, id: &RunId) -> EngineResult<Vec<RunEvent>> {
        Ok(self.store().run_events(id).await?)
    }

    /// Runs, newest first.
    pub(crate) async fn list_runs(&self, filter: &RunFilter) -> EngineResult<Vec<Run>> {
        Ok(self.store().list_runs(filter).await?)
    }

    pub(crate) async fn count_matching_runs(&self, filter: &RunFilter) -> EngineResult<u64> {
        Ok(self.store().count_matching_runs(filter).await?)
    }

    pub(crate) async fn count_by_status(&self) -> EngineResult<Vec<(cosmos_core::RunStatus, u64)>> {
        let counted = self.store().count_runs_by_status().await?;
        Ok(cosmos_core::RunStatus::ALL
            .into_iter()
            .map(|s| {
                let n = counted.iter().find(|(c, _)| *c == s).map_or(0, |(_, n)| *n);
                (s, n)
            })
            .collect())
    }

    /// Moves a queued run up or down the queue (higher runs first).
    pub(crate) async fn set_priority(&self, id: &RunId, priority: i32) -> EngineResult<Run> {
        let run = self.store().run(id).await?;
        if run.status != cosmos_core::RunStatus::Queued
            || !self.store().set_priority(id, priority).await?
        {
            let now = self.store().run(id).await?;
            return Err(EngineError::refused(
                crate::ErrorKind::Conflict,
                "not_queued",
                format!(
                    "run `{id}` is {}: only a queued run's priority can change",
                    now.status
                ),
            ));
        }
        Ok(self.store().run(id).await?)
    }

    pub(crate) async fn rate_runs(
        &self,
        ids: &[RunId],
        req: &RateRequest,
    ) -> EngineResult<Vec<Run>> {
        let rating = match req.rating {
            None => None,
            Some(0) => Some(None),
            Some(n @ 1..=5) => Some(Some(n)),
            Some(n) => {
                return Err(EngineError::Invalid(format!(
                    "a rating is 1 to 5 (0 clears it), not {n}"
                )));
            }
        };
        if rating.is_none() && req.favourite.is_none() {
            return Err(EngineError::Invalid(
                "give a rating (1 to 5, 0 clears it) or mark the runs favourite or not".into(),
            ));
        }
        if ids.is_empty() {
            return Err(EngineError::Invalid("name the runs to rate".into()));
        }
        self.store().rate_runs(ids, rating, req.favourite).await?;
        let mut runs = Vec::with_capacity(ids.len());
        for id in ids {
            runs.push(self.store().run(id).await?);
        }
        Ok(runs)
    }

    pub(crate) async fn list_prompts(
        &self,
        filter: &PromptFilter,
    ) -> EngineResult<Vec<PromptSummary>> {
        Ok(self.store().list_prompts(filter).await?)
    }

    /// The prompt with exactly this name, if any.
    pub(crate) async fn prompt_named(&self, name: &str) -> EngineResult<Option<Prompt>> {
        Ok(self.store().prompt_by_name(name).await?)
    }

    /// A prompt, its input set and its latest `runs` runs.
    pub(crate) async fn prompt_detail(
        &self,
        id: &PromptId,
        runs: u32,
    ) -> EngineResult<PromptDetail> {
        let prompt = self.store().prompt(id).await?;
        let input_set = match &prompt.input_set_id {
            Some(set) => Some(self.store().input_set(set).await?),
            None => None,
        };
        let runs = self
            .store()
            .list_runs(&RunFilter {
                prompt_id: Some(id.clone()),
                limit: runs,
                ..Default::default()
            })
            .await?;
        let run_count = self.store().count_runs(id).await?;
        let enhanced = self
            .store()
            .list_prompts(&cosmos_store::PromptFilter {
                parent_id: Some(id.clone()),
                limit: 100,
                ..Default::default()
            })
            .await?
            .into_iter()
            .map(|s| s.prompt)
            .collect();
        Ok(PromptDetail {
            prompt,
            input_set,
            runs,
            run_count,
            enhanced,
        })
    }

    /// Deletes a prompt (its runs too only with `force`); how many runs went.
    pub(crate) async fn delete_prompt(&self, id: &PromptId, force: bool) -> EngineResult<u64> {
        Ok(self.store().delete_prompt(id, force).await?)
    }

    /// Full-text search over prompts, matches wrapped in `marks`.
    pub(crate) async fn search_prompts(
        &self,
        query: &str,
        limit: u32,
        marks: (&str, &str),
    ) -> EngineResult<Vec<SearchHit>> {
        Ok(self.store().search_prompts(query, limit, marks).await?)
    }

    pub(crate) async fn input_set(&self, id: &InputSetId) -> EngineResult<InputSet> {
        Ok(self.store().input_set(id).await?)
    }

    pub(crate) async fn list_input_sets(&self, limit: u32) -> EngineResult<Vec<InputSetSummary>> {
        Ok(self.store().list_input_sets(limit).await?)
    }

    /// Deletes an input set (detaching its prompts only with `force`); how many were.
    pub(crate) async fn delete_input_set(&self, id: &InputSetId, force: bool) -> EngineResult<u64> {
        Ok(self.store().delete_input_set(id, force).await?)
    }
}
