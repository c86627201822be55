//! Hooks: other systems told what happened (issue 18). A hook listens for some of
//! [`HookEvent`]'s occasions and either runs a program (an argument vector, never a shell,
//! the event as JSON on its stdin, cut off at its time limit) or POSTs the JSON to a URL
//! (signed with HMAC-SHA256 when it has a secret, retried with backoff).
//!
//! Deliveries happen beside the work, never in its way: they are spawned when the bus
//! publishes a run's end (or a driver finds a target unreachable), and a run never waits
//! for one. The store decides who sends each occasion (the first process to claim it), so a
//! hook hears of it once however many processes see it. A failed delivery is recorded in the
//! store and, when it concerns a run, as an event of that run.

use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_util::task::TaskTracker;

use cosmos_core::{RunEvent, RunId, RunStatus};
use cosmos_store::Store;

use crate::bus::EventBus;

/// What a hook can listen for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookEvent {
    RunSucceeded,
    RunFailed,
    RunCancelled,
    /// The last unfinished run ended: nothing is queued or running.
    QueueEmpty,
    /// A driver could not reach a target it was using (once per outage and process, and at
    /// most once per target in [`UNREACHABLE_WINDOW`] across processes).
    TargetUnreachable,
}

impl HookEvent {
    pub const ALL: [HookEvent; 5] = [
        HookEvent::RunSucceeded,
        HookEvent::RunFailed,
        HookEvent::RunCancelled,
        HookEvent::QueueEmpty,
        HookEvent::TargetUnreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::RunSucceeded => "run.succeeded",
            HookEvent::RunFailed => "run.failed",
            HookEvent::RunCancelled => "run.cancelled",
            HookEvent::QueueEmpty => "queue.empty",
            HookEvent::TargetUnreachable => "target.unreachable",
        }
    }

    fn of_status(status: RunStatus) -> Option<HookEvent> {
        match status {
            RunStatus::Succeeded => Some(HookEvent::RunSucceeded),
            RunStatus::Failed => Some(HookEvent::RunFailed),
            RunStatus::Cancelled => Some(HookEvent::RunCancelled),
            _ => None,
        }
    }
}

impl std::str::FromStr for HookEvent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        HookEvent::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = HookEvent::ALL.iter().map(|e| e.as_str()).collect();
                format!("unknown event `{s}`: use {}", all.join(", "))
            })
    }
}

/// How a hook tells.
#[derive(Clone, PartialEq, Eq)]
pub enum HookAction {
    /// A program and its arguments, run directly (no shell); the event is its stdin.
    Command(Vec<String>),
    /// An HTTP(S) URL the event is POSTed to; with a secret, the body's HMAC-SHA256 is sent
    /// as `X-Cosmos-Signature-256: sha256=<hex>`.
    Webhook { url: String, secret: Option<String> },
}

impl std::fmt::Debug for HookAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookAction::Command(argv) => f.debug_tuple("Command").field(argv).finish(),
            HookAction::Webhook { url, secret } => f
                .debug_struct("Webhook")
                .field("url", url)
                .field("secret", &secret.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

/// One configured hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub name: String,
    pub on: Vec<HookEvent>,
    pub action: HookAction,
    /// A program's whole run, or one HTTP attempt.
    pub timeout: Duration,
    /// Further attempts after a webhook's first fails (a program is run once).
    pub retries: u32,
    /// The wait before the first retry; each further one doubles.
    pub backoff: Duration,
}

/// How one delivery went.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HookReport {
    pub hook: String,
    pub delivered: bool,
    pub attempts: u32,
    /// What the receiver answered, or why it could not be told.
    pub detail: String,
}

/// Across processes, one `target.unreachable` per target per window.
pub const UNREACHABLE_WINDOW: Duration = Duration::from_secs(300);

/// The deliveries this process started; a command waits for them before it exits.
static PENDING: LazyLock<TaskTracker> = LazyLock::new(TaskTracker::new);

/// Waits (at most `limit`) for the deliveries this process started. Each is bounded by its
/// hook's time limit and retries, so this ends; the limit guards against a misconfiguration.
pub async fn hooks_settled(limit: Duration) {
    PENDING.close();
    let _ = tokio::time::timeout(limit, PENDING.wait()).await;
    PENDING.reopen();
}

