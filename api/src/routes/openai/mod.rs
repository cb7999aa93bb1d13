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

pub use crate::openai_error::{OpenAiError, OpenAiErrorBody};

/// An `ApiError` with its field renamed to the `/v1` parameter it came from.
pub(crate) fn with_param(mut err: ApiError, param: impl Into<String>) -> ApiError {
    err.body.field = Some(param.into());
    err
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
