//! The gallery of finished outputs, reviewed from the keyboard, and side-by-side comparison.

use std::collections::BTreeSet;
use std::str::FromStr;

use axum::extract::{Query, State};
use chrono::{NaiveDate, TimeZone, Utc};
use maud::html;
use serde::Deserialize;

use cosmos_core::{Run, RunId, RunStatus};
use cosmos_store::RunFilter;

use super::{Nav, PageResult, layout, lockstep_controls, not_found, output_video, stars};
use crate::AppState;
use crate::error::ApiError;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct GalleryQuery {
    /// Full-text search over prompts.
    q: Option<String>,
    prompt: Option<String>,
    input_set: Option<String>,
    rating: Option<u8>,
    favourite: Option<bool>,
    weights: Option<String>,
    seed: Option<String>,
    /// `YYYY-MM-DD`: finished runs created on or after it.
    since: Option<String>,
}

/// Outputs per page of the gallery.
const TILES: u32 = 60;

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub(crate) async fn page(State(s): State<AppState>, Query(q): Query<GalleryQuery>) -> PageResult {
    let since = match nonempty(&q.since) {
        Some(d) => Some(
            NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_date",
                        format!("`{d}` is not a date like 2026-11-27"),
                    )
                })?
                .and_hms_opt(0, 0, 0)
                .map(|t| Utc.from_utc_datetime(&t))
                .unwrap_or_default(),
        ),
        None => None,
    };
    let seed = match nonempty(&q.seed) {
        Some(t) => Some(t.parse::<u32>().map_err(|_| {
            ApiError::bad_request(
                "invalid_seed",
                format!("`{t}` is not a seed (a whole number)"),
            )
        })?),
        None => None,
    };
    let input_set_id = match nonempty(&q.input_set) {
        Some(i) => Some(s.services.inputs().resolve(i).await?),
        None => None,
    };
    let prompt_id = match nonempty(&q.prompt) {
        Some(p) => Some(s.services.prompts().resolve(p).await?),
        None => None,
    };
    // A search names prompts; their runs are the candidates.
    let prompt_ids = match nonempty(&q.q) {
        Some(text) => {
            let hits = super::search_hits(&s, text).await?;
            if hits.is_empty() {
                return Ok(layout(
                    "Gallery",
                    Nav::Gallery,
                    None,
                    html! {
                        h1 { "Gallery" }
                        p.muted { "No prompt matches “" (text) "”. " a href="/gallery" { "Show all" } }
                    },
                ));
            }
            hits
        }
        None => Vec::new(),
    };
    let mut runs: Vec<Run> = s
        .services
        .runs()
        .list(&RunFilter {
            statuses: vec![RunStatus::Succeeded],
            prompt_id,
            prompt_ids,
            input_set_id,
            min_rating: q.rating.filter(|r| *r > 0),
            favourite: q.favourite.unwrap_or(false),
            since,
            limit: TILES * 2,
            ..RunFilter::default()
        })
        .await?;
    let weights = nonempty(&q.weights).map(str::to_ascii_lowercase);
    runs.retain(|r| {
        output_video(r).is_some()
            && seed.is_none_or(|s| r.params.seed == s)
            && weights.as_deref().is_none_or(|w| {
                r.params
                    .weights
                    .to_string()
                    .to_ascii_lowercase()
                    .contains(w)
            })
    });
    runs.truncate(TILES as usize);
    let body = html! {
        h1 { "Gallery" }
        form.toolbar method="get" action="/gallery" {
            input name="q" type="search" placeholder="search prompts" value=[nonempty(&q.q)] aria-label="search prompts";
            input name="prompt" placeholder="prompt" value=[nonempty(&q.prompt)] size="12";
            input name="input_set" placeholder="input set" value=[nonempty(&q.input_set)] size="10";
            input name="weights" placeholder="weights (depth=0.5)" value=[nonempty(&q.weights)] size="14";
            input name="seed" placeholder="seed" value=[nonempty(&q.seed)] size="6";
            input name="since" type="date" value=[nonempty(&q.since)] aria-label="since";
            select name="rating" aria-label="rating" {
                option value="" { "any rating" }
                @for r in 1..=5u8 { option value=(r) selected[q.rating == Some(r)] { "≥ " (stars(Some(r))) } }
            }
            label { input type="checkbox" name="favourite" value="true" checked[q.favourite.unwrap_or(false)]; " favourites" }
            button type="submit" { "Filter" }
            span.grow {}
            button #compare.primary type="button" disabled { "Compare (0)" }
        }
        p.keys {
            kbd { "←↑→↓" } " move · " kbd { "1" } "–" kbd { "5" } " rate · " kbd { "0" } " clear · "
            kbd { "f" } " favourite · " kbd { "space" } " play · " kbd { "c" } " pick to compare · "
            kbd { "Enter" } " open"
        }
        @if runs.is_empty() {
            p.muted { "No finished outputs match." }
        }
        div.gallery {
            @for run in &runs {
                @let src = output_video(run).unwrap_or_default();
                div.tile data-run=(run.id) data-src=(src) data-rating=(run.rating.unwrap_or(0)) data-favourite=(run.favourite) {
                    img.poster loading="lazy" width="320" height="180" alt={"poster of " (run.id)}
                        src={"/api/v1/runs/" (run.id) "/poster"};
                    div.meta {
                        div.line {
                            a href={"/runs/" (run.id)} { (run.prompt_name) }
                            span { span.rating { (stars(run.rating)) } " " span.favmark { @if run.favourite { "♥" } } }
                        }
                        div.text title=(run.prompt_text) { (run.prompt_text) }
                        div.line.mono.muted {
                            span { (run.params.weights) }
                            span { "seed " (run.params.seed) }
                            input.pick type="checkbox" aria-label={"compare " (run.id)};
                        }
                    }
                }
            }
        }
    };
    Ok(layout("Gallery", Nav::Gallery, Some("gallery.js"), body))
}

