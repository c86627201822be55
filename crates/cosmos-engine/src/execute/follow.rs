//! Following a started model: its log streamed into the local run log (resumed after a
//! reconnect without duplicate lines) and parsed into progress events.

use std::io::Write;
use std::time::Duration;

use cosmos_core::launch::RunLayout;
use cosmos_core::progress::{Milestone, ProgressParser};
use cosmos_core::{Run, RunStatus};
use cosmos_remote::runtime::ModelState;

use super::{Drive, local_log};
use crate::Services;
use crate::error::{EngineError, EngineResult};
use crate::targets::Connected;

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
        let log_path = local_log(&env.data_dir, &run.id);
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                EngineError::Internal(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| {
                EngineError::Internal(format!("cannot open {}: {e}", log_path.display()))
            })?;
        // What is in the local log is what was received: resume after it.
        let mut offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let frames = self
            .input_files(run)
            .await?
            .iter()
            .map(|f| f.video.frames)
            .min()
            .unwrap_or(121);
        let mut parser = ProgressParser::new(cosmos_core::resolution::clip_count(frames) as u32);
        let mut lines = crate::lines::Lines::default();
        let mut last: Option<String> = None;
        // Milestones go to the store as they arrive (for `status --watch` and followers in
        // other processes), written by a task so the log stream never waits on the database.
        let (events, mut arrived) = tokio::sync::mpsc::unbounded_channel::<Milestone>();
        let writer = {
            let (me, d) = (self.clone(), d.clone());
            tokio::spawn(async move {
                while let Some(m) = arrived.recv().await {
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
            })
        };
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
        let ended = loop {
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
                            let _ = events.send(m);
                        }
                    }
                });
            };
            let followed = c
                .runtime
                .follow(&c.host, run.id.as_str(), layout, &mut offset, &mut on_bytes)
                .await;
            if let Err(e) = followed {
                if !e.is_transient() {
                    break Err(e.into());
                }
                self.exec_env()?.mark_reachable(&c.target.name, false);
                let note = format!("lost the log stream ({e}); reconnecting");
                self.note(d, RunStatus::Running, &note).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            // The state, and the log kept on the target once the model has ended.
            let state = self
                .patiently(c, d, RunStatus::Running, "read the model's state", || {
                    c.runtime
                        .state_keeping_log(&c.host, run.id.as_str(), layout)
                })
                .await;
            match state {
                Ok((ModelState::Running, _)) => continue,
                Ok(end @ (ModelState::Exited(code), _)) => {
                    break Ok((format!("the model exited with code {code}"), end));
                }
                Ok(end @ (ModelState::Vanished | ModelState::Absent, _)) => {
                    break Ok(("the model process is gone".into(), end));
                }
                Err(e) => break Err(e),
            }
        };
        if let Some(task) = sampler {
            task.abort();
        }
        // Every milestone is stored before the run moves on.
        drop(events);
        let _ = writer.await;
        ended
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