/// Delivers this process's occasions to the configured hooks.
#[derive(Debug)]
pub(crate) struct HookRunner {
    hooks: Vec<Hook>,
    store: Arc<dyn Store>,
    bus: Weak<EventBus>,
    /// Targets this process last found unreachable (a new outage is one not in here).
    down: Mutex<std::collections::HashSet<String>>,
}

impl HookRunner {
    pub(crate) fn new(hooks: Vec<Hook>, store: Arc<dyn Store>, bus: Weak<EventBus>) -> Self {
        Self {
            hooks,
            store,
            bus,
            down: Mutex::default(),
        }
    }

    fn listening(&self, event: HookEvent) -> bool {
        self.hooks.iter().any(|h| h.on.contains(&event))
    }

    /// A published event: a run's end tells the hooks listening for it, and for an empty
    /// queue. Cheap when nothing listens; never waits.
    pub(crate) fn on_event(self: &Arc<Self>, e: &RunEvent) {
        let Some(event) = HookEvent::of_status(e.stage) else {
            return;
        };
        let for_run = self.listening(event);
        let for_queue = self.listening(HookEvent::QueueEmpty);
        if !for_run && !for_queue {
            return;
        }
        let me = self.clone();
        let run = e.run_id.clone();
        PENDING.spawn(async move {
            if for_run {
                me.run_ended(event, &run).await;
            }
            if for_queue {
                me.maybe_queue_empty(&run).await;
            }
        });
    }

    /// A driver found `target` unreachable (or reachable again: `reachable`).
    pub(crate) fn target_seen(self: &Arc<Self>, target: &str, reachable: bool, run: &RunId) {
        let new_outage = match self.down.lock() {
            Ok(mut down) if reachable => {
                down.remove(target);
                false
            }
            Ok(mut down) => down.insert(target.to_owned()),
            Err(_) => false,
        };
        if !new_outage || !self.listening(HookEvent::TargetUnreachable) {
            return;
        }
        let me = self.clone();
        let (target, run) = (target.to_owned(), run.clone());
        PENDING.spawn(async move {
            let window = chrono::Utc::now().timestamp() / UNREACHABLE_WINDOW.as_secs() as i64;
            let payload = json!({ "target": { "name": target }, "run_id": run });
            me.tell(
                HookEvent::TargetUnreachable,
                &format!("target.unreachable:{target}:{window}"),
                Some(&run),
                payload,
            )
            .await;
        });
    }

    async fn run_ended(&self, event: HookEvent, id: &RunId) {
        let Ok(run) = self.store.run(id).await else {
            return;
        };
        // A later event of an ended run (a hook's failure, a note) is not a second end.
        let occasion = format!("{}:{id}", event.as_str());
        self.tell(event, &occasion, Some(id), json!({ "run": run }))
            .await;
    }

    async fn maybe_queue_empty(&self, run: &RunId) {
        let Ok(counts) = self.store.count_runs_by_status().await else {
            return;
        };
        if counts.iter().any(|(s, n)| !s.is_terminal() && *n > 0) {
            return;
        }
        // Named by the run whose end emptied the queue: a later event of that run (a hook's
        // failure recorded on it) is not a second emptying.
        let occasion = format!("queue.empty:{run}");
        let payload = json!({ "queue": { "unfinished": 0 }, "last_run_id": run });
        self.tell(HookEvent::QueueEmpty, &occasion, Some(run), payload)
            .await;
    }

    /// Sends `occasion` to every hook listening for `event` that this process may send it
    /// to, and records how each went.
    async fn tell(&self, event: HookEvent, occasion: &str, run: Option<&RunId>, body: Value) {
        for hook in self.hooks.iter().filter(|h| h.on.contains(&event)) {
            let claimed = self
                .store
                .claim_hook_delivery(occasion, &hook.name, event.as_str(), run)
                .await;
            if !matches!(claimed, Ok(true)) {
                continue;
            }
            let payload = payload(event, occasion, &hook.name, false, &body);
            let report = deliver(hook, event, &payload).await;
            if let Err(e) = self
                .store
                .finish_hook_delivery(
                    occasion,
                    &hook.name,
                    report.delivered,
                    report.attempts,
                    &report.detail,
                )
                .await
            {
                tracing::warn!(hook = %hook.name, "cannot record a hook delivery: {e}");
            }
            if report.delivered {
                continue;
            }
            tracing::warn!(hook = %hook.name, "{}: {}", event.as_str(), report.detail);
            if let Some(run) = run {
                self.record_failure(run, hook, event, &report).await;
            }
        }
    }

