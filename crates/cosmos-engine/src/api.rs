//! The engine's workflows, grouped by concern: `services.runs()`, `.prompts()`,
//! `.inputs()`, `.targets()`, `.queue()` and `.events()`. Front ends call these; each is a
//! thin handle over the one engine, so a workflow of one concern can use another's.

use std::path::Path;

use tokio::sync::{mpsc, watch};

use cosmos_core::{IdKind, InputSet, InputSetId, Prompt, PromptId, Run, RunEvent, RunId, Target};
use cosmos_remote::ssh::SshSpec;
use cosmos_remote::ssh::hostkeys::HostKeyVerdict;
use cosmos_store::{InputSetSummary, PromptFilter, PromptSummary, RunFilter, SearchHit, Worker};

use crate::error::EngineResult;
use crate::reads::RateRequest;
use crate::{
    AddTargetRequest, AddedInputSet, CancelScope, Cancelled, CheckItem, CreatePromptRequest,
    CreatedPrompt, EditPromptRequest, Followed, InspectedInputs, LaunchDefaults, PromptDetail,
    Resolved, RunPlan, RunRequest, Services, StatusView, SubmitRequest, Submitted, TargetSettings,
    WorkerEvent,
};

/// Runs: submitting, seeing through, cancelling, retrying, reading.
#[derive(Debug, Clone, Copy)]
pub struct Runs<'a>(pub(crate) &'a Services);

/// Prompts: creating, editing, deleting, searching, reading.
#[derive(Debug, Clone, Copy)]
pub struct Prompts<'a>(pub(crate) &'a Services);

/// Input sets: registering folders of control videos, reading, deleting.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a>(pub(crate) &'a Services);

/// Targets: adding, editing, removing, trusting, checking.
#[derive(Debug, Clone, Copy)]
pub struct Targets<'a>(pub(crate) &'a Services);

/// The queue: workers, pausing, the status view.
#[derive(Debug, Clone, Copy)]
pub struct Queue<'a>(pub(crate) &'a Services);

impl Services {
    pub fn runs(&self) -> Runs<'_> {
        Runs(self)
    }

    pub fn prompts(&self) -> Prompts<'_> {
        Prompts(self)
    }

    pub fn inputs(&self) -> Inputs<'_> {
        Inputs(self)
    }

    pub fn targets(&self) -> Targets<'_> {
        Targets(self)
    }

    pub fn queue(&self) -> Queue<'_> {
        Queue(self)
    }

    /// Resolves an id prefix (or a prompt's exact name) of any of `kinds`.
    pub async fn resolve(&self, text: &str, kinds: &[IdKind]) -> EngineResult<Resolved> {
        self.resolve_any(text, kinds).await
    }
}

