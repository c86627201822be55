//! `/api/v1/runs`: list (filters, cursor pages), submit (one run, a sweep, many entries, or a
//! dry run), show, cancel, retry, rate, priority, events, log, outputs.

use std::str::FromStr;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use cosmos_core::{Run, RunEvent, RunId, RunStatus};
use cosmos_engine::{
    CancelScope, Cancelled, RateRequest, RunEntry, RunFilter, RunPlan, SubmitRequest,
};

use crate::AppState;
use crate::error::extract::{JsonBody, Path, Query};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::files;
use axum::Json;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(cancel))
        .routes(routes!(retry))
        .routes(routes!(upscale))
        .routes(routes!(rate))
        .routes(routes!(priority))
        .routes(routes!(events))
        .routes(routes!(log))
        .routes(routes!(output))
        .routes(routes!(poster))
}

/// The most runs one page lists.
const MAX_PAGE: u32 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Statuses, comma-separated (`queued,running`)
    status: Option<String>,
    /// A prompt: id, unique id prefix, or exact name
    prompt: Option<String>,
    /// An input set: id or unique id prefix
    input_set: Option<String>,
    /// Runs placed on (or pinned to) this target
    target: Option<String>,
    /// Rated at least this (1–5)
    #[param(minimum = 1, maximum = 5)]
    rating: Option<u8>,
    /// Only favourites
    favourite: Option<bool>,
    /// Created at or after this time (RFC 3339)
    since: Option<DateTime<Utc>>,
    /// Runs per page (1–500, default 50)
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page
    cursor: Option<String>,
    /// Also count every matching run (`total`)
    count: Option<bool>,
}

/// One page of runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RunPage {
    runs: Vec<Run>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<RunId>,
    /// Every run matching the filters (with `count=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
}

fn statuses(text: &str) -> ApiResult<Vec<RunStatus>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            RunStatus::from_str(s)
                .map_err(|e| ApiError::bad_request("invalid_status", e.to_string()))
        })
        .collect()
}

/// Lists runs, newest first.
#[utoipa::path(get, path = "/runs", tag = "runs", params(ListQuery),
    responses(
        (status = 200, description = "A page of runs", body = RunPage),
        (status = 400, description = "A filter is malformed", body = ErrorBody),
        (status = 404, description = "The prompt or input set named does not exist", body = ErrorBody),
    ))]
async fn list(
    State(s): State<AppState>,
    uri: axum::http::Uri,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let key = uri.to_string();
    let body = s.cache.get(&key, page(s.clone(), q)).await?;
    Ok(super::json_bytes(body))
}

async fn page(s: AppState, q: ListQuery) -> ApiResult<axum::body::Bytes> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("`limit` is 1 to {MAX_PAGE}, not {limit}"),
        ));
    }
    if let Some(r) = q.rating
        && !(1..=5).contains(&r)
    {
        return Err(ApiError::bad_request(
            "invalid_rating",
            format!("`rating` is 1 to 5, not {r}"),
        ));
    }
    let before = match &q.cursor {
        Some(c) => Some(RunId::from_str(c).map_err(|_| {
            ApiError::bad_request(
                "invalid_cursor",
                format!("`{c}` is not a cursor: pass a page's `next_cursor` as it is"),
            )
        })?),
        None => None,
    };
    let prompt_id = match &q.prompt {
        Some(p) => Some(s.services.prompts().resolve(p).await?),
        None => None,
    };
    let input_set_id = match &q.input_set {
        Some(i) => Some(s.services.inputs().resolve(i).await?),
        None => None,
    };
    let mut filter = RunFilter {
        statuses: match &q.status {
            Some(t) => statuses(t)?,
            None => Vec::new(),
        },
        prompt_id,
        input_set_id,
        target: q.target.clone(),
        since: q.since,
        min_rating: q.rating,
        favourite: q.favourite.unwrap_or(false),
        before,
        // One more than asked says whether another page follows.
        limit: limit + 1,
        ..RunFilter::default()
    };
    let mut runs = s.services.runs().list(&filter).await?;
    let next_cursor = if runs.len() > limit as usize {
        runs.truncate(limit as usize);
        runs.last().map(|r| r.id.clone())
    } else {
        None
    };
    let total = if q.count.unwrap_or(false) {
        filter.before = None;
        Some(s.services.runs().count(&filter).await?)
    } else {
        None
    };
    super::to_bytes(&RunPage {
        runs,
        next_cursor,
        total,
    })
}