    /// A failed delivery becomes an event of the run it concerns (`cosmos show`, `logs`).
    async fn record_failure(&self, run: &RunId, hook: &Hook, event: HookEvent, r: &HookReport) {
        let Ok(current) = self.store.run(run).await else {
            return;
        };
        let message = format!(
            "hook `{}` ({}) failed after {} attempt{}: {}",
            hook.name,
            event.as_str(),
            r.attempts,
            if r.attempts == 1 { "" } else { "s" },
            r.detail
        );
        let write = self
            .store
            .add_run_event(run, current.status, None, &message, None);
        // The command that set the delivery off may be done with its engine: the store
        // has the event for every follower either way.
        let written = match self.bus.upgrade() {
            Some(bus) => bus.record_event(write).await.map(drop),
            None => write.await.map(drop).map_err(Into::into),
        };
        if let Err(e) = written {
            tracing::warn!(hook = %hook.name, "cannot record a hook's failure: {e}");
        }
    }
}

/// The JSON a hook receives: what happened, which delivery this is, and its subject.
pub(crate) fn payload(
    event: HookEvent,
    occasion: &str,
    hook: &str,
    test: bool,
    subject: &Value,
) -> Value {
    let mut out = json!({
        "event": event.as_str(),
        "occasion": occasion,
        "hook": hook,
        "sent_at": cosmos_core::now(),
        "test": test,
    });
    if let (Some(out), Some(subject)) = (out.as_object_mut(), subject.as_object()) {
        for (k, v) in subject {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Delivers `payload` to one hook, with its retries.
pub(crate) async fn deliver(hook: &Hook, event: HookEvent, payload: &Value) -> HookReport {
    let body = payload.to_string();
    let (delivered, attempts, detail) = match &hook.action {
        HookAction::Command(argv) => {
            let (ok, detail) = run_program(argv, event, &body, hook.timeout).await;
            (ok, 1, detail)
        }
        HookAction::Webhook { url, secret } => {
            let signature = secret.as_ref().map(|s| {
                format!(
                    "sha256={}",
                    cosmos_core::sha256::hmac_hex(s.as_bytes(), body.as_bytes())
                )
            });
            let mut pause = hook.backoff;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let sent = post(url, event, &body, signature.clone(), hook.timeout).await;
                match sent {
                    Ok(detail) => break (true, attempt, detail),
                    Err((detail, again)) if again && attempt <= hook.retries => {
                        tracing::info!(hook = %hook.name, "{detail}; trying again in {pause:?}");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(300));
                    }
                    Err((detail, _)) => break (false, attempt, detail),
                }
            }
        }
    };
    HookReport {
        hook: hook.name.clone(),
        delivered,
        attempts,
        detail,
    }
}

/// Runs a hook's program with the event on stdin; it must exit 0 within `limit`.
async fn run_program(
    argv: &[String],
    event: HookEvent,
    body: &str,
    limit: Duration,
) -> (bool, String) {
    let Some((program, args)) = argv.split_first() else {
        return (false, "the hook has an empty command".into());
    };
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        .env("COSMOS_HOOK_EVENT", event.as_str())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return (false, format!("cannot run `{program}`: {e}")),
    };
    let mut stdin = child.stdin.take();
    let run = async {
        if let Some(stdin) = stdin.as_mut() {
            // A program that does not read its input is not a failure.
            let _ = stdin.write_all(body.as_bytes()).await;
            let _ = stdin.write_all(b"\n").await;
        }
        drop(stdin);
        child.wait_with_output().await
    };
    match tokio::time::timeout(limit, run).await {
        Err(_) => (
            false,
            format!("`{program}` did not finish within {limit:?} and was stopped"),
        ),
        Ok(Err(e)) => (false, format!("`{program}` could not be waited for: {e}")),
        Ok(Ok(out)) if out.status.success() => (true, format!("`{program}` exited 0")),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: String = stderr
                .trim()
                .chars()
                .rev()
                .take(300)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let status = out.status.code().map_or_else(
                || "was killed by a signal".to_owned(),
                |c| format!("exited {c}"),
            );
            if tail.is_empty() {
                (false, format!("`{program}` {status}"))
            } else {
                (false, format!("`{program}` {status}: {tail}"))
            }
        }
    }
}

