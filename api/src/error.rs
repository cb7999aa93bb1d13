//! The API's one error type and the envelope it answers with:
//! `{ "success": false, "error": { "code", "message", "details"?, "field"? } }`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::request_id;

/// Every error code the API answers, each with its one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// BAD_REQUEST: a field broke a rule; `field` names it.
    ValidationError,
    /// BAD_REQUEST: the request could not be read.
    BadRequest,
    /// BAD_REQUEST: the upload broke off; nothing was stored.
    UploadInterrupted,
    /// UNAUTHORIZED: no valid bearer token.
    Unauthorized,
    /// UNAUTHORIZED: wrong e-mail or password.
    InvalidCredentials,
    /// UNAUTHORIZED: a cluster webhook without a valid signature.
    InvalidSignature,
    /// FORBIDDEN: the caller's role may not do this.
    Forbidden,
    /// NOT_FOUND: no such route or feature.
    NotFound,
    /// NOT_FOUND: no such user (or not one the caller may read).
    UserNotFound,
    /// NOT_FOUND: no such dataset (also another user's).
    DatasetNotFound,
    /// NOT_FOUND: no such job (also another user's).
    JobNotFound,
    /// NOT_FOUND: no such model (also another user's).
    ModelNotFound,
    /// NOT_FOUND: the model has no such file.
    ArtifactNotFound,
    /// NOT_FOUND: no such notification.
    NotificationNotFound,
    ApiKeyNotFound,
    /// METHOD_NOT_ALLOWED: the route does not take this method.
    MethodNotAllowed,
    /// CONFLICT: the resource changed in a way that makes the request wrong; read it again.
    Conflict,
    /// CONFLICT: an account with this e-mail exists.
    EmailExists,
    /// CONFLICT: the dataset is not validated or not training-ready.
    DatasetNotReady,
    /// CONFLICT: the dataset's file was already received.
    DatasetNotUploading,
    /// CONFLICT: a job that is not finished trains on the dataset.
    DatasetInUse,
    /// CONFLICT: storage holds no file for the dataset yet.
    UploadNotFound,
    /// CONFLICT: the stored file's size differs from the declared fileSize.
    UploadSizeMismatch,
    /// CONFLICT: the job already ended.
    JobNotCancellable,
    /// CONFLICT: the model is deployed.
    ModelDeployed,
    /// CONFLICT: the model is archived.
    ModelArchived,
    /// CONFLICT: the model has no deployment (undeploy, chat).
    ModelNotDeployed,
    /// CONFLICT: the model's deployment is still starting (chat).
    ModelNotServing,
    /// CONFLICT: no engine here can serve the model as trained (deploy).
    AdapterNotServable,
    /// PAYLOAD_TOO_LARGE: the body passed a size limit.
    PayloadTooLarge,
    /// UNSUPPORTED_MEDIA_TYPE: the body is not in the operation's content type.
    UnsupportedMediaType,
    /// TOO_MANY_REQUESTS: too many requests; wait `Retry-After` seconds.
    RateLimited,
    /// INTERNAL_SERVER_ERROR: a fault on our side; quote the request id.
    InternalError,
    /// SERVICE_UNAVAILABLE: a dependency is down (`/readyz`).
    NotReady,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 34] = [
        ErrorCode::ValidationError,
        ErrorCode::BadRequest,
        ErrorCode::UploadInterrupted,
        ErrorCode::Unauthorized,
        ErrorCode::InvalidCredentials,
        ErrorCode::InvalidSignature,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::UserNotFound,
        ErrorCode::DatasetNotFound,
        ErrorCode::JobNotFound,
        ErrorCode::ModelNotFound,
        ErrorCode::ArtifactNotFound,
        ErrorCode::NotificationNotFound,
        ErrorCode::ApiKeyNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::EmailExists,
        ErrorCode::DatasetNotReady,
        ErrorCode::DatasetNotUploading,
        ErrorCode::DatasetInUse,
        ErrorCode::UploadNotFound,
        ErrorCode::UploadSizeMismatch,
        ErrorCode::JobNotCancellable,
        ErrorCode::ModelDeployed,
        ErrorCode::ModelArchived,
        ErrorCode::ModelNotDeployed,
        ErrorCode::ModelNotServing,
        ErrorCode::AdapterNotServable,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimited,
        ErrorCode::InternalError,
        ErrorCode::NotReady,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::UploadInterrupted => "UPLOAD_INTERRUPTED",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::InvalidCredentials => "INVALID_CREDENTIALS",
            ErrorCode::InvalidSignature => "INVALID_SIGNATURE",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::UserNotFound => "USER_NOT_FOUND",
            ErrorCode::DatasetNotFound => "DATASET_NOT_FOUND",
            ErrorCode::JobNotFound => "JOB_NOT_FOUND",
            ErrorCode::ModelNotFound => "MODEL_NOT_FOUND",
            ErrorCode::ArtifactNotFound => "ARTIFACT_NOT_FOUND",
            ErrorCode::NotificationNotFound => "NOTIFICATION_NOT_FOUND",
            ErrorCode::ApiKeyNotFound => "API_KEY_NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::EmailExists => "EMAIL_EXISTS",
            ErrorCode::DatasetNotReady => "DATASET_NOT_READY",
            ErrorCode::DatasetNotUploading => "DATASET_NOT_UPLOADING",
            ErrorCode::DatasetInUse => "DATASET_IN_USE",
            ErrorCode::UploadNotFound => "UPLOAD_NOT_FOUND",
            ErrorCode::UploadSizeMismatch => "UPLOAD_SIZE_MISMATCH",
            ErrorCode::JobNotCancellable => "JOB_NOT_CANCELLABLE",
            ErrorCode::ModelDeployed => "MODEL_DEPLOYED",
            ErrorCode::ModelArchived => "MODEL_ARCHIVED",
            ErrorCode::ModelNotDeployed => "MODEL_NOT_DEPLOYED",
            ErrorCode::ModelNotServing => "MODEL_NOT_SERVING",
            ErrorCode::AdapterNotServable => "ADAPTER_NOT_SERVABLE",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::NotReady => "NOT_READY",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::ValidationError => StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::UploadInterrupted => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidSignature => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::UserNotFound => StatusCode::NOT_FOUND,
            ErrorCode::DatasetNotFound => StatusCode::NOT_FOUND,
            ErrorCode::JobNotFound => StatusCode::NOT_FOUND,
            ErrorCode::ModelNotFound => StatusCode::NOT_FOUND,
            ErrorCode::ArtifactNotFound => StatusCode::NOT_FOUND,
            ErrorCode::NotificationNotFound => StatusCode::NOT_FOUND,
            ErrorCode::ApiKeyNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::EmailExists => StatusCode::CONFLICT,
            ErrorCode::DatasetNotReady => StatusCode::CONFLICT,
            ErrorCode::DatasetNotUploading => StatusCode::CONFLICT,
            ErrorCode::DatasetInUse => StatusCode::CONFLICT,
            ErrorCode::UploadNotFound => StatusCode::CONFLICT,
            ErrorCode::UploadSizeMismatch => StatusCode::CONFLICT,
            ErrorCode::JobNotCancellable => StatusCode::CONFLICT,
            ErrorCode::ModelDeployed => StatusCode::CONFLICT,
            ErrorCode::ModelArchived => StatusCode::CONFLICT,
            ErrorCode::ModelNotDeployed => StatusCode::CONFLICT,
            ErrorCode::ModelNotServing => StatusCode::CONFLICT,
            ErrorCode::AdapterNotServable => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The figures some errors carry; each field only with the codes it names.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetails {
    /// `UPLOAD_SIZE_MISMATCH`, `PAYLOAD_TOO_LARGE`: the size the dataset was registered
    /// with, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_size: Option<u64>,
    /// `UPLOAD_SIZE_MISMATCH`: the size storage holds, in bytes (on confirm).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<u64>,
    /// `UPLOAD_SIZE_MISMATCH`: the bytes the upload sent (through the API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_size: Option<u64>,
    /// `NOT_READY`: whether Postgres answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<bool>,
    /// `NOT_READY`: whether NATS is connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats: Option<bool>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The code a client can act on: one of `ErrorCode`, each always with the same status.
    pub code: String,
    /// What happened and what to change.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<ErrorDetails>,
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

/// What a client is told to wait when the database is unavailable.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: code.status(),
            body: Box::new(ErrorBody {
                code: code.as_str().to_string(),
                message: message.into(),
                details: None,
                field: None,
            }),
            retry_after: None,
        }
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(ErrorCode::ValidationError, message);
        e.body.field = Some(field.into());
        e
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            ErrorCode::Unauthorized,
            "a valid bearer token is required: log in at POST /api/auth/login and send 'Authorization: Bearer <token>'",
        )
    }

    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(code, message)
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(code, message)
    }

    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> ApiError {
        let mut e = ApiError::new(ErrorCode::RateLimited, message);
        e.retry_after = Some(retry_after_secs);
        e
    }

    /// The database is unreachable: 503 `NOT_READY` with `Retry-After` (logged, not shown).
    pub fn unavailable(cause: impl std::fmt::Display) -> ApiError {
        tracing::warn!(request_id = %request_id::current(), error = %cause, "database unavailable");
        let mut e = ApiError::new(
            ErrorCode::NotReady,
            "the database is unavailable at the moment; retry shortly",
        );
        e.retry_after = Some(UNAVAILABLE_RETRY_AFTER_SECS);
        e
    }

    /// An internal cause: logged with the request id, never shown to the client. A cause
    /// that says the database is unreachable or busy answers 503 `NOT_READY` with
    /// `Retry-After` instead: nothing is wrong with the request, it can be sent again.
    pub fn internal<E: std::fmt::Display + 'static>(cause: E) -> ApiError {
        let id = request_id::current();
        let any = &cause as &dyn std::any::Any;
        let unavailable = any
            .downcast_ref::<sqlx::Error>()
            .is_some_and(infrastructure::parking::is_transient_sqlx)
            || any
                .downcast_ref::<anyhow::Error>()
                .is_some_and(infrastructure::parking::is_transient);
        if unavailable {
            return ApiError::unavailable(cause);
        }
        tracing::error!(request_id = %id, error = %cause, "internal error");
        ApiError::new(
            ErrorCode::InternalError,
            format!("an internal error occurred; quote request id {id} when reporting it"),
        )
    }

    pub fn with_details(mut self, details: ErrorDetails) -> ApiError {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_that_is_down_answers_503_with_retry_after_and_anything_else_500() {
        for down in [
            ApiError::internal(sqlx::Error::PoolTimedOut),
            ApiError::internal(anyhow::Error::new(sqlx::Error::PoolClosed).context("listing jobs")),
        ] {
            assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(down.retry_after, Some(UNAVAILABLE_RETRY_AFTER_SECS));
        }
        for bug in [
            ApiError::internal("no such column"),
            ApiError::internal(sqlx::Error::RowNotFound),
        ] {
            assert_eq!(bug.status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(bug.retry_after, None);
        }
    }
}
