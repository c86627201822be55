//! Input sets and prompts: lists with search, a page per input set with each control video
//! and its probe data, a page per prompt with its runs and their outputs.

use axum::extract::{Path, Query, State};
use maud::html;
use serde::Deserialize;

use cosmos_store::PromptFilter;

use super::{
    Nav, PageResult, control_video, layout, lockstep_controls, output_video, stars, status, when,
};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Search {
    q: Option<String>,
}

pub(crate) async fn inputs(State(s): State<AppState>, Query(q): Query<Search>) -> PageResult {
    let needle = q.q.as_deref().unwrap_or("").trim().to_lowercase();
    let mut sets = s.services.inputs().list(1000).await?;
    sets.retain(|i| {
        needle.is_empty()
            || i.set.name.to_lowercase().contains(&needle)
            || i.set.dir.to_lowercase().contains(&needle)
            || i.set.id.to_string().starts_with(&needle)
    });
    let body = html! {
        h1 { "Input sets" }
        form.toolbar method="get" action="/inputs" {
            input name="q" type="search" placeholder="name, folder or id" value=[q.q.as_deref()] aria-label="search input sets";
            button type="submit" { "Search" }
        }
        table.list {
            thead { tr { th { "Name" } th { "Controls" } th { "Frames" } th { "Size" } th { "Prompts" } th { "Folder" } th { "Added" } } }
            tbody {
                @for i in &sets {
                    @let first = i.set.files.first();
                    tr {
                        td { a href={"/inputs/" (i.set.id)} { (i.set.name) } }
                        td { @for f in &i.set.files { span.pill { (f.kind.as_str()) } } }
                        td.mono { @if let Some(f) = first { (f.video.frames) " @ " (f.video.fps) " fps" } }
                        td.mono { @if let Some(f) = first { (f.video.width) "×" (f.video.height) } }
                        td.mono { (i.prompts) }
                        td.mono.muted { (i.set.dir) }
                        td { (when(&i.set.created_at)) }
                    }
                }
            }
        }
        @if sets.is_empty() { p.muted { "None. Register a folder with " code { "cosmos inputs add DIR" } "." } }
    };
    Ok(layout("Input sets", Nav::Inputs, None, body))
}

pub(crate) async fn input(State(s): State<AppState>, Path(id): Path<String>) -> PageResult {
    let id = s.services.inputs().resolve(&id).await?;
    let set = s.services.inputs().get(&id).await?;
    let prompts = s
        .services
        .prompts()
        .list(&PromptFilter {
            input_set_id: Some(id.clone()),
            limit: 200,
            ..Default::default()
        })
        .await?;
    let fps = set.files.first().map_or(24.0, |f| f.video.fps);
    let body = html! {
        h1 { "Input set " (set.name) }
        p.muted.mono { (set.id) " · " (set.dir) " · fingerprint " (&set.fingerprint[..set.fingerprint.len().min(16)]) "…" }
        section.lockstep.panel data-fps=(fps) aria-label="control videos in lockstep" {
            div.stage.compare {
                @for f in &set.files {
                    figure {
                        video src=(control_video(&set.id, f.kind)) preload="auto" muted playsinline {}
                        figcaption { (f.kind.as_str()) }
                    }
                }
            }
            (lockstep_controls())
        }
        h2 { "Control videos" }
        table.list {
            thead { tr { th { "Control" } th { "File" } th { "Frames" } th { "fps" } th { "Size" } th { "Duration" } th { "Codec" } th { "Bytes" } th { "sha256" } } }
            tbody {
                @for f in &set.files {
                    tr {
                        td { span.pill { (f.kind.as_str()) } }
                        td.mono { a href=(control_video(&set.id, f.kind)) { (f.path) } }
                        td.mono { (f.video.frames) }
                        td.mono { (f.video.fps) }
                        td.mono { (f.video.width) "×" (f.video.height) }
                        td.mono { (format!("{:.2}", f.video.duration_seconds)) " s" }
                        td.mono { (f.video.codec) }
                        td.mono { (f.size) }
                        td.mono.muted { (&f.sha256[..f.sha256.len().min(16)]) "…" }
                    }
                }
            }
        }
        h2 { "Prompts on it" }
        ul { @for p in &prompts { li { a href={"/prompts/" (p.prompt.id)} { (p.prompt.name) } " " span.muted { (p.runs) " runs" } } } }
        @if prompts.is_empty() { p.muted { "None yet. " a href={"/new?input_set=" (set.id)} { "Write one" } "." } }
    };
    Ok(layout(
        &format!("input set {}", set.name),
        Nav::Inputs,
        Some("compare.js"),
        body,
    ))
}

