//! The runs table (live) and a run's page.

use std::str::FromStr;

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use maud::{Markup, html};
use serde::Deserialize;

use cosmos_core::{InputKind, Run, RunId, RunStatus};
use cosmos_store::RunFilter;

use super::{
    Nav, PageError, PageResult, control_video, layout, lockstep_controls, output_video, stars,
    status, when,
};
use crate::AppState;
use crate::error::ApiError;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    /// Full-text search over the runs' prompts.
    q: Option<String>,
    status: Option<String>,
    prompt: Option<String>,
    target: Option<String>,
    rating: Option<u8>,
    favourite: Option<bool>,
    cursor: Option<String>,
}

/// `text` as a URL query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Filters {
    /// These filters with the next page's cursor, as a query string.
    fn query_with_cursor(&self, cursor: &RunId) -> String {
        let mut parts: Vec<String> = Vec::new();
        let text = [
            ("q", &self.q),
            ("status", &self.status),
            ("prompt", &self.prompt),
            ("target", &self.target),
        ];
        for (key, value) in text {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{key}={}", encode(v)));
            }
        }
        if let Some(r) = self.rating.filter(|r| *r > 0) {
            parts.push(format!("rating={r}"));
        }
        if self.favourite.unwrap_or(false) {
            parts.push("favourite=true".into());
        }
        parts.push(format!("cursor={cursor}"));
        parts.join("&")
    }

    fn any(&self) -> bool {
        self.q.as_deref().is_some_and(|s| !s.trim().is_empty())
            || self.status.as_deref().is_some_and(|s| !s.is_empty())
            || self.prompt.as_deref().is_some_and(|s| !s.is_empty())
            || self.target.as_deref().is_some_and(|s| !s.is_empty())
            || self.rating.is_some_and(|r| r > 0)
            || self.favourite.unwrap_or(false)
            || self.cursor.is_some()
    }
}

/// Runs per page of the table.
const PAGE: u32 = 50;