impl Runs<'_> {
    /// Copies (or hard-links) the chosen succeeded runs' outputs and control videos into a
    /// folder with a manifest (JSONL and CSV) for a training-data pipeline.
    pub async fn export(&self, req: crate::ExportRequest) -> EngineResult<crate::ExportReport> {
        self.0.export(req).await
    }

    /// Plans entries (one run, a sweep, a runs file), checks them, and queues them.
    pub async fn submit(&self, req: SubmitRequest) -> EngineResult<Submitted> {
        self.0.submit(req).await
    }

    /// Plans one run on `target` without storing anything.
    pub async fn plan(&self, req: &RunRequest, target: &Target) -> EngineResult<RunPlan> {
        self.0.plan_run(req, target).await
    }

    /// Stores a planned run as queued (`pin` keeps it on one target).
    pub async fn queue_plan(
        &self,
        plan: RunPlan,
        note: &str,
        pin: Option<&str>,
    ) -> EngineResult<Run> {
        self.0.submit_run(plan, note, pin).await
    }

    /// Sees runs through to their end (following a worker, or driving them here).
    pub async fn see_through(
        &self,
        ids: &[RunId],
        stop: watch::Receiver<bool>,
    ) -> EngineResult<Followed> {
        self.0.see_through(ids, true, stop).await
    }

    /// Follows runs to their end without starting queued ones (`logs -f`): started runs no
    /// process drives are taken on, queued ones wait for a worker or their `cosmos run`.
    pub async fn follow(
        &self,
        ids: &[RunId],
        stop: watch::Receiver<bool>,
    ) -> EngineResult<Followed> {
        self.0.see_through(ids, false, stop).await
    }

    pub async fn cancel(&self, scope: CancelScope) -> EngineResult<Cancelled> {
        self.0.cancel(scope).await
    }

    /// Queues a 4K upscale of a run's output (now, or once it succeeds) or of a video.
    pub async fn upscale(&self, req: &crate::UpscaleRequest) -> EngineResult<Run> {
        self.0.upscale(req).await
    }

    pub async fn retry(&self, id: &RunId) -> EngineResult<Run> {
        self.0.retry(id).await
    }

    pub async fn resolve(&self, text: &str) -> EngineResult<RunId> {
        self.0.resolve_run(text).await
    }

    pub async fn get(&self, id: &RunId) -> EngineResult<Run> {
        self.0.run(id).await
    }

    pub async fn events(&self, id: &RunId) -> EngineResult<Vec<RunEvent>> {
        self.0.run_events(id).await
    }

    pub async fn list(&self, filter: &RunFilter) -> EngineResult<Vec<Run>> {
        self.0.list_runs(filter).await
    }

    /// How many runs match `filter` (its limit aside): "20 of 31".
    pub async fn count(&self, filter: &RunFilter) -> EngineResult<u64> {
        self.0.count_matching_runs(filter).await
    }

    /// Rates runs (1–5, 0 clears) and/or marks them favourite; the runs as they are now.
    pub async fn rate(&self, ids: &[RunId], req: &RateRequest) -> EngineResult<Vec<Run>> {
        self.0.rate_runs(ids, req).await
    }

    /// How many runs are in each status (every status, zero included).
    pub async fn count_by_status(&self) -> EngineResult<Vec<(cosmos_core::RunStatus, u64)>> {
        self.0.count_by_status().await
    }

    /// Changes a queued run's priority (higher runs first).
    pub async fn set_priority(&self, id: &RunId, priority: i32) -> EngineResult<Run> {
        self.0.set_priority(id, priority).await
    }

    /// Started runs no live process drives (a crash left them).
    pub async fn orphaned(&self) -> EngineResult<Vec<Run>> {
        self.0.orphaned_runs().await
    }

    /// The spec the run gives Cosmos (as the driver builds it), once it is placed on a
    /// target that still exists.
    pub async fn spec(&self, id: &RunId) -> EngineResult<Option<serde_json::Value>> {
        self.0.run_spec(id).await
    }

    /// The latest message and progress of each run named (one query).
    pub async fn stages_of(&self, ids: &[RunId]) -> EngineResult<Vec<cosmos_store::RunStage>> {
        Ok(self.0.store().stages_of(ids).await?)
    }

    /// A run's poster (a still of its output video), made now if it has none yet; `None`
    /// when the run has no output video.
    pub async fn poster(
        &self,
        id: &RunId,
        data_dir: &Path,
    ) -> EngineResult<Option<std::path::PathBuf>> {
        self.0.run_poster(id, data_dir).await
    }
}

impl Prompts<'_> {
    /// Creates a prompt, or returns the identical one that exists (unless `req.new`).
    pub async fn create(&self, req: &CreatePromptRequest) -> EngineResult<CreatedPrompt> {
        self.0.create_prompt(req).await
    }

    /// Queues an enhance run: the prompt upsampler rewrites the prompt on a target, and the
    /// result becomes a child prompt.
    pub async fn enhance(&self, req: &crate::EnhanceRequest) -> EngineResult<Run> {
        self.0.enhance_prompt(req).await
    }

    /// The prompt an enhance run stored, once it succeeded.
    pub async fn enhanced_by(&self, run: &Run) -> EngineResult<Option<Prompt>> {
        self.0.enhanced_by(run).await
    }

    pub async fn edit(&self, id: &PromptId, req: &EditPromptRequest) -> EngineResult<Prompt> {
        self.0.edit_prompt(id, req).await
    }

    pub async fn delete(&self, id: &PromptId, force: bool) -> EngineResult<u64> {
        self.0.delete_prompt(id, force).await
    }

    pub async fn resolve(&self, text: &str) -> EngineResult<PromptId> {
        self.0.resolve_prompt(text).await
    }

    pub async fn named(&self, name: &str) -> EngineResult<Option<Prompt>> {
        self.0.prompt_named(name).await
    }

    pub async fn detail(&self, id: &PromptId, runs: u32) -> EngineResult<PromptDetail> {
        self.0.prompt_detail(id, runs).await
    }

    pub async fn list(&self, filter: &PromptFilter) -> EngineResult<Vec<PromptSummary>> {
        self.0.list_prompts(filter).await
    }

    pub async fn search(
        &self,
        query: &str,
        limit: u32,
        marks: (&str, &str),
    ) -> EngineResult<Vec<SearchHit>> {
        self.0.search_prompts(query, limit, marks).await
    }
}

