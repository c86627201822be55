//! Collecting a run whose model ended: its exit status, its log kept on the target, the
//! container removed, the failure classified or the outputs downloaded and verified.

use cosmos_core::launch::{PRIMARY_OUTPUT, RunLayout};
use cosmos_core::progress::classify_failure;
use cosmos_core::{Run, RunKind, RunOutput, RunStatus};
use cosmos_remote::runtime::ModelState;
use cosmos_remote::{args, blobs};

use super::transfer_events::TransferEvents;
use super::{Drive, local_log, local_outputs, local_poster};
use crate::Services;
use crate::error::{EngineError, EngineResult};
use crate::targets::Connected;
use std::path::PathBuf;

/// Lists a run's outputs with their hashes: `sh -c SCRIPT sh OUTPUTS_DIR`.
const LIST_OUTPUTS: &str =
    r#"cd -- "$1" && find . -type f ! -name '*.part' -exec sha256sum -- {} +"#;

impl Services {
    /// Reads the exit status, keeps the log on the target, downloads and verifies outputs.
    pub(super) async fn collect(
        &self,
        c: &Connected,
        run: &Run,
        layout: &RunLayout,
        seen_end: Option<(ModelState, bool)>,
        d: &Drive,
    ) -> EngineResult<(RunStatus, String, Option<&'static str>)> {
        let (state, log_kept) = match seen_end {
            Some(end) => end,
            None => {
                self.patiently(c, d, RunStatus::Collecting, "read the exit status", || {
                    c.runtime
                        .state_keeping_log(&c.host, run.id.as_str(), layout)
                })
                .await?
            }
        };
        let exit = match state {
            ModelState::Exited(code) => {
                self.store()
                    .set_exit_code(&run.id, code, Some(&d.fence))
                    .await?;
                Some(code)
            }
            ModelState::Running => {
                return Err(EngineError::Internal(format!(
                    "run {} is collecting but its model still runs",
                    run.id
                )));
            }
            ModelState::Vanished => None,
            // Gone after its status was kept (an earlier driver removed it), or never seen.
            ModelState::Absent => run.exit_code,
        };
        // The log is kept on the target; a target that cannot take it (a full disk) does not
        // stop the run from ending: the local copy has the same lines.
        let mut remote_log = state != ModelState::Absent;
        let container = remote_log;
        if remote_log && !log_kept {
            if let Err(e) = self
                .patiently(c, d, RunStatus::Collecting, "save the model log", || {
                    c.runtime.save_log(&c.host, run.id.as_str(), layout)
                })
                .await
            {
                let note = format!("the model log stays only in the local copy: {e}");
                self.note(d, RunStatus::Collecting, &note).await?;
                remote_log = false;
            }
        } else if run.exit_code.is_some() {
            remote_log = c.host.files.size(&layout.log()).await?.is_some();
        }
        // Its status read and its log kept, the container has served. It is removed while
        // the outputs come down (one round trip less), and before the run ends, so no
        // stopped container outlives a finished run.
        let removal = async {
            if container && let Err(e) = c.runtime.remove(&c.host, run.id.as_str()).await {
                tracing::warn!("could not remove the container of {}: {e}", run.id);
            }
        };
        let (_, ended) = tokio::join!(removal, self.conclude(c, run, layout, exit, remote_log, d));
        ended
    }

    /// What a collected run ends as: cancelled, failed with its classified reason, or
    /// succeeded with its outputs downloaded and verified. Once it ends, however it ends, no
    /// partial download is left beside its outputs (an error that is not an end keeps them,
    /// for the next collection to resume).
    async fn conclude(
        &self,
        c: &Connected,
        run: &Run,
        layout: &RunLayout,
        exit: Option<i32>,
        remote_log: bool,
        d: &Drive,
    ) -> EngineResult<(RunStatus, String, Option<&'static str>)> {
        let ended = self
            .conclude_outputs(c, run, layout, exit, remote_log, d)
            .await;
        if ended.is_ok() {
            let env = self.exec_env()?;
            remove_partials(&local_outputs(&env.data_dir, &run.id));
        }
        ended
    }

