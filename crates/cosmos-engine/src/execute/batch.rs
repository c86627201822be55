//! Driving a batch (DESIGN.md §4): queued runs that share a signature, claimed together onto
//! one target's GPUs and run as one Cosmos process over a JSONL file (`--batch_size 1`, so
//! line N writes `video_<N>/`). The model loads once; each run keeps its own events, progress,
//! outputs and end. The process's folder, container and log are the batch's (`runs/<batch>/`,
//! `cosmos-<batch>`, `logs/<batch>.log`); each run's line is recorded before the model starts.
//!
//! How each run of a batch ends:
//! - its line saved: it is collected at once, while the process goes on with the next lines;
//! - cancelled: it ends `cancelled` at once and its output is never fetched; the process is
//!   killed only when every run of the batch is cancelled;
//! - the guardrail blocked a line: Cosmos stops the whole process (reference §0.2). The run of
//!   that line fails `guardrail blocked`; the runs after it go back to the queue. When the log
//!   does not say which line it was, the unfinished runs go back in batches of half the size,
//!   so halving finds the culprit (a run alone fails as any run does);
//! - out of GPU memory: the unfinished runs go back in batches of half the size;
//! - anything else (a crash, a rejected spec, a missing checkpoint): every unfinished run
//!   fails with the reason.
//!
//! A run whose output was saved is never run again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::time::Duration;

use cosmos_core::batch::{BatchReader, BatchShape, BatchSignal, jsonl_line};
use cosmos_core::launch::{PRIMARY_OUTPUT, RunLayout};
use cosmos_core::progress::{FailureKind, Milestone};
use cosmos_core::{BatchId, InputFile, InputKind, Run, RunId, RunStatus};
use cosmos_remote::args;
use cosmos_remote::runtime::ModelState;
use cosmos_store::StoreError;
use tokio::task::JoinSet;

use super::stage::{MaskBlob, Staging, invalid_spec, local_blobs, mask_blobs};
use super::{Drive, Failure, devices_of, local_job_log};
use crate::Services;
use crate::error::{EngineError, EngineResult};
use crate::launch::{batch_spec, build_batch_launch};
use crate::runs::extension;
use crate::targets::{Connected, ExecEnv};

/// One run of a batch as its driver holds it.
#[derive(Debug, Clone)]
struct Member {
    run: Run,
    drive: Drive,
}

/// How often a running batch looks for runs the user cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(500);

/// The batch is driven by this process while this lives.
struct DrivenHere<'a> {
    env: &'a ExecEnv,
    batch: BatchId,
}

impl<'a> DrivenHere<'a> {
    fn enter(env: &'a ExecEnv, batch: &BatchId) -> Option<Self> {
        let mut here = env.batches_here.lock().ok()?;
        here.insert(batch.clone()).then(|| Self {
            env,
            batch: batch.clone(),
        })
    }
}

impl Drop for DrivenHere<'_> {
    fn drop(&mut self) {
        if let Ok(mut here) = self.env.batches_here.lock() {
            here.remove(&self.batch);
        }
    }
}

/// The order runs move through before their model ends.
fn rank(s: RunStatus) -> u8 {
    match s {
        RunStatus::Queued => 0,
        RunStatus::Staging => 1,
        RunStatus::Starting => 2,
        RunStatus::Running => 3,
        _ => 4,
    }
}

/// How a batch's process ended, and what its log said.
struct Ended {
    state: ModelState,
    log_kept: bool,
    log: Box<dyn BatchReader>,
}