/// A run's row; the live module replaces it with a fresh one when the run changes.
pub(crate) fn row_markup(run: &Run, stage: &str, progress: Option<f64>) -> Markup {
    let live = !run.status.is_terminal();
    html! {
        tr data-run=(run.id) data-status=(run.status)
            data-started=[run.started_at.map(|t| t.to_rfc3339())]
            data-progress=[progress] {
            td { input.pick type="checkbox" aria-label={"pick " (run.id)}; }
            td.c-status { (status(run.status)) }
            td.c-stage.muted { (stage) }
            td.c-clip.mono { (clip_of(stage)) }
            td.c-progress {
                @if live { progress max="1" value=(progress.unwrap_or(0.0)) {} }
            }
            td.c-eta.mono {}
            td.c-target { (run.target.as_deref().unwrap_or("—")) }
            td.c-gpus.mono {
                @if run.devices.is_empty() { (run.params.gpus) } @else {
                    (run.devices.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
                }
            }
            td.prompt title=(run.prompt_text) {
                a href={"/runs/" (run.id)} { (run.prompt_name) } " "
                span.muted { (run.prompt_text) }
            }
            td.mono { (run.params.weights) }
            td.mono { (run.params.seed) }
            td.mono { (run.created_at.format("%m-%d %H:%M")) }
            td.c-actions {
                @if run.status == RunStatus::Queued {
                    input.priority type="number" value=(run.priority) title="priority (higher first)"
                        aria-label="priority" size="3";
                }
                @if live { button.danger data-act="cancel" { "Cancel" } }
                @if matches!(run.status, RunStatus::Failed | RunStatus::Cancelled) && run.retried_by.is_none() {
                    button data-act="retry" { "Retry" }
                }
            }
        }
    }
}

/// "2/4" when a message names a clip.
fn clip_of(message: &str) -> String {
    message
        .split_once("clip ")
        .or_else(|| message.split_once("chunk "))
        .and_then(|(_, rest)| rest.split([' ', ',']).next())
        .filter(|c| c.contains('/'))
        .unwrap_or("")
        .to_owned()
}

/// The latest message and progress of the live runs among `runs`.
async fn stages(
    s: &AppState,
    runs: &[&Run],
) -> Result<std::collections::HashMap<RunId, (String, Option<f64>)>, PageError> {
    let live: Vec<RunId> = runs
        .iter()
        .filter(|r| !r.status.is_terminal())
        .map(|r| r.id.clone())
        .collect();
    Ok(s.services
        .runs()
        .stages_of(&live)
        .await?
        .into_iter()
        .map(|l| (l.run_id, (l.message.unwrap_or_default(), l.progress)))
        .collect())
}

fn stage_of(
    run: &Run,
    live: &std::collections::HashMap<RunId, (String, Option<f64>)>,
) -> (String, Option<f64>) {
    match live.get(&run.id) {
        Some((stage, p)) => (stage.clone(), *p),
        None => (
            run.failure_reason.clone().unwrap_or_default(),
            run.status.is_terminal().then_some(1.0),
        ),
    }
}

pub(crate) async fn index(State(s): State<AppState>, Query(f): Query<Filters>) -> PageResult {
    // The sequence number first: events after it reach the page, so none falls between.
    let seq = s.services.events().head().await?;
    let statuses = match &f.status {
        Some(text) if !text.is_empty() => vec![
            RunStatus::from_str(text)
                .map_err(|e| ApiError::bad_request("invalid_status", e.to_string()))?,
        ],
        _ => Vec::new(),
    };
    let prompt_id = match f.prompt.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => Some(s.services.prompts().resolve(p).await?),
        None => None,
    };
    let prompt_ids = match f.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(text) => super::search_hits(&s, text).await?,
        None => Vec::new(),
    };
    let searched_nothing =
        f.q.as_deref().is_some_and(|t| !t.trim().is_empty()) && prompt_ids.is_empty();
    let before = match &f.cursor {
        Some(c) => Some(RunId::from_str(c).map_err(|_| {
            ApiError::bad_request("invalid_cursor", format!("`{c}` is not a run id"))
        })?),
        None => None,
    };
    let mut runs = if searched_nothing {
        Vec::new()
    } else {
        s.services
            .runs()
            .list(&RunFilter {
                statuses,
                prompt_id,
                prompt_ids,
                target: f.target.clone().filter(|t| !t.is_empty()),
                min_rating: f.rating.filter(|r| *r > 0),
                favourite: f.favourite.unwrap_or(false),
                before,
                limit: PAGE + 1,
                ..RunFilter::default()
            })
            .await?
    };
    let next = (runs.len() > PAGE as usize).then(|| {
        runs.truncate(PAGE as usize);
        runs.last().map(|r| r.id.clone())
    });
    let live = stages(&s, &runs.iter().collect::<Vec<_>>()).await?;
    let targets = s.services.targets().list().await?;
    let body = html! {
        h1 { "Runs" }
        form.toolbar method="get" action="/" {
            input name="q" type="search" placeholder="search prompts" value=[f.q.as_deref()] aria-label="search prompts";
            select name="status" aria-label="status" {
                option value="" { "any status" }
                @for st in RunStatus::ALL {
                    option value=(st) selected[f.status.as_deref() == Some(st.as_str())] { (st) }
                }
            }
            input name="prompt" placeholder="prompt (id or name)" value=[f.prompt.as_deref()];
            select name="target" aria-label="target" {
                option value="" { "any target" }
                @for t in &targets {
                    option value=(t.name) selected[f.target.as_deref() == Some(t.name.as_str())] { (t.name) }
                }
            }
            select name="rating" aria-label="rating" {
                option value="" { "any rating" }
                @for r in 1..=5u8 {
                    option value=(r) selected[f.rating == Some(r)] { "≥ " (stars(Some(r))) }
                }
            }
            label { input type="checkbox" name="favourite" value="true" checked[f.favourite.unwrap_or(false)]; " favourites" }
            button type="submit" { "Filter" }
            span.grow {}
            input #quick type="search" placeholder="filter this page" aria-label="filter this page";
            button #cancel-picked.danger type="button" { "Cancel picked" }
            button #retry-picked type="button" { "Retry picked" }
        }
        table #runs.list data-seq=(seq) data-filtered=(if f.any() { "true" } else { "false" }) {
            thead { tr {
                th { input #pick-all type="checkbox" aria-label="pick all"; }
                th { "Status" } th { "Stage" } th { "Clip" } th { "Progress" } th { "Left" }
                th { "Target" } th { "GPUs" } th { "Prompt" } th { "Weights" } th { "Seed" }
                th { "Created" } th {}
            } }
            tbody {
                @for run in &runs {
                    @let (stage, p) = stage_of(run, &live);
                    (row_markup(run, &stage, p))
                }
            }
        }
        @if runs.is_empty() {
            p #empty.muted { "No runs yet. " a href="/new" { "Queue one" } ", or use " code { "cosmos run" } "." }
        }
        @if let Some(Some(last)) = next {
            p { a href={"/?" (f.query_with_cursor(&last))} { "Older runs →" } }
        }
    };
    Ok(layout("Runs", Nav::Runs, Some("runs.js"), body))
}

