//! `/api/v1/targets`: list, show, check.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use cosmos_core::Target;
use cosmos_engine::CheckItem;

use crate::AppState;
use crate::error::extract::Path;
use crate::error::{ApiResult, ErrorBody};
use axum::Json;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(check))
}

/// Every target, with its settings.
#[utoipa::path(get, path = "/targets", tag = "targets",
    responses((status = 200, description = "Targets", body = Vec<Target>)))]
async fn list(State(s): State<AppState>) -> ApiResult<Json<Vec<Target>>> {
    Ok(Json(s.services.targets().list().await?))
}

/// One target.
#[utoipa::path(get, path = "/targets/{name}", tag = "targets",
    params(("name" = String, Path, description = "The target's name")),
    responses(
        (status = 200, description = "The target", body = Target),
        (status = 404, description = "No such target", body = ErrorBody),
    ))]
async fn show(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Target>> {
    Ok(Json(s.services.targets().find(Some(&name)).await?))
}

/// Preflight: connects to the target and checks everything a run needs, item by item.
#[utoipa::path(post, path = "/targets/{name}/check", tag = "targets",
    params(("name" = String, Path, description = "The target's name")),
    responses(
        (status = 200, description = "Each item, ok or failed with its fix", body = Vec<CheckItem>),
        (status = 404, description = "No such target", body = ErrorBody),
        (status = 403, description = "The host key is not trusted, or the login failed", body = ErrorBody),
        (status = 503, description = "The target does not answer", body = ErrorBody),
    ))]
async fn check(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<CheckItem>>> {
    let target = s.services.targets().find(Some(&name)).await?;
    Ok(Json(s.services.targets().check(&target).await?))
}
