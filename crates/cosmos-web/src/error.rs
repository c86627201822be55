//! One error type for every handler: a status and `{"error":{"code","message"}}`. Engine
//! errors keep their stable code; their kind picks the status. A 5xx says only that the
//! server failed: the details go to the log, never to the client.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use cosmos_engine::{EngineError, ErrorKind};

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// An error as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable (`no_such_target`, `invalid_spec`, …).
    pub code: String,
    /// What is wrong and what to change, for a person.
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Permission => StatusCode::FORBIDDEN,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        Self::new(status_of(e.kind()), e.code(), e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match r {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        // Too large is the only way reading a body fails before it is parsed.
        let (code, message) = match status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`".to_owned(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "body_too_large",
                format!("the request body could not be read: {}", r.body_text()),
            ),
            _ => ("invalid_body", r.body_text()),
        };
        Self::new(status, code, message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request("invalid_query", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request("invalid_path", r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = if self.status.is_server_error() {
            tracing::error!(code = self.code, status = %self.status, "{}", self.message);
            "the server failed; its log has the details".to_owned()
        } else {
            self.message
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// JSON and query extractors whose rejections are [`ApiError`]s, so a malformed request
/// gets the same error shape as every other.
pub(crate) mod extract {
    use axum::extract::{FromRequest, FromRequestParts};

    use super::ApiError;

    #[derive(Debug, FromRequest)]
    #[from_request(via(axum::Json), rejection(ApiError))]
    pub(crate) struct JsonBody<T>(pub T);

    #[derive(Debug, FromRequestParts)]
    #[from_request(via(axum::extract::Query), rejection(ApiError))]
    pub(crate) struct Query<T>(pub T);

    #[derive(Debug, FromRequestParts)]
    #[from_request(via(axum::extract::Path), rejection(ApiError))]
    pub(crate) struct Path<T>(pub T);
}
