//! The queue in claim order with its estimates, the running runs, and the targets with
//! their slots, health and GPU load; pausing and resuming all of it or one target.

use axum::extract::State;
use maud::html;

use super::{Nav, PageResult, layout, status, when};
use crate::AppState;

/// Queued runs listed (the rest are counted).
const LISTED: u32 = 200;

pub(crate) async fn page(State(s): State<AppState>) -> PageResult {
    let seq = s.services.events().head().await?;
    let view = s.services.queue().status(LISTED).await?;
    let body = html! {
        h1 data-seq=(seq) { "Queue & targets" }
        div.toolbar {
            @if view.paused {
                span.status.cancelled { "the whole queue is paused" }
                button.primary data-queue="resume" { "Resume the queue" }
            } @else {
                button data-queue="pause" { "Pause the queue" }
            }
            span.muted {
                (view.queued_total) " queued · " (view.running.len()) " running"
                @if let Some(t) = view.typical_run_seconds { " · a run takes about " (format!("{t:.0}")) " s" }
            }
        }
        h2 { "Targets" }
        table.list #targets {
            thead { tr { th { "Target" } th { "GPUs" } th { "Slots used / free" } th { "Reachable" } th { "Since" } th { "GPU load now" } th {} } }
            tbody {
                @for t in &view.targets {
                    @let load: Vec<String> = view.running.iter()
                        .filter(|r| r.run.target.as_deref() == Some(t.name.as_str()))
                        .filter_map(|r| r.run.gpu_usage.as_ref())
                        .map(|g| format!("{} % · {} MiB", g.utilization_peak, g.memory_peak_mib))
                        .collect();
                    tr data-target=(t.name) {
                        td { (t.name) @if t.paused { " " span.status.cancelled { "paused" } } }
                        td.mono { (t.slots)
                            @if let Some(seen) = t.gpus_seen { span.muted { " (" (seen) " seen)" } } }
                        td.mono { (t.used) " / " (t.free) }
                        td { @match t.reachable {
                            Some(true) => span.status.succeeded { "yes" },
                            Some(false) => span.status.failed { "no" },
                            None => span.muted { "not tried yet" },
                        } }
                        td { @if let Some(since) = &t.since { (when(since)) } }
                        td.mono { (load.join(", ")) }
                        td { @if t.paused { button data-queue="resume" data-target=(t.name) { "Resume" } }
                             @else { button data-queue="pause" data-target=(t.name) { "Pause" } } }
                    }
                }
            }
        }
        @if view.targets.is_empty() {
            p.muted { "No targets: " code { "cosmos target add" } " or " code { "cosmos quickstart" } "." }
        }
        h2 { "Running" }
        table.list {
            thead { tr { th { "Run" } th { "Status" } th { "Stage" } th { "Progress" } th { "Target" } th { "Finishes about" } } }
            tbody {
                @for r in &view.running {
                    tr data-run=(r.run.id) {
                        td { a.mono href={"/runs/" (r.run.id)} { (r.run.id) } }
                        td { (status(r.run.status)) }
                        td.muted { (r.stage) }
                        td { progress max="1" value=(r.progress.unwrap_or(0.0)) {} }
                        td { (r.run.target.as_deref().unwrap_or("")) }
                        td { @if let Some(t) = &r.estimated_finish { (when(t)) } }
                    }
                }
            }
        }
        @if view.running.is_empty() { p.muted { "Nothing is running." } }
        h2 { "Queued, in the order they will start" }
        table.list {
            thead { tr { th { "#" } th { "Run" } th { "Prompt" } th { "Priority" } th { "GPUs" } th { "Pinned to" } th { "Starts about" } th { "Finishes about" } } }
            tbody {
                @for q in &view.queue {
                    tr data-run=(q.run.id) {
                        td.mono { (q.position) }
                        td { a.mono href={"/runs/" (q.run.id)} { (q.run.id) } }
                        td { (q.run.prompt_name) }
                        td.mono { (q.run.priority) }
                        td.mono { (q.run.params.gpus) }
                        td { (q.run.target_pin.as_deref().unwrap_or("anywhere")) }
                        td { @match &q.estimated_start { Some(t) => (when(t)), None => span.muted { "—" } } }
                        td { @match &q.estimated_finish { Some(t) => (when(t)), None => span.muted { "—" } } }
                    }
                }
            }
        }
        @if view.queue.is_empty() { p.muted { "The queue is empty. " a href="/new" { "Queue runs" } } }
        @if view.queued_total > view.queue.len() {
            p.muted { "… and " (view.queued_total - view.queue.len()) " more." }
        }
        h2 { "Workers" }
        ul { @for w in &view.workers {
            li { span.mono { (w.id) } " on " (w.host) " (pid " (w.pid) "), since " (when(&w.started_at)) }
        } }
        @if view.workers.is_empty() { p.muted { "No worker is running: queued runs wait for " code { "cosmos worker" } " or " code { "cosmos serve" } "." } }
    };
    Ok(layout("Queue", Nav::Queue, Some("queue.js"), body))
}
