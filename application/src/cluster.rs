//! The GPU cluster port and its contract types (`openapi/cluster.yaml` describes the same
//! shapes over HTTP). The cluster is external: the HTTP client and the simulator implement it.

use async_trait::async_trait;
use domain::job::config::{GpuConfig, Hyperparameters};
use serde::{Deserialize, Serialize};

/// `POST /v1/jobs`. The same `idempotencyKey` submitted twice answers the same cluster job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitRequest {
    pub idempotency_key: String,
    /// Presigned GET of the dataset (never bucket credentials).
    pub dataset_url: String,
    pub base_model: String,
    pub hyperparameters: Hyperparameters,
    pub gpu_config: GpuConfig,
    /// The training plan: steps in all, and a checkpoint every `checkpointInterval` steps.
    pub total_steps: u64,
    pub checkpoint_interval: u64,
    pub validation_split_ratio: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping_patience: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl ClusterStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ClusterStatus::Completed | ClusterStatus::Failed | ClusterStatus::Cancelled
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterStage {
    Initializing,
    Training,
    Validating,
    Saving,
    Completed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitResponse {
    pub cluster_job_id: String,
    pub status: ClusterStatus,
    /// False when the key had been submitted before (the existing job is answered).
    pub created: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMetricPoint {
    pub step: u64,
    pub epoch: u32,
    pub training_loss: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_loss: Option<f64>,
    pub learning_rate: f64,
    pub gradient_norm: f64,
    /// Tokens per second.
    pub throughput: f64,
    /// Percent.
    pub gpu_utilization: f64,
    /// Seconds since the job started running (cluster time).
    pub at_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCheckpoint {
    pub id: String,
    pub step: u64,
    pub epoch: u32,
    pub loss: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterLogLine {
    pub index: u64,
    /// `info` | `warning` | `error`
    pub level: String,
    pub message: String,
    pub at_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterError {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterArtifact {
    pub name: String,
    /// Where to download it (valid while the cluster keeps the job).
    pub url: String,
    pub size_bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// The first validation loss of the run (the baseline of its convergence).
    pub initial_validation_loss: f64,
    pub final_training_loss: f64,
    pub final_validation_loss: f64,
    pub best_validation_loss: f64,
    /// exp(finalValidationLoss)
    pub perplexity: f64,
    /// Scores on the validation split, each in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_scores: Option<domain::model::ValidationScores>,
}

/// `GET /v1/jobs/{id}?cursor=`: the job now, and what is new since `cursor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub cluster_job_id: String,
    pub status: ClusterStatus,
    pub stage: ClusterStage,
    pub epoch: u32,
    pub total_epochs: u32,
    pub step: u64,
    pub total_steps: u64,
    /// 0 to 100.
    pub progress: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    /// Since the cursor, in step order.
    pub metrics: Vec<ClusterMetricPoint>,
    pub checkpoints: Vec<ClusterCheckpoint>,
    pub logs: Vec<ClusterLogLine>,
    /// Pass it back to get only what is newer.
    pub cursor: String,
    /// GPU time used so far (all GPUs), seconds, and the cluster's own bill for it (USD).
    pub gpu_seconds: f64,
    pub billed_cost: String,
    /// Bytes of the dataset the cluster downloaded (0 until it has).
    pub dataset_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ClusterError>,
    #[serde(default)]
    pub artifacts: Vec<ClusterArtifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
}

/// What a call to the cluster can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClusterCallError {
    /// The cluster refused the request (4xx): retrying the same request will not help.
    #[error("the cluster refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// The cluster does not know the job (404).
    #[error("the cluster has no job {0}")]
    UnknownJob(String),
    /// 5xx, timeouts, connection errors after the client's own retries.
    #[error("the cluster is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait GpuCluster: Send + Sync {
    async fn submit(&self, request: &SubmitRequest) -> Result<SubmitResponse, ClusterCallError>;
    async fn status(
        &self,
        cluster_job_id: &str,
        cursor: Option<&str>,
    ) -> Result<StatusReport, ClusterCallError>;
    async fn cancel(&self, cluster_job_id: &str) -> Result<(), ClusterCallError>;
    /// Downloads an artifact from the `url` a status report gave.
    async fn download(&self, url: &str) -> Result<Vec<u8>, ClusterCallError>;
}
