//! Exporting chosen outputs for a training-data pipeline (issue 17): each run's output files
//! and its control videos copied (or hard-linked) into one folder, with a manifest — JSONL and
//! CSV, schema in `docs/EXPORT.md` — of everything that made them: prompt, negative prompt,
//! parameters, seed, input set and file hashes, the model, image, checkout and checkpoint
//! manifest it ran on, and its lineage. Every file is checked against the hash recorded when
//! it was verified. The export is built beside the destination and renamed into place, so a
//! failure leaves nothing half-written.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use cosmos_core::{InputFile, InputSet, InputSetId, Run, RunStatus};
use cosmos_store::RunFilter;

use crate::Services;
use crate::error::{EngineError, EngineResult};

/// The manifest's schema version (`docs/EXPORT.md`).
pub const EXPORT_SCHEMA: u32 = 1;

/// What to export and how.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub dir: PathBuf,
    /// Which runs (only succeeded runs with outputs are exported, whatever the statuses say).
    pub filter: RunFilter,
    /// Hard-link files instead of copying them (copied where a link cannot be made).
    pub link: bool,
    /// Replace a destination that is not empty.
    pub force: bool,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportReport {
    pub dir: String,
    pub runs: usize,
    pub files: usize,
    pub bytes: u64,
    /// Files hard-linked (the rest were copied).
    pub linked: usize,
    pub manifest_jsonl: String,
    pub manifest_csv: String,
}

/// One file in the export, relative to its folder.
#[derive(Debug, Clone, Serialize)]
struct FileRow {
    path: String,
    sha256: String,
    bytes: u64,
}

/// What an export is made from: the runs, their input sets, and each prompt's parent.
struct Chosen {
    runs: Vec<Run>,
    sets: HashMap<InputSetId, InputSet>,
    parents: HashMap<cosmos_core::PromptId, Option<cosmos_core::PromptId>>,
}

/// The CSV's columns, in order (JSONL rows carry these and more).
const CSV_COLUMNS: [&str; 31] = [
    "run_id",
    "video",
    "video_sha256",
    "prompt",
    "negative_prompt",
    "prompt_id",
    "prompt_name",
    "seed",
    "steps",
    "guidance",
    "sigma_max",
    "fps",
    "blur_strength",
    "canny_threshold",
    "gpus",
    "weights",
    "input_set_id",
    "controls",
    "control_sha256",
    "rating",
    "favourite",
    "created_at",
    "model",
    "image",
    "image_digest",
    "checkout_commit",
    "manifest_hash",
    "retry_of",
    "enhanced_from",
    "rehearsal",
    // Added in schema 1 after its first release: new columns go last.
    "upscale_of",
];

impl Services {
    /// Exports the succeeded runs `req.filter` picks into `req.dir`.
    pub(crate) async fn export(&self, req: ExportRequest) -> EngineResult<ExportReport> {
        let dest = req.dir.clone();
        check_destination(&dest, req.force)?;
        let mut filter = req.filter.clone();
        filter.statuses = vec![RunStatus::Succeeded];
        if filter.limit == 0 {
            filter.limit = 1_000_000;
        }
        let runs: Vec<Run> = self
            .store()
            .list_runs(&filter)
            .await?
            .into_iter()
            .filter(|r| !r.outputs.is_empty())
            .collect();
        if runs.is_empty() {
            return Err(EngineError::Refused {
                kind: crate::ErrorKind::NotFound,
                code: "nothing_to_export",
                message: "no succeeded run with outputs matches: nothing was exported".into(),
            });
        }
        let mut sets: HashMap<InputSetId, InputSet> = HashMap::new();
        let mut parents: HashMap<cosmos_core::PromptId, Option<cosmos_core::PromptId>> =
            HashMap::new();
        for run in &runs {
            if let Some(id) = &run.input_set_id
                && !sets.contains_key(id)
            {
                sets.insert(id.clone(), self.store().input_set(id).await?);
            }
            if !parents.contains_key(&run.prompt_id) {
                let parent = self.store().prompt(&run.prompt_id).await?.parent_id;
                parents.insert(run.prompt_id.clone(), parent);
            }
        }
        let link = req.link;
        let chosen = Chosen {
            runs,
            sets,
            parents,
        };
        tokio::task::spawn_blocking(move || write_export(&dest, link, &chosen))
            .await
            .map_err(|e| EngineError::Internal(format!("the export stopped: {e}")))?
    }
}

