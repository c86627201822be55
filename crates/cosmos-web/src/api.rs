//! The router: `/api/v1` resources (each module lists its routes with their OpenAPI
//! operations, so the document is generated from the handlers and the types they take and
//! return), the OpenAPI document, metrics, the login form, and the guard around them all.

mod events;
mod inputs;
mod prompts;
mod queue;
mod runs;
mod targets;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::error::{ApiError, ErrorBody};

/// A JSON body already serialised (a cached answer).
pub(crate) fn json_bytes(body: axum::body::Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Serialises an answer for the cache.
pub(crate) fn to_bytes<T: serde::Serialize>(value: &T) -> Result<axum::body::Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(axum::body::Bytes::from)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}
use crate::guard::{self, Access};
use crate::{AppState, metrics};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cosmos",
        description = "Runs NVIDIA Cosmos-Transfer on GPU targets: prompts, input sets, runs and sweeps, targets, the queue, and live events (`GET /api/v1/events`, a WebSocket). Errors are `{\"error\":{\"code\",\"message\"}}`. A server bound beyond loopback needs its access token as `Authorization: Bearer TOKEN`."
    ),
    modifiers(&Security),
    components(schemas(ErrorBody)),
    tags(
        (name = "runs", description = "Runs and sweeps: submit, follow, cancel, retry, rate, outputs"),
        (name = "prompts", description = "Prompts and full-text search"),
        (name = "inputs", description = "Input sets: folders of control videos"),
        (name = "targets", description = "Where runs execute"),
        (name = "queue", description = "The queue, its estimates, pausing"),
        (name = "events", description = "Live events"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(guard::SESSION_COOKIE))),
        );
    }
}

fn resources() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest(
        "/api/v1",
        OpenApiRouter::new()
            .merge(runs::routes())
            .merge(prompts::routes())
            .merge(inputs::routes())
            .merge(targets::routes())
            .merge(queue::routes())
            .merge(events::routes()),
    )
}

/// The OpenAPI document of every `/api/v1` route.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    resources().split_for_parts().1
}

pub(crate) fn router(state: AppState, access: Arc<Access>, max_body: usize) -> Router {
    let (api, _) = resources().split_for_parts();
    let site = Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics::render))
        .fallback(not_found)
        .with_state(state.clone());
    let login = Router::new()
        .route("/login", get(guard::login_form).post(guard::login))
        .route("/logout", post(guard::logout))
        .with_state(access.clone());
    let cache = state.cache.clone();
    let pages = crate::ui::routes().with_state(state.clone());
    api.with_state(state)
        .merge(pages)
        .merge(site)
        .merge(login)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(cache, count_writes))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            max_body,
            refuse_declared_oversize,
        ))
        .layer(middleware::from_fn_with_state(access, guard::check))
}

/// A request answered slower than this is logged (the time to its response's head).
const SLOW_REQUEST: std::time::Duration = std::time::Duration::from_secs(1);

/// Counts requests that may have changed state, so cached reads are made afresh after them;
/// logs the slow ones.
async fn count_writes(
    State(cache): State<Arc<crate::cache::Cache>>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let changes = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    let began = std::time::Instant::now();
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let response = next.run(req).await;
    let took = began.elapsed();
    if took > SLOW_REQUEST {
        tracing::warn!(
            "{method} {} took {took:?} to answer ({})",
            uri.path(),
            response.status()
        );
    }
    if changes {
        cache
            .writes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
    response
}

/// A body whose declared length is over the limit is refused before a byte of it is read
/// (the limit on reading catches bodies that do not declare it).
async fn refuse_declared_oversize(
    State(max): State<usize>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is over {max} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

async fn openapi(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_owned(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such page: the API is under /api/v1 (see /api/v1/openapi.json)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take that method (see /api/v1/openapi.json)",
    )
}
