//! The API's one error type and the seed envelope it answers with:
//! `{ "success": false, "error": { "code", "message", "details"?, "field"? } }`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::request_id;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// UPPER_SNAKE code a client can act on (`VALIDATION_ERROR`, `UNAUTHORIZED`, ...).
    pub code: String,
    /// What happened and what to change.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// The request field at fault, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// Always false.
    pub success: bool,
    pub error: ErrorBody,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Box<ErrorBody>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: Box::new(ErrorBody {
                code: code.to_string(),
                message: message.into(),
                details: None,
                field: None,
            }),
            retry_after: None,
        }
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message);
        e.body.field = Some(field.into());
        e
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "a valid bearer token is required: log in at POST /api/auth/login and send 'Authorization: Bearer <token>'",
        )
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> ApiError {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message);
        e.retry_after = Some(retry_after_secs);
        e
    }

    /// An internal cause: logged with the request id, never shown to the client.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        let id = request_id::current();
        tracing::error!(request_id = %id, error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("an internal error occurred; quote request id {id} when reporting it"),
        )
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.body.details = Some(details);
        self
    }
}

impl From<domain::FieldError> for ApiError {
    fn from(e: domain::FieldError) -> ApiError {
        ApiError::validation(e.field, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(ErrorEnvelope {
                success: false,
                error: *self.body,
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