/// Refuses a destination that is a file, or a folder with something in it (unless `force`).
fn check_destination(dest: &Path, force: bool) -> EngineResult<()> {
    match std::fs::metadata(dest) {
        Err(_) => Ok(()),
        Ok(m) if !m.is_dir() => Err(EngineError::Invalid(format!(
            "{} is a file: export into a folder",
            dest.display()
        ))),
        Ok(_) => {
            let empty = std::fs::read_dir(dest)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if empty || force {
                Ok(())
            } else {
                Err(EngineError::Conflict(format!(
                    "{} is not empty: export into a new or empty folder, or replace it with --force",
                    dest.display()
                )))
            }
        }
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Internal(format!("cannot {what} {}: {e}", path.display()))
}

/// Builds the export beside `dest`, then puts it in its place.
fn write_export(dest: &Path, link: bool, chosen: &Chosen) -> EngineResult<ExportReport> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let pid = std::process::id();
    let work = parent.join(format!(".{name}.export-{pid}"));
    let _ = std::fs::remove_dir_all(&work);
    let built = build(&work, link, chosen);
    let mut report = match built {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e);
        }
    };
    // Into place: an empty or replaced destination is moved aside first, and back if the
    // rename fails.
    let aside = parent.join(format!(".{name}.replaced-{pid}"));
    let had = dest.exists();
    if had && let Err(e) = std::fs::rename(dest, &aside) {
        let _ = std::fs::remove_dir_all(&work);
        return Err(io("move aside", dest, e));
    }
    if let Err(e) = std::fs::rename(&work, dest) {
        if had {
            let _ = std::fs::rename(&aside, dest);
        }
        let _ = std::fs::remove_dir_all(&work);
        return Err(io("put the export at", dest, e));
    }
    if had && let Err(e) = std::fs::remove_dir_all(&aside) {
        tracing::warn!("cannot remove the replaced export {}: {e}", aside.display());
    }
    report.dir = dest.display().to_string();
    report.manifest_jsonl = dest.join("manifest.jsonl").display().to_string();
    report.manifest_csv = dest.join("manifest.csv").display().to_string();
    Ok(report)
}

/// Places `from` at `to` (hard link or copy) and checks it against `sha256`; true if linked.
fn place(from: &Path, to: &Path, sha256: &str, link: bool) -> EngineResult<(bool, u64)> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    }
    let linked = link && std::fs::hard_link(from, to).is_ok();
    if !linked {
        std::fs::copy(from, to).map_err(|e| io("copy", from, e))?;
    }
    let (got, size) = cosmos_media::sha256_file(to)?;
    if got != sha256 {
        return Err(EngineError::Conflict(format!(
            "{} changed since it was verified (sha256 {got}, recorded {sha256}): it was not exported",
            from.display()
        )));
    }
    Ok((linked, size))
}

fn build(work: &Path, link: bool, chosen: &Chosen) -> EngineResult<ExportReport> {
    std::fs::create_dir_all(work).map_err(|e| io("create", work, e))?;
    let mut report = ExportReport {
        dir: String::new(),
        runs: chosen.runs.len(),
        files: 0,
        bytes: 0,
        linked: 0,
        manifest_jsonl: String::new(),
        manifest_csv: String::new(),
    };
    let mut count = |linked: bool, bytes: u64| {
        report.files += 1;
        report.bytes += bytes;
        report.linked += usize::from(linked);
    };
    // Control videos once per input set.
    let mut controls: HashMap<InputSetId, Vec<(InputFile, FileRow)>> = HashMap::new();
    for (id, set) in &chosen.sets {
        let mut rows = Vec::new();
        for f in &set.files {
            let ext = crate::runs::extension(&f.path);
            let rel = format!("controls/{id}/{}.{}", f.kind, ext.to_ascii_lowercase());
            let (linked, bytes) = place(Path::new(&f.path), &work.join(&rel), &f.sha256, link)?;
            count(linked, bytes);
            rows.push((
                f.clone(),
                FileRow {
                    path: rel,
                    sha256: f.sha256.clone(),
                    bytes,
                },
            ));
        }
        controls.insert(id.clone(), rows);
    }
    let mut jsonl = String::new();
    let mut csv = csv_line(CSV_COLUMNS.iter().map(|c| (*c).to_owned()));
    for run in &chosen.runs {
        let mut files = Vec::new();
        for o in &run.outputs {
            let from = Path::new(&o.path);
            let file = from
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "output".into());
            let rel = format!("outputs/{}/{file}", run.id);
            let (linked, bytes) = place(from, &work.join(&rel), &o.sha256, link)?;
            count(linked, bytes);
            files.push(FileRow {
                path: rel,
                sha256: o.sha256.clone(),
                bytes,
            });
        }
        let set_rows = run
            .input_set_id
            .as_ref()
            .and_then(|id| controls.get(id))
            .cloned()
            .unwrap_or_default();
        let set_name = run
            .input_set_id
            .as_ref()
            .and_then(|id| chosen.sets.get(id))
            .map(|s| s.name.clone());
        let enhanced_from = chosen.parents.get(&run.prompt_id).cloned().flatten();
        let row = manifest_row(run, &files, &set_rows, set_name, enhanced_from.as_ref());
        jsonl.push_str(&row.to_string());
        jsonl.push('\n');
        csv.push_str(&csv_row(&row));
    }
    for (name, text) in [("manifest.jsonl", jsonl), ("manifest.csv", csv)] {
        let path = work.join(name);
        std::fs::write(&path, text).map_err(|e| io("write", &path, e))?;
    }
    Ok(report)
}

