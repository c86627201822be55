//! The dashboard (issue 16): pages rendered on the server from the engine's reads, with small
//! hand-written ES modules for what changes while a page is open (live rows, the log, the
//! lockstep player, keyboard review). Every asset is compiled into the binary: no CDN, no
//! build step, works offline. Actions go through the same `/api/v1` as any other client.

mod assets;
mod author;
mod gallery;
mod library;
mod queue;
mod runs;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use crate::AppState;
use crate::error::ApiError;

pub use assets::total_bytes as asset_bytes;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(runs::index))
        .route("/runs/{id}", get(runs::page))
        .route("/ui/rows/{id}", get(runs::row))
        .route("/gallery", get(gallery::page))
        .route("/compare", get(gallery::compare))
        .route("/queue", get(queue::page))
        .route("/inputs", get(library::inputs))
        .route("/inputs/{id}", get(library::input))
        .route("/prompts", get(library::prompts))
        .route("/prompts/{id}", get(library::prompt))
        .route("/new", get(author::page))
        .route("/assets/{name}", get(assets::serve))
}

/// The page's place in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Runs,
    Gallery,
    New,
    Queue,
    Inputs,
    Prompts,
}

const NAV: [(Nav, &str, &str); 6] = [
    (Nav::Runs, "/", "Runs"),
    (Nav::Gallery, "/gallery", "Gallery"),
    (Nav::New, "/new", "New"),
    (Nav::Queue, "/queue", "Queue & targets"),
    (Nav::Inputs, "/inputs", "Input sets"),
    (Nav::Prompts, "/prompts", "Prompts"),
];

/// What no page may do: load anything from elsewhere, or run inline script.
const CSP: &str = "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
                   form-action 'self'";

/// A whole page: the navigation, `body`, and the page's module (if any).
pub(crate) fn layout(title: &str, here: Nav, script: Option<&str>, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · cosmos" }
                link rel="stylesheet" href=(assets::url("app.css"));
                link rel="icon" href="data:,";
                @if let Some(s) = script {
                    script type="module" src=(assets::url(s)) {}
                    @for m in assets::imports(s) {
                        link rel="modulepreload" href=(assets::url(m));
                    }
                }
            }
            body {
                header.top {
                    a.brand href="/" { "cosmos" }
                    nav {
                        @for (nav, href, label) in NAV {
                            a href=(href) class=[(nav == here).then_some("here")] { (label) }
                        }
                    }
                    span.live {}
                }
                main { (body) }
            }
        }
    };
    let mut response = markup.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page that could not be made: the engine's message in the page's frame.
#[derive(Debug)]
pub(crate) struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<cosmos_engine::EngineError> for PageError {
    fn from(e: cosmos_engine::EngineError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        let message = if status.is_server_error() {
            tracing::error!("a page failed: {}", self.0.message);
            "Something went wrong on the server; its log says what.".to_owned()
        } else {
            self.0.message
        };
        let mut response = layout(
            "error",
            Nav::Runs,
            None,
            html! {
                h1 { (status.canonical_reason().unwrap_or("Error")) }
                p.err { (message) }
                p { a href="/" { "Back to the runs" } }
            },
        );
        *response.status_mut() = status;
        response
    }
}

pub(crate) type PageResult = Result<Response, PageError>;

/// The prompts a full-text search finds (best first, at most 200): whose runs a page lists.
pub(crate) async fn search_hits(
    s: &AppState,
    text: &str,
) -> Result<Vec<cosmos_core::PromptId>, PageError> {
    Ok(s.services
        .prompts()
        .search(text, 200, ("", ""))
        .await?
        .into_iter()
        .map(|h| h.prompt.id)
        .collect())
}

/// The bar that drives a lockstep group: frame steps, play, the scrubber, the time.
pub(crate) fn lockstep_controls() -> Markup {
    html! {
        div.controls {
            button.back type="button" title="one frame back" { "−1 frame" }
            button.play type="button" title="play / pause" { "▶" }
            button.fwd type="button" title="one frame on" { "+1 frame" }
            input.scrub type="range" min="0" max="1" step="any" value="0" aria-label="position";
            span.time {}
        }
    }
}

/// A run's status as a badge.
pub(crate) fn status(s: cosmos_core::RunStatus) -> Markup {
    html! { span class={"status " (s)} { (s) } }
}

/// A time as the browser's reader sees it: UTC, to the second.
pub(crate) fn when(t: &chrono::DateTime<chrono::Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S")) } }
}

/// Stars for a rating (none when unrated).
pub(crate) fn stars(rating: Option<u8>) -> String {
    "★".repeat(usize::from(rating.unwrap_or(0)))
}

/// The URL of a run's output video, if it has one.
pub(crate) fn output_video(run: &cosmos_core::Run) -> Option<String> {
    run.outputs
        .iter()
        .filter_map(|o| std::path::Path::new(&o.path).file_name()?.to_str())
        .find(|name| name.ends_with(".mp4"))
        .map(|name| format!("/api/v1/runs/{}/outputs/{name}", run.id))
}

/// The URL of a control video of an input set.
pub(crate) fn control_video(set: &cosmos_core::InputSetId, kind: cosmos_core::InputKind) -> String {
    format!("/api/v1/inputs/{set}/files/{}", kind.as_str())
}

/// A page for something that does not exist.
pub(crate) fn not_found(what: String) -> PageError {
    PageError(ApiError::new(StatusCode::NOT_FOUND, "not_found", what))
}