    async fn conclude_outputs(
        &self,
        c: &Connected,
        run: &Run,
        layout: &RunLayout,
        exit: Option<i32>,
        remote_log: bool,
        d: &Drive,
    ) -> EngineResult<(RunStatus, String, Option<&'static str>)> {
        let cancelled = self.store().cancel_requested(&run.id).await?;
        if exit != Some(0) {
            if cancelled {
                return Ok((
                    RunStatus::Cancelled,
                    "cancelled by the user; the model was killed".into(),
                    Some("cancelled"),
                ));
            }
            let tail = self.log_tail(c, run, layout, remote_log).await?;
            // A transfer run's model reads its own log; the upscaler and upsampler are
            // Cosmos-Transfer1's.
            let failure = match (run.kind, crate::runs::model_of(&run.params)) {
                (RunKind::Transfer, Ok(model)) => model.classify(exit, &tail),
                _ => classify_failure(exit, &tail),
            };
            return Ok((RunStatus::Failed, failure.reason, Some(failure.kind.code())));
        }
        if run.kind == RunKind::Enhance {
            let tail = self.log_tail(c, run, layout, remote_log).await?;
            let Some(text) = cosmos_core::launch::upsampled_prompt(&tail) else {
                return Ok((
                    RunStatus::Failed,
                    "the prompt upsampler exited 0 without printing an upsampled prompt".into(),
                    Some("no_prompt"),
                ));
            };
            let prompt = self.store_enhanced(run, &text).await?;
            self.store()
                .set_model_prompt(&run.id, &text, &d.fence)
                .await?;
            return Ok((
                RunStatus::Succeeded,
                format!(
                    "the upsampler's prompt is stored as {} (`{}`), enhanced from {}",
                    prompt.id, prompt.name, run.prompt_id
                ),
                None,
            ));
        }
        self.fetch_outputs(c, d, run, &layout.outputs(), false)
            .await
    }

    /// What a downloaded upscale is, as ffprobe reads it: `; its video is 3840×2112, 121
    /// frames (3× the 1280×704 bucket)`.
    async fn upscaled_size(&self, video: &RunOutput) -> String {
        match self.probe_video(std::path::Path::new(&video.path)).await {
            Ok(v) => {
                let of = cosmos_core::resolution::BUCKETS
                    .iter()
                    .find(|b| b.width * 3 == v.width && b.height * 3 == v.height)
                    .map_or_else(
                        || " (not three times a Cosmos resolution bucket)".to_owned(),
                        |b| format!(" (3× the {}×{} bucket)", b.width, b.height),
                    );
                format!(
                    "; its video is {}×{}, {} frames{of}",
                    v.width, v.height, v.frames
                )
            }
            Err(e) => format!("; its video could not be probed: {e}"),
        }
    }

    /// The end of the model's log: the copy kept on the target, or this machine's.
    async fn log_tail(
        &self,
        c: &Connected,
        run: &Run,
        layout: &RunLayout,
        remote_log: bool,
    ) -> EngineResult<String> {
        const TAIL: u64 = 64 * 1024;
        let tail = if remote_log {
            let size = c.host.files.size(&layout.log()).await?.unwrap_or(0);
            let from = size.saturating_sub(TAIL);
            c.host
                .files
                .read_at(&layout.log(), from, TAIL as usize)
                .await?
        } else {
            let env = self.exec_env()?;
            let bytes = std::fs::read(local_log(&env.data_dir, &run.id)).unwrap_or_default();
            let from = bytes.len().saturating_sub(TAIL as usize);
            bytes[from..].to_vec()
        };
        Ok(String::from_utf8_lossy(&tail).into_owned())
    }

