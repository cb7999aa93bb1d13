//! The training Job aggregate: configuration and estimate at creation, then the life the saga
//! reports (submission, stages, checkpoints, costs, completion, failure with retries) and the
//! user's cancellation.
//!
//! Status: queued → initializing → running → completed | failed | cancelled. Once terminal,
//! reports from the cluster change nothing (they record no event), but cost accruals keyed to
//! the time before the end still land (compute up to the cancel time).

pub mod config;
pub mod estimate;
mod events;
pub mod labels;
pub mod telemetry;

pub use events::{
    JobCancelled, JobCheckpointSaved, JobCompleted, JobCostAccrued, JobCreated, JobEvent,
    JobFailed, JobMetadataUpdated, JobRecoveredFromCluster, JobRetryScheduled, JobStageChanged,
    JobSubmissionStarted, JobSubmitted, StartingCheckpoint, StoredFile,
};

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::dataset::{Actor, DatasetFormat, DatasetStatus};
use crate::ids::{DatasetId, JobId, ModelId, UserId};
use crate::validation::storable;
use crate::FieldError;
use config::JobRequest;
use estimate::{cents, micros, DatasetFigures, Rates};

/// Retryable failures are retried this many times before the job fails.
pub const MAX_RETRIES: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Not created yet (an empty aggregate).
    #[default]
    New,
    Queued,
    Initializing,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::New => "new",
            JobStatus::Queued => "queued",
            JobStatus::Initializing => "initializing",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// The status named as `as_str` names it (a read model's column).
    pub fn parse(name: &str) -> Option<JobStatus> {
        [
            JobStatus::Queued,
            JobStatus::Initializing,
            JobStatus::Running,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// The statuses of a job under way: its dataset cannot be deleted, the dashboard counts
    /// it as active, and it can be cancelled.
    pub const ACTIVE: [JobStatus; 3] = [
        JobStatus::Queued,
        JobStatus::Initializing,
        JobStatus::Running,
    ];

    pub fn is_active(self) -> bool {
        Self::ACTIVE.contains(&self)
    }

    /// Cancel is allowed while the job is active (queued, initializing or running).
    pub fn is_cancellable(self) -> bool {
        self.is_active()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStage {
    #[default]
    Queued,
    Initializing,
    Training,
    Validating,
    Saving,
    Completed,
}

impl JobStage {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStage::Queued => "queued",
            JobStage::Initializing => "initializing",
            JobStage::Training => "training",
            JobStage::Validating => "validating",
            JobStage::Saving => "saving",
            JobStage::Completed => "completed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostType {
    Compute,
    Storage,
    DataTransfer,
    /// Chat completions on a deployed model (per 1,000 tokens).
    ApiCalls,
}

impl CostType {
    pub fn as_str(self) -> &'static str {
        match self {
            CostType::Compute => "compute",
            CostType::Storage => "storage",
            CostType::DataTransfer => "data_transfer",
            CostType::ApiCalls => "api_calls",
        }
    }
}

/// The dataset a job would train on, as the caller read it.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetForJob {
    pub id: DatasetId,
    pub owner: UserId,
    pub name: String,
    pub format: DatasetFormat,
    pub status: DatasetStatus,
    pub training_ready: bool,
    pub figures: DatasetFigures,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobCommand {
    Create(Box<CreateJob>),
    StartSubmission {
        attempt: u32,
        idempotency_key: String,
        at: DateTime<Utc>,
    },
    RecordSubmission {
        attempt: u32,
        cluster_job_id: String,
        at: DateTime<Utc>,
    },
    ChangeStage {
        stage: JobStage,
        message: String,
        at: DateTime<Utc>,
    },
    RecordCheckpoint {
        checkpoint_id: String,
        step: u64,
        epoch: u32,
        loss: f64,
        /// The checkpoint's adapter, already copied into our bucket (`None`: no file).
        file: Option<StoredFile>,
        at: DateTime<Utc>,
    },
    AccrueCost {
        entry_key: String,
        cost_type: CostType,
        quantity: Decimal,
        rate: Decimal,
        details: serde_json::Value,
        /// Compute entries: the attempt and its GPU-seconds total this entry accrues up to.
        compute_until: Option<(u32, Decimal)>,
        at: DateTime<Utc>,
    },
    Complete {
        final_training_loss: Option<f64>,
        final_validation_loss: Option<f64>,
        model_id: Option<ModelId>,
        at: DateTime<Utc>,
    },
    Fail {
        code: String,
        message: String,
        retryable: bool,
        at: DateTime<Utc>,
    },
    Cancel {
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// Reconciliation: our side failed the job, yet the cluster runs or completed its current
    /// attempt. The job resumes from the cluster's state (only a failed job, only that
    /// cluster job); otherwise nothing is recorded.
    RecoverFromCluster {
        cluster_job_id: String,
        cluster_status: String,
        at: DateTime<Utc>,
    },
    /// The user-facing metadata: name (1-100), description (at most 2000), tags (at most
    /// 20, each 1-50 characters, repeats dropped). The configuration never changes.
    UpdateMetadata {
        actor: Actor,
        name: Option<String>,
        description: Option<String>,
        tags: Option<Vec<String>>,
        at: DateTime<Utc>,
    },
}

/// The longest job name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A job's name when its creator gave none: what it trains on, cut to `MAX_NAME_CHARS`.
pub fn default_name(dataset_name: &str) -> String {
    format!("Training on {}", dataset_name.trim())
        .chars()
        .take(MAX_NAME_CHARS)
        .collect()
}

/// A name the user gave a job: 1 to `MAX_NAME_CHARS` characters, no control characters;
/// answered trimmed.
pub fn check_name(name: &str) -> Result<String, FieldError> {
    crate::validation::text_length("name", name, 1, MAX_NAME_CHARS)?;
    Ok(name.trim().to_string())
}

/// Checks and normalises a job's tags: trimmed, repeats dropped, order kept.
pub fn check_tags(tags: Vec<String>) -> Result<Vec<String>, FieldError> {
    let mut out: Vec<String> = Vec::new();
    for (i, tag) in tags.into_iter().enumerate() {
        crate::validation::text_length(&format!("tags[{i}]"), &tag, 1, 50)?;
        let tag = tag.trim().to_string();
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > 20 {
        return Err(FieldError::new("tags", "at most 20 tags"));
    }
    Ok(out)
}

/// Whether `id` can name a checkpoint at all (`ckpt-<step>`: 1 to 100 characters, none a
/// control character); one that cannot is no checkpoint, without looking.
pub fn is_checkpoint_id(id: &str) -> bool {
    (1..=100).contains(&id.chars().count()) && !id.chars().any(char::is_control)
}

/// The checkpoint a job continues, as read for the request.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointForJob {
    pub owner: UserId,
    pub base_model: String,
    pub lora_rank: u32,
    pub target_modules: Vec<config::TargetModule>,
    /// Its adapter in our bucket (`None`: the cluster kept no file of it).
    pub s3_key: Option<String>,
}

/// The model a job retrains from, as read for the request.
#[derive(Debug, Clone, PartialEq)]
pub struct ParentForJob {
    pub owner: UserId,
    pub base_model: String,
    /// The shape of its adapter, which the new job's adapter starts from.
    pub lora_rank: u32,
    pub target_modules: Vec<config::TargetModule>,
}

impl JobCommand {
    /// Whether the command may be decided again on the job's newer state when another
    /// command changed the job first (optimistic concurrency): every command but `Create`,
    /// whose conflict means the job already exists. A cancel decided again on a job that
    /// completed meanwhile is refused as not cancellable, which is the truth.
    pub fn is_repeatable(&self) -> bool {
        !matches!(self, JobCommand::Create(_))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateJob {
    pub job_id: JobId,
    pub user_id: UserId,
    pub dataset_id: DatasetId,
    /// The dataset as read for the request; `None` when there is no such dataset.
    pub dataset: Option<DatasetForJob>,
    pub request: JobRequest,
    pub rates: Rates,
    pub parent_model_id: Option<ModelId>,
    /// The parent model when `parent_model_id` names one the read model knows (not deleted).
    pub parent: Option<ParentForJob>,
    /// The checkpoint (job, checkpoint id) the job continues...
    pub from_checkpoint: Option<(JobId, String)>,
    /// ...as the read model knows it.
    pub checkpoint: Option<CheckpointForJob>,
    /// The user's name for the job; `None`: named after its dataset (`default_name`).
    pub name: Option<String>,
    pub labels: labels::JobLabels,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("no dataset {0}")]
    DatasetNotFound(DatasetId),
    #[error("dataset {id} is {status} and {reason}; only a ready, training-ready dataset can be trained")]
    DatasetNotReady {
        id: DatasetId,
        status: &'static str,
        reason: &'static str,
    },
    #[error("job {0} already exists")]
    AlreadyCreated(JobId),
    #[error("job not found")]
    NotFound,
    #[error("the job is {0}; only a queued, initializing or running job can be cancelled")]
    NotCancellable(&'static str),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Job {
    id: Option<JobId>,
    owner: Option<UserId>,
    status: JobStatus,
    stage: JobStage,
    attempt: u32,
    retry_count: u32,
    cluster_job_id: Option<String>,
    /// The stored adapter the job starts from: the checkpoint it continues.
    #[serde(default)]
    initial_adapter: Option<String>,
    /// The cluster job of the last attempt that failed and was retried: the next attempt
    /// starts from its newest checkpoint.
    #[serde(default)]
    resume_from: Option<String>,
    estimated_total: Decimal,
    /// The estimate's compute line: what a cancel refunds, less the compute accrued.
    estimated_compute: Decimal,
    ledger_total: Decimal,
    /// The compute entries of the ledger so far (every attempt).
    compute_total: Decimal,
    ledger_keys: HashSet<String>,
    /// Each recorded checkpoint, with its stored adapter when one was copied.
    checkpoints: std::collections::HashMap<String, Option<StoredFile>>,
    /// GPU-seconds already accrued as compute, per attempt.
    compute_accrued: std::collections::BTreeMap<u32, Decimal>,
}

impl Job {
    pub fn status(&self) -> JobStatus {
        self.status
    }

    pub fn owner(&self) -> Option<UserId> {
        self.owner
    }

    pub fn retry_count(&self) -> u32 {
        self.retry_count
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn cluster_job_id(&self) -> Option<&str> {
        self.cluster_job_id.as_deref()
    }

    /// The stored adapter (key) the job starts from, when it continues a checkpoint.
    pub fn initial_adapter(&self) -> Option<&str> {
        self.initial_adapter.as_deref()
    }

    /// The cluster job a retried attempt resumes from: the one that failed before it.
    pub fn resume_from(&self) -> Option<&str> {
        self.resume_from.as_deref()
    }

    /// Whether a failure (`retryable` or not) now schedules another attempt rather than
    /// failing the job.
    pub fn retries(&self, retryable: bool) -> bool {
        retryable && self.retry_count < MAX_RETRIES
    }

    /// Whether the checkpoint was recorded already (a repeated report records nothing).
    pub fn has_checkpoint(&self, checkpoint_id: &str) -> bool {
        self.checkpoints.contains_key(checkpoint_id)
    }

    /// Bytes of the checkpoint adapters stored in our bucket (what storage bills for them).
    pub fn stored_checkpoint_bytes(&self) -> u64 {
        self.checkpoints
            .values()
            .flatten()
            .map(|f| f.size_bytes)
            .sum()
    }

    /// GPU-seconds of `attempt` already accrued as compute cost.
    /// What a cancel refunds: the unused compute, i.e. the estimate's compute less the compute
    /// accrued so far, in cents, never below zero. Storage and data transfer are not refunded
    /// (they are spent whether or not training finishes).
    pub fn refund(&self) -> Decimal {
        cents((self.estimated_compute - self.compute_total).max(Decimal::ZERO))
    }

    pub fn compute_accrued(&self, attempt: u32) -> Decimal {
        self.compute_accrued
            .get(&attempt)
            .copied()
            .unwrap_or_default()
    }

    /// Whether a ledger entry with this key exists.
    pub fn has_entry(&self, key: &str) -> bool {
        self.ledger_keys.contains(key)
    }

    /// The ledger so far, rounded to cents (`currentCost`).
    pub fn current_cost(&self) -> Decimal {
        cents(self.ledger_total)
    }

    /// Metric points, progress and logs are recorded only while the job is under way.
    pub fn accepts_telemetry(&self) -> bool {
        matches!(self.status, JobStatus::Initializing | JobStatus::Running)
    }

    pub fn decide(&self, command: JobCommand) -> Result<Vec<JobEvent>, JobError> {
        if let JobCommand::Create(create) = command {
            return self.create(*create);
        }
        let (Some(job_id), Some(owner)) = (self.id, self.owner) else {
            return Err(JobError::NotFound);
        };
        let status = self.status;
        let event = match command {
            JobCommand::Create(_) => None,
            JobCommand::StartSubmission {
                attempt,
                idempotency_key,
                at,
            } => (status == JobStatus::Queued && attempt > self.attempt).then_some(
                JobEvent::JobSubmissionStarted(JobSubmissionStarted {
                    job_id,
                    attempt,
                    idempotency_key,
                    started_at: at,
                }),
            ),
            JobCommand::RecordSubmission {
                attempt,
                cluster_job_id,
                at,
            } => (status == JobStatus::Initializing
                && attempt == self.attempt
                && self.cluster_job_id.is_none())
            .then_some({
                JobEvent::JobSubmitted(JobSubmitted {
                    job_id,
                    attempt,
                    cluster_job_id,
                    submitted_at: at,
                })
            }),
            JobCommand::ChangeStage { stage, message, at } => {
                let reportable = matches!(
                    stage,
                    JobStage::Training | JobStage::Validating | JobStage::Saving
                );
                (reportable
                    && matches!(status, JobStatus::Initializing | JobStatus::Running)
                    && stage != self.stage)
                    .then_some({
                        JobEvent::JobStageChanged(JobStageChanged {
                            job_id,
                            stage,
                            message,
                            changed_at: at,
                        })
                    })
            }
            JobCommand::RecordCheckpoint {
                checkpoint_id,
                step,
                epoch,
                loss,
                file,
                at,
            } => (!status.is_terminal() && !self.checkpoints.contains_key(&checkpoint_id))
                .then_some({
                    JobEvent::JobCheckpointSaved(JobCheckpointSaved {
                        job_id,
                        checkpoint_id,
                        step,
                        epoch,
                        loss,
                        s3_key: file.as_ref().map(|f| f.s3_key.clone()),
                        size_bytes: file.as_ref().map(|f| f.size_bytes),
                        sha256: file.map(|f| f.sha256),
                        saved_at: at,
                    })
                }),
            JobCommand::AccrueCost {
                entry_key,
                cost_type,
                quantity,
                rate,
                details,
                compute_until,
                at,
            } => {
                if quantity < Decimal::ZERO || rate < Decimal::ZERO {
                    return Err(FieldError::new("quantity", "a cost is never negative").into());
                }
                let amount = micros(quantity * rate);
                (!self.ledger_keys.contains(&entry_key)).then(|| {
                    JobEvent::JobCostAccrued(JobCostAccrued {
                        job_id,
                        user_id: owner,
                        entry_key,
                        cost_type,
                        amount,
                        rate,
                        quantity,
                        details,
                        job_total: self.ledger_total + amount,
                        estimated_total: self.estimated_total,
                        attempt: compute_until.map(|(a, _)| a),
                        gpu_seconds_until: compute_until.map(|(_, s)| s),
                        accrued_at: at,
                    })
                })
            }
            JobCommand::Complete {
                final_training_loss,
                final_validation_loss,
                model_id,
                at,
            } => (!status.is_terminal() && status != JobStatus::Queued).then(|| {
                JobEvent::JobCompleted(JobCompleted {
                    job_id,
                    user_id: owner,
                    final_training_loss,
                    final_validation_loss,
                    model_id,
                    final_cost: self.current_cost(),
                    completed_at: at,
                })
            }),
            JobCommand::Fail {
                code,
                message,
                retryable,
                at,
            } => (!status.is_terminal()).then(|| {
                // The cluster's words, as it sent them (NUL aside).
                let (code, message) = (storable(code), storable(message));
                if self.retries(retryable) {
                    JobEvent::JobRetryScheduled(JobRetryScheduled {
                        job_id,
                        retry_count: self.retry_count + 1,
                        code,
                        message,
                        scheduled_at: at,
                    })
                } else {
                    JobEvent::JobFailed(JobFailed {
                        job_id,
                        user_id: owner,
                        code,
                        message,
                        retry_count: self.retry_count,
                        final_cost: self.current_cost(),
                        failed_at: at,
                    })
                }
            }),
            JobCommand::RecoverFromCluster {
                cluster_job_id,
                cluster_status,
                at,
            } => (status == JobStatus::Failed
                && self.cluster_job_id.as_deref() == Some(cluster_job_id.as_str()))
            .then_some(JobEvent::JobRecoveredFromCluster(JobRecoveredFromCluster {
                job_id,
                user_id: owner,
                attempt: self.attempt,
                cluster_job_id,
                cluster_status,
                recovered_at: at,
            })),
            JobCommand::UpdateMetadata {
                actor,
                name,
                description,
                tags,
                at,
            } => {
                if owner != actor.user_id && !actor.is_admin {
                    return Err(JobError::NotFound);
                }
                let name = name.as_deref().map(check_name).transpose()?;
                if let Some(description) = &description {
                    crate::validation::text_length("description", description, 0, 2000)?;
                }
                let tags = tags.map(check_tags).transpose()?;
                let description = description.map(|d| d.trim().to_string());
                (name.is_some() || description.is_some() || tags.is_some()).then_some(
                    JobEvent::JobMetadataUpdated(JobMetadataUpdated {
                        job_id,
                        name,
                        description,
                        tags,
                        updated_at: at,
                    }),
                )
            }
            JobCommand::Cancel { actor, at } => {
                if owner != actor.user_id && !actor.is_admin {
                    return Err(JobError::NotFound);
                }
                if !status.is_cancellable() {
                    return Err(JobError::NotCancellable(status.as_str()));
                }
                let cost_so_far = self.current_cost();
                Some(JobEvent::JobCancelled(JobCancelled {
                    job_id,
                    user_id: owner,
                    cancelled_by: actor.user_id,
                    cost_so_far,
                    refund_amount: self.refund(),
                    cancelled_at: at,
                }))
            }
        };
        Ok(event.into_iter().collect())
    }

    fn create(&self, cmd: CreateJob) -> Result<Vec<JobEvent>, JobError> {
        if let Some(id) = self.id {
            return Err(JobError::AlreadyCreated(id));
        }
        let labels = cmd.labels.check()?;
        let name = cmd.name.as_deref().map(check_name).transpose()?;
        let plan = plan(
            cmd.user_id,
            cmd.dataset_id,
            cmd.dataset.as_ref(),
            &cmd.request,
            &cmd.rates,
        )?;
        if let Some(parent_id) = cmd.parent_model_id {
            check_parent(
                cmd.user_id,
                parent_id,
                cmd.parent.as_ref(),
                &plan.configuration,
            )?;
        }
        let from_checkpoint = match &cmd.from_checkpoint {
            None => None,
            Some(_) if cmd.parent_model_id.is_some() => {
                return Err(FieldError::new(
                    "fromCheckpoint",
                    "a job continues either a model (parentModelId) or a checkpoint (fromCheckpoint), not both",
                )
                .into())
            }
            Some((job, checkpoint)) => Some(check_checkpoint(
                cmd.user_id,
                *job,
                checkpoint,
                cmd.checkpoint.as_ref(),
                &plan.configuration,
            )?),
        };
        let dataset = cmd
            .dataset
            .ok_or(JobError::DatasetNotFound(cmd.dataset_id))?;
        if !dataset.training_ready {
            return Err(JobError::DatasetNotReady {
                id: dataset.id,
                status: dataset.status.as_str(),
                reason: "not training-ready (it needs at least 10 training pairs and no errors)",
            });
        }
        Ok(vec![JobEvent::JobCreated(Box::new(JobCreated {
            job_id: cmd.job_id,
            user_id: cmd.user_id,
            dataset_id: dataset.id,
            name: Some(name.unwrap_or_else(|| default_name(&dataset.name))),
            dataset_name: dataset.name,
            dataset_format: Some(dataset.format),
            configuration: plan.configuration,
            estimate: plan.estimate,
            rates: cmd.rates,
            parent_model_id: cmd.parent_model_id,
            from_checkpoint,
            suffix: labels.suffix,
            metadata: labels.metadata,
            created_at: cmd.created_at,
        }))])
    }
}

/// A job that continues a model starts from its adapter's weights: the model must be the
/// user's, on the same base model, with an adapter of the same shape (rank and modules).
pub fn check_parent(
    user: UserId,
    parent_id: ModelId,
    parent: Option<&ParentForJob>,
    configuration: &config::JobConfiguration,
) -> Result<(), JobError> {
    match parent {
        Some(p) if p.owner == user => check_same_adapter(
            &format!("model {parent_id}"),
            (&p.base_model, p.lora_rank, &p.target_modules),
            configuration,
        ),
        _ => Err(FieldError::new("parentModelId", format!("no model {parent_id}")).into()),
    }
}

/// A job that continues a checkpoint of one of the user's jobs starts from its stored
/// adapter, which must have the new job's shape (base model, rank, modules).
pub fn check_checkpoint(
    user: UserId,
    job: JobId,
    checkpoint_id: &str,
    checkpoint: Option<&CheckpointForJob>,
    configuration: &config::JobConfiguration,
) -> Result<StartingCheckpoint, JobError> {
    let Some(c) = checkpoint.filter(|c| c.owner == user) else {
        return Err(FieldError::new(
            "fromCheckpoint",
            format!("job {job} has no checkpoint {checkpoint_id}"),
        )
        .into());
    };
    check_same_adapter(
        &format!("checkpoint {checkpoint_id} of job {job}"),
        (&c.base_model, c.lora_rank, &c.target_modules),
        configuration,
    )?;
    let s3_key = c.s3_key.clone().ok_or_else(|| {
        FieldError::new(
            "fromCheckpoint",
            format!("checkpoint {checkpoint_id} of job {job} kept no adapter to start from"),
        )
    })?;
    Ok(StartingCheckpoint {
        job_id: job,
        checkpoint_id: checkpoint_id.to_string(),
        s3_key,
    })
}

/// The adapter `what` (base model, rank, modules) must be the one `configuration` trains.
fn check_same_adapter(
    what: &str,
    (base_model, rank, target_modules): (&str, u32, &[config::TargetModule]),
    configuration: &config::JobConfiguration,
) -> Result<(), JobError> {
    let h = &configuration.hyperparameters;
    if base_model != configuration.base_model {
        return Err(FieldError::new(
            "baseModel",
            format!("{what} was trained on {base_model}: continuing it needs the same baseModel"),
        )
        .into());
    }
    if rank != h.lora_rank {
        return Err(FieldError::new(
            "hyperparameters.loraRank",
            format!("{what}'s adapter has rank {rank}: continuing it needs loraRank {rank}"),
        )
        .into());
    }
    let modules = |m: &[config::TargetModule]| {
        let mut names: Vec<&str> = m.iter().map(|m| m.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    };
    if modules(target_modules) != modules(&h.target_modules) {
        return Err(FieldError::new(
            "hyperparameters.targetModules",
            format!(
                "{what}'s adapter is on {}: continuing it needs the same targetModules",
                modules(target_modules).join(", ")
            ),
        )
        .into());
    }
    Ok(())
}

/// A resolved configuration and its estimate: what `POST /api/jobs/estimate` answers and
/// `POST /api/jobs` stores.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub configuration: config::JobConfiguration,
    pub estimate: estimate::Estimate,
}

/// Plans a job for `user` on a dataset: the dataset must be the user's and `ready`; the
/// request must resolve within bounds. (Creating also needs `trainingReady`.)
pub fn plan(
    user: UserId,
    dataset_id: DatasetId,
    dataset: Option<&DatasetForJob>,
    request: &JobRequest,
    rates: &Rates,
) -> Result<Plan, JobError> {
    let dataset = match dataset {
        Some(d) if d.owner == user => d,
        _ => return Err(JobError::DatasetNotFound(dataset_id)),
    };
    if dataset.status != DatasetStatus::Ready {
        return Err(JobError::DatasetNotReady {
            id: dataset.id,
            status: dataset.status.as_str(),
            reason: "not validated",
        });
    }
    let configuration = request.resolve(dataset.figures.training_pairs)?;
    let estimate = estimate::estimate(&configuration, dataset.figures, rates);
    Ok(Plan {
        configuration,
        estimate,
    })
}

decided_aggregate!(
    Job,
    "job",
    JobCommand,
    JobEvent,
    JobError,
    fn apply(&mut self, event: JobEvent) {
        match event {
            JobEvent::JobMetadataUpdated(_) => {}
            JobEvent::JobRecoveredFromCluster(_) => {
                self.status = JobStatus::Running;
                self.stage = JobStage::Training;
            }
            JobEvent::JobCreated(e) => {
                self.id = Some(e.job_id);
                self.owner = Some(e.user_id);
                self.status = JobStatus::Queued;
                self.stage = JobStage::Queued;
                self.estimated_total = e.estimate.cost.total;
                self.estimated_compute = e.estimate.cost.compute.total;
                self.initial_adapter = e.from_checkpoint.map(|c| c.s3_key);
            }
            JobEvent::JobSubmissionStarted(e) => {
                self.status = JobStatus::Initializing;
                self.stage = JobStage::Initializing;
                self.attempt = e.attempt;
                self.cluster_job_id = None;
            }
            JobEvent::JobSubmitted(e) => self.cluster_job_id = Some(e.cluster_job_id),
            JobEvent::JobStageChanged(e) => {
                self.status = JobStatus::Running;
                self.stage = e.stage;
            }
            JobEvent::JobCheckpointSaved(e) => {
                let file = e.file();
                self.checkpoints.insert(e.checkpoint_id, file);
            }
            JobEvent::JobCostAccrued(e) => {
                self.ledger_total += e.amount;
                if e.cost_type == CostType::Compute {
                    self.compute_total += e.amount;
                }
                self.ledger_keys.insert(e.entry_key);
                if let (Some(attempt), Some(until)) = (e.attempt, e.gpu_seconds_until) {
                    let mark = self.compute_accrued.entry(attempt).or_default();
                    *mark = (*mark).max(until);
                }
            }
            JobEvent::JobRetryScheduled(e) => {
                self.status = JobStatus::Queued;
                self.stage = JobStage::Queued;
                self.retry_count = e.retry_count;
                // An attempt that never reached the cluster leaves the one before to resume.
                if let Some(failed) = self.cluster_job_id.take() {
                    self.resume_from = Some(failed);
                }
            }
            JobEvent::JobCompleted(_) => {
                self.status = JobStatus::Completed;
                self.stage = JobStage::Completed;
            }
            JobEvent::JobFailed(_) => self.status = JobStatus::Failed,
            JobEvent::JobCancelled(_) => self.status = JobStatus::Cancelled,
        }
    }
);

#[cfg(test)]
mod tests;