/// One run's row, for the live table.
pub(crate) async fn row(State(s): State<AppState>, Path(id): Path<String>) -> PageResult {
    let id = s.services.runs().resolve(&id).await?;
    let run = s.services.runs().get(&id).await?;
    let live = stages(&s, &[&run]).await?;
    let (stage, p) = stage_of(&run, &live);
    Ok(row_markup(&run, &stage, p).into_response())
}

/// A run: its player beside its controls, parameters, timeline, log and what it ran on.
pub(crate) async fn page(State(s): State<AppState>, Path(id): Path<String>) -> PageResult {
    let seq = s.services.events().head().await?;
    let id = s.services.runs().resolve(&id).await?;
    let run = s.services.runs().get(&id).await?;
    let events = s.services.runs().events(&id).await?;
    let set = match &run.input_set_id {
        Some(set) => s.services.inputs().get(set).await.ok(),
        None => None,
    };
    let fps = set
        .as_ref()
        .and_then(|set| set.files.first())
        .map_or(f64::from(run.params.fps), |f| f.video.fps);
    let output = output_video(&run);
    // A spec that cannot be rebuilt (inputs gone) is left out, not an error of the page.
    let spec = s.services.runs().spec(&id).await.ok().flatten();
    let p = &run.params;
    let body = html! {
        div #run data-run=(run.id) data-status=(run.status) data-seq=(seq) {
            h1 { "Run " span.mono { (run.id) } " " (status(run.status)) }
            div.toolbar {
                span.stars data-rating=(run.rating.unwrap_or(0)) aria-label="rating" {
                    @for n in 1..=5u8 {
                        button type="button" data-value=(n) class=[(run.rating.is_some_and(|r| r >= n)).then_some("on")]
                            title={"rate " (n)} { "★" }
                    }
                }
                button.fav.on[run.favourite] type="button"
                    aria-pressed=(run.favourite) title="favourite" { "♥" }
                @if run.status == RunStatus::Queued {
                    label { "priority " input.priority type="number" value=(run.priority) size="3"; }
                }
                @if !run.status.is_terminal() { button.danger data-act="cancel" { "Cancel" } }
                @if matches!(run.status, RunStatus::Failed | RunStatus::Cancelled) && run.retried_by.is_none() {
                    button data-act="retry" { "Retry" }
                }
                @if run.kind == cosmos_core::RunKind::Transfer && !matches!(run.status, RunStatus::Failed | RunStatus::Cancelled) {
                    button data-act="upscale" title="queue a 4K upscale of its output (on the target that made it)" { "Upscale to 4K" }
                }
                @if let Some(next) = &run.retried_by { a href={"/runs/" (next)} { "retried as " (next) } }
                @if let Some(prev) = &run.retry_of { a href={"/runs/" (prev)} { "retry of " (prev) } }
                @if let Some(of) = &run.upscale_of { a href={"/runs/" (of)} { "4K upscale of " (of) } }
                @for up in &run.upscaled_by { a href={"/runs/" (up)} { "upscaled as " (up) } }
            }
            @if let Some(reason) = &run.failure_reason {
                p.err { strong { "Why it failed: " } (reason)
                    @if let Some(code) = &run.failure_code { " " span.pill { (code) } } }
            }
            @if output.is_some() || set.is_some() {
                (player(&run, output.as_deref(), set.as_ref(), fps))
            }
            div.grid2 {
                div {
                    h2 { "Log" }
                    div.toolbar { input #log-search type="search" placeholder="search the log" aria-label="search the log"; }
                    pre #log.log { "loading…" }
                    h2 { "Timeline" }
                    ol.timeline {
                        @for e in &events {
                            li {
                                span.mono.muted { (e.at.format("%H:%M:%S")) }
                                (status(e.stage))
                                span { (e.message)
                                    @if let Some(p) = e.progress { " (" (format!("{:.0}", p * 100.0)) " %)" } }
                            }
                        }
                    }
                }
                div {
                    h2 { "Parameters" }
                    table.kv { tbody {
                        tr { td { "prompt" } td { a href={"/prompts/" (run.prompt_id)} { (run.prompt_name) } } }
                        tr { td { "kind" } td { (run.kind) } }
                        tr { td { "text" } td {
                            @if run.prompt_text.is_empty() { span.muted { "none: Cosmos's default prompt" } }
                            @else { (run.prompt_text) } } }
                        @if let Some(used) = &run.model_prompt { tr { td { "model used" } td { (used) } } }
                        @if let Some(n) = &run.negative_prompt { tr { td { "negative" } td { (n) } } }
                        @if let Some(set) = &run.input_set_id { tr { td { "input set" } td { a.mono href={"/inputs/" (set)} { (set) } } } }
                        tr { td { "weights" } td.mono { (p.weights) } }
                        tr { td { "seed" } td.mono { (p.seed) } }
                        tr { td { "steps" } td.mono { (p.steps) } }
                        tr { td { "guidance" } td.mono { (p.guidance) } }
                        tr { td { "sigma_max" } td.mono { (p.sigma_max) } }
                        tr { td { "fps" } td.mono { (p.fps) } }
                        tr { td { "blur / canny" } td.mono { (p.blur_strength) " / " (p.canny_threshold) } }
                        tr { td { "GPUs" } td.mono { (p.gpus)
                            @if !run.devices.is_empty() { " (devices " (run.devices.iter().map(u32::to_string).collect::<Vec<_>>().join(",")) ")" } } }
                        tr { td { "target" } td { (run.target.as_deref().unwrap_or("not placed yet"))
                            @if run.rehearsal { " " span.pill { "rehearsal: cosmos-sim" } } } }
                        @if let Some(b) = &run.batch_id {
                            tr { td { "batch" } td.mono { (b)
                                @if let Some(l) = run.batch_line { ", line " (l + 1) " (video_" (l) ")" } } }
                        }
                        tr { td { "created" } td { (when(&run.created_at)) } }
                        @if let Some(t) = &run.started_at { tr { td { "started" } td { (when(t)) } } }
                        @if let Some(t) = &run.finished_at { tr { td { "finished" } td { (when(t)) } } }
                        @if let Some(c) = run.exit_code { tr { td { "exit code" } td.mono { (c) } } }
                        @if run.attempts > 0 { tr { td { "attempts" } td.mono { (run.attempts) } } }
                        @if let Some(g) = &run.gpu_usage {
                            tr { td { "GPU load" } td.mono {
                                (g.utilization_peak) " % peak, " (format!("{:.0}", g.utilization_mean)) " % mean; "
                                (g.memory_peak_mib) " MiB peak" } }
                        }
                    } }
                    @if let Some(supply) = &run.supply {
                        h2 { "Ran on" }
                        table.kv { tbody {
                            @if let Some(i) = &supply.image { tr { td { "image" } td.mono { (i) } } }
                            @if let Some(d) = &supply.image_digest { tr { td { "image digest" } td.mono { (d) } } }
                            @if let Some(c) = &supply.checkout_commit { tr { td { "checkout" } td.mono { (c) } } }
                            @if let Some(m) = &supply.manifest_hash { tr { td { "manifest" } td.mono { (m) } } }
                        } }
                    }
                    @if let Some(spec) = &spec {
                        h2 { "Spec" }
                        pre.log.spec { (serde_json::to_string_pretty(spec).unwrap_or_default()) }
                    }
                    @if let Some(argv) = &run.launch_command {
                        h2 { "Command" }
                        pre.log.command { (shown_argv(argv)) }
                    }
                    @if !run.outputs.is_empty() {
                        h2 { "Outputs" }
                        ul { @for o in &run.outputs {
                            @let name = std::path::Path::new(&o.path).file_name().and_then(|n| n.to_str()).unwrap_or("");
                            li { a href={"/api/v1/runs/" (run.id) "/outputs/" (name)} { (name) } " "
                                span.muted.mono { (o.size) " bytes · sha256 " (&o.sha256[..o.sha256.len().min(16)]) "…" } }
                        } }
                    }
                }
            }
        }
    };
    Ok(layout(
        &format!("run {}", run.id),
        Nav::Runs,
        Some("run.js"),
        body,
    ))
}