#[derive(Debug, Deserialize)]
pub(crate) struct CompareQuery {
    runs: String,
}

/// Two or more outputs side by side, in lockstep, with what differs between their runs.
pub(crate) async fn compare(
    State(s): State<AppState>,
    Query(q): Query<CompareQuery>,
) -> PageResult {
    let mut runs = Vec::new();
    for text in q.runs.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let id = match RunId::from_str(text) {
            Ok(id) => id,
            Err(_) => s.services.runs().resolve(text).await?,
        };
        runs.push(s.services.runs().get(&id).await?);
    }
    if runs.len() < 2 {
        return Err(ApiError::bad_request(
            "too_few_runs",
            "compare needs two or more runs: `/compare?runs=ID,ID`",
        )
        .into());
    }
    if let Some(r) = runs.iter().find(|r| output_video(r).is_none()) {
        return Err(not_found(format!(
            "run `{}` has no output video to compare",
            r.id
        )));
    }
    let fps = runs.first().map_or(24, |r| r.params.fps);
    type Field = (&'static str, fn(&Run) -> String);
    let fields: [Field; 13] = [
        ("prompt", |r| r.prompt_name.clone()),
        ("text", |r| r.prompt_text.clone()),
        ("negative", |r| {
            r.negative_prompt.clone().unwrap_or_default()
        }),
        ("input set", |r| {
            r.input_set_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        }),
        ("weights", |r| r.params.weights.to_string()),
        ("seed", |r| r.params.seed.to_string()),
        ("steps", |r| r.params.steps.to_string()),
        ("guidance", |r| r.params.guidance.to_string()),
        ("sigma_max", |r| r.params.sigma_max.to_string()),
        ("fps", |r| r.params.fps.to_string()),
        ("blur / canny", |r| {
            format!("{} / {}", r.params.blur_strength, r.params.canny_threshold)
        }),
        ("target", |r| r.target.clone().unwrap_or_default()),
        ("rating", |r| stars(r.rating)),
    ];
    let body = html! {
        h1 { "Compare " (runs.len()) " outputs" }
        section.lockstep.panel data-fps=(fps) aria-label="outputs in lockstep" {
            div.stage.compare {
                @for r in &runs {
                    figure {
                        video src=(output_video(r).unwrap_or_default()) preload="auto" muted playsinline {}
                        figcaption { a href={"/runs/" (r.id)} { (r.prompt_name) " · seed " (r.params.seed) } }
                    }
                }
            }
            (lockstep_controls())
        }
        h2 { "Parameters" }
        table.list.diff {
            thead { tr { th {} @for r in &runs { th.mono { a href={"/runs/" (r.id)} { (r.id) } } } } }
            tbody {
                @for (name, get) in fields {
                    @let values: Vec<String> = runs.iter().map(get).collect();
                    @let differs = values.iter().collect::<BTreeSet<_>>().len() > 1;
                    tr class=[differs.then_some("differs")] {
                        td { (name) @if differs { " ≠" } }
                        @for v in &values { td class=[differs.then_some("differs")] { (v) } }
                    }
                }
            }
        }
    };
    Ok(layout("Compare", Nav::Gallery, Some("compare.js"), body))
}