/// Runs to submit: each entry takes `cosmos run`'s parameters; seed lists, seed ranges and
/// weight ranges make sweeps.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRunsRequest {
    #[schema(min_items = 1)]
    runs: Vec<RunEntry>,
    /// Plan only: return the specs and commands, store nothing.
    #[serde(default)]
    dry_run: bool,
    /// Allow this submission to queue up to this many runs (default 10000).
    #[schema(minimum = 1)]
    max_runs: Option<usize>,
}

/// What a submission queued (or, for a dry run, planned).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SubmittedView {
    /// The queued runs (empty for a dry run).
    runs: Vec<Run>,
    /// The plans: the spec Cosmos receives and the container command (dry runs only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    plans: Vec<RunPlan>,
    /// What Cosmos will do that may be unexpected.
    notes: Vec<String>,
}

/// Submits runs and sweeps; the queue places them (or pins them with `target`).
#[utoipa::path(post, path = "/runs", tag = "runs", request_body = CreateRunsRequest,
    responses(
        (status = 201, description = "Queued", body = SubmittedView),
        (status = 200, description = "Planned (dry run)", body = SubmittedView),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 404, description = "A prompt, input set or target does not exist", body = ErrorBody),
        (status = 409, description = "The request clashes with the state things are in", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
async fn create(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<CreateRunsRequest>,
) -> ApiResult<(StatusCode, Json<SubmittedView>)> {
    if req.runs.is_empty() {
        return Err(ApiError::bad_request(
            "no_runs",
            "`runs` is empty: give at least one entry",
        ));
    }
    let dry_run = req.dry_run;
    let submitted = s
        .services
        .runs()
        .submit(SubmitRequest {
            entries: req.runs,
            source: None,
            defaults: (*s.run_defaults).clone(),
            launch: (*s.launch).clone(),
            dry_run,
            // The server's worker places them; a target that is down is reported by it.
            no_wait: true,
            max_runs: req.max_runs,
        })
        .await?;
    let view = SubmittedView {
        runs: submitted.runs,
        plans: if dry_run { submitted.plans } else { Vec::new() },
        notes: submitted.notes,
    };
    let status = if dry_run {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view)))
}

async fn run_id(s: &AppState, text: &str) -> ApiResult<RunId> {
    Ok(s.services.runs().resolve(text).await?)
}

/// A run: parameters, status, outputs, what it ran on.
#[utoipa::path(get, path = "/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "A run id or unique prefix")),
    responses(
        (status = 200, description = "The run", body = Run),
        (status = 400, description = "Not an id, or ambiguous", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    ))]
async fn show(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Run>> {
    let id = run_id(&s, &id).await?;
    Ok(Json(s.services.runs().get(&id).await?))
}

/// Cancels a run: a queued one at once, a running one by stopping its model.
#[utoipa::path(post, path = "/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "A run id or unique prefix")),
    responses(
        (status = 200, description = "What the cancel did", body = Cancelled),
        (status = 400, description = "Not an id, or ambiguous", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run changed meanwhile", body = ErrorBody),
    ))]
async fn cancel(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Cancelled>> {
    let id = run_id(&s, &id).await?;
    Ok(Json(
        s.services
            .runs()
            .cancel(CancelScope::Runs(vec![id]))
            .await?,
    ))
}

/// Queues a failed or cancelled run again, as a new run linked to it.
#[utoipa::path(post, path = "/runs/{id}/retry", tag = "runs",
    params(("id" = String, Path, description = "A run id or unique prefix")),
    responses(
        (status = 201, description = "The new run", body = Run),
        (status = 400, description = "Not an id, or ambiguous", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run has not failed, or was retried already", body = ErrorBody),
    ))]