/// One POST. `Err((why, worth retrying))`.
async fn post(
    url: &str,
    event: HookEvent,
    body: &str,
    signature: Option<String>,
    limit: Duration,
) -> Result<String, (String, bool)> {
    let (url, body) = (url.to_owned(), body.to_owned());
    let sent = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(limit))
            .http_status_as_error(false)
            .user_agent(concat!("cosmos/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let mut request = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("X-Cosmos-Event", event.as_str());
        if let Some(signature) = &signature {
            request = request.header("X-Cosmos-Signature-256", signature);
        }
        request.send(body.as_bytes()).map(|r| r.status().as_u16())
    })
    .await;
    match sent {
        Err(e) => Err((format!("the request could not be made: {e}"), false)),
        Ok(Err(e)) => Err((format!("POST failed: {e}"), true)),
        Ok(Ok(status)) if (200..300).contains(&status) => Ok(format!("HTTP {status}")),
        // Worth another try: the server's trouble, a timeout, or being told to slow down.
        Ok(Ok(status)) => Err((
            format!("the server answered HTTP {status}"),
            status >= 500 || status == 408 || status == 429,
        )),
    }
}

impl crate::Services {
    /// Tells the configured hooks what this process does from now on.
    pub fn with_hooks(mut self, hooks: Vec<Hook>) -> Self {
        if hooks.is_empty() {
            return self;
        }
        let runner = Arc::new(HookRunner::new(
            hooks.clone(),
            self.store.clone(),
            Arc::downgrade(&self.bus),
        ));
        self.bus.set_hooks(runner.clone());
        self.hooks = Some(runner);
        self.hook_list = Arc::new(hooks);
        self
    }

    /// The configured hooks.
    pub fn hooks(&self) -> &[Hook] {
        &self.hook_list
    }

    /// Sends hook `name` a sample event of each kind it listens for (the first, or `event`),
    /// now, and says how it went. Nothing is recorded: a test is not an occasion.
    pub async fn test_hook(
        &self,
        name: &str,
        event: Option<HookEvent>,
    ) -> crate::EngineResult<HookReport> {
        let hook = self
            .hook_list
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| crate::EngineError::NoSuchHook {
                name: name.to_owned(),
                known: self.hook_list.iter().map(|h| h.name.clone()).collect(),
            })?;
        let event = event
            .or_else(|| hook.on.first().copied())
            .unwrap_or(HookEvent::RunSucceeded);
        let subject = sample_subject(event);
        let occasion = format!("test:{}", cosmos_core::now().timestamp_millis());
        let payload = payload(event, &occasion, &hook.name, true, &subject);
        Ok(deliver(hook, event, &payload).await)
    }

    /// The latest deliveries of one hook or of all, newest first.
    pub async fn hook_deliveries(
        &self,
        hook: Option<&str>,
        limit: u32,
    ) -> crate::EngineResult<Vec<cosmos_store::HookDelivery>> {
        Ok(self.store().hook_deliveries(hook, limit).await?)
    }

    /// A target's reachability as a driver of `run` found it (tells the hooks of a new outage).
    pub(crate) fn target_seen(&self, target: &str, reachable: bool, run: &RunId) {
        if let Some(runner) = &self.hooks {
            runner.target_seen(target, reachable, run);
        }
    }
}

/// What a test delivery carries: the shape of a real one, marked `"test": true`.
fn sample_subject(event: HookEvent) -> Value {
    let run = json!({
        "id": "rs_00000000000000000000000000",
        "prompt_name": "sample",
        "kind": "transfer",
        "status": match event {
            HookEvent::RunFailed => "failed",
            HookEvent::RunCancelled => "cancelled",
            _ => "succeeded",
        },
        "target": "sample-target",
    });
    match event {
        HookEvent::QueueEmpty => json!({ "queue": { "unfinished": 0 }, "last_run_id": run["id"] }),
        HookEvent::TargetUnreachable => {
            json!({ "target": { "name": "sample-target" }, "run_id": run["id"] })
        }
        _ => json!({ "run": run }),
    }
}
