use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::config::JobConfiguration;
use super::estimate::{Estimate, Rates};
use super::{CostType, JobStage};
use crate::dataset::DatasetFormat;
use crate::ids::{DatasetId, JobId, ModelId, UserId};

/// Job lifecycle events (the job's own stream). High-rate telemetry (metric points, progress,
/// logs) lives in streams of its own (`telemetry`), so loading a job stays cheap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobEvent {
    JobCreated(Box<JobCreated>),
    JobSubmissionStarted(JobSubmissionStarted),
    JobSubmitted(JobSubmitted),
    JobStageChanged(JobStageChanged),
    JobCheckpointSaved(JobCheckpointSaved),
    JobCostAccrued(JobCostAccrued),
    JobRetryScheduled(JobRetryScheduled),
    JobCompleted(JobCompleted),
    JobFailed(JobFailed),
    JobCancelled(JobCancelled),
    JobMetadataUpdated(JobMetadataUpdated),
    JobRecoveredFromCluster(JobRecoveredFromCluster),
}

/// Reconciliation found the cluster still running (or done with) the job our side had
/// failed: the job is running again and the saga follows the cluster job to its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecoveredFromCluster {
    pub job_id: JobId,
    pub user_id: UserId,
    pub attempt: u32,
    pub cluster_job_id: String,
    /// What the cluster reported: `running`, `queued` or `completed`.
    pub cluster_status: String,
    pub recovered_at: DateTime<Utc>,
}

/// The user changed the job's name, description or tags (absent: unchanged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMetadataUpdated {
    pub job_id: JobId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCreated {
    pub job_id: JobId,
    pub user_id: UserId,
    pub dataset_id: DatasetId,
    /// The job's name (absent in events recorded before every job had one: see `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub dataset_name: String,
    /// How the trainer reads the file (absent in events recorded before formats were named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_format: Option<DatasetFormat>,
    pub configuration: JobConfiguration,
    pub estimate: Estimate,
    /// The rates the estimate used (and the ledger will use for this job).
    pub rates: Rates,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_model_id: Option<ModelId>,
    /// The checkpoint of an earlier job whose adapter this job starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_checkpoint: Option<StartingCheckpoint>,
    /// The fine-tuned model's name suffix (`ft:<base>:<suffix>:<id>`), when the client named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// The client's key-value pairs (OpenAI's `metadata`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
}

impl JobCreated {
    /// The job's name: the one it was created with, or (for jobs created before every job
    /// had one) the name it would be given now.
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| super::default_name(&self.dataset_name))
    }
}

/// The saga is about to submit attempt `attempt` under `idempotencyKey` (status initializing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSubmissionStarted {
    pub job_id: JobId,
    pub attempt: u32,
    pub idempotency_key: String,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSubmitted {
    pub job_id: JobId,
    pub attempt: u32,
    pub cluster_job_id: String,
    pub submitted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStageChanged {
    pub job_id: JobId,
    pub stage: JobStage,
    pub message: String,
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCheckpointSaved {
    pub job_id: JobId,
    pub checkpoint_id: String,
    pub step: u64,
    pub epoch: u32,
    pub loss: f64,
    /// Where the checkpoint's adapter is stored in our bucket (`None`: the cluster kept no
    /// file for it). Events before checkpoint files were copied carry a key but no size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub saved_at: DateTime<Utc>,
}

impl JobCheckpointSaved {
    /// The stored adapter, when its copy was checked (key, size and checksum known).
    pub fn file(&self) -> Option<StoredFile> {
        match (&self.s3_key, self.size_bytes, &self.sha256) {
            (Some(key), Some(size), Some(sha)) => Some(StoredFile {
                s3_key: key.clone(),
                size_bytes: size,
                sha256: sha.clone(),
            }),
            _ => None,
        }
    }
}

/// The checkpoint a job continues: which job's, which one, and its stored adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartingCheckpoint {
    pub job_id: JobId,
    pub checkpoint_id: String,
    pub s3_key: String,
}

/// A file copied into our bucket and checked against the size and sha256 its source gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredFile {
    pub s3_key: String,
    pub size_bytes: u64,
    pub sha256: String,
}

/// One ledger entry. `entryKey` makes a repeated accrual a no-op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCostAccrued {
    pub job_id: JobId,
    pub user_id: UserId,
    pub entry_key: String,
    pub cost_type: CostType,
    /// quantity × rate, 6 fractional digits.
    pub amount: Decimal,
    pub rate: Decimal,
    /// GPU-hours, GB or GB-months.
    pub quantity: Decimal,
    pub details: serde_json::Value,
    /// The job's ledger after this entry (6 digits) and its estimated total: what a live
    /// view of the cost shows.
    pub job_total: Decimal,
    pub estimated_total: Decimal,
    /// Compute entries: the cluster attempt and the GPU-seconds total accrued up to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_seconds_until: Option<Decimal>,
    pub accrued_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRetryScheduled {
    pub job_id: JobId,
    pub retry_count: u32,
    pub code: String,
    pub message: String,
    pub scheduled_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCompleted {
    pub job_id: JobId,
    pub user_id: UserId,
    pub final_training_loss: Option<f64>,
    pub final_validation_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<ModelId>,
    /// The job's ledger entries, summed and rounded to cents.
    pub final_cost: Decimal,
    pub completed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFailed {
    pub job_id: JobId,
    pub user_id: UserId,
    pub code: String,
    pub message: String,
    pub retry_count: u32,
    pub final_cost: Decimal,
    pub failed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCancelled {
    pub job_id: JobId,
    pub user_id: UserId,
    pub cancelled_by: UserId,
    /// The ledger so far, rounded to cents.
    pub cost_so_far: Decimal,
    /// Estimated total − cost so far, at least 0.
    pub refund_amount: Decimal,
    pub cancelled_at: DateTime<Utc>,
}

impl DomainEvent for JobEvent {
    fn event_type(&self) -> String {
        match self {
            JobEvent::JobCreated(_) => "JobCreated",
            JobEvent::JobSubmissionStarted(_) => "JobSubmissionStarted",
            JobEvent::JobSubmitted(_) => "JobSubmitted",
            JobEvent::JobStageChanged(_) => "JobStageChanged",
            JobEvent::JobCheckpointSaved(_) => "JobCheckpointSaved",
            JobEvent::JobCostAccrued(_) => "JobCostAccrued",
            JobEvent::JobRetryScheduled(_) => "JobRetryScheduled",
            JobEvent::JobCompleted(_) => "JobCompleted",
            JobEvent::JobFailed(_) => "JobFailed",
            JobEvent::JobCancelled(_) => "JobCancelled",
            JobEvent::JobMetadataUpdated(_) => "JobMetadataUpdated",
            JobEvent::JobRecoveredFromCluster(_) => "JobRecoveredFromCluster",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
