//! `/metrics` in Prometheus's text format, read from the store (the same for every server
//! over one database) plus what only this server knows (its WebSocket clients).

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use cosmos_core::RunStatus;

use crate::AppState;
use crate::error::ApiError;

/// A label value with `\`, `"` and newlines escaped.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub(crate) async fn render(State(s): State<AppState>) -> Result<Response, ApiError> {
    let mut out = String::new();
    family(&mut out, "cosmos_runs", "gauge", "Runs by status.");
    for (status, n) in s.services.runs().count_by_status().await? {
        let _ = writeln!(out, "cosmos_runs{{status=\"{status}\"}} {n}");
    }
    let view = s.services.queue().status(0).await?;
    family(
        &mut out,
        "cosmos_queue_depth",
        "gauge",
        "Runs waiting in the queue.",
    );
    let _ = writeln!(out, "cosmos_queue_depth {}", view.queued_total);
    family(
        &mut out,
        "cosmos_queue_paused",
        "gauge",
        "1 while the whole queue is paused.",
    );
    let _ = writeln!(out, "cosmos_queue_paused {}", u8::from(view.paused));
    family(
        &mut out,
        "cosmos_gpu_slots",
        "gauge",
        "GPU slots per target, used and free.",
    );
    for t in &view.targets {
        let name = label(&t.name);
        let _ = writeln!(
            out,
            "cosmos_gpu_slots{{target=\"{name}\",state=\"used\"}} {}",
            t.used
        );
        let _ = writeln!(
            out,
            "cosmos_gpu_slots{{target=\"{name}\",state=\"free\"}} {}",
            t.free
        );
    }
    family(
        &mut out,
        "cosmos_target_reachable",
        "gauge",
        "1 when a worker last reached the target, 0 when it did not (absent: never tried).",
    );
    for t in &view.targets {
        if let Some(up) = t.reachable {
            let _ = writeln!(
                out,
                "cosmos_target_reachable{{target=\"{}\"}} {}",
                label(&t.name),
                u8::from(up)
            );
        }
    }
    family(
        &mut out,
        "cosmos_workers",
        "gauge",
        "Live worker processes.",
    );
    let _ = writeln!(out, "cosmos_workers {}", view.workers.len());
    family(
        &mut out,
        "cosmos_event_sequence",
        "counter",
        "The newest event's sequence number.",
    );
    let _ = writeln!(
        out,
        "cosmos_event_sequence {}",
        s.services.events().head().await?
    );
    family(
        &mut out,
        "cosmos_event_clients",
        "gauge",
        "WebSocket clients of this server.",
    );
    let _ = writeln!(out, "cosmos_event_clients {}", s.hub.clients());
    if let Ok(o) = s.hub.observed.lock() {
        o.claim_latency.render(
            &mut out,
            "cosmos_claim_latency_seconds",
            "From queued to claimed (staging starts), for runs queued while this server ran.",
        );
        o.run_duration.render(
            &mut out,
            "cosmos_run_duration_seconds",
            "From start to end of runs that ended while this server ran.",
        );
        o.model_time.render(
            &mut out,
            "cosmos_model_seconds",
            "How long the model itself ran (running until collecting or the end).",
        );
        family(
            &mut out,
            "cosmos_runs_finished_total",
            "counter",
            "Runs that ended while this server ran, by final status.",
        );
        for status in [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ] {
            let n = o.finished.get(&status).copied().unwrap_or(0);
            let _ = writeln!(out, "cosmos_runs_finished_total{{status=\"{status}\"}} {n}");
        }
        family(
            &mut out,
            "cosmos_transferred_bytes_total",
            "counter",
            "Bytes moved to and from targets while this server ran: inputs uploaded, verified outputs downloaded.",
        );
        let _ = writeln!(
            out,
            "cosmos_transferred_bytes_total{{direction=\"up\"}} {}",
            o.input_bytes
        );
        let _ = writeln!(
            out,
            "cosmos_transferred_bytes_total{{direction=\"down\"}} {}",
            o.output_bytes
        );
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
