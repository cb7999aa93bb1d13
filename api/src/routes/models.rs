//! Models: list, detail with lineage and download URLs,
//! metadata edits, soft delete, deployment, billed downloads (one file or the ZIP of all),
//! and the stored-files overview. Reads come from the `rm_models` projection.

use std::io::Write;
use std::time::Duration;

use application::models::ModelActor;
use application::AppError;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::ids::ModelId;
use domain::model::{DeployEnvironment, DeployRequest, ModelArtifact, ModelError, ModelStatus};
use infrastructure::auth::Principal;
use infrastructure::cluster_sim::artifacts::sha256_hex;
use projections::models::queries::{self as read, ModelOrder, ModelRow};
use projections::Page;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::envelope::{self, pagination, Envelope, PageParams};
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};
use crate::extract::{viewer, ApiJson, ApiQuery, AuthUser};
use crate::routes::datasets::{context, wait_for_projection, DatasetView, Deleted};
use crate::routes::jobs::{downsample, metric_points, MetricPointDto, DETAIL_POINTS};
use crate::state::AppState;

/// Download URLs are valid for one hour.
const DOWNLOAD_URL_VALIDITY: Duration = Duration::from_secs(3600);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_models))
        .routes(routes!(list_artifacts))
        .routes(routes!(get_model, update_model, delete_model))
        .routes(routes!(download_model))
        .routes(routes!(deploy_model))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
pub enum ArtifactChoice {
    #[serde(rename = "all")]
    All,
    #[serde(rename = "adapter-model")]
    AdapterModel,
    #[serde(rename = "adapter-config")]
    AdapterConfig,
    #[serde(rename = "tokenizer")]
    Tokenizer,
}

const ADAPTER_MODEL: &str = "adapter_model.safetensors";
const ADAPTER_CONFIG: &str = "adapter_config.json";
const TOKENIZER: &str = "tokenizer.json";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadParams {
    /// `adapter-model` (default) | `adapter-config` | `tokenizer` | `all` (one ZIP archive of
    /// every file, built on first request and stored)
    #[param(inline)]
    pub artifact: Option<ArtifactChoice>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Download {
    pub model_id: Uuid,
    /// Presigned GET, valid one hour.
    pub download_url: String,
    pub file_name: String,
    pub file_size: u64,
    pub expires_at: DateTime<Utc>,
    /// Check the downloaded file against it.
    pub sha256: String,
    /// The data transfer billed for this download (USD, GB × rate).
    pub transfer_cost: f64,
}

fn model_not_found(id: &str) -> ApiError {
    ApiError::not_found(ErrorCode::ModelNotFound, format!("no model {id}"))
}

fn parse_model_id(id: &str) -> ApiResult<ModelId> {
    Uuid::parse_str(id)
        .map(ModelId)
        .map_err(|_| model_not_found(id))
}

fn model_error(id: &str, err: AppError<ModelError>) -> ApiError {
    match err {
        AppError::Rejected(ModelError::Invalid(field)) => field.into(),
        AppError::Rejected(ModelError::NotFound) => model_not_found(id),
        AppError::Rejected(e @ ModelError::Deployed(..)) => {
            ApiError::conflict(ErrorCode::ModelDeployed, e.to_string())
        }
        AppError::Rejected(e @ ModelError::Archived) => {
            ApiError::conflict(ErrorCode::ModelArchived, e.to_string())
        }
        AppError::Rejected(e @ ModelError::NoArtifacts) => ApiError::internal(e),
        AppError::Conflict => ApiError::conflict(
            ErrorCode::Conflict,
            "the model was changed by another request; retry",
        ),
        AppError::Internal(e) => ApiError::internal(e),
    }
}

fn actor(principal: Principal) -> ModelActor {
    ModelActor {
        user_id: principal.user_id,
        is_admin: principal.role.sees_all_resources(),
    }
}

/// One stored file of a model (`artifacts.*`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactFile {
    pub s3_key: String,
    pub file_name: String,
    /// Bytes.
    pub size: u64,
    /// sha256, hex.
    pub checksum: String,
}