impl Services {
    /// Drives every unfinished run of `batch` to its end (or back to the queue). Another
    /// driver of the batch — here or in a live process — makes this [`EngineError::Busy`].
    pub(crate) async fn drive_batch(&self, batch: &BatchId) -> EngineResult<()> {
        let env = self.exec_env()?;
        let Some(_here) = DrivenHere::enter(env, batch) else {
            return Err(EngineError::Busy {
                run: batch.to_string(),
                owner: super::owner_id(),
            });
        };
        let runs = self.store().batch_runs(batch).await?;
        let mut held = Vec::new();
        let mut members = Vec::new();
        for run in runs.into_iter().filter(|r| !r.status.is_terminal()) {
            match self.acquire(&run.id).await {
                Ok(h) => {
                    members.push(Member {
                        drive: Drive {
                            id: run.id.clone(),
                            fence: h.fence.clone(),
                            until: h.until.clone(),
                        },
                        run,
                    });
                    held.push(h);
                }
                Err(e) => {
                    for m in &members {
                        let _ = self
                            .store()
                            .release_lease(&m.drive.id, &m.drive.fence)
                            .await;
                    }
                    return Err(e);
                }
            }
        }
        if members.is_empty() {
            return Ok(());
        }
        // Any lease lost ends the drive: the batch's next driver starts from what is stored.
        let mut lost = JoinSet::new();
        for h in &held {
            let mut rx = h.lost.clone();
            lost.spawn(async move {
                let _ = rx.wait_for(|l| *l).await;
            });
        }
        let first = members[0].drive.id.clone();
        let result = tokio::select! {
            r = self.batch_inner(batch, &mut members) => r,
            _ = lost.join_next() => Err(StoreError::LeaseLost { id: first }.into()),
        };
        for m in &members {
            if let Err(e) = self
                .store()
                .release_lease(&m.drive.id, &m.drive.fence)
                .await
            {
                tracing::warn!(run = %m.drive.id, "cannot release the lease: {e}");
            }
        }
        drop(held);
        result
    }

    async fn batch_inner(&self, batch: &BatchId, members: &mut [Member]) -> EngineResult<()> {
        let name = members[0]
            .run
            .target
            .clone()
            .ok_or_else(|| EngineError::Internal(format!("batch {batch} has no target")))?;
        let target = self.find_target(Some(&name)).await?;
        let c = self.connect(&target)?;
        let layout = RunLayout::new(&target.config.root, batch);
        loop {
            let live = self.live(members).await?;
            let Some(phase) = live.iter().map(|m| m.run.status).min_by_key(|s| rank(*s)) else {
                let rm = args(&["rm", "-f", "--", &layout.env_file()]);
                if let Err(e) = c.host.runner.run(&rm).await {
                    tracing::warn!(batch = %batch, "cannot remove the batch's env file: {e}");
                }
                return Ok(());
            };
            let size = members.len();
            match phase {
                RunStatus::Queued => {
                    for m in live.iter().filter(|m| m.run.status == phase) {
                        let line = m.run.batch_line.unwrap_or(0) + 1;
                        let message = format!(
                            "staging on {name} in batch {batch} (line {line} of {size}; one model load for all)"
                        );
                        self.step(&m.drive, phase, RunStatus::Staging, &message, None)
                            .await?;
                    }
                }
                RunStatus::Staging => {
                    let staging: Vec<Member> =
                        live.into_iter().filter(|m| m.run.status == phase).collect();
                    match self.stage_batch(&c, &layout, &staging).await {
                        Ok(()) => {
                            for m in &staging {
                                let message =
                                    "inputs verified on the target; starting the batch's model";
                                self.step(&m.drive, phase, RunStatus::Starting, message, None)
                                    .await?;
                            }
                        }
                        Err(Staging::Fail(f)) => {
                            for m in &staging {
                                self.fail(&m.drive, phase, f.clone()).await?;
                            }
                        }
                        Err(Staging::Misplaced(why)) => {
                            self.requeue_all(&staging, &why, false).await?;
                            return Ok(());
                        }
                        Err(Staging::Error(EngineError::Remote(e))) if e.is_transient() => {
                            self.requeue_all(&staging, &e.to_string(), true).await?;
                            return Ok(());
                        }
                        Err(Staging::Error(e)) => return Err(e),
                    }
                }
                RunStatus::Starting => self.start_batch(&c, batch, &live).await?,
                _ => {
                    let ended = self.follow_batch(&c, &layout, batch, members).await?;
                    self.conclude_batch(&c, &layout, batch, members, ended)
                        .await?;
                }
            }
        }
    }

