//! The OpenAI-compatible surface under `/v1`: files, fine-tuning jobs and models in OpenAI's
//! shapes, so the official `openai` SDK (and code written for it) drives BrightRun by changing
//! only `base_url` and `api_key`. It is a translation: every write goes through the same
//! commands as `/api`, every read comes from the same read models and event store.
//!
//! Ids carry OpenAI's prefixes over our UUIDs (`file-<uuid>`, `ftjob-<uuid>`); a bare UUID is
//! accepted too, so an id from `/api` works here. Errors answer OpenAI's shape,
//! `{"error": {"message", "type", "param", "code"}}`, on `/v1` only.

mod chat;
mod files;
mod jobs;
mod models;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(chat::router())
        .merge(files::router())
        .merge(jobs::router())
        .merge(models::router())
        .route("/v1", axum::routing::any(unknown_route))
        .route("/v1/{*rest}", axum::routing::any(unknown_route))
}

/// Whether a request is to the OpenAI-compatible surface (whose errors take OpenAI's shape).
pub(crate) fn is_openai_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// OpenAI's error object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OpenAiError {
    /// What happened and what to change.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `rate_limit_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request parameter at fault (`training_file`, `hyperparameters.n_epochs`), if any.
    pub param: Option<String>,
    /// BrightRun's error code, in lower case (`dataset_not_found`); `invalid_api_key` on 401.
    pub code: Option<String>,
}

/// The body of every `/v1` error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    pub error: OpenAiError,
}

fn kind_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    }
}

/// An `ApiError` with its field renamed to the `/v1` parameter it came from.
pub(crate) fn with_param(mut err: ApiError, param: impl Into<String>) -> ApiError {
    err.body.field = Some(param.into());
    err
}

/// Every `/v1` answer that is an error in the envelope's shape (from a handler, an extractor,
/// the framework) is rewritten into OpenAI's; the status and headers stay.
pub(crate) async fn openai_shaped(response: Response) -> Response {
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(bytes) => bytes,
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    let error = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(value) if value.get("success") == Some(&serde_json::Value::Bool(false)) => {
            let e = &value["error"];
            let code = e["code"].as_str().unwrap_or("internal_error");
            OpenAiError {
                message: e["message"].as_str().unwrap_or_default().to_string(),
                kind: kind_of(status).to_string(),
                param: e["field"].as_str().map(str::to_string),
                code: Some(if status == StatusCode::UNAUTHORIZED {
                    "invalid_api_key".to_string()
                } else {
                    code.to_ascii_lowercase()
                }),
            }
        }
        _ => OpenAiError {
            message: String::from_utf8_lossy(&bytes).into_owned(),
            kind: kind_of(status).to_string(),
            param: None,
            code: None,
        },
    };
    let body = serde_json::to_vec(&OpenAiErrorBody { error }).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

async fn unknown_route(uri: axum::http::Uri) -> Response {
    ApiError::not_found(
        ErrorCode::NotFound,
        format!(
            "{} is not part of BrightRun's OpenAI-compatible API: /v1/files, /v1/fine_tuning/jobs and /v1/models are",
            uri.path()
        ),
    )
    .into_response()
}

/// Our UUID behind an OpenAI-style id (`file-<uuid>`), or a bare UUID.
fn parse_prefixed(id: &str, prefix: &str) -> Option<Uuid> {
    Uuid::parse_str(id.strip_prefix(prefix).unwrap_or(id)).ok()
}

fn unix(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp()
}

/// OpenAI's list object: a page of `data`, and whether more follow.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiList<T> {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<T>,
    pub has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_id: Option<String>,
}

impl<T> OpenAiList<T> {
    /// A page from `rows` fetched with one more than `limit`: the extra one only says more
    /// follow. `id` names an item for `first_id` and `last_id`.
    fn page(mut rows: Vec<T>, limit: usize, id: impl Fn(&T) -> String) -> OpenAiList<T> {
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        OpenAiList {
            object: "list",
            first_id: rows.first().map(&id),
            last_id: rows.last().map(&id),
            data: rows,
            has_more,
        }
    }
}

/// The UUID behind a page's `after` cursor (`<prefix><uuid>`, or the bare UUID); `what` names
/// the kind of id in the error.
fn cursor(after: Option<&str>, prefix: &str, what: &str) -> Result<Option<Uuid>, ApiError> {
    after
        .map(|id| {
            parse_prefixed(id, prefix)
                .ok_or_else(|| ApiError::validation("after", format!("{id} is not {what}")))
        })
        .transpose()
}

/// A page size: `limit` (1 to `max`), `default` when absent.
fn limit_of(limit: Option<i64>, default: usize, max: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if n >= 1 && (n as u64) <= max as u64 => Ok(n as usize),
        Some(_) => Err(ApiError::validation(
            "limit",
            format!("limit must be between 1 and {max}"),
        )),
    }
}
