//! Per-request context: the request id (taken from `x-request-id` or made), a tracing span,
//! latency metrics, panics turned into a 500 envelope, and framework errors (unknown route,
//! wrong method, oversized body) turned into the seed envelope.

use crate::error::ErrorCode;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use tracing::Instrument;

use crate::error::ApiError;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served ("-" outside a request).
pub fn current() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_string())
}

fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

pub async fn middleware(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let path = request.uri().path().to_string();
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let started = Instant::now();

    let run = AssertUnwindSafe(next.run(request)).catch_unwind();
    let outcome = REQUEST_ID
        .scope(id.clone(), run.instrument(span.clone()))
        .await;
    let mut response = match outcome {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            REQUEST_ID.sync_scope(id.clone(), || {
                span.in_scope(|| {
                    ApiError::internal(format!("handler panicked: {what}")).into_response()
                })
            })
        }
    };
    if response.status().is_client_error() || response.status().is_server_error() {
        response = envelope_framework_error(response, &method, &path, &id);
        if crate::openai_error::is_openai_path(&path) {
            response = crate::openai_error::openai_shaped(response).await;
        }
    }
    let status = response.status();
    let elapsed = started.elapsed();
    metrics::histogram!(
        "brightrun_http_request_duration_seconds",
        "method" => method_label(&method),
        "route" => route,
        "status" => status.as_u16().to_string(),
    )
    .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            elapsed_ms = elapsed.as_millis() as u64,
            "served"
        )
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// The method as a metric label: the ones HTTP defines, and "other" for anything a client
/// makes up (each made-up method would otherwise be a series of its own, for ever).
fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// Our handlers answer JSON envelopes; anything else with an error status came from the
/// framework (no route, wrong method, body too large...) and gets the envelope here.
fn envelope_framework_error(
    response: Response,
    method: &axum::http::Method,
    path: &str,
    id: &str,
) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let status = response.status();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, format!("no route for {method} {path}")),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorCode::PayloadTooLarge,
            "the request body is too large".to_string(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON with 'Content-Type: application/json'".to_string(),
        ),
        s if s.is_server_error() => (
            ErrorCode::InternalError,
            format!("an internal error occurred; quote request id {id} when reporting it"),
        ),
        _ => (
            ErrorCode::BadRequest,
            status
                .canonical_reason()
                .unwrap_or("bad request")
                .to_string(),
        ),
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut replaced = ApiError::new(code, message).into_response();
    if let Some(allow) = allow {
        replaced.headers_mut().insert(header::ALLOW, allow);
    }
    replaced
}
