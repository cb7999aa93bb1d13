//! The web console, built from `console/` by `build.rs` and embedded: its files at their
//! paths, and `index.html` for every other path outside `/api` (the console routes itself).

use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};

include!(concat!(env!("OUT_DIR"), "/console_files.rs"));

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn file(path: &str) -> Option<&'static [u8]> {
    FILES.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

/// Answers what the API's routes do not: a console file, the console's page for its own
/// routes, or (under `/api`) the JSON 404 of the envelope.
pub async fn serve(uri: Uri) -> Response {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        return ApiError::not_found(ErrorCode::NotFound, format!("no route for {path}"))
            .into_response();
    }
    let relative = path.trim_start_matches('/');
    if let Some(bytes) = file(relative).filter(|_| !relative.is_empty()) {
        // Vite names assets by their content: they never change under the same name.
        let cache = if relative.starts_with("assets/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        return (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type(relative)),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            ],
            bytes,
        )
            .into_response();
    }
    if relative.starts_with("assets/") {
        return (StatusCode::NOT_FOUND, "no such console file").into_response();
    }
    match file("index.html") {
        Some(page) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            page,
        )
            .into_response(),
        None => {
            ApiError::not_found(ErrorCode::NotFound, format!("no route for {path}")).into_response()
        }
    }
}
