//! Following a started model: its log streamed into the local run log (resumed after a
//! reconnect without duplicate lines) and parsed into progress events.

use std::io::Write;
use std::time::Duration;

use cosmos_core::launch::RunLayout;
use cosmos_core::progress::Milestone;
use cosmos_core::{Run, RunStatus};
use cosmos_remote::runtime::ModelState;

use super::{Drive, local_log};
use crate::Services;
use crate::error::{EngineError, EngineResult};
use crate::targets::Connected;

/// Opens (making it if needed) a local model log for appending; its length is what was
/// received, where the stream resumes.
pub(super) fn open_local_log(path: &std::path::Path) -> EngineResult<(std::fs::File, u64)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| EngineError::Internal(format!("cannot create {}: {e}", dir.display())))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| EngineError::Internal(format!("cannot open {}: {e}", path.display())))?;
    let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((log, offset))
}

impl Services {
    /// Follows the model's log until it ends; returns the collecting message, how the model
    /// ended and whether its log is already kept on the target.
    pub(super) async fn follow(
        &self,
        c: &Connected,
        run: &Run,
        layout: &RunLayout,
        d: &Drive,
    ) -> EngineResult<(String, (ModelState, bool))> {
        let env = self.exec_env()?;
        let (mut log, mut offset) = open_local_log(&local_log(&env.data_dir, &run.id))?;
        // The model's adapter reads its log (clip milestones, or chunks and step bars).
        let mut parser =
            crate::runs::model_of(&run.params)?.progress(self.frames_of(run).await?, &run.params);
        let mut lines = crate::lines::Lines::default();
        let mut last: Option<String> = None;
        let (events, writer) = self.milestone_writer();
        // The GPUs' load, sampled beside the log for as long as the model is followed.
        let sampler = (!c.target.config.rehearsal).then(|| {
            let (me, c, d) = (self.clone(), c.clone(), d.clone());
            let devices = super::devices_of(run);
            let every = env.gpu_sample;
            tokio::spawn(async move {
                me.sample_gpus(&c, std::slice::from_ref(&d), &devices, every)
                    .await
            })
        });
        let mut on_bytes = |bytes: &[u8]| {
            // Paused past the lease: another driver may own the run now.
            if !d.until.held() {
                return;
            }
            if let Err(e) = log.write_all(bytes) {
                tracing::warn!("cannot append to the local run log: {e}");
            }
            lines.push(bytes, |text| {
                if let Some(m) = parser.feed(text.trim_end()) {
                    let key = m.describe();
                    if last.as_deref() != Some(key.as_str()) || m.fraction >= 0.99 {
                        last = Some(key);
                        let _ = events.send((d.clone(), m));
                    }
                }
            });
        };
        let ended = self
            .follow_to_end(c, d, run.id.as_str(), layout, &mut offset, &mut on_bytes)
            .await
            .map(|end| {
                let message = match end.0 {
                    ModelState::Exited(code) => format!("the model exited with code {code}"),
                    _ => "the model process is gone".into(),
                };
                (message, end)
            });
        if let Some(task) = sampler {
            task.abort();
        }
        // Every milestone is stored before the run moves on.
        drop(events);
        let _ = writer.await;
        ended
    }

    /// Records milestones on their runs as they arrive (for `status --watch` and followers
    /// in other processes), by a task, so the log stream never waits on the database. Drop the
    /// sender and await the task to have every one stored.
    pub(super) fn milestone_writer(
        &self,
    ) -> (
        tokio::sync::mpsc::UnboundedSender<(Drive, Milestone)>,
        tokio::task::JoinHandle<()>,
    ) {
        let (events, mut arrived) = tokio::sync::mpsc::unbounded_channel::<(Drive, Milestone)>();
        let me = self.clone();
        let writer = tokio::spawn(async move {
            while let Some((d, m)) = arrived.recv().await {
                let message = m.describe();
                let write = me.store().add_run_event(
                    &d.id,
                    RunStatus::Running,
                    Some(m.fraction),
                    &message,
                    Some(&d.fence),
                );
                if let Err(e) = me.bus.record_event(write).await {
                    tracing::debug!("progress not recorded: {e}");
                }
            }
        });
        (events, writer)
    }

    /// Streams job `job`'s model log into `on_bytes` from `offset` until the model ends,
    /// reconnecting while the target is unreachable (events as `d`); how it ended, and
    /// whether its log is kept on the target.
    pub(super) async fn follow_to_end(
        &self,
        c: &Connected,
        d: &Drive,
        job: &str,
        layout: &RunLayout,
        offset: &mut u64,
        on_bytes: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> EngineResult<(ModelState, bool)> {
        loop {
            let followed = c
                .runtime
                .follow(&c.host, job, layout, offset, &mut *on_bytes)
                .await;
            if let Err(e) = followed {
                if !e.is_transient() {
                    return Err(e.into());
                }
                self.exec_env()?.mark_reachable(&c.target.name, false);
                self.target_seen(&c.target.name, false, &d.id);
                let note = format!("lost the log stream ({e}); reconnecting");
                self.note(d, RunStatus::Running, &note).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            // The state, and the log kept on the target once the model has ended.
            let state = self
                .patiently(c, d, RunStatus::Running, "read the model's state", || {
                    c.runtime.state_keeping_log(&c.host, job, layout)
                })
                .await?;
            if state.0 != ModelState::Running {
                return Ok(state);
            }
        }
    }

    /// The frame count of a run's shortest input.
    pub(super) async fn frames_of(&self, run: &Run) -> EngineResult<u32> {
        Ok(self
            .input_files(run)
            .await?
            .iter()
            .map(|f| f.video.frames)
            .min()
            .unwrap_or(121)
            .min(u64::from(u32::MAX)) as u32)
    }

    /// Asks the target's `nvidia-smi` every `every` for the run's GPUs and records their
    /// load on each run the model serves (a batch's); a sample that cannot be taken is
    /// skipped: the log stream says if the target is gone. Runs until aborted.
    pub(super) async fn sample_gpus(
        &self,
        c: &Connected,
        drives: &[Drive],
        devices: &[u32],
        every: Duration,
    ) {
        let mut usage = cosmos_core::GpuUsage::default();
        let query = cosmos_remote::args(&crate::targets::GPU_QUERY);
        loop {
            tokio::time::sleep(every).await;
            let Ok(out) = c.host.runner.run(&query).await else {
                continue;
            };
            if !out.success() {
                continue;
            }
            let gpus: Vec<(u32, u64)> = crate::targets::parse_gpus(&out.stdout_text())
                .into_iter()
                .filter(|g| devices.contains(&g.index))
                .map(|g| (g.utilization_percent, g.memory_used_mib))
                .collect();
            if gpus.is_empty() {
                continue;
            }
            usage.add(&gpus);
            for d in drives {
                if !d.until.held() {
                    return;
                }
                if let Err(e) = self
                    .store()
                    .set_gpu_usage(&d.id, &usage, Some(&d.fence))
                    .await
                {
                    tracing::debug!("GPU usage not recorded: {e}");
                }
            }
        }
    }
}