async fn retry(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    let id = run_id(&s, &id).await?;
    Ok((
        StatusCode::CREATED,
        Json(s.services.runs().retry(&id).await?),
    ))
}

/// How to upscale a run's output (every field optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpscaleBody {
    /// The `upscale` control's weight, 0 to 1 (0.5 when left out).
    #[schema(minimum = 0.0, maximum = 1.0)]
    weight: Option<f64>,
    /// Text for the upscaler (the run's own prompt when left out).
    prompt: Option<String>,
    /// A target instead of the one that has the run's output.
    target: Option<String>,
    /// Queue order: higher first.
    priority: Option<i32>,
}

/// Queues a 4K upscale of a run's output: now if it succeeded, once it succeeds if it is
/// still queued or running. It goes to the target that has the output.
#[utoipa::path(post, path = "/runs/{id}/upscale", tag = "runs", request_body = UpscaleBody,
    params(("id" = String, Path, description = "A run id or unique prefix")),
    responses(
        (status = 201, description = "The upscale run", body = Run),
        (status = 400, description = "Not an id, or the run has no output to upscale (or it is too large)", body = ErrorBody),
        (status = 404, description = "No such run or target", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
async fn upscale(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpscaleBody>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    let id = run_id(&s, &id).await?;
    let run = s
        .services
        .runs()
        .upscale(&cosmos_engine::UpscaleRequest {
            source: cosmos_engine::UpscaleSource::Run(id.to_string()),
            weight: body.weight,
            prompt: body.prompt,
            target: body.target,
            priority: body.priority.unwrap_or(0),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(run)))
}

/// Rates a run (1–5, 0 clears) and/or marks it favourite.
#[utoipa::path(put, path = "/runs/{id}/rating", tag = "runs", request_body = RateRequest,
    params(("id" = String, Path, description = "A run id or unique prefix")),
    responses(
        (status = 200, description = "The run as it is now", body = Run),
        (status = 400, description = "The rating is out of range", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
async fn rate(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<RateRequest>,
) -> ApiResult<Json<Run>> {
    let id = run_id(&s, &id).await?;
    let mut runs = s
        .services
        .runs()
        .rate(std::slice::from_ref(&id), &req)
        .await?;
    runs.pop()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PriorityRequest {
    /// Higher runs first; 0 is the default.
    priority: i32,
}

/// Moves a queued run up or down the queue.
#[utoipa::path(put, path = "/runs/{id}/priority", tag = "runs", request_body = PriorityRequest,
    params(("id" = String, Path, description = "A run id or unique prefix")),
    responses(
        (status = 200, description = "The run as it is now", body = Run),
        (status = 400, description = "Not an id, or a bad body", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run is no longer queued", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
async fn priority(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<PriorityRequest>,
) -> ApiResult<Json<Run>> {
    let id = run_id(&s, &id).await?;
    Ok(Json(
        s.services.runs().set_priority(&id, req.priority).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Only events after this sequence number
    after: Option<i64>,
}

/// A run's history, oldest first, each event with its global sequence number (`id`).
#[utoipa::path(get, path = "/runs/{id}/events", tag = "runs",
    params(("id" = String, Path, description = "A run id or unique prefix"), EventsQuery),
    responses(
        (status = 200, description = "The run's events", body = Vec<RunEvent>),
        (status = 400, description = "Not an id, or ambiguous", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    ))]
async fn events(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<Vec<RunEvent>>> {
    let id = run_id(&s, &id).await?;
    let events = match q.after {
        Some(after) => s.services.events().follow(after, Some(id)).drain().await?,
        None => s.services.runs().events(&id).await?,
    };
    Ok(Json(events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// The last this many lines (default 100, at most 10000); not with `offset`
    #[param(minimum = 0, maximum = 10000)]
    tail: Option<usize>,
    /// From this byte on (a range; the next `end` continues it)
    #[param(minimum = 0)]
    offset: Option<u64>,
    /// Bytes from `offset` (default and at most 1 MiB)
    #[param(minimum = 0, maximum = 1048576)]
    limit: Option<u64>,
}

/// A piece of a run's log: the model's output as cosmos saved it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LogChunk {
    /// The text (invalid UTF-8 replaced).
    text: String,
    /// Where it starts in the file, in bytes.
    offset: u64,
    /// Where it ends: the `offset` of the next range.
    end: u64,
    /// The file's size now.
    size: u64,
}

/// The tail of a run's log, or a byte range of it (to follow: ask from the last `end`).
#[utoipa::path(get, path = "/runs/{id}/log", tag = "runs",
    params(("id" = String, Path, description = "A run id or unique prefix"), LogQuery),
    responses(
        (status = 200, description = "The log piece (empty before the run has a log)", body = LogChunk),
        (status = 400, description = "Not an id, or bad range", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    ))]
async fn log(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Json<LogChunk>> {
    let id = run_id(&s, &id).await?;
    let run = s.services.runs().get(&id).await?;
    let path = cosmos_engine::execute_paths::run_log(&s.data_dir, &run);
    let piece = match (q.tail, q.offset) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_range",
                "ask for `tail` or for `offset` (and `limit`), not both",
            ));
        }
        (_, Some(offset)) => {
            let limit = q.limit.unwrap_or(files::MAX_LOG_RANGE);
            if limit > files::MAX_LOG_RANGE {
                return Err(ApiError::bad_request(
                    "invalid_range",
                    format!("`limit` is at most {}", files::MAX_LOG_RANGE),
                ));
            }
            files::read_range(&path, offset, limit).await
        }
        (tail, None) => {
            let lines = tail.unwrap_or(100);
            if lines > 10_000 {
                return Err(ApiError::bad_request(
                    "invalid_range",
                    "`tail` is at most 10000 lines",
                ));
            }
            files::read_tail(&path, lines).await
        }
    }
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "log_unreadable",
            format!("reading `{}`: {e}", path.display()),
        )
    })?;
    Ok(Json(LogChunk {
        text: String::from_utf8_lossy(&piece.bytes).into_owned(),
        offset: piece.offset,
        end: piece.offset + piece.bytes.len() as u64,
        size: piece.size,
    }))
}

/// An output file of a run, with HTTP ranges (a browser can scrub a video) and an `ETag`.
#[utoipa::path(get, path = "/runs/{id}/outputs/{name}", tag = "runs",
    params(
        ("id" = String, Path, description = "A run id or unique prefix"),
        ("name" = String, Path, description = "The output's file name (`output.mp4`)"),
    ),
    responses(
        (status = 200, description = "The whole file", content_type = "application/octet-stream"),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream"),
        (status = 304, description = "Unchanged since the `ETag` given"),
        (status = 400, description = "Not an id, or ambiguous", body = ErrorBody),
        (status = 404, description = "No such run or output", body = ErrorBody),
        (status = 416, description = "The range is outside the file", body = ErrorBody),
    ))]
async fn output(
    State(s): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = run_id(&s, &id).await?;
    let run = s.services.runs().get(&id).await?;
    files::serve_output(&s.data_dir, &run, &name, &headers).await
}

/// A still of the run's output video (a JPEG 320 px wide), made when it was collected.
#[utoipa::path(get, path = "/runs/{id}/poster", tag = "runs",
    params(("id" = String, Path, description = "A run id or unique prefix")),
    responses(
        (status = 200, description = "The poster", content_type = "image/jpeg"),
        (status = 304, description = "Unchanged since the `ETag` given"),
        (status = 400, description = "Not an id, or ambiguous", body = ErrorBody),
        (status = 404, description = "No such run, or it has no output video", body = ErrorBody),
    ))]
async fn poster(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = run_id(&s, &id).await?;
    let run = s.services.runs().get(&id).await?;
    let path = s
        .services
        .runs()
        .poster(&id, &s.data_dir)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("run `{id}` has no output video")))?;
    let tag = run
        .outputs
        .iter()
        .find(|o| o.path.ends_with(".mp4"))
        .map_or_else(|| id.to_string(), |o| format!("{}-poster", o.sha256));
    files::serve_still(&path, &tag, &headers).await
}
