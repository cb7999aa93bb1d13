//! The shapes the models routes take and answer.

use super::{find_artifact, ADAPTER_CONFIG, ADAPTER_MODEL, TOKENIZER};
use crate::envelope;
use crate::routes::datasets::DatasetView;
use crate::routes::jobs::MetricPointDto;
use chrono::{DateTime, Utc};
use domain::model::{DeployEnvironment, ModelArtifact, ModelStatus};
use projections::jobs::queries::CheckpointRow;
use projections::models::queries::{self as read, ModelRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

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
    /// The adapter saved at the checkpoint `checkpointId` (the newest without one).
    #[serde(rename = "checkpoint")]
    Checkpoint,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadParams {
    /// `adapter-model` (default) | `adapter-config` | `tokenizer` | `all` (one ZIP archive of
    /// the model's files, built on first request and stored) | `checkpoint` (the adapter
    /// saved at `checkpointId`, one of `artifacts.checkpoints[].id`; the newest without one)
    #[param(inline)]
    pub artifact: Option<ArtifactChoice>,
    /// With `artifact=checkpoint`: which checkpoint (default the newest); other artifacts
    /// ignore it.
    #[serde(rename = "checkpointId")]
    #[param(rename = "checkpointId")]
    pub checkpoint_id: Option<String>,
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
    /// The adapters saved at the training job's checkpoints, in step order; download one
    /// with `download?artifact=checkpoint&checkpointId=<id>`.
    pub checkpoints: Vec<CheckpointArtifact>,
}

/// The LoRA adapter saved at one checkpoint of the training run.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointArtifact {
    /// The checkpoint's id (`checkpointId` of the download).
    pub id: String,
    pub step: u64,
    pub epoch: u32,
    /// The loss at the checkpoint (validation loss where there was a validation split).
    pub loss: f64,
    pub s3_key: String,
    pub file_name: String,
    /// Bytes.
    pub size: u64,
    /// sha256, hex.
    pub checksum: String,
}

impl CheckpointArtifact {
    pub fn of(c: &CheckpointRow) -> Option<Self> {
        let (key, size, sha) = c.stored()?;
        Some(CheckpointArtifact {
            id: c.checkpoint_id.clone(),
            step: u64::try_from(c.step).unwrap_or_default(),
            epoch: u32::try_from(c.epoch).unwrap_or_default(),
            loss: c.loss,
            s3_key: key.to_string(),
            file_name: key.rsplit('/').next().unwrap_or(key).to_string(),
            size,
            checksum: sha.to_string(),
        })
    }
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
    /// The current deployment, if the model was ever deployed.
    #[schema(value_type = Option<domain::model::DeploymentState>)]
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

impl ModelView {
    /// The model of `row`; `checkpoints` are its job's checkpoints (those with a stored
    /// adapter are listed as artifacts, the rest are ignored).
    pub fn new(row: &ModelRow, checkpoints: &[CheckpointRow]) -> Self {
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
                checkpoints: checkpoints
                    .iter()
                    .filter(|c| c.job_id == row.job_id)
                    .filter_map(CheckpointArtifact::of)
                    .collect(),
            },
            parent_model_id: row.parent_model_id,
            child_model_ids: row.child_model_ids.clone(),
            size_bytes: row.size_bytes,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
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

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSingle {
    pub model: ModelView,
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
    /// 1..=16 (default 1): the engines of the fine-tuned model that always serve.
    pub min_replicas: Option<u32>,
    /// minReplicas..=16 (default minReplicas): the most it runs under load (one more per
    /// request waiting; one fewer after `INFERENCE_SCALE_DOWN_SECONDS` of less).
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

/// What an undeploy answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStopped {
    pub deployment_id: String,
    /// `stopped`.
    pub status: String,
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