impl From<&ModelArtifact> for ArtifactFile {
    fn from(a: &ModelArtifact) -> Self {
        ArtifactFile {
            s3_key: a.s3_key.clone(),
            file_name: a.name.clone(),
            size: a.size_bytes,
            checksum: a.sha256.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelArtifacts {
    pub adapter_model: Option<ArtifactFile>,
    pub adapter_config: Option<ArtifactFile>,
    pub tokenizer: Option<ArtifactFile>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingSummaryView {
    pub total_epochs: u32,
    pub total_steps: u64,
    /// Seconds from the start of training to completion.
    pub training_duration: f64,
    /// The job's final cost (USD).
    pub total_cost: f64,
    pub gpu_hours: f64,
    pub retry_count: u32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelConfigurationView {
    pub base_model: String,
    pub dataset_name: String,
    pub preset_used: String,
    /// The resolved hyperparameters the model was trained with.
    #[schema(value_type = domain::job::config::Hyperparameters)]
    pub hyperparameters: serde_json::Value,
    #[schema(value_type = domain::job::config::GpuConfig)]
    pub gpu_config: serde_json::Value,
}

/// A trained model as the read model shows it.
#[derive(Debug, Serialize, ToSchema)]
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
    pub deployed_at: Option<DateTime<Utc>>,
    /// The current deployment: deploymentId, status (`deploying` | `deployed`), environment,
    /// endpointName, endpointUrl, instanceType, min/maxReplicas, estimatedReadyAt, deployedAt.
    #[schema(value_type = Option<Object>)]
    pub deployment: Option<serde_json::Value>,
    #[schema(value_type = domain::model::QualityMetrics)]
    pub quality_metrics: serde_json::Value,
    pub training_summary: TrainingSummaryView,
    pub configuration: ModelConfigurationView,
    pub artifacts: ModelArtifacts,
    pub parent_model_id: Option<Uuid>,
    /// Newer versions retrained from this model, oldest first.
    pub child_model_ids: Vec<Uuid>,
    /// All files, bytes.
    pub size_bytes: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn find_artifact<'a>(artifacts: &'a [ModelArtifact], name: &str) -> Option<&'a ModelArtifact> {
    artifacts.iter().find(|a| a.name == name)
}

impl From<&ModelRow> for ModelView {
    fn from(row: &ModelRow) -> Self {
        let configuration = &row.configuration.0;
        let training = &row.training.0;
        let artifacts = &row.artifacts.0;
        ModelView {
            id: row.id,
            user_id: row.user_id,
            job_id: row.job_id,
            dataset_id: row.dataset_id,
            name: row.name.clone(),
            version: row.version.clone(),
            description: row.description.clone(),
            status: row.status.clone(),
            deployed_at: row.deployed_at,
            deployment: row.deployment.clone(),
            quality_metrics: serde_json::to_value(&row.quality.0).unwrap_or_default(),
            training_summary: TrainingSummaryView {
                total_epochs: training.epochs,
                total_steps: training.total_steps,
                training_duration: row.training_seconds.unwrap_or(0.0).max(0.0),
                total_cost: envelope::money(row.final_cost),
                gpu_hours: training.gpu_seconds / 3600.0,
                retry_count: training.retry_count,
            },
            configuration: ModelConfigurationView {
                base_model: configuration.base_model.clone(),
                dataset_name: row.dataset_name.clone().unwrap_or_default(),
                preset_used: serde_json::to_value(configuration.preset_id)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                hyperparameters: serde_json::to_value(&configuration.hyperparameters)
                    .unwrap_or_default(),
                gpu_config: serde_json::to_value(configuration.gpu_config).unwrap_or_default(),
            },
            artifacts: ModelArtifacts {
                adapter_model: find_artifact(artifacts, ADAPTER_MODEL).map(Into::into),
                adapter_config: find_artifact(artifacts, ADAPTER_CONFIG).map(Into::into),
                tokenizer: find_artifact(artifacts, TOKENIZER).map(Into::into),
            },
            parent_model_id: row.parent_model_id,
            child_model_ids: row.child_model_ids.clone(),
            size_bytes: row.size_bytes,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The model if `principal` may see it (owner, or admin); deleted models are gone.
async fn find(state: &AppState, principal: Principal, id: ModelId) -> ApiResult<Option<ModelRow>> {
    read::find(&state.pool, viewer(principal), id.0)
        .await
        .map_err(ApiError::internal)
}

/// The archive of every file of the model: stored once, then reused.
async fn archive(
    state: &AppState,
    principal: Principal,
    row: &ModelRow,
) -> ApiResult<ModelArtifact> {
    if let Some(archive) = &row.archive {
        return Ok(archive.0.clone());
    }
    let id = ModelId(row.id);
    // The read model may lag behind an archive another request just recorded.
    if let Some(model) = state
        .models
        .load(id)
        .await
        .map_err(|e| model_error(&row.id.to_string(), e))?
    {
        if let Some(archive) = model.archive() {
            return Ok(archive.clone());
        }
    }
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    for artifact in &row.artifacts.0 {
        let mut reader = state
            .objects
            .read(&artifact.s3_key)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "the stored artifact {} is missing",
                    artifact.s3_key
                ))
            })?;
        let mut bytes = Vec::with_capacity(artifact.size_bytes as usize);
        reader
            .read_to_end(&mut bytes)
            .await
            .map_err(ApiError::internal)?;
        zip.start_file(artifact.name.as_str(), options)
            .map_err(ApiError::internal)?;
        zip.write_all(&bytes).map_err(ApiError::internal)?;
    }
    let bytes = zip.finish().map_err(ApiError::internal)?.into_inner();
    let archive = ModelArtifact {
        name: format!("model-{}-{}.zip", row.id, row.version),
        s3_key: format!("models/{}/archive.zip", row.id),
        size_bytes: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    };
    state
        .objects
        .put(&archive.s3_key, bytes)
        .await
        .map_err(ApiError::internal)?;
    state
        .models
        .record_archive(&context(principal), id, archive.clone())
        .await
        .map_err(|e| model_error(&row.id.to_string(), e))?;
    Ok(archive)
}

/// A presigned download of one of the model's files, or of the ZIP of all of them.
/// Issuing the URL bills its data transfer (GB × rate) to the owner's ledger.
/// Another user's model answers 404.
#[utoipa::path(get, path = "/api/models/{id}/download", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "Model id (UUID)"), DownloadParams),
    responses(
        (status = 200, description = "Where to download the file", body = Envelope<Download>,
            example = json!({"success": true, "data": {"modelId": "0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a10", "downloadUrl": "http://127.0.0.1:9000/brightrun/models/0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a10/adapter_model.safetensors?X-Amz-Signature=…", "fileName": "adapter_model.safetensors", "fileSize": 13631488, "expiresAt": "2026-11-23T11:00:00Z", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "transferCost": 0.0}})),
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
    let model_id = parse_model_id(&id)?;
    let row = find(&state, principal, model_id)
        .await?
        .ok_or_else(|| model_not_found(&id))?;
    let artifact = match params.artifact.unwrap_or(ArtifactChoice::AdapterModel) {
        ArtifactChoice::All => archive(&state, principal, &row).await?,
        choice => {
            let wanted = match choice {
                ArtifactChoice::AdapterConfig => ADAPTER_CONFIG,
                ArtifactChoice::Tokenizer => TOKENIZER,
                _ => ADAPTER_MODEL,
            };
            find_artifact(&row.artifacts.0, wanted)
                .cloned()
                .ok_or_else(|| {
                    ApiError::not_found(
                        ErrorCode::ArtifactNotFound,
                        format!("model {id} has no {wanted}"),
                    )
                })?
        }
    };
    let presigned = state
        .objects
        .presign_get(&artifact.s3_key, DOWNLOAD_URL_VALIDITY, state.clock.now())
        .await
        .map_err(ApiError::internal)?;
    let rate = state.jobs.rates().data_transfer_per_gb;
    state
        .models
        .bill_download(
            &context(principal),
            model_id,
            actor(principal),
            &artifact.name,
            artifact.size_bytes,
            rate,
        )
        .await
        .map_err(|e| model_error(&id, e))?;
    let (_, transfer_cost) = domain::job::estimate::transfer_charge(artifact.size_bytes, rate);
    Ok(envelope::ok(Download {
        model_id: model_id.0,
        download_url: presigned.url,
        file_name: artifact.name,
        file_size: artifact.size_bytes,
        expires_at: presigned.expires_at,
        sha256: artifact.sha256,
        transfer_cost: envelope::money(transfer_cost),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetLineage {
    /// The dataset as it is now (also when it was deleted since).
    pub original_dataset: Option<DatasetView>,
    /// What the service did to the file before training.
    pub preprocessing_steps: Vec<String>,
    pub splits: Splits,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Splits {
    /// Training pairs.
    pub train: i64,
    /// Validation pairs.
    pub validation: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadUrls {
    pub adapter_model: Option<String>,
    pub adapter_config: Option<String>,
    pub tokenizer: Option<String>,
    /// The ZIP of all files, once the first `download?artifact=all` has built it (`null`
    /// before: reading a model never writes).
    pub all_artifacts: Option<String>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelDetail {
    #[serde(flatten)]
    pub model: ModelView,
    /// Every recorded metric point of the training run (thinned evenly past 1000).
    pub metrics_history: Vec<MetricPointDto>,
    pub dataset_lineage: DatasetLineage,
    /// Presigned, valid one hour. Not billed: `GET /api/models/{id}/download` bills transfer.
    pub download_urls: DownloadUrls,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelOne {
    pub model: ModelDetail,
}

/// One model with its training history, dataset lineage and download URLs.
#[utoipa::path(get, path = "/api/models/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "Model id (UUID)")),
    responses(
        (status = 200, description = "The model", body = Envelope<ModelOne>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`MODEL_NOT_FOUND` (also for another user's or a deleted model)", body = ErrorEnvelope),
    ))]
async fn get_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let model_id = parse_model_id(&id)?;
    let row = find(&state, principal, model_id)
        .await?
        .ok_or_else(|| model_not_found(&id))?;
    Ok(envelope::ok(ModelOne {
        model: detail(&state, &row).await?,
    }))
}

async fn detail(state: &AppState, row: &ModelRow) -> ApiResult<ModelDetail> {
    let points = metric_points(state, row.job_id, None, None).await?;
    let dataset = projections::datasets::queries::find_any(&state.pool, row.dataset_id)
        .await
        .map_err(ApiError::internal)?
        .map(DatasetView::from);
    let options = &row.configuration.0.options;
    let splits = Splits {
        train: dataset.as_ref().map_or(0, |d| d.total_training_pairs),
        validation: dataset.as_ref().map_or(0, |d| d.total_validation_pairs),
    };
    let preprocessing_steps = vec![
        format!(
            "parsed {} JSONL, one conversation per line",
            dataset.as_ref().map_or("brightrun-lora-v4", |d| d.format.as_str())
        ),
        "validated roles, turns and content; lines with errors excluded".to_string(),
        format!(
            "tokenized with {}",
            dataset
                .as_ref()
                .and_then(|d| d.tokenizer.clone())
                .unwrap_or_else(|| "o200k_base".to_string())
        ),
        "paired each user turn with the assistant turn that follows".to_string(),
        format!(
            "split by each conversation's `split` field, otherwise by a stable hash of its id at validationSplitRatio {}",
            options.validation_split_ratio
        ),
    ];
    let now = state.clock.now();
    let mut urls = std::collections::BTreeMap::new();
    for name in [ADAPTER_MODEL, ADAPTER_CONFIG, TOKENIZER] {
        if let Some(a) = find_artifact(&row.artifacts.0, name) {
            let presigned = state
                .objects
                .presign_get(&a.s3_key, DOWNLOAD_URL_VALIDITY, now)
                .await
                .map_err(ApiError::internal)?;
            urls.insert(name, presigned.url);
        }
    }
    let all = match &row.archive {
        Some(archive) => Some(
            state
                .objects
                .presign_get(&archive.0.s3_key, DOWNLOAD_URL_VALIDITY, now)
                .await
                .map_err(ApiError::internal)?
                .url,
        ),
        None => None,
    };
    Ok(ModelDetail {
        model: row.into(),
        metrics_history: downsample(points, DETAIL_POINTS),
        dataset_lineage: DatasetLineage {
            original_dataset: dataset,
            preprocessing_steps,
            splits,
        },
        download_urls: DownloadUrls {
            adapter_model: urls.remove(ADAPTER_MODEL),
            adapter_config: urls.remove(ADAPTER_CONFIG),
            tokenizer: urls.remove(TOKENIZER),
            all_artifacts: all,
            expires_at: now + DOWNLOAD_URL_VALIDITY,
        },
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateModelRequest {
    /// 1 to 100 characters.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    pub name: Option<String>,
    /// At most 2000 characters.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    pub description: Option<String>,
    /// `stored` | `archived`
    #[schema(value_type = Option<String>)]
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    pub status: Option<ModelStatus>,
}

/// Change a model's name, description or status (`stored` | `archived`). A
/// deployed model keeps its status.
#[utoipa::path(patch, path = "/api/models/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "Model id (UUID)")),
    request_body(content = UpdateModelRequest, example = json!({"name": "Support bot v1", "description": "Trained on October tickets", "status": "archived"})),
    responses(
        (status = 200, description = "The updated model", body = Envelope<ModelSingle>),
        (status = 400, description = "`VALIDATION_ERROR` naming the field (name, description, status)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`MODEL_NOT_FOUND`", body = ErrorEnvelope),
        (status = 409, description = "`MODEL_DEPLOYED`: a deployed model's status cannot change", body = ErrorEnvelope),
    ))]
async fn update_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateModelRequest>,
) -> ApiResult<Response> {
    let model_id = parse_model_id(&id)?;
    let receipt = state
        .models
        .update_metadata(
            &context(principal),
            model_id,
            actor(principal),
            req.name,
            req.description,
            req.status,
        )
        .await
        .map_err(|e| model_error(&id, e))?;
    wait_for_projection(&state, "models", receipt).await;
    let row = find(&state, principal, model_id)
        .await?
        .ok_or_else(|| model_not_found(&id))?;
    Ok(envelope::ok(ModelSingle {
        model: (&row).into(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSingle {
    pub model: ModelView,
}

/// Delete a model (soft): it leaves every list and read at once. Its files stay in
/// storage.
#[utoipa::path(delete, path = "/api/models/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "Model id (UUID)")),
    responses(
        (status = 200, description = "`Model deleted`", body = Envelope<Deleted>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`MODEL_NOT_FOUND` (also when already deleted)", body = ErrorEnvelope),
        (status = 409, description = "`MODEL_DEPLOYED`: undeploy first", body = ErrorEnvelope),
    ))]
async fn delete_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let model_id = parse_model_id(&id)?;
    let receipt = state
        .models
        .delete(&context(principal), model_id, actor(principal))
        .await
        .map_err(|e| model_error(&id, e))?;
    wait_for_projection(&state, "models", receipt).await;
    Ok(envelope::ok(Deleted {
        message: "Model deleted".to_string(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeployModelRequest {
    /// `staging` | `production`
    #[schema(value_type = String)]
    pub environment: DeployEnvironment,
    /// 1-63 lowercase letters, digits or '-' (default `model-<first 8 of the id>`).
    pub endpoint_name: Option<String>,
    /// Default `gpu-a10g`.
    pub instance_type: Option<String>,
    /// 1..=16 (default 1).
    pub min_replicas: Option<u32>,
    /// minReplicas..=16 (default minReplicas).
    pub max_replicas: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStarted {
    pub deployment_id: String,
    pub endpoint_url: String,
    /// `deploying`; the model's `deployment.status` turns `deployed` when it serves.
    pub status: String,
    pub estimated_ready_at: DateTime<Utc>,
}

/// Deploy a model to the inference service, through the deployment port (a
/// simulated target for now): `deploying` at once, `deployed` when ready.
#[utoipa::path(post, path = "/api/models/{id}/deploy", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "Model id (UUID)")),
    request_body(content = DeployModelRequest, example = json!({"environment": "staging", "endpointName": "support-bot", "minReplicas": 1, "maxReplicas": 2})),
    responses(
        (status = 202, description = "The deployment started", body = Envelope<DeploymentStarted>),
        (status = 400, description = "`VALIDATION_ERROR` naming the field (environment, endpointName, instanceType, minReplicas, maxReplicas)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`MODEL_NOT_FOUND`", body = ErrorEnvelope),
        (status = 409, description = "`MODEL_DEPLOYED` (one deployment at a time) or `MODEL_ARCHIVED`", body = ErrorEnvelope),
    ))]
async fn deploy_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<DeployModelRequest>,
) -> ApiResult<Response> {
    let model_id = parse_model_id(&id)?;
    let request = DeployRequest {
        environment: req.environment,
        endpoint_name: req.endpoint_name,
        instance_type: req.instance_type,
        min_replicas: req.min_replicas,
        max_replicas: req.max_replicas,
    };
    let (receipt, ticket) = state
        .models
        .deploy(&context(principal), model_id, actor(principal), request)
        .await
        .map_err(|e| model_error(&id, e))?;
    wait_for_projection(&state, "models", receipt).await;
    Ok(envelope::with_status(
        axum::http::StatusCode::ACCEPTED,
        DeploymentStarted {
            deployment_id: ticket.deployment_id,
            endpoint_url: ticket.endpoint_url,
            status: "deploying".to_string(),
            estimated_ready_at: ticket.estimated_ready_at,
        },
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ArtifactListParams {
    /// Only this model's files.
    pub model_id: Option<Uuid>,
    pub page: Option<u32>,
    pub page_size: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoredArtifact {
    pub model_id: Uuid,
    pub model_name: String,
    pub version: String,
    pub file_name: String,
    /// `adapter` (the model's files) | `archive` (the ZIP built for `artifact=all`)
    pub kind: String,
    pub s3_key: String,
    /// Bytes.
    pub size: i64,
    /// sha256, hex.
    pub checksum: String,
    pub created_at: DateTime<Utc>,
}

impl From<read::StoredFileRow> for StoredArtifact {
    fn from(f: read::StoredFileRow) -> Self {
        StoredArtifact {
            model_id: f.model_id,
            model_name: f.model_name,
            version: f.version,
            file_name: f.file_name,
            kind: f.kind,
            s3_key: f.s3_key,
            size: f.size,
            checksum: f.checksum,
            created_at: f.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactList {
    pub artifacts: Vec<StoredArtifact>,
    /// Bytes of every file that matched (all pages).
    #[serde(rename = "totalSize")]
    pub total_size: i64,
}

/// Every stored file of the caller's models, newest model first, for
/// storage overviews.
#[utoipa::path(get, path = "/api/models/artifacts", tag = "models", security(("bearer" = [])),
    params(ArtifactListParams),
    responses(
        (status = 200, description = "A page of files; `meta.pagination`", body = Envelope<ArtifactList>),
        (status = 400, description = "`VALIDATION_ERROR` (modelId, page, pageSize)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn list_artifacts(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiQuery(params): ApiQuery<ArtifactListParams>,
) -> ApiResult<Response> {
    let (page, page_size, offset) = PageParams {
        page: params.page,
        page_size: params.page_size,
    }
    .resolve()?;
    let (total, total_size, files) = read::stored_files(
        &state.pool,
        viewer(principal),
        params.model_id,
        Page {
            limit: i64::from(page_size),
            offset,
        },
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(envelope::page(
        ArtifactList {
            artifacts: files.into_iter().map(StoredArtifact::from).collect(),
            total_size,
        },
        pagination(page, page_size, total),
    ))
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
    #[param(inline)]
    pub status: Option<ModelStatusFilter>,
    /// `created-desc` (default) | `quality-desc` (best convergence score first) | `size-desc`
    #[param(inline)]
    pub sort_by: Option<ModelSort>,
    pub page: Option<u32>,
    pub page_size: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub models: Vec<ModelView>,
}

/// The caller's models, filtered by status, sorted, paginated.
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
        Some(ModelStatusFilter::Stored) => Some(ModelStatus::Stored),
        Some(ModelStatusFilter::Deployed) => Some(ModelStatus::Deployed),
        Some(ModelStatusFilter::Archived) => Some(ModelStatus::Archived),
    };
    let order = match params.sort_by.unwrap_or_default() {
        ModelSort::CreatedDesc => ModelOrder::NewestFirst,
        ModelSort::QualityDesc => ModelOrder::BestConvergenceFirst,
        ModelSort::SizeDesc => ModelOrder::LargestFirst,
    };
    let (total, rows) = read::list(
        &state.pool,
        viewer(principal),
        status.map(ModelStatus::as_str),
        order,
        Page {
            limit: i64::from(page_size),
            offset,
        },
    )
    .await
    .map_err(ApiError::internal)?;
    let models = rows.iter().map(ModelView::from).collect();
    Ok(envelope::page(
        ModelList { models },
        pagination(page, page_size, total),
    ))
}
