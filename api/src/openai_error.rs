//! OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`, which every
//! error on the OpenAI-compatible surface (`/v1`) answers in: the request middleware
//! rewrites each envelope error there into it.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

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