/// An argument vector as a reader would type it: each argument quoted when it must be.
fn shown_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The output beside its control videos, played as one.
fn player(
    run: &Run,
    output: Option<&str>,
    set: Option<&cosmos_core::InputSet>,
    fps: f64,
) -> Markup {
    let controls: Vec<(InputKind, String)> = set
        .map(|set| {
            set.files
                .iter()
                .map(|f| (f.kind, control_video(&set.id, f.kind)))
                .collect()
        })
        .unwrap_or_default();
    // The control videos and masks the model wrote beside its output (Cosmos-Transfer2.5's
    // `<name>_control_<key>.mp4` and `<name>_mask_<key>.mp4`): what it conditioned on,
    // computed ones included, and where.
    let used: Vec<(String, String, String)> = run
        .outputs
        .iter()
        .filter_map(|o| std::path::Path::new(&o.path).file_name()?.to_str())
        .filter_map(|name| {
            let stem = name.strip_suffix(".mp4")?;
            let (kind, label) = match stem.split_once("_control_") {
                Some((_, key)) => (
                    format!("model-{key}"),
                    format!("{key} (as the model used it)"),
                ),
                None => {
                    let key = stem.split_once("_mask_")?.1;
                    (format!("mask-{key}"), format!("{key} mask"))
                }
            };
            let src = format!("/api/v1/runs/{}/outputs/{name}", run.id);
            Some((kind, label, src))
        })
        .collect();
    html! {
        section.lockstep.panel data-fps=(fps) aria-label="output and controls in lockstep" {
            div.stage {
                figure {
                    @if let Some(src) = output {
                        video.output src=(src) preload="auto" muted playsinline {}
                        figcaption { "output · " (run.status) }
                    } @else {
                        // Nothing made yet: the colour control leads.
                        @if let Some((kind, src)) = controls.first() {
                            video src=(src) preload="auto" muted playsinline {}
                            figcaption { (kind.as_str()) " (no output yet)" }
                        }
                    }
                }
                div.side {
                    @for (i, (kind, src)) in controls.iter().enumerate() {
                        @if output.is_some() || i > 0 {
                            figure {
                                video data-kind=(kind.as_str()) src=(src) preload="auto" muted playsinline {}
                                figcaption { (kind.as_str()) }
                            }
                        }
                    }
                    @for (kind, label, src) in &used {
                        figure.model-control {
                            video data-kind=(kind) src=(src) preload="auto" muted playsinline {}
                            figcaption { (label) }
                        }
                    }
                }
            }
            (lockstep_controls())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_shown_quoted_where_a_shell_would_need_it() {
        let argv = ["docker", "run", "--name", "a b", "it's"].map(String::from);
        assert_eq!(shown_argv(&argv), r"docker run --name 'a b' 'it'\''s'");
        assert_eq!(clip_of("generating: clip 2/4"), "2/4");
        assert_eq!(clip_of("staging"), "");
        assert_eq!(clip_of("generating: chunk 2/3, step 7/35"), "2/3");
        let f = Filters {
            q: Some("harbour \"at dawn\"".into()),
            favourite: Some(true),
            ..Filters::default()
        };
        let id = RunId::new();
        assert_eq!(
            f.query_with_cursor(&id),
            format!("q=harbour%20%22at%20dawn%22&favourite=true&cursor={id}")
        );
    }
}
