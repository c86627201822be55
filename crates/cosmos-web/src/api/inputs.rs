//! `/api/v1/inputs`: input sets — list, show, register a folder on the server's machine.

use std::path::PathBuf;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use cosmos_core::{InputKind, InputSet, InputSetId};
use cosmos_engine::AddedInputSet;
use cosmos_store::InputSetSummary;

use crate::AppState;
use crate::error::extract::{JsonBody, Path, Query};
use crate::error::{ApiError, ApiResult, ErrorBody};
use axum::Json;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(show))
        .routes(routes!(file))
        .routes(routes!(thumbnail))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// At most this many (1–1000, default 100)
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Input sets, newest first, each with how many prompts use it.
#[utoipa::path(get, path = "/inputs", tag = "inputs", params(ListQuery),
    responses(
        (status = 200, description = "Input sets", body = Vec<InputSetSummary>),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
    ))]
async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<InputSetSummary>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("`limit` is 1 to 1000, not {limit}"),
        ));
    }
    Ok(Json(s.services.inputs().list(limit).await?))
}

/// An input set: its control videos with what ffprobe saw.
#[utoipa::path(get, path = "/inputs/{id}", tag = "inputs",
    params(("id" = String, Path, description = "An input set id or unique prefix")),
    responses(
        (status = 200, description = "The input set", body = InputSet),
        (status = 400, description = "Ambiguous or malformed", body = ErrorBody),
        (status = 404, description = "No such input set", body = ErrorBody),
    ))]
async fn show(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<InputSet>> {
    let id = s.services.inputs().resolve(&id).await?;
    Ok(Json(s.services.inputs().get(&id).await?))
}

/// One control video of an input set, as registered, with HTTP ranges (a browser can scrub
/// it beside an output) and an `ETag` from its sha256.
#[utoipa::path(get, path = "/inputs/{id}/files/{kind}", tag = "inputs",
    params(
        ("id" = String, Path, description = "An input set id or unique prefix"),
        ("kind" = String, Path, description = "The control: `color`, `depth`, `seg`, `edge`, …"),
    ),
    responses(
        (status = 200, description = "The whole video", content_type = "application/octet-stream"),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream"),
        (status = 304, description = "Unchanged since the `ETag` given"),
        (status = 400, description = "Not an id, ambiguous, or no such control", body = ErrorBody),
        (status = 404, description = "No such input set or video", body = ErrorBody),
        (status = 409, description = "The file changed since it was registered", body = ErrorBody),
        (status = 416, description = "The range is outside the file", body = ErrorBody),
    ))]
async fn file(
    State(s): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> ApiResult<axum::response::Response> {
    let (id, kind) = set_and_kind(&s, &id, &kind).await?;
    let set = s.services.inputs().get(&id).await?;
    crate::files::serve_input(&set, kind, &headers).await
}

/// An input set named by id or prefix, and a control named by kind or alias.
async fn set_and_kind(s: &AppState, id: &str, kind: &str) -> ApiResult<(InputSetId, InputKind)> {
    let id = s.services.inputs().resolve(id).await?;
    let kind = InputKind::ALL
        .into_iter()
        .find(|k| k.aliases().contains(&kind.to_ascii_lowercase().as_str()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_kind",
                format!("`{kind}` is not a control; use color, depth, seg, edge, keypoint, hdmap or lidar"),
            )
        })?;
    Ok((id, kind))
}

/// A still of one control video (a JPEG 320 px wide), made on first request and kept.
#[utoipa::path(get, path = "/inputs/{id}/thumbs/{kind}", tag = "inputs",
    params(
        ("id" = String, Path, description = "An input set id or unique prefix"),
        ("kind" = String, Path, description = "The control: `color`, `depth`, `seg`, `edge`, …"),
    ),
    responses(
        (status = 200, description = "The thumbnail", content_type = "image/jpeg"),
        (status = 304, description = "Unchanged since the `ETag` given"),
        (status = 400, description = "Not an id, ambiguous, or no such control", body = ErrorBody),
        (status = 404, description = "No such input set or video", body = ErrorBody),
    ))]
async fn thumbnail(
    State(s): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> ApiResult<axum::response::Response> {
    let (id, kind) = set_and_kind(&s, &id, &kind).await?;
    let (path, sha) = s
        .services
        .inputs()
        .thumbnail(&id, kind, &s.data_dir)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("input set `{id}` has no `{kind}` video")))?;
    crate::files::serve_still(&path, &format!("{sha}-thumb"), &headers).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddInputsBody {
    /// A folder of control videos on the server's machine.
    dir: String,
    name: Option<String>,
    /// Register it despite problems Cosmos would trip over.
    #[serde(default)]
    force: bool,
}

/// Registers a folder of control videos (probed and hashed; the same videos again return
/// the set that exists).
#[utoipa::path(post, path = "/inputs", tag = "inputs", request_body = AddInputsBody,
    responses(
        (status = 201, description = "Registered", body = AddedInputSet),
        (status = 200, description = "The same videos were registered already", body = AddedInputSet),
        (status = 400, description = "No such folder, or no usable videos in it", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
async fn add(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<AddInputsBody>,
) -> ApiResult<(StatusCode, Json<AddedInputSet>)> {
    let dir = PathBuf::from(&body.dir);
    if !dir.is_absolute() {
        return Err(ApiError::bad_request(
            "relative_path",
            format!(
                "`{}` is relative: give the folder's absolute path on the server's machine",
                body.dir
            ),
        ));
    }
    let added = s
        .services
        .inputs()
        .add(&dir, body.name.as_deref(), body.force)
        .await?;
    let status = if added.reused {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(added)))
}