    /// Downloads the files under `remote_dir` (a run's outputs folder, or its line's in a
    /// batch; with `own_names`, only the files named after the run in a folder it shares)
    /// into the run's local outputs, each verified by its hash; records them and makes the
    /// poster. A folder without the video is a failure.
    pub(super) async fn fetch_outputs(
        &self,
        c: &Connected,
        d: &Drive,
        run: &Run,
        remote_dir: &str,
        own_names: bool,
    ) -> EngineResult<(RunStatus, String, Option<&'static str>)> {
        let id = &run.id;
        let env = self.exec_env()?;
        // Names and hashes in one round trip: `<sha256>  ./<relative path>` per file.
        let list = args(&["sh", "-c", LIST_OUTPUTS, "sh", remote_dir]);
        let listed = self
            .patiently(c, d, RunStatus::Collecting, "list outputs", || {
                c.host.runner.run(&list)
            })
            .await?
            .check("list outputs")?;
        let mut remote: Vec<(String, String)> = Vec::new();
        for line in listed.stdout_text().lines() {
            match line.split_once("  ./") {
                Some((sha, rel)) if sha.len() == 64 && !sha.starts_with('\\') => {
                    remote.push((rel.to_owned(), sha.to_owned()));
                }
                _ => {
                    return Ok((
                        RunStatus::Failed,
                        format!("an output's name cannot be transferred safely: {line}"),
                        Some("bad_output_name"),
                    ));
                }
            }
        }
        // In a folder several runs share (a batch whose model names files by sample), the
        // run's files are those named after it.
        if own_names {
            let (dot, under) = (format!("{id}."), format!("{id}_"));
            remote.retain(|(rel, _)| {
                !rel.contains('/') && (rel.starts_with(&dot) || rel.starts_with(&under))
            });
        }
        remote.sort();
        // The video the run's model writes (`output.mp4`, a batch line's folder included;
        // `<run id>.mp4` for a model that names its outputs by the sample); an upscale run
        // is Cosmos-Transfer1's upscaler.
        let model = match run.kind {
            RunKind::Transfer => crate::runs::model_of(&run.params).ok(),
            _ => None,
        };
        let video = model.map_or_else(
            || PRIMARY_OUTPUT.to_owned(),
            |m| m.primary_output(id.as_str()),
        );
        let has_video = remote.iter().any(|(rel, _)| *rel == video);
        if !has_video {
            // What its absence means is the model's to say: Cosmos-Transfer2.5's guardrail
            // ends a blocked sample with exit 0 and no video.
            if let Some(m) = model {
                let layout = RunLayout::new(&c.target.config.root, id);
                let tail = self
                    .log_tail(c, run, &layout, false)
                    .await
                    .unwrap_or_default();
                let (code, reason) = m.missing_video(&tail);
                if code != "no_video" {
                    return Ok((RunStatus::Failed, reason, Some(code)));
                }
            }
        }
        if remote.is_empty() {
            return Ok((
                RunStatus::Failed,
                "the model exited 0 but wrote no outputs".into(),
                Some("no_outputs"),
            ));
        }
        // A run succeeds only with its video: other files (the prompt's .txt) are not it, and
        // a video that is not a regular file (a link) is never fetched.
        if !has_video {
            let found: Vec<&str> = remote.iter().map(|(rel, _)| rel.as_str()).collect();
            return Ok((
                RunStatus::Failed,
                format!(
                    "the model exited 0 but its video {video} is missing or not a regular file (outputs: {})",
                    found.join(", ")
                ),
                Some("no_video"),
            ));
        }
        let prefix = format!("{remote_dir}/");
        let local_dir = local_outputs(&env.data_dir, id);
        let mut outputs = Vec::new();
        let sizes: Vec<u64> = {
            let mut v = Vec::new();
            for (rel, _) in &remote {
                v.push(
                    c.host
                        .files
                        .size(&format!("{prefix}{rel}"))
                        .await?
                        .unwrap_or(0),
                );
            }
            v
        };
        let total: u64 = sizes.iter().sum();
        // Files already here are verified and not fetched again; the events count them done.
        let steps = TransferEvents::new(
            self,
            d,
            RunStatus::Collecting,
            "downloading outputs",
            total,
            total,
        );
        let mut before = 0u64;
        for ((rel, sha), size) in remote.iter().zip(&sizes) {
            let r = format!("{prefix}{rel}");
            let local = local_dir.join(rel);
            if let Some(dir) = local.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    EngineError::Internal(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let report = |done: u64| (steps.report)(before + done);
            let fetched = self
                .patiently(c, d, RunStatus::Collecting, "download outputs", || {
                    blobs::download(&c.host, &r, Some(sha), &local, &report)
                })
                .await;
            let (sha256, size_got) = match fetched {
                Ok(got) => got,
                Err(e) => {
                    steps.finish().await;
                    return Err(e);
                }
            };
            before += size;
            outputs.push(RunOutput {
                path: local.display().to_string(),
                size: size_got,
                sha256,
            });
        }
        steps.finish().await;
        // The main video first: `<name>.mp4` / `video_<N>/output.mp4` before intermediates.
        outputs.sort_by_key(|o| {
            (
                o.path.contains("_input_control_"),
                !o.path.ends_with(".mp4"),
                o.path.clone(),
            )
        });
        self.store()
            .set_run_outputs(id, &outputs, Some(&d.fence))
            .await?;
        if run.params.upsample_prompt {
            self.note_model_prompt(d, run, &outputs).await?;
        }
        let mut message = format!(
            "{} output files downloaded and verified (sha256)",
            outputs.len()
        );
        // A still for galleries, before the run is seen to succeed; none is no failure.
        if let Some(video) = outputs.first().filter(|o| o.path.ends_with(".mp4")) {
            let made = self
                .make_poster(PathBuf::from(&video.path), local_poster(&env.data_dir, id))
                .await;
            if let Err(e) = made {
                tracing::warn!(run = %id, "no poster: {e}");
            }
            if run.kind == RunKind::Upscale {
                message.push_str(&self.upscaled_size(video).await);
            }
        }
        Ok((RunStatus::Succeeded, message, None))
    }

    /// With Cosmos's prompt upsampler on, the prompt file it saved beside the video holds the
    /// text it generated from (reference §4.1): kept with the run when it differs.
    async fn note_model_prompt(
        &self,
        d: &Drive,
        run: &Run,
        outputs: &[RunOutput],
    ) -> EngineResult<()> {
        let Some(file) = outputs.iter().find(|o| o.path.ends_with(".txt")) else {
            return Ok(());
        };
        let Ok(text) = std::fs::read_to_string(&file.path) else {
            return Ok(());
        };
        let text = text.trim();
        if text.is_empty() || text == run.prompt_text.trim() {
            return Ok(());
        }
        self.store()
            .set_model_prompt(&run.id, text, &d.fence)
            .await?;
        self.note(
            d,
            RunStatus::Collecting,
            "the prompt upsampler rewrote the prompt: `cosmos show` has the text the model used",
        )
        .await
    }
}

/// Removes the `.part` files a download left under `dir`.
fn remove_partials(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            remove_partials(&path);
        } else if path.extension().is_some_and(|e| e == "part")
            && let Err(e) = std::fs::remove_file(&path)
        {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
}
