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

use crate::envelope::{self, pagination, Envelope, PageParams};
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiQuery, AuthUser};
use crate::state::AppState;

/// Seed 001: download URLs are valid for one hour.
const DOWNLOAD_URL_VALIDITY: Duration = Duration::from_secs(3600);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_models))
        .routes(routes!(download_model))
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

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelStatusFilter {
    All,
    Stored,
    Deployed,
    Archived,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default)]
pub enum ModelSort {
    #[serde(rename = "created-desc")]
    #[default]
    CreatedDesc,
    #[serde(rename = "quality-desc")]
    QualityDesc,
    #[serde(rename = "size-desc")]
    SizeDesc,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ModelListParams {
    /// `all` (default) | `stored` | `deployed` | `archived`
    #[param(value_type = Option<String>)]
    pub status: Option<ModelStatusFilter>,
    /// `created-desc` (default) | `quality-desc` (best convergence score first) | `size-desc`
    #[param(value_type = Option<String>)]
    pub sort_by: Option<ModelSort>,
    pub page: Option<u32>,
    pub page_size: Option<u32>,
}

/// Seed 001 `ModelArtifact` (the fields this service records so far).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ModelView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub job_id: Uuid,
    pub dataset_id: Uuid,
    pub name: String,
    pub version: String,
    pub description: String,
    /// `stored` | `deployed` | `archived`
    pub status: String,
    pub parent_model_id: Option<Uuid>,
    pub base_model: String,
    /// finalTrainingLoss, finalValidationLoss, bestValidationLoss, perplexity,
    /// convergenceScore, convergenceQuality (excellent | good | acceptable | poor)
    #[schema(value_type = Object)]
    #[sqlx(json)]
    pub quality_metrics: serde_json::Value,
    /// totalSteps, epochs, gpuSeconds, retryCount
    #[schema(value_type = Object)]
    #[sqlx(json)]
    pub training_summary: serde_json::Value,
    /// [{name, s3Key, sizeBytes, sha256}]
    #[schema(value_type = Object)]
    #[sqlx(json)]
    pub artifacts: serde_json::Value,
    pub size_bytes: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub models: Vec<ModelView>,
}

/// The caller's models (seed 001), filtered by status, sorted, paginated.
#[utoipa::path(get, path = "/api/models", tag = "models", security(("bearer" = [])),
    params(ModelListParams),
    responses(
        (status = 200, description = "A page of models; `meta.pagination`", body = Envelope<ModelList>),
        (status = 400, description = "`VALIDATION_ERROR` (status, sortBy, page, pageSize)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn list_models(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiQuery(params): ApiQuery<ModelListParams>,
) -> ApiResult<Response> {
    let (page, page_size, offset) = PageParams {
        page: params.page,
        page_size: params.page_size,
    }
    .resolve()?;
    let status = match params.status {
        None | Some(ModelStatusFilter::All) => None,
        Some(ModelStatusFilter::Stored) => Some("stored"),
        Some(ModelStatusFilter::Deployed) => Some("deployed"),
        Some(ModelStatusFilter::Archived) => Some("archived"),
    };
    let order = match params.sort_by.unwrap_or_default() {
        ModelSort::CreatedDesc => "created_at DESC, id DESC",
        ModelSort::QualityDesc => {
            "(quality->>'convergenceScore')::float8 DESC, created_at DESC, id DESC"
        }
        ModelSort::SizeDesc => "size_bytes DESC, created_at DESC, id DESC",
    };
    let filter =
        "deleted_at IS NULL AND ($1::bool OR user_id = $2) AND ($3::text IS NULL OR status = $3)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM rm_models WHERE {filter}"))
        .bind(principal.role.sees_all_resources())
        .bind(principal.user_id.0)
        .bind(status)
        .fetch_one(&state.pool)
        .await
        .map_err(ApiError::internal)?;
    let models = sqlx::query_as::<_, ModelView>(&format!(
        "SELECT id, user_id, job_id, dataset_id, name, version, description, status, parent_model_id, \
           base_model, quality AS quality_metrics, training AS training_summary, artifacts, size_bytes, \
           created_at, updated_at FROM rm_models WHERE {filter} ORDER BY {order} LIMIT $4 OFFSET $5"
    ))
    .bind(principal.role.sees_all_resources())
    .bind(principal.user_id.0)
    .bind(status)
    .bind(page_size as i64)
    .bind(offset)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::internal)?;
    Ok(envelope::page(
        ModelList { models },
        pagination(page, page_size, total),
    ))
}
