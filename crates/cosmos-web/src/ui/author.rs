//! Authoring: a prompt with its input set (picked by thumbnails of its controls), weights
//! on sliders, seeds and grids, the run count, spec and command previewed by a dry run (with
//! Cosmos's own validation messages) before anything is queued.

use axum::extract::{Query, State};
use maud::html;
use serde::Deserialize;

use cosmos_core::Level;
use cosmos_core::modality::Hint;

use super::{Nav, PageResult, layout};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuthorQuery {
    /// Queue runs of this existing prompt.
    prompt: Option<String>,
    /// Preselect this input set.
    input_set: Option<String>,
}

/// The weights offered on sliders (the hints users set most; others can be typed).
const SLIDERS: [Hint; 4] = [Hint::Vis, Hint::Edge, Hint::Depth, Hint::Seg];

pub(crate) async fn page(State(s): State<AppState>, Query(q): Query<AuthorQuery>) -> PageResult {
    let existing = match q.prompt.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => {
            let id = s.services.prompts().resolve(p).await?;
            Some(s.services.prompts().detail(&id, 0).await?)
        }
        None => None,
    };
    let chosen = match (&existing, q.input_set.as_deref()) {
        (Some(d), _) => d.prompt.input_set_id.clone(),
        (None, Some(i)) if !i.is_empty() => Some(s.services.inputs().resolve(i).await?),
        _ => None,
    };
    let sets = s.services.inputs().list(200).await?;
    let targets = s.services.targets().list().await?;
    let d = &*s.run_defaults;
    let body = html! {
        h1 { @if let Some(e) = &existing { "Queue runs of " (e.prompt.name) } @else { "New prompt and runs" } }
        form #author.form novalidate {
            @if let Some(e) = &existing {
                input type="hidden" name="subject" value=(e.prompt.id);
                div.panel { p { (e.prompt.text) } @if let Some(n) = &e.prompt.negative { p.muted { "Negative: " (n) } } }
            } @else {
                label { span { "Prompt" } textarea name="text" required placeholder="a quiet harbour at dawn, mist over the water, film grain" {} }
                label { span { "Negative prompt (optional)" } textarea name="negative" rows="2" {} }
                label { span { "Name (optional: made from the text)" } input name="name" placeholder="harbour-dawn"; }
                fieldset.panel {
                    legend { "Input set" }
                    @if sets.is_empty() { p.muted { "No input sets yet: " code { "cosmos inputs add DIR" } "." } }
                    @for i in &sets {
                        label.pickset {
                            input type="radio" name="inputs" value=(i.set.id) checked[chosen.as_ref() == Some(&i.set.id)];
                            " " strong { (i.set.name) } " " span.muted.mono { (i.set.id) }
                            div.thumbs {
                                @for f in &i.set.files {
                                    figure {
                                        img loading="lazy" alt={(f.kind.as_str()) " of " (i.set.name)}
                                            src={"/api/v1/inputs/" (i.set.id) "/thumbs/" (f.kind.as_str())};
                                        figcaption { (f.kind.as_str()) " · " (f.video.frames) " frames" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            fieldset.panel.weights {
                legend { "Control weights" }
                @for hint in SLIDERS {
                    label.slider {
                        span { (hint.as_str()) }
                        input type="range" name={"w-" (hint.as_str())} min="0" max="1" step="0.05"
                            value=(d.weights.get(hint).unwrap_or(0.0));
                        output.mono {}
                    }
                }
                p.muted #weights-sum {}
                label { span { "As typed (ranges make a grid: " code { "depth=0.2:0.8:0.2" } ")" }
                    input.mono name="weights" value=(d.weights); }
            }
            fieldset.panel {
                legend { "Seeds and settings" }
                div.toolbar {
                    label { "seeds " input.mono name="seeds" value=(d.seed) size="12" title="a seed, a list 1,2,3 or a range 1..8"; }
                    label { "steps " input.mono name="steps" type="number" min="1" value=(d.steps) size="4"; }
                    label { "guidance " input.mono name="guidance" type="number" step="0.5" value=(d.guidance) size="4"; }
                    label { "sigma_max " input.mono name="sigma_max" type="number" step="1" value=(d.sigma_max) size="4"; }
                    label { "fps " input.mono name="fps" type="number" min="1" value=(d.fps) size="3"; }
                    label { "GPUs " input.mono name="gpus" type="number" min="1" value=(d.gpus) size="2"; }
                    label { "priority " input.mono name="priority" type="number" value="0" size="3"; }
                }
                div.toolbar {
                    label { "blur " select name="blur_strength" {
                        @for l in Level::ALL { option value=(l) selected[l == d.blur_strength] { (l) } } } }
                    label { "canny " select name="canny_threshold" {
                        @for l in Level::ALL { option value=(l) selected[l == d.canny_threshold] { (l) } } } }
                    label { "target " select name="target" {
                        option value="" { "anywhere (the queue places it)" }
                        @for t in &targets { option value=(t.name) { (t.name) } } } }
                }
            }
            div.toolbar {
                button #preview type="button" { "Preview" }
                button #queue.primary type="submit" { "Queue" }
                span #count.muted {}
            }
            ul #problems.problems {}
            div #plan hidden {
                h2 { "What Cosmos will get (the first run)" }
                pre #spec.log {}
                h2 { "The command" }
                pre #command.log {}
                ul #notes.muted {}
            }
        }
    };
    Ok(layout("New", Nav::New, Some("author.js"), body))
}