pub(crate) async fn prompts(State(s): State<AppState>, Query(q): Query<Search>) -> PageResult {
    let text = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let body = match text {
        Some(text) => {
            let hits = s
                .services
                .prompts()
                .search(text, 100, ("\u{1}", "\u{2}"))
                .await?;
            html! {
                h1 { "Prompts matching “" (text) "”" }
                (search_form(Some(text)))
                table.list {
                    thead { tr { th { "Prompt" } th { "Where it matches" } } }
                    tbody {
                        @for h in &hits {
                            tr {
                                td { a href={"/prompts/" (h.prompt.id)} { (h.prompt.name) } }
                                td {
                                    @for (i, part) in h.snippet.split(['\u{1}', '\u{2}']).enumerate() {
                                        @if i % 2 == 1 { mark { (part) } } @else { (part) }
                                    }
                                }
                            }
                        }
                    }
                }
                @if hits.is_empty() { p.muted { "No prompt matches." } }
            }
        }
        None => {
            let list = s
                .services
                .prompts()
                .list(&PromptFilter {
                    input_set_id: None,
                    limit: 200,
                    ..Default::default()
                })
                .await?;
            html! {
                h1 { "Prompts" }
                (search_form(None))
                table.list {
                    thead { tr { th { "Name" } th { "Text" } th { "Runs" } th { "Created" } } }
                    tbody {
                        @for p in &list {
                            tr {
                                td { a href={"/prompts/" (p.prompt.id)} { (p.prompt.name) } }
                                td.prompt title=(p.prompt.text) { (p.prompt.text) }
                                td.mono { (p.runs) }
                                td { (when(&p.prompt.created_at)) }
                            }
                        }
                    }
                }
                @if list.is_empty() { p.muted { "No prompts yet. " a href="/new" { "Write one" } "." } }
            }
        }
    };
    Ok(layout("Prompts", Nav::Prompts, None, body))
}

fn search_form(q: Option<&str>) -> maud::Markup {
    html! {
        form.toolbar method="get" action="/prompts" {
            input name="q" type="search" placeholder="words, \"a phrase\", prefix*, -not" value=[q] aria-label="search prompts" size="40";
            button type="submit" { "Search" }
            a href="/new" { "New prompt" }
        }
    }
}

pub(crate) async fn prompt(State(s): State<AppState>, Path(id): Path<String>) -> PageResult {
    let id = s.services.prompts().resolve(&id).await?;
    let d = s.services.prompts().detail(&id, 60).await?;
    let p = &d.prompt;
    let body = html! {
        h1 { "Prompt " (p.name) }
        div.panel {
            p { (p.text) }
            @if let Some(n) = &p.negative { p.muted { "Negative: " (n) } }
            p.muted.mono { (p.id)
                @if let Some(set) = &d.input_set { " · input set " a href={"/inputs/" (set.id)} { (set.name) } }
                " · " (d.run_count) " runs · created " (when(&p.created_at)) }
            @if let Some(parent) = &p.parent_id {
                p.muted { "Enhanced from " a.mono href={"/prompts/" (parent)} { (parent) } }
            }
            @for child in &d.enhanced {
                p.muted { "Enhanced as " a href={"/prompts/" (child.id)} { (child.name) } }
            }
            p { a href={"/new?prompt=" (p.id)} { "Queue runs of it" } " · " a href={"/gallery?prompt=" (p.id)} { "Its outputs in the gallery" } }
        }
        h2 { "Outputs" }
        div.gallery {
            @for run in d.runs.iter().filter(|r| output_video(r).is_some()) {
                div.tile data-run=(run.id) {
                    a href={"/runs/" (run.id)} {
                        img.poster loading="lazy" width="320" height="180" alt={"poster of " (run.id)}
                            src={"/api/v1/runs/" (run.id) "/poster"};
                    }
                    div.meta { div.line {
                        a href={"/runs/" (run.id)} { "seed " (run.params.seed) }
                        span { (stars(run.rating)) }
                    } div.text { (run.params.weights) } }
                }
            }
        }
        h2 { "Runs" }
        table.list {
            thead { tr { th { "Run" } th { "Status" } th { "Weights" } th { "Seed" } th { "Target" } th { "Created" } } }
            tbody {
                @for run in &d.runs {
                    tr {
                        td { a.mono href={"/runs/" (run.id)} { (run.id) } }
                        td { (status(run.status)) }
                        td.mono { (run.params.weights) }
                        td.mono { (run.params.seed) }
                        td { (run.target.as_deref().unwrap_or("")) }
                        td { (when(&run.created_at)) }
                    }
                }
            }
        }
    };
    Ok(layout(
        &format!("prompt {}", p.name),
        Nav::Prompts,
        None,
        body,
    ))
}
