//! The GPU cluster port and its contract types (`openapi/cluster.yaml` describes the same
//! shapes over HTTP). The cluster is external: the HTTP client and the simulator implement it.

use async_trait::async_trait;
use domain::dataset::DatasetFormat;
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
    /// How to read the dataset's lines (absent: recognise each line's format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_format: Option<DatasetFormat>,
    pub hyperparameters: Hyperparameters,
    pub gpu_config: GpuConfig,
    /// The training plan: steps in all, and a checkpoint every `checkpointInterval` steps.
    pub total_steps: u64,
    pub checkpoint_interval: u64,
    pub validation_split_ratio: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping_patience: Option<u32>,
    /// How much lower a validation loss must be to count as an improvement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping_min_delta: Option<f64>,
    /// The trainer's random seed (absent: the trainer's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The run's wall-clock limit (from the estimate): a cluster stops the job past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_seconds: Option<u64>,
    /// Where the cluster may POST signed status changes (optional: polling stays the truth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// A retried attempt: the failed attempt's cluster job, whose newest checkpoint
    /// (weights, optimizer, scheduler, RNG) the run starts from; a cluster that kept none
    /// starts from step 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<String>,
    /// A job that continues a model: a presigned GET of that model's
    /// `adapter_model.safetensors`, whose weights the new adapter starts from (same rank
    /// and modules) instead of PEFT's initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_adapter_url: Option<String>,
}

/// The body the cluster POSTs to `webhookUrl` when a job's status changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEvent {
    pub cluster_job_id: String,
    pub idempotency_key: String,
    pub status: ClusterStatus,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The webhook signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "x-cluster-signature";
/// How old a signed webhook may be when it arrives (replays are refused).
pub const WEBHOOK_TOLERANCE_SECONDS: i64 = 300;

fn webhook_mac(secret: &str, timestamp: i64, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header for `body` sent at `timestamp`.
pub fn sign_webhook(secret: &str, timestamp: i64, body: &[u8]) -> String {
    use hmac::Mac;
    let tag = webhook_mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRejected {
    #[error("the signature header is missing or malformed")]
    Malformed,
    #[error("the signature does not match the body")]
    BadSignature,
    #[error("the webhook is older than {WEBHOOK_TOLERANCE_SECONDS} s (or from the future)")]
    Stale,
}

/// Checks a webhook's signature header against its raw body (constant-time comparison).
pub fn verify_webhook(
    secret: &str,
    header: &str,
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), WebhookRejected> {
    use hmac::Mac;
    let mut timestamp = None;
    let mut tag = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => tag = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(timestamp), Some(tag)) = (timestamp, tag) else {
        return Err(WebhookRejected::Malformed);
    };
    if (now.timestamp() - timestamp).abs() > WEBHOOK_TOLERANCE_SECONDS {
        return Err(WebhookRejected::Stale);
    }
    webhook_mac(secret, timestamp, body)
        .verify_slice(&tag)
        .map_err(|_| WebhookRejected::BadSignature)
}

#[cfg(test)]
mod webhook_tests {
    use super::*;

    #[test]
    fn a_signed_webhook_verifies_and_any_change_is_refused() {
        let now = chrono::DateTime::<chrono::Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let body = br#"{"clusterJobId":"cj-1","status":"completed"}"#;
        let header = sign_webhook("s3cret", now.timestamp(), body);
        assert_eq!(verify_webhook("s3cret", &header, body, now), Ok(()));
        assert_eq!(
            verify_webhook("other", &header, body, now),
            Err(WebhookRejected::BadSignature)
        );
        let tampered = br#"{"clusterJobId":"cj-2","status":"completed"}"#;
        assert_eq!(
            verify_webhook("s3cret", &header, tampered, now),
            Err(WebhookRejected::BadSignature)
        );
        let later = now + chrono::Duration::seconds(WEBHOOK_TOLERANCE_SECONDS + 1);
        assert_eq!(
            verify_webhook("s3cret", &header, body, later),
            Err(WebhookRejected::Stale)
        );
        assert_eq!(
            verify_webhook("s3cret", "v1=zz", body, now),
            Err(WebhookRejected::Malformed)
        );
    }
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
    /// The LoRA adapter saved at this checkpoint (`adapter_model.safetensors`), to copy
    /// while the cluster keeps the job; absent when the cluster keeps no file for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<ClusterArtifact>,
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
    /// The base model against the adapter on the validation pairs (real trainers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<domain::model::BaseComparison>,
    /// The step the adapter is from (with early stopping, the best checkpoint's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_step: Option<u64>,
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

impl StatusReport {
    /// The first file name the report gives (a checkpoint's id, its adapter's name, an
    /// artifact's name) that cannot be one segment of our object keys: those names go into
    /// the keys we copy the files to, and must not reach outside them.
    pub fn unusable_name(&self) -> Option<domain::FieldError> {
        use domain::validation::one_segment;
        for (i, c) in self.checkpoints.iter().enumerate() {
            if let Err(e) = one_segment(&format!("checkpoints[{i}].id"), &c.id) {
                return Some(e);
            }
            if let Some(adapter) = &c.adapter {
                let field = format!("checkpoints[{i}].adapter.name");
                if let Err(e) = one_segment(&field, &adapter.name) {
                    return Some(e);
                }
            }
        }
        self.artifacts
            .iter()
            .enumerate()
            .find_map(|(i, a)| one_segment(&format!("artifacts[{i}].name"), &a.name).err())
    }
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
    /// Downloads an artifact from the `url` a status report gave, refusing a body longer than
    /// `size_bytes` (the size the report declared) and a URL that is not the cluster's own.
    async fn download(&self, url: &str, size_bytes: u64) -> Result<Vec<u8>, ClusterCallError>;
    /// The saga is done with `cluster_job_id` (its end recorded, its files copied): the
    /// cluster may drop what it keeps of it (the run's folder, the dataset's copy, the
    /// presigned URL) once the job has stopped. Best effort; the HTTP contract has no such
    /// call, so by default nothing is dropped.
    async fn release(&self, _cluster_job_id: &str) -> Result<(), ClusterCallError> {
        Ok(())
    }
    /// A deleted dataset's objects were purged (`dataset_key`, its key in our bucket): the
    /// cluster drops any copy of it it still keeps. Best effort, as `release`.
    async fn forget_dataset(&self, _dataset_key: &str) -> Result<(), ClusterCallError> {
        Ok(())
    }
}