impl Inputs<'_> {
    /// Finds, probes and hashes a folder's control videos without storing anything.
    pub async fn inspect(&self, dir: &Path) -> EngineResult<InspectedInputs> {
        self.0.inspect_inputs(dir).await
    }

    pub async fn add(
        &self,
        dir: &Path,
        name: Option<&str>,
        force: bool,
    ) -> EngineResult<AddedInputSet> {
        self.0.add_input_set(dir, name, force).await
    }

    pub async fn resolve(&self, text: &str) -> EngineResult<InputSetId> {
        self.0.resolve_input_set(text).await
    }

    pub async fn get(&self, id: &InputSetId) -> EngineResult<InputSet> {
        self.0.input_set(id).await
    }

    pub async fn list(&self, limit: u32) -> EngineResult<Vec<InputSetSummary>> {
        self.0.list_input_sets(limit).await
    }

    pub async fn delete(&self, id: &InputSetId, force: bool) -> EngineResult<u64> {
        self.0.delete_input_set(id, force).await
    }

    /// A JPEG thumbnail of one control video (kept under `data_dir/thumbs` by the video's
    /// hash) and that hash; `None` when the set has no such control.
    pub async fn thumbnail(
        &self,
        id: &InputSetId,
        kind: cosmos_core::InputKind,
        data_dir: &Path,
    ) -> EngineResult<Option<(std::path::PathBuf, String)>> {
        self.0.input_thumbnail(id, kind, data_dir).await
    }
}

impl Targets<'_> {
    pub async fn add(
        &self,
        req: &AddTargetRequest,
        defaults: &LaunchDefaults,
    ) -> EngineResult<Target> {
        self.0.add_target(req, defaults).await
    }

    pub async fn edit(&self, name: &str, settings: &TargetSettings) -> EngineResult<Target> {
        self.0.edit_target(name, settings).await
    }

    /// Sets up the local rehearsal target `name` under `dir`, cosmos-sim (`sim`) standing
    /// in for the model.
    pub async fn put_rehearsal(&self, name: &str, dir: &Path, sim: &Path) -> EngineResult<Target> {
        self.0.put_rehearsal(name, dir, sim).await
    }

    /// Removes a target; returns the queued runs pinned to it that were cancelled.
    pub async fn remove(&self, name: &str, force: bool) -> EngineResult<Vec<RunId>> {
        self.0.remove_target(name, force).await
    }

    /// A target by name, or the default one.
    /// Counts a target's GPUs now and records them (its slots follow them when it was added
    /// without a slot count); `None` when the host lists none.
    pub async fn count_gpus(&self, target: &Target) -> EngineResult<Option<u32>> {
        self.0.count_gpus(target).await
    }

    pub async fn find(&self, name: Option<&str>) -> EngineResult<Target> {
        self.0.find_target(name).await
    }

    pub async fn list(&self) -> EngineResult<Vec<Target>> {
        self.0.list_targets().await
    }

    /// The SSH logins a target's connection goes through, jump host first.
    pub fn hops(&self, target: &Target) -> EngineResult<Vec<SshSpec>> {
        self.0.ssh_hops(target)
    }

    /// The key one hop shows (fingerprint, algorithm) and what known_hosts says of it.
    pub async fn scan_key(&self, hop: &SshSpec) -> EngineResult<(String, String, HostKeyVerdict)> {
        self.0.scan_key(hop).await
    }

    /// Pins the key one hop shows now; its fingerprint.
    /// Pins the key a hop shows; a key that changed is replaced only when `replace`.
    pub async fn trust_key(&self, hop: &SshSpec, replace: bool) -> EngineResult<String> {
        self.0.trust_key(hop, replace).await
    }

    /// Preflight: each item ok or failed.
    pub async fn check(&self, target: &Target) -> EngineResult<Vec<CheckItem>> {
        self.0.check_target(target).await
    }

    /// Sets a target up from a bare host (checkout, image, checkpoints, manifest, verify),
    /// each step skipped when already done and verified; progress goes to `events`.
    pub async fn setup(
        &self,
        req: &crate::SetupRequest,
        events: Option<mpsc::UnboundedSender<crate::SetupEvent>>,
    ) -> EngineResult<crate::SetupReport> {
        self.0.setup_target(req, events).await
    }

    /// The checkpoints against their manifest (sizes and times, or every sha256 with
    /// `full`) and readable inside the image.
    pub async fn verify(
        &self,
        req: &crate::VerifyRequest,
        events: Option<mpsc::UnboundedSender<crate::SetupEvent>>,
    ) -> EngineResult<Vec<CheckItem>> {
        let target = self.0.find_target(Some(&req.target)).await?;
        let c = self.0.connect(&target)?;
        if let Some(ssh) = &c.ssh {
            ssh.connect().await?;
        }
        self.0
            .verify_items(&c, req.full, &crate::setup::reporter(events))
            .await
    }
}

impl Queue<'_> {
    /// Runs a worker until `stop` turns true.
    pub async fn work(
        &self,
        stop: watch::Receiver<bool>,
        report: mpsc::UnboundedSender<WorkerEvent>,
    ) -> EngineResult<()> {
        self.0.work(stop, report).await
    }

    pub async fn set_paused(&self, target: Option<&str>, paused: bool) -> EngineResult<()> {
        self.0.set_paused(target, paused).await
    }

    /// The queue with estimates, running runs, targets and workers, from the store alone.
    pub async fn status(&self, listed: u32) -> EngineResult<StatusView> {
        self.0.status_view(listed).await
    }

    pub async fn live_workers(&self) -> EngineResult<Vec<Worker>> {
        self.0.live_workers().await
    }
}
