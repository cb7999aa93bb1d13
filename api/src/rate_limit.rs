//! Request rate limits: each write and each expensive request (`domain::rate_limit`) counts
//! against its caller (the user of a token, or an API key) and its client address, in
//! windows shared by every instance (Postgres); one too many answers 429 `RATE_LIMITED`
//! with `Retry-After`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{TimeZone, Utc};
use domain::rate_limit::{classify, RateLimit};

use crate::error::ApiError;
use crate::state::AppState;

pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(class) = classify(req.method().as_str(), req.uri().path()) else {
        return next.run(req).await;
    };
    let (per_caller, per_address) = state.config.rate_limits.of(class);
    let mut counted: Vec<(String, RateLimit)> = Vec::with_capacity(2);
    if per_caller.limit > 0 {
        if let Some(caller) = caller_of(&state, req.headers()) {
            counted.push((format!("{}:{caller}", class.as_str()), per_caller));
        }
    }
    if per_address.limit > 0 {
        if let Some(address) = client_address(&req, state.config.trust_forwarded_for) {
            counted.push((format!("{}:address:{address}", class.as_str()), per_address));
        }
    }
    if let Some(refused) = count(&state, &counted, class.as_str()).await {
        return refused.into_response();
    }
    next.run(req).await
}

/// Counts a login against its e-mail from its client address, and against the address,
/// whatever its outcome (each costs a password hash): one too many is 429 before anything is
/// checked. The e-mail is counted per address, so no stranger's logins hold its owner back.
pub async fn count_login(
    state: &AppState,
    email: &str,
    address: Option<IpAddr>,
) -> Result<(), ApiError> {
    let (per_email, per_address) = state.config.rate_limits.logins();
    let mut counted = Vec::with_capacity(2);
    if per_email.limit > 0 {
        let from = address.map_or_else(|| "unknown".to_string(), |a| a.to_string());
        counted.push((format!("login:email:{email}:from:{from}"), per_email));
    }
    if let Some(address) = address.filter(|_| per_address.limit > 0) {
        counted.push((format!("login:address:{address}"), per_address));
    }
    match count(state, &counted, "login").await {
        Some(refused) => Err(refused),
        None => Ok(()),
    }
}

/// Counts one request against each key in the current window: the refusal of the first
/// key past its limit, if any. Unreachable counters refuse nothing (the request answers for
/// itself if the database is down) rather than failing for want of a count.
async fn count(state: &AppState, counted: &[(String, RateLimit)], what: &str) -> Option<ApiError> {
    let first = counted.first()?;
    let now = state.clock.now().timestamp();
    let (start, _) = first.1.window(now);
    let window_start = Utc.timestamp_opt(start, 0).single()?;
    let keys: Vec<String> = counted.iter().map(|(k, _)| k.clone()).collect();
    match infrastructure::rate_limits::hit(&state.pool, &keys, window_start).await {
        Ok(hits) => {
            for ((key, rule), hits) in counted.iter().zip(hits) {
                if let Err(retry_after) = rule.check(hits, now) {
                    let whom = if key.contains(":address:") {
                        "this address"
                    } else if key.contains(":email:") {
                        "this e-mail from this address"
                    } else {
                        "this caller"
                    };
                    return Some(ApiError::rate_limited(
                        format!(
                            "too many {what} requests from {whom}: at most {} per {} s; retry after {retry_after} s",
                            rule.limit, rule.window_secs
                        ),
                        retry_after,
                    ));
                }
            }
            None
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot count the request against its rate limits");
            None
        }
    }
}

/// Who is calling, for counting only: the user of a valid token, or the id an API key names
/// (checked by the handler; a forged one only spreads the caller over keys its address still
/// counts).
fn caller_of(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let token = crate::extract::bearer_token(headers)?;
    if token.starts_with(domain::api_key::KEY_PREFIX) {
        return domain::api_key::key_id_of(token).map(|id| format!("key:{id}"));
    }
    state
        .tokens
        .verify(token)
        .ok()
        .map(|p| format!("user:{}", p.user_id.0))
}

/// The client's address: the connection's peer, or behind a trusted proxy the right-most
/// `X-Forwarded-For` entry.
pub fn client_address(req: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    address_of(req.headers(), req.extensions(), trust_forwarded_for)
}

/// The client's address as a handler's argument (none when the server was started without
/// connection info and no trusted header names it).
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(address_of(
            &parts.headers,
            &parts.extensions,
            state.config.trust_forwarded_for,
        )))
    }
}

fn address_of(
    headers: &HeaderMap,
    extensions: &Extensions,
    trust_forwarded_for: bool,
) -> Option<IpAddr> {
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    if trust_forwarded_for {
        let forwarded = proxy_entry(headers, "x-forwarded-for").and_then(|v| v.parse().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    peer.map(|p| p.ip())
}

/// The entry the trusted proxy appended to an `X-Forwarded-*` header: the right-most one of
/// the last header (anything left of it is whatever the client chose to send).
pub fn proxy_entry<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(name)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_forwarded(values: &[&str]) -> (HeaderMap, Extensions) {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 443))));
        (headers, extensions)
    }

    #[test]
    fn behind_a_trusted_proxy_the_address_it_appended_counts_not_the_clients_first_entry() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let (h, e) = with_forwarded(&["6.6.6.6, 203.0.113.50"]);
        assert_eq!(address_of(&h, &e, true), Some(ip("203.0.113.50")));
        // A header the client sent, then the proxy's own.
        let (h, e) = with_forwarded(&["6.6.6.6", "198.51.100.7"]);
        assert_eq!(address_of(&h, &e, true), Some(ip("198.51.100.7")));
        // Not trusted, or nothing usable: the connection's peer.
        let (h, e) = with_forwarded(&["6.6.6.6, 203.0.113.50"]);
        assert_eq!(address_of(&h, &e, false), Some(ip("10.0.0.1")));
        let (h, e) = with_forwarded(&["not an address"]);
        assert_eq!(address_of(&h, &e, true), Some(ip("10.0.0.1")));
    }
}
