//! API keys: made (the secret answered once), listed, revoked. A key works wherever a login
//! token does (`Authorization: Bearer brk_...`), as its user.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::api_key::ApiKeyError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::envelope::{self, Envelope};
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};
use crate::extract::{not_null, ApiJson, AuthUser};
use crate::routes::datasets::{context, wait_for_projection};
use crate::state::AppState;
use application::AppError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// What the key is for (1 to 100 characters).
    pub name: String,
    /// When the key stops working (in the future, at most 10 years away); never when left out.
    #[serde(default, deserialize_with = "not_null")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key as its owner sees it: never its secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    /// `brk_` and the key id's first 8 hex digits: enough to recognise the key.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The last request the key authenticated (to the minute); `null` if never used.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<projections::api_keys::queries::ApiKeyRow> for ApiKeyView {
    fn from(row: projections::api_keys::queries::ApiKeyRow) -> Self {
        ApiKeyView {
            id: row.id,
            name: row.name,
            prefix: row.prefix,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    pub api_key: ApiKeyView,
    /// The key itself: shown this once, only its hash is kept. Send it as
    /// `Authorization: Bearer <key>`.
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyList {
    /// The caller's keys that are not revoked, newest first.
    pub api_keys: Vec<ApiKeyView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    pub message: String,
}

fn key_error(err: AppError<ApiKeyError>) -> ApiError {
    match err {
        AppError::Rejected(ApiKeyError::Invalid(field)) => field.into(),
        AppError::Rejected(ApiKeyError::NotFound) => not_found(),
        AppError::Conflict => ApiError::new(
            ErrorCode::Conflict,
            "the key was changed by another request; retry",
        ),
        AppError::Unavailable(e) => ApiError::unavailable(e),
        AppError::Internal(e) => ApiError::internal(e),
    }
}

/// Unknown keys and another user's keys answer this alike.
fn not_found() -> ApiError {
    ApiError::not_found(ErrorCode::ApiKeyNotFound, "no such API key")
}

/// Make an API key. The answer carries the key once; store it like a password.
#[utoipa::path(post, path = "/api/auth/api-keys", tag = "auth", security(("bearer" = [])),
    request_body(content = CreateApiKeyRequest, example = json!({"name": "training notebook", "expiresAt": "2027-06-30T00:00:00Z"})),
    responses(
        (status = 201, description = "The key, shown once", body = Envelope<CreatedApiKey>),
        (status = 400, description = "`VALIDATION_ERROR` (name, expiresAt)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`: the body is not JSON", body = ErrorEnvelope),
    ))]
async fn create_key(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiJson(req): ApiJson<CreateApiKeyRequest>,
) -> ApiResult<Response> {
    let created = state
        .api_keys
        .create(&context(principal), req.name, req.expires_at)
        .await
        .map_err(key_error)?;
    wait_for_projection(&state, "api_keys", created.receipt).await;
    let row = projections::api_keys::queries::list(&state.pool, principal.user_id.0)
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .find(|k| k.id == created.key_id)
        .ok_or_else(|| ApiError::internal("the new key is not in the read model"))?;
    tracing::info!(key_id = %created.key_id, user_id = %principal.user_id, "API key created");
    let body = envelope::ok(CreatedApiKey {
        api_key: row.into(),
        key: created.key,
    });
    Ok((StatusCode::CREATED, body).into_response())
}

/// The caller's API keys (never their secrets).
#[utoipa::path(get, path = "/api/auth/api-keys", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The keys", body = Envelope<ApiKeyList>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn list_keys(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
) -> ApiResult<Response> {
    let keys = projections::api_keys::queries::list(&state.pool, principal.user_id.0)
        .await
        .map_err(ApiError::internal)?;
    Ok(envelope::ok(ApiKeyList {
        api_keys: keys.into_iter().map(Into::into).collect(),
    }))
}

/// Revoke an API key: from this answer on, it authenticates nothing, on every instance.
#[utoipa::path(delete, path = "/api/auth/api-keys/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = String, Path, description = "API key id (UUID)")),
    responses(
        (status = 200, description = "Revoked", body = Envelope<Revoked>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`API_KEY_NOT_FOUND` (also another user's)", body = ErrorEnvelope),
    ))]
async fn revoke_key(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let key_id = Uuid::try_parse(&id).map_err(|_| not_found())?;
    let receipt = state
        .api_keys
        .revoke(&context(principal), key_id)
        .await
        .map_err(key_error)?;
    wait_for_projection(&state, "api_keys", receipt).await;
    tracing::info!(%key_id, user_id = %principal.user_id, "API key revoked");
    Ok(envelope::ok(Revoked {
        message: "API key revoked".to_string(),
    }))
}
