//! Registering input sets: find the control videos in a folder, probe and hash them, check
//! them against what Cosmos expects, and store them (once per distinct content).

use std::path::{Path, PathBuf};

use serde::Serialize;

use cosmos_core::inputs::{InputReport, check_input_files, fingerprint};
use cosmos_core::{InputFile, InputSet, InputSetId};
use cosmos_media::{Skipped, discover, inspect_files};

use crate::Services;
use crate::error::{EngineError, EngineResult};

/// What a folder holds, before anything is stored.
#[derive(Debug, Clone)]
pub struct InspectedInputs {
    pub dir: PathBuf,
    pub files: Vec<InputFile>,
    pub skipped: Vec<Skipped>,
    pub report: InputReport,
    pub fingerprint: String,
}

/// The outcome of `inputs add`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddedInputSet {
    #[serde(flatten)]
    pub set: InputSet,
    /// The same videos were already registered: that set is returned, nothing new stored.
    pub reused: bool,
    pub warnings: Vec<String>,
}

impl Services {
    /// Discovers, probes and hashes the control videos of `dir` (nothing is stored).
    pub(crate) async fn inspect_inputs(&self, dir: &Path) -> EngineResult<InspectedInputs> {
        let dir = std::fs::canonicalize(dir).map_err(|source| cosmos_media::MediaError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let ffprobe = self.ffprobe.clone();
        let scan_dir = dir.clone();
        let (found, files) = tokio::task::spawn_blocking(move || {
            let found = discover(&scan_dir)?;
            let files = inspect_files(&ffprobe, &found.files)?;
            Ok::<_, cosmos_media::MediaError>((found, files))
        })
        .await
        .map_err(|e| {
            EngineError::Internal(format!("probing `{}` stopped: {e}", dir.display()))
        })??;
        let report = check_input_files(&files);
        let fingerprint = fingerprint(&files);
        Ok(InspectedInputs {
            dir,
            files,
            skipped: found.skipped,
            report,
            fingerprint,
        })
    }

    /// Registers the control videos of `dir` as an input set. Problems (differing frame
    /// counts, mixed aspect buckets) refuse registration unless `force`; the same content
    /// registered before is reused.
    pub(crate) async fn add_input_set(
        &self,
        dir: &Path,
        name: Option<&str>,
        force: bool,
    ) -> EngineResult<AddedInputSet> {
        let inspected = self.inspect_inputs(dir).await?;
        self.store_inspected(inspected, name, force).await
    }

    pub(crate) async fn store_inspected(
        &self,
        inspected: InspectedInputs,
        name: Option<&str>,
        force: bool,
    ) -> EngineResult<AddedInputSet> {
        let mut warnings: Vec<String> = inspected
            .skipped
            .iter()
            .map(|s| format!("skipped `{}`: {}", s.path.display(), s.reason))
            .collect();
        warnings.extend(inspected.report.warnings.iter().cloned());
        if !inspected.report.problems.is_empty() {
            if !force {
                return Err(EngineError::InputProblems {
                    dir: inspected.dir,
                    problems: inspected.report.problems,
                });
            }
            warnings.extend(
                inspected
                    .report
                    .problems
                    .iter()
                    .map(|p| format!("registered anyway: {p}")),
            );
        }
        if let Some(set) = self
            .store()
            .input_set_by_fingerprint(&inspected.fingerprint)
            .await?
        {
            return Ok(AddedInputSet {
                set,
                reused: true,
                warnings,
            });
        }
        let name = match name {
            Some(n) => cosmos_core::naming::validate_name(n)?,
            None => inspected
                .dir
                .file_name()
                .map_or_else(|| "inputs".to_owned(), |n| n.to_string_lossy().into_owned()),
        };
        let set = InputSet {
            id: InputSetId::new(),
            name,
            dir: inspected.dir.display().to_string(),
            fingerprint: inspected.fingerprint,
            created_at: cosmos_core::now(),
            files: inspected.files,
        };
        self.store().insert_input_set(&set).await?;
        Ok(AddedInputSet {
            set,
            reused: false,
            warnings,
        })
    }
}
