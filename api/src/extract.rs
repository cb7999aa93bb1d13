//! Extractors that answer the seed envelope on bad input: JSON bodies and query strings name
//! the offending field; a missing or bad token is 401 `UNAUTHORIZED`.

use crate::error::ErrorCode;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, StatusCode};
use infrastructure::auth::Principal;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body; its errors name the field (`fileSize`, `turns[0].role`) when there is one.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with 'Content-Type: application/json'",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
            } else {
                ApiError::validation("body", format!("cannot read the request body: {rejection}"))
            }
        })?;
        let mut body: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::validation("body", format!("malformed JSON: {e}")))?;
        integral_numbers(&mut body);
        let value: T = serde_path_to_error::deserialize(body).map_err(json_error)?;
        Ok(ApiJson(value))
    }
}

/// `3.0` is the integer 3 in JSON Schema (and to most JSON encoders); serde's integer types
/// would refuse it, so whole numbers become integers before the body is read.
fn integral_numbers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                let whole = f.fract() == 0.0 && f.abs() < 9.0e15;
                if whole {
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// For `#[serde(default, deserialize_with = "not_null")]`: the field may be left out, but
/// when sent it must be a value (`null` is refused, naming the field).
pub fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::validation("body", format!("malformed JSON: {inner}"));
    }
    let message = inner.to_string();
    // serde reports a missing field at its parent's path; name the field itself.
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let field = if path == "." {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        return ApiError::validation(field.clone(), format!("{field} is required"));
    }
    let field = if path == "." {
        "body".to_string()
    } else {
        path
    };
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_string();
    ApiError::validation(field.clone(), format!("{field}: {message}"))
}

/// Query parameters, with the same field-naming errors as `ApiJson`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|err| {
                let field = err.path().to_string();
                let message = err.into_inner().to_string();
                if let Some(rest) = message.strip_prefix("missing field `") {
                    let name = rest.split('`').next().unwrap_or_default().to_string();
                    return ApiError::validation(name.clone(), format!("{name} is required"));
                }
                let field = if field == "." {
                    "query".to_string()
                } else {
                    field
                };
                ApiError::validation(field.clone(), format!("{field}: {message}"))
            })
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// The authenticated caller, from `Authorization: Bearer <jwt>`.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub Principal);

/// Who reads, as the read models take it: the caller, or everyone for an admin.
pub fn viewer(principal: Principal) -> projections::Viewer {
    projections::Viewer {
        user_id: principal.user_id.0,
        sees_all: principal.role.sees_all_resources(),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        authenticate(state, token).await.map(AuthUser)
    }
}

/// Who `token` (a JWT or an API key) acts for now: 401 once the token expired, its account
/// was deleted or its key revoked. A long-lived answer (an event stream) asks again while it
/// lasts.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    if token.starts_with(domain::api_key::KEY_PREFIX) {
        return api_key(state, token).await;
    }
    let claimed = state
        .tokens
        .verify(token)
        .map_err(|_| ApiError::unauthorized())?;
    // The account must still exist, and acts with the role it has now (a token outlives
    // neither a deleted account nor a withdrawn role).
    let user = state
        .users
        .by_id(claimed.user_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(Principal {
        user_id: claimed.user_id,
        role: user.role,
    })
}

/// An API key, checked against its events (a revocation holds at once on every instance),
/// acting with its user's current role; its last use is recorded (at most once a minute).
async fn api_key(state: &AppState, presented: &str) -> Result<Principal, ApiError> {
    let (key_id, user_id) = state
        .api_keys
        .authenticate(presented)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::unauthorized)?;
    let user = state
        .users
        .by_id(user_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::unauthorized)?;
    if let Err(err) =
        projections::api_keys::queries::touch(&state.pool, key_id, state.clock.now()).await
    {
        tracing::warn!(%key_id, error = %err, "cannot record an API key's last use");
    }
    Ok(Principal {
        user_id,
        role: user.role,
    })
}