    /// Reads where each run of the batch is now; the unfinished ones.
    async fn live(&self, members: &mut [Member]) -> EngineResult<Vec<Member>> {
        let ids: Vec<RunId> = members.iter().map(|m| m.drive.id.clone()).collect();
        let now = self.store().runs(&ids).await?;
        for m in members.iter_mut() {
            if let Some(r) = now.iter().find(|r| r.id == m.drive.id) {
                m.run = r.clone();
            }
        }
        Ok(members
            .iter()
            .filter(|m| !m.run.status.is_terminal())
            .cloned()
            .collect())
    }

    /// Gives runs that could not be staged back to the queue (each with its own retries).
    async fn requeue_all(&self, runs: &[Member], why: &str, backoff: bool) -> EngineResult<()> {
        for m in runs {
            if self
                .requeue(&m.drive, &m.run, why, backoff, None)
                .await?
                .is_none()
            {
                let tries = m.run.attempts + 1;
                let message = format!("gave up after {tries} attempts to stage it: {why}");
                self.fail(
                    &m.drive,
                    m.run.status,
                    Failure::new("target_unreachable", message),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Stages a batch: the target checked once, every run's inputs uploaded once and linked
    /// under its line's folder, the spec (the first line's) and the JSONL file written, and
    /// each run's line recorded. A run whose own inputs are gone fails alone.
    async fn stage_batch(
        &self,
        c: &Connected,
        layout: &RunLayout,
        staging: &[Member],
    ) -> Result<(), Staging> {
        let Some(first) = staging.first() else {
            return Ok(());
        };
        let d0 = &first.drive;
        self.check_placement(c, d0, &first.run).await?;
        let mut lines: Vec<(&Member, Vec<InputFile>)> = Vec::new();
        let mut masks: Vec<Vec<MaskBlob>> = Vec::new();
        let mut blobs = BTreeMap::new();
        for m in staging {
            let files = self.input_files(&m.run).await?;
            match local_blobs(&files).and_then(|found| Ok((found, mask_blobs(&m.run.params)?))) {
                Ok((found, own_masks)) => {
                    for b in found
                        .into_iter()
                        .chain(own_masks.iter().map(|(_, b)| b.clone()))
                    {
                        blobs.insert(b.sha256.clone(), b);
                    }
                    lines.push((m, files));
                    masks.push(own_masks);
                }
                Err(f) => self.fail(&m.drive, RunStatus::Staging, f).await?,
            }
        }
        let Some((lead, lead_files)) = lines.first() else {
            return Ok(());
        };
        let model = crate::runs::model_of(&lead.run.params).map_err(invalid_spec)?;
        let shape = model.batch_shape().unwrap_or(BatchShape::SharedSpec);
        let spec = batch_spec(layout, &lead.run, lead_files).map_err(invalid_spec)?;
        let needs = model.checkpoint_needs(&spec);
        self.check_needs(c, d0, &needs).await?;
        self.check_entry_point(c, model).await?;
        let unique: Vec<_> = blobs.into_values().collect();
        let paths = self.upload_inputs(c, d0, &unique).await?;
        let at: HashMap<&str, &String> = unique
            .iter()
            .map(|b| b.sha256.as_str())
            .zip(&paths)
            .collect();
        let sets: BTreeSet<_> = lines
            .iter()
            .filter_map(|(m, _)| m.run.input_set_id.clone())
            .collect();
        for set in &sets {
            self.store()
                .note_inputs_on_target(&c.target.name, set)
                .await
                .map_err(|e| Staging::Error(e.into()))?;
        }
        let mut links = Vec::new();
        let mut jsonl = String::new();
        for (line, ((m, files), own_masks)) in lines.iter().zip(&masks).enumerate() {
            let line = line as u32;
            let mut visual = None;
            let mut controls = Vec::new();
            for f in files {
                let name = layout.line_input(line, f.kind, extension(&f.path));
                if let Some(blob) = at.get(f.sha256.as_str()) {
                    links.push(((*blob).clone(), name.clone()));
                }
                if f.kind == InputKind::Color {
                    visual = Some(name);
                } else if let Some(hint) = f.kind.hint()
                    && spec.json.get(hint.as_str()).is_some()
                {
                    controls.push((hint.as_str().to_owned(), name));
                }
            }
            for ((stem, ext), b) in own_masks {
                if let Some(blob) = at.get(b.sha256.as_str()) {
                    links.push(((*blob).clone(), layout.line_input(line, stem, ext)));
                }
            }
            match shape {
                BatchShape::SharedSpec => {
                    let prompt = &m.run.prompt_text;
                    jsonl.push_str(&jsonl_line(prompt, visual.as_deref(), &controls));
                }
                // Each line is the run's whole spec, named after the run, its inputs in its
                // line's folder.
                BatchShape::SpecPerLine => {
                    let own = crate::runs::spec_with_inputs(
                        m.run.kind,
                        m.run.id.as_str(),
                        &m.run.prompt_text,
                        m.run.negative_prompt.as_deref(),
                        &m.run.params,
                        files,
                        &|stem, ext| layout.line_input(line, stem, ext),
                    )
                    .map_err(invalid_spec)?;
                    jsonl.push_str(&own.json.to_string());
                }
            }
            jsonl.push('\n');
        }
        self.link_inputs(c, layout, &links).await?;
        let mut text = serde_json::to_string_pretty(&spec.json).unwrap_or_default();
        text.push('\n');
        let h = &c.host;
        let mut files = vec![(layout.batch_file(), jsonl)];
        // Transfer1's global settings live in line 0's spec beside the lines.
        if shape == BatchShape::SharedSpec {
            files.insert(0, (layout.spec(), text));
        }
        for (path, body) in files {
            h.files
                .write(&path, body.as_bytes(), 0o644)
                .await
                .map_err(|e| self.stage_error(e, &c.target.name))?;
        }
        self.write_env(c, layout, &devices_of(&lead.run)).await?;
        let count = lines.len();
        for (line, (m, _)) in lines.iter().enumerate() {
            self.store()
                .set_batch_line(&m.drive.id, line as u32, &m.drive.fence)
                .await
                .map_err(|e| Staging::Error(e.into()))?;
            if line > 0 {
                let note = format!(
                    "staged as line {} of {count}: inputs on the target, verified",
                    line + 1
                );
                self.note(&m.drive, RunStatus::Staging, &note).await?;
            }
        }
        Ok(())
    }

    /// Starts the batch's model (idempotent), its command recorded on every run first.
    async fn start_batch(
        &self,
        c: &Connected,
        batch: &BatchId,
        live: &[Member],
    ) -> EngineResult<()> {
        let mut starting = Vec::new();
        for m in live.iter().filter(|m| m.run.status == RunStatus::Starting) {
            if self.store().cancel_requested(&m.drive.id).await? {
                let message = "cancelled by the user before the model started";
                self.step(
                    &m.drive,
                    RunStatus::Starting,
                    RunStatus::Cancelled,
                    message,
                    Some("cancelled"),
                )
                .await?;
            } else {
                starting.push(m);
            }
        }
        let Some(first) = starting.first() else {
            return Ok(());
        };
        // The spec's global input is line 0's, whichever run that is now.
        let lead = live
            .iter()
            .find(|m| m.run.batch_line == Some(0))
            .unwrap_or(first);
        let files = self.input_files(&lead.run).await?;
        let plan = build_batch_launch(&c.target, batch, &lead.run, &files, &devices_of(&lead.run))?;
        let supply = self.supply_of(&c.target);
        for m in &starting {
            self.store()
                .set_supply(&m.drive.id, &supply, Some(&m.drive.fence))
                .await?;
            self.store()
                .set_launch_command(&m.drive.id, &plan.start_command, Some(&m.drive.fence))
                .await?;
        }
        let argv = plan.start_command;
        let started = self
            .patiently(
                c,
                &first.drive,
                RunStatus::Starting,
                "start the model",
                || c.runtime.start(&c.host, &argv),
            )
            .await;
        match started {
            Ok(()) => {
                let count = live.len();
                for m in &starting {
                    let line = m.run.batch_line.unwrap_or(0) + 1;
                    let message = format!(
                        "{} for batch {batch}: line {line} of {count}",
                        c.runtime.started(batch.as_str())
                    );
                    self.step(
                        &m.drive,
                        RunStatus::Starting,
                        RunStatus::Running,
                        &message,
                        None,
                    )
                    .await?;
                }
                Ok(())
            }
            Err(EngineError::Remote(e)) if !e.is_transient() => {
                let failure = super::start_failure(&c.target.name, &e);
                let name = &c.target.name;
                // Nothing ran: another target may take the runs before they fail.
                let elsewhere = self.another_target_for(&first.run, name).await?;
                for m in &starting {
                    if elsewhere {
                        let why = format!("{}; placing it on another target", failure.message);
                        if self
                            .requeue(&m.drive, &m.run, &why, false, Some(name))
                            .await?
                            .is_some()
                        {
                            continue;
                        }
                    }
                    self.fail(&m.drive, RunStatus::Starting, failure.clone())
                        .await?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Follows the batch's process until it ends: its log kept locally, each line's
    /// milestones recorded on that line's run (the model loading on every run), each line
    /// collected as soon as it is saved, runs the user cancels ended at once.
    async fn follow_batch(
        &self,
        c: &Connected,
        layout: &RunLayout,
        batch: &BatchId,
        members: &[Member],
    ) -> EngineResult<Ended> {
        let env = self.exec_env()?;
        let log_path = local_job_log(&env.data_dir, batch.as_str());
        let (mut log, mut offset) = super::follow::open_local_log(&log_path)?;
        // Each line's frames and parameters, in line order, for the model's reader.
        let mut ordered: Vec<&Member> = members.iter().collect();
        ordered.sort_by_key(|m| m.run.batch_line.unwrap_or(u32::MAX));
        let mut frames = Vec::with_capacity(ordered.len());
        for m in &ordered {
            frames.push(self.frames_of(&m.run).await?);
        }
        let lines: Vec<(u32, &cosmos_core::RunParams)> = frames
            .into_iter()
            .zip(ordered.iter().map(|m| &m.run.params))
            .collect();
        let mut parser = match members.first() {
            Some(m) => crate::runs::model_of(&m.run.params)
                .map_err(|e| EngineError::Internal(e.to_string()))?
                .batch_reader(&lines),
            None => cosmos_core::model::Model::batch_reader(&cosmos_core::model::Transfer1, &lines),
        };
        // What an earlier driver received is read again, so lines keep their numbers.
        if offset > 0 {
            let before = std::fs::read(&log_path).unwrap_or_default();
            for line in String::from_utf8_lossy(&before).split(['\n', '\r']) {
                parser.feed(line);
            }
        }
        let by_line: HashMap<u32, Drive> = members
            .iter()
            .filter_map(|m| Some((m.run.batch_line?, m.drive.clone())))
            .collect();
        let all: Vec<Drive> = members
            .iter()
            .filter(|m| !m.run.status.is_terminal())
            .map(|m| m.drive.clone())
            .collect();

        let (events, writer) = self.milestone_writer();
        // Saved lines are collected by another task while the model goes on.
        let (saved, mut to_collect) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let collector = {
            let (me, c, layout, by_line) =
                (self.clone(), c.clone(), layout.clone(), by_line.clone());
            tokio::spawn(async move {
                while let Some(line) = to_collect.recv().await {
                    let Some(d) = by_line.get(&line) else {
                        continue;
                    };
                    if let Err(e) = me.collect_line(&c, &layout, d, line).await {
                        tracing::warn!(run = %d.id, "line {line} not collected yet: {e}");
                    }
                }
            })
        };
        for line in parser.saved() {
            let _ = saved.send(*line);
        }
        let canceller = {
            let (me, c, batch, all) = (self.clone(), c.clone(), batch.clone(), all.clone());
            let layout = layout.clone();
            tokio::spawn(async move { me.watch_cancels(&c, &layout, &batch, &all).await })
        };
        let sampler = (!c.target.config.rehearsal).then(|| {
            let (me, c, all) = (self.clone(), c.clone(), all.clone());
            let devices = members
                .first()
                .map(|m| devices_of(&m.run))
                .unwrap_or_default();
            let every = env.gpu_sample;
            tokio::spawn(async move { me.sample_gpus(&c, &all, &devices, every).await })
        });
        let mut lines = crate::lines::Lines::default();
        let mut last: HashMap<RunId, String> = HashMap::new();
        let held = all.first().map(|d| d.until.clone());
        let mut on_bytes = |bytes: &[u8]| {
            if held.as_ref().is_some_and(|u| !u.held()) {
                return;
            }
            if let Err(e) = log.write_all(bytes) {
                tracing::warn!("cannot append to the batch's local log: {e}");
            }
            lines.push(bytes, |text| {
                let mut send = |d: &Drive, m: &Milestone| {
                    let key = m.describe();
                    if last.get(&d.id) != Some(&key) || m.fraction >= 0.99 {
                        last.insert(d.id.clone(), key);
                        let _ = events.send((d.clone(), m.clone()));
                    }
                };
                match parser.feed(text.trim_end()) {
                    Some(BatchSignal::All(m)) => all.iter().for_each(|d| send(d, &m)),
                    Some(BatchSignal::Line(n, m)) => {
                        if let Some(d) = by_line.get(&n) {
                            send(d, &m);
                        }
                    }
                    Some(BatchSignal::Saved(n)) => {
                        let _ = saved.send(n);
                    }
                    None => {}
                }
            });
        };
        let ended = match all.first() {
            Some(d0) => {
                self.follow_to_end(c, d0, batch.as_str(), layout, &mut offset, &mut on_bytes)
                    .await
            }
            None => Ok((ModelState::Absent, false)),
        };
        canceller.abort();
        if let Some(task) = sampler {
            task.abort();
        }
        drop(events);
        drop(saved);
        let _ = writer.await;
        let _ = collector.await;
        let (state, log_kept) = ended?;
        Ok(Ended {
            state,
            log_kept,
            log: parser,
        })
    }

    /// Ends runs the user cancels while their batch runs: each at once (its output will not
    /// be fetched); the process is killed once no run of the batch wants it any more.
    async fn watch_cancels(
        &self,
        c: &Connected,
        layout: &RunLayout,
        batch: &BatchId,
        drives: &[Drive],
    ) {
        let mut killed = false;
        loop {
            tokio::time::sleep(CANCEL_POLL).await;
            let ids: Vec<RunId> = drives.iter().map(|d| d.id.clone()).collect();
            let Ok(runs) = self.store().runs(&ids).await else {
                continue;
            };
            let mut wanted = 0;
            for run in &runs {
                if run.status.is_terminal() {
                    continue;
                }
                let Ok(cancel) = self.store().cancel_requested(&run.id).await else {
                    wanted += 1;
                    continue;
                };
                if !cancel {
                    wanted += 1;
                    continue;
                }
                if run.status == RunStatus::Running
                    && let Some(d) = drives.iter().find(|d| d.id == run.id)
                {
                    let message = "cancelled by the user; the batch goes on without it and its output is discarded";
                    if let Err(e) = self
                        .step(
                            d,
                            RunStatus::Running,
                            RunStatus::Cancelled,
                            message,
                            Some("cancelled"),
                        )
                        .await
                    {
                        tracing::warn!(run = %d.id, "cannot record the cancel: {e}");
                    }
                }
            }
            if wanted == 0 && !killed {
                killed = true;
                if let Err(e) = c.runtime.kill(&c.host, batch.as_str(), layout).await {
                    tracing::warn!(batch = %batch, "cannot stop the batch's model: {e}");
                    killed = false;
                }
            }
        }
    }

    /// Collects the run of a saved line: its files (in `video_<N>/`, or named after it)
    /// downloaded and verified.
    async fn collect_line(
        &self,
        c: &Connected,
        layout: &RunLayout,
        d: &Drive,
        line: u32,
    ) -> EngineResult<()> {
        let run = self.store().run(&d.id).await?;
        if run.status.is_terminal() {
            return Ok(());
        }
        self.check_lease(d).await?;
        if run.status == RunStatus::Running {
            let message = format!(
                "line {} of the batch saved; downloading its outputs",
                line + 1
            );
            self.step(d, RunStatus::Running, RunStatus::Collecting, &message, None)
                .await?;
        }
        let (dir, own_names) = match line_shape(&run) {
            BatchShape::SharedSpec => (layout.line_outputs(line), false),
            BatchShape::SpecPerLine => (layout.outputs(), true),
        };
        let (to, message, code) = self.fetch_outputs(c, d, &run, &dir, own_names).await?;
        self.step(d, RunStatus::Collecting, to, &message, code)
            .await
    }

    /// After the process ended: its log kept and container removed, then each unfinished run
    /// collected (its line saved), cancelled, failed or given back to the queue.
    async fn conclude_batch(
        &self,
        c: &Connected,
        layout: &RunLayout,
        batch: &BatchId,
        members: &mut [Member],
        ended: Ended,
    ) -> EngineResult<()> {
        let live = self.live(members).await?;
        // Runs all collected while the model ran still leave its container to remove.
        let Some(d0) = live.first().or(members.first()).map(|m| m.drive.clone()) else {
            return Ok(());
        };
        let exit = match ended.state {
            ModelState::Exited(code) => {
                for m in members.iter() {
                    self.store()
                        .set_exit_code(&m.drive.id, code, Some(&m.drive.fence))
                        .await?;
                }
                Some(code)
            }
            ModelState::Running => {
                return Err(EngineError::Internal(format!(
                    "batch {batch} is being concluded but its model still runs"
                )));
            }
            ModelState::Vanished => None,
            ModelState::Absent => live.iter().find_map(|m| m.run.exit_code),
        };
        if ended.state != ModelState::Absent {
            if !ended.log_kept
                && let Err(e) = self
                    .patiently(c, &d0, RunStatus::Running, "save the model log", || {
                        c.runtime.save_log(&c.host, batch.as_str(), layout)
                    })
                    .await
            {
                tracing::warn!(batch = %batch, "the model log stays only in the local copy: {e}");
            }
            if let Err(e) = c.runtime.remove(&c.host, batch.as_str()).await {
                tracing::warn!("could not remove the container of batch {batch}: {e}");
            }
        }
        if live.is_empty() {
            return Ok(());
        }
        let env = self.exec_env()?;
        let text = {
            const TAIL: usize = 64 * 1024;
            let bytes =
                std::fs::read(local_job_log(&env.data_dir, batch.as_str())).unwrap_or_default();
            let from = bytes.len().saturating_sub(TAIL);
            String::from_utf8_lossy(&bytes[from..]).into_owned()
        };
        let mut rest = Vec::new();
        for m in live {
            let line = m.run.batch_line.unwrap_or(0);
            let (video, done) = line_files(layout, &m.run, line);
            let finished = match &done {
                Some(done) => c.host.files.size(done).await?.is_some(),
                None => exit == Some(0),
            };
            let saved = ended.log.saved().contains(&line)
                || (finished && c.host.files.size(&video).await?.is_some());
            if self.store().cancel_requested(&m.drive.id).await? {
                let message = "cancelled by the user; its output is discarded";
                self.step(
                    &m.drive,
                    m.run.status,
                    RunStatus::Cancelled,
                    message,
                    Some("cancelled"),
                )
                .await?;
            } else if saved {
                self.collect_line(c, layout, &m.drive, line).await?;
            } else {
                rest.push(m);
            }
        }
        if rest.is_empty() {
            return Ok(());
        }
        let model = crate::runs::model_of(&rest[0].run.params)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        if exit == Some(0) {
            for m in &rest {
                let line = m.run.batch_line.unwrap_or(0);
                // Why is the model's to say from what its log said during the line (its
                // guardrail ends a blocked sample without a video and goes on).
                let (code, reason) = model.missing_video(&ended.log.said_in(line));
                let (video, _) = line_files(layout, &m.run, line);
                let message = if code == "no_video" {
                    format!(
                        "the model exited 0 but wrote no video for line {} ({video})",
                        line + 1
                    )
                } else {
                    reason
                };
                self.fail(&m.drive, m.run.status, Failure::new(code, message))
                    .await?;
            }
            return Ok(());
        }
        let failure = model.classify(exit, &text);
        let size = members.len() as u32;
        match failure.kind {
            FailureKind::GuardrailBlocked | FailureKind::VideoBlocked => {
                let culprit = ended
                    .log
                    .blocked_in()
                    .and_then(|n| rest.iter().position(|m| m.run.batch_line == Some(n)));
                match culprit {
                    Some(i) => {
                        let m = rest.remove(i);
                        let code = failure.kind.code();
                        self.fail(&m.drive, m.run.status, Failure::new(code, failure.reason))
                            .await?;
                        let line = m.run.batch_line.unwrap_or(0) + 1;
                        let why = format!(
                            "the guardrail stopped batch {batch} at line {line} (run {}) before this run's line; back in the queue",
                            m.drive.id
                        );
                        self.back_to_queue(&rest, &why, None).await
                    }
                    None if rest.len() == 1 => {
                        let m = &rest[0];
                        let code = failure.kind.code();
                        self.fail(&m.drive, m.run.status, Failure::new(code, failure.reason))
                            .await
                    }
                    None => {
                        let half = (rest.len() as u32).div_ceil(2);
                        let why = format!(
                            "the guardrail stopped batch {batch} and its log does not say at which line; back in the queue in batches of at most {half} to find the run it blocked"
                        );
                        self.back_to_queue(&rest, &why, Some(half)).await
                    }
                }
            }
            FailureKind::OutOfMemory if size > 1 => {
                let half = (size / 2).max(1);
                let why = format!(
                    "out of GPU memory in batch {batch} of {size} runs ({}); back in the queue in batches of at most {half}",
                    failure.reason
                );
                self.back_to_queue(&rest, &why, Some(half)).await
            }
            kind => {
                for m in &rest {
                    let f = Failure::new(kind.code(), failure.reason.clone());
                    self.fail(&m.drive, m.run.status, f).await?;
                }
                Ok(())
            }
        }
    }

    /// Gives a batch's unfinished runs back to the queue (no attempt of theirs is counted),
    /// to join batches of at most `limit` from now on.
    async fn back_to_queue(
        &self,
        runs: &[Member],
        why: &str,
        limit: Option<u32>,
    ) -> EngineResult<()> {
        let each: Vec<(RunId, RunStatus, cosmos_store::Fence)> = runs
            .iter()
            .map(|m| (m.drive.id.clone(), m.run.status, m.drive.fence.clone()))
            .collect();
        let write = self.store().requeue_from_batch(&each, why, limit);
        match self.bus.record(write).await {
            Ok(()) | Err(EngineError::Store(StoreError::Conflict { .. })) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

/// How the batch a run is in lays out its files (its model's way).
fn line_shape(run: &Run) -> BatchShape {
    crate::runs::model_of(&run.params)
        .ok()
        .and_then(|m| m.batch_shape())
        .unwrap_or(BatchShape::SharedSpec)
}

/// Where a run's line of a batch leaves its video, and the file that says the video is
/// whole: Transfer1's `video_<N>/output.mp4`, then its prompt. A model that names files by
/// sample writes no file after its video: its video is whole once its log said so, or once
/// the process exited 0 (`None`).
fn line_files(layout: &RunLayout, run: &Run, line: u32) -> (String, Option<String>) {
    match line_shape(run) {
        BatchShape::SharedSpec => {
            let dir = layout.line_outputs(line);
            (
                format!("{dir}/{PRIMARY_OUTPUT}"),
                Some(format!("{dir}/prompt.txt")),
            )
        }
        BatchShape::SpecPerLine => {
            let video = crate::runs::model_of(&run.params)
                .map(|m| m.primary_output(run.id.as_str()))
                .unwrap_or_else(|_| format!("{}.mp4", run.id));
            (format!("{}/{video}", layout.outputs()), None)
        }
    }
}