/// One run's manifest row (JSONL; the CSV flattens it).
fn manifest_row(
    run: &Run,
    files: &[FileRow],
    controls: &[(InputFile, FileRow)],
    set_name: Option<String>,
    enhanced_from: Option<&cosmos_core::PromptId>,
) -> Value {
    let video = files
        .iter()
        .find(|f| f.path.ends_with(".mp4"))
        .or(files.first());
    let p = &run.params;
    let weights: BTreeMap<String, f64> = p
        .weights
        .iter()
        .map(|(h, w)| (h.as_str().to_owned(), w))
        .collect();
    let supply = run.supply.clone().unwrap_or_default();
    json!({
        "schema": EXPORT_SCHEMA,
        "run_id": run.id,
        "kind": run.kind,
        "video": video.map(|f| f.path.clone()),
        "video_sha256": video.map(|f| f.sha256.clone()),
        "video_bytes": video.map(|f| f.bytes),
        "files": files,
        "prompt_id": run.prompt_id,
        "prompt_name": run.prompt_name,
        "prompt": run.prompt_text,
        "negative_prompt": run.negative_prompt,
        "model": cosmos_core::batch::MODEL,
        "seed": p.seed,
        "params": {
            "seed": p.seed,
            "steps": p.steps,
            "guidance": p.guidance,
            "sigma_max": p.sigma_max,
            "fps": p.fps,
            "blur_strength": p.blur_strength,
            "canny_threshold": p.canny_threshold,
            "gpus": p.gpus,
            "weights": weights,
        },
        "input_set_id": run.input_set_id,
        "input_set_name": set_name,
        "controls": controls.iter().map(|(f, row)| json!({
            "kind": f.kind,
            "path": row.path,
            "sha256": row.sha256,
            "bytes": row.bytes,
            "width": f.video.width,
            "height": f.video.height,
            "frames": f.video.frames,
            "fps": f.video.fps,
        })).collect::<Vec<_>>(),
        "rating": run.rating,
        "favourite": run.favourite,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "target": run.target,
        "rehearsal": run.rehearsal,
        "image": supply.image,
        "image_digest": supply.image_digest,
        "checkout_commit": supply.checkout_commit,
        "manifest_hash": supply.manifest_hash,
        "batch_id": run.batch_id,
        "lineage": {
            "retry_of": run.retry_of,
            "upscale_of": run.upscale_of,
            "enhanced_from": enhanced_from,
        },
    })
}

/// The CSV line of a manifest row, in [`CSV_COLUMNS`] order.
fn csv_row(row: &Value) -> String {
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // `kind=value;kind=value` over the control videos.
    let pairs = |of: &str| {
        row["controls"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|c| format!("{}={}", text(&c["kind"]), text(&c[of])))
                    .collect::<Vec<_>>()
                    .join(";")
            })
            .unwrap_or_default()
    };
    let params = &row["params"];
    let weights = params["weights"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(h, w)| format!("{h}={w}"))
                .collect::<Vec<_>>()
                .join(";")
        })
        .unwrap_or_default();
    let cell = |column: &str| -> String {
        match column {
            "seed" | "steps" | "guidance" | "sigma_max" | "fps" | "blur_strength"
            | "canny_threshold" | "gpus" => text(&params[column]),
            "weights" => weights.clone(),
            "controls" => pairs("path"),
            "control_sha256" => pairs("sha256"),
            "retry_of" | "upscale_of" | "enhanced_from" => text(&row["lineage"][column]),
            other => text(&row[other]),
        }
    };
    csv_line(CSV_COLUMNS.iter().map(|c| cell(c)))
}

/// One CSV record (RFC 4180): fields with a comma, quote or line break are quoted, quotes
/// doubled; lines end in CRLF.
fn csv_line(fields: impl Iterator<Item = String>) -> String {
    let mut out = fields
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let line = csv_line(
            ["plain", "a, b", "say \"hi\"", "two\nlines", ""]
                .iter()
                .map(|s| (*s).to_owned()),
        );
        assert_eq!(
            line,
            "plain,\"a, b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n"
        );
    }

    #[test]
    fn a_destination_with_files_needs_force() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_destination(&dir.path().join("new"), false).is_ok());
        assert!(check_destination(dir.path(), false).is_ok(), "empty");
        std::fs::write(dir.path().join("x"), "x").unwrap();
        let err = check_destination(dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert!(check_destination(dir.path(), true).is_ok());
        let err = check_destination(&dir.path().join("x"), true).unwrap_err();
        assert!(err.to_string().contains("is a file"), "{err}");
    }
}
