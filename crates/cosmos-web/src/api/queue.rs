//! `/api/v1/queue`: the queue with estimates, running runs, targets and workers; pausing.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use cosmos_engine::StatusView;

use crate::AppState;
use crate::error::extract::{JsonBody, Query};
use crate::error::{ApiError, ApiResult, ErrorBody};
use axum::Json;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(pause))
        .routes(routes!(resume))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatusQuery {
    /// Queued runs to list (0–1000, default 20); `queued_total` counts them all
    #[param(minimum = 0, maximum = 1000)]
    limit: Option<u32>,
}

/// The queue with estimated start and finish times, running runs, targets, workers.
#[utoipa::path(get, path = "/queue", tag = "queue", params(StatusQuery),
    responses(
        (status = 200, description = "The queue now", body = StatusView),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
    ))]
async fn status(
    State(s): State<AppState>,
    Query(q): Query<StatusQuery>,
) -> ApiResult<Json<StatusView>> {
    let limit = q.limit.unwrap_or(20);
    if limit > 1000 {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("`limit` is 0 to 1000, not {limit}"),
        ));
    }
    Ok(Json(s.services.queue().status(limit).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PauseBody {
    /// Only this target (default: the whole queue).
    target: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PauseView {
    /// The target paused or resumed; absent for the whole queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    paused: bool,
}

async fn set_paused(s: &AppState, body: PauseBody, paused: bool) -> ApiResult<Json<PauseView>> {
    s.services
        .queue()
        .set_paused(body.target.as_deref(), paused)
        .await?;
    Ok(Json(PauseView {
        target: body.target,
        paused,
    }))
}

/// Stops placing queued runs (everywhere, or on one target); running ones go on.
#[utoipa::path(post, path = "/queue/pause", tag = "queue", request_body = PauseBody,
    responses(
        (status = 200, description = "Paused", body = PauseView),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 404, description = "No such target", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
async fn pause(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<PauseBody>,
) -> ApiResult<Json<PauseView>> {
    set_paused(&s, body, true).await
}

/// Places queued runs again.
#[utoipa::path(post, path = "/queue/resume", tag = "queue", request_body = PauseBody,
    responses(
        (status = 200, description = "Resumed", body = PauseView),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 404, description = "No such target", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
async fn resume(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<PauseBody>,
) -> ApiResult<Json<PauseView>> {
    set_paused(&s, body, false).await
}
