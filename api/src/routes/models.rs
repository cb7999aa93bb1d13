//! Models (the first slice of seed 001 "Models (Artifacts) API"): presigned downloads of a
//! model's artifacts. Reads come from the `rm_models` projection.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::model::ModelArtifact;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::envelope::{self, Envelope};
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiQuery, AuthUser};
use crate::state::AppState;

/// Seed 001: download URLs are valid for one hour.
const DOWNLOAD_URL_VALIDITY: Duration = Duration::from_secs(3600);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(download_model))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
pub enum ArtifactChoice {
    #[serde(rename = "adapter-model")]
    AdapterModel,
    #[serde(rename = "adapter-config")]
    AdapterConfig,
    #[serde(rename = "tokenizer")]
    Tokenizer,
}

impl ArtifactChoice {
    fn file_name(self) -> &'static str {
        match self {
            ArtifactChoice::AdapterModel => "adapter_model.safetensors",
            ArtifactChoice::AdapterConfig => "adapter_config.json",
            ArtifactChoice::Tokenizer => "tokenizer.json",
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadParams {
    /// `adapter-model` (default) | `adapter-config` | `tokenizer`
    #[param(value_type = Option<String>)]
    pub artifact: Option<ArtifactChoice>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Download {
    pub model_id: Uuid,
    pub file_name: String,
    /// Presigned GET, valid one hour.
    pub url: String,
    pub expires_at: DateTime<Utc>,
    pub size_bytes: u64,
    /// Check the downloaded file against it.
    pub sha256: String,
}

fn model_not_found(id: &str) -> ApiError {
    ApiError::not_found("MODEL_NOT_FOUND", format!("no model {id}"))
}

/// A presigned download of one of the model's artifacts (seed 001). Another user's model
/// answers 404.
#[utoipa::path(get, path = "/api/models/{id}/download", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "Model id (UUID)"), DownloadParams),
    responses(
        (status = 200, description = "Where to download the file", body = Envelope<Download>),
        (status = 400, description = "`VALIDATION_ERROR` (artifact)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`MODEL_NOT_FOUND`, or `ARTIFACT_NOT_FOUND` when the model has no such file", body = ErrorEnvelope),
    ))]
async fn download_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<DownloadParams>,
) -> ApiResult<Response> {
    let model_id = Uuid::parse_str(&id).map_err(|_| model_not_found(&id))?;
    let artifacts: Option<sqlx::types::Json<Vec<ModelArtifact>>> = sqlx::query_scalar(
        "SELECT artifacts FROM rm_models WHERE id = $1 AND deleted_at IS NULL AND ($2::bool OR user_id = $3)",
    )
    .bind(model_id)
    .bind(principal.role.sees_all_resources())
    .bind(principal.user_id.0)
    .fetch_optional(&state.pool)
    .await
    .map_err(ApiError::internal)?;
    let artifacts = artifacts.ok_or_else(|| model_not_found(&id))?.0;
    let wanted = params
        .artifact
        .unwrap_or(ArtifactChoice::AdapterModel)
        .file_name();
    let artifact = artifacts
        .into_iter()
        .find(|a| a.name == wanted)
        .ok_or_else(|| {
            ApiError::not_found("ARTIFACT_NOT_FOUND", format!("model {id} has no {wanted}"))
        })?;
    let presigned = state
        .objects
        .presign_get(&artifact.s3_key, DOWNLOAD_URL_VALIDITY, state.clock.now())
        .await
        .map_err(ApiError::internal)?;
    Ok(envelope::ok(Download {
        model_id,
        file_name: artifact.name,
        url: presigned.url,
        expires_at: presigned.expires_at,
        size_bytes: artifact.size_bytes,
        sha256: artifact.sha256,
    }))
}
