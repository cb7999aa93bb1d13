//! Security headers on every answer: no content sniffing, no referrer (a page's URL may
//! carry a presigned query), no framing by another site; the console's pages get a Content
//! Security Policy that lets them load only our own files and talk only to us and to the
//! object store their uploads go to; `Strict-Transport-Security` when the request came over
//! https (as the trusted proxy says: we do not terminate TLS ourselves).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// What a page of ours may load and reach, but for the object store's origin (`connect-src`,
/// where the console PUTs an upload).
fn console_policy(object_store_origin: Option<&str>) -> String {
    let connect = match object_store_origin {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_string(),
    };
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         font-src 'self'; connect-src {connect}; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    )
}

/// For what is not a page of the console (JSON, files, streams): nothing to load at all.
const NOTHING: &str = "default-src 'none'; frame-ancestors 'none'";

/// Swagger UI (`/api/docs`) runs scripts of its own inline: it is only kept out of frames.
const DOCS: &str = "frame-ancestors 'none'";

const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The policy the console's pages are served with (computed once at start-up from where the
/// object store's presigned URLs point).
pub fn policy_for_console(object_store_origin: Option<&str>) -> HeaderValue {
    HeaderValue::from_str(&console_policy(object_store_origin))
        .unwrap_or_else(|_| HeaderValue::from_static(NOTHING))
}

pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let docs = req.uri().path().starts_with("/api/docs");
    let https = state.config.trust_forwarded_for && forwarded_https(req.headers());
    let mut response = next.run(req).await;
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let policy = match (docs, is_page) {
        (true, _) => HeaderValue::from_static(DOCS),
        (false, true) => state.console_policy.clone(),
        (false, false) => HeaderValue::from_static(NOTHING),
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    response
}

/// Whether the trusted proxy says the client spoke https: the right-most
/// `X-Forwarded-Proto` entry (the one the proxy set), as for `X-Forwarded-For`.
fn forwarded_https(headers: &HeaderMap) -> bool {
    crate::rate_limit::proxy_entry(headers, "x-forwarded-proto")
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_may_reach_only_us_and_the_object_store() {
        let policy = console_policy(Some("http://127.0.0.1:9000"));
        assert!(
            policy.contains("connect-src 'self' http://127.0.0.1:9000;"),
            "{policy}"
        );
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
    }

    #[test]
    fn only_the_proxy_s_own_entry_says_https() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(forwarded_https(&headers));
        headers.append("x-forwarded-proto", HeaderValue::from_static("https, http"));
        assert!(!forwarded_https(&headers));
    }
}
