//! The training saga: drives a job on the GPU cluster and turns what the cluster reports into
//! job commands. Its state (phase, attempt, cluster job, cursor, next deadline) is durable and
//! kept by the caller (a table in Postgres); `step` does one unit of work for one job and says
//! what to do next. Every effect is idempotent, so a step cut short by a crash is simply run
//! again: submission by idempotency key (`<jobId>-<attempt>`), commands that record nothing
//! twice, ledger entries keyed by what they cover, a model id derived from the job id.

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::EventStore;
use domain::dataset::DatasetFormat;
use domain::ids::{DatasetId, JobId, ModelId, UserId};
use domain::job::config::JobConfiguration;
use domain::job::estimate::{micros, Rates, BYTES_PER_GB};
use domain::job::telemetry::{LogLevel, LogLine, MetricPoint, Progress, TelemetryEvent};
use domain::job::{CostType, Job, JobCommand, JobStage, JobStatus, StoredFile};
use domain::model::{
    next_version, Model, ModelArtifact, ModelRegistered, QualityMetrics, TrainingSummary,
};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cluster::{
    ClusterArtifact, ClusterCallError, ClusterStage, ClusterStatus, GpuCluster, StatusReport,
    SubmitRequest,
};
use crate::jobs::JobCommands;
use crate::models::ModelCommands;
use crate::{AppError, CommandContext, ObjectStore};
use domain::model::ADAPTER_WEIGHTS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Submit attempt `attempt` to the cluster.
    Submit,
    /// Read the cluster's status and record it.
    Poll,
    /// Stop the cluster job and close the cost.
    Cancel,
    /// Waiting for the job's next event (a retry, or its end).
    Wait,
    Done,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Submit => "submit",
            Phase::Poll => "poll",
            Phase::Cancel => "cancel",
            Phase::Wait => "wait",
            Phase::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        [
            Phase::Submit,
            Phase::Poll,
            Phase::Cancel,
            Phase::Wait,
            Phase::Done,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// What the saga knows of a job (from `JobCreated`) and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct SagaEntry {
    pub job_id: JobId,
    pub user_id: UserId,
    pub dataset_id: DatasetId,
    pub dataset_name: String,
    /// How the cluster reads the file (`None` for jobs created before formats were named).
    pub dataset_format: Option<DatasetFormat>,
    pub parent_model_id: Option<ModelId>,
    pub configuration: JobConfiguration,
    pub total_steps: u64,
    /// The estimate's wall-clock limit for a cluster job (`None` for jobs created before it
    /// was recorded).
    pub time_limit_seconds: Option<u64>,
    pub phase: Phase,
    pub attempt: u32,
    pub cluster_job_id: Option<String>,
    pub cursor: Option<String>,
}

/// What a reconciliation check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciliation {
    /// The cluster's state agrees with ours (failed, cancelled, or truly gone).
    Agrees,
    /// The cluster still had the job: it is running again on our side.
    Recovered,
    /// The cluster could not be asked; check again later.
    TryLater,
}

/// What to do next, after `after`.
#[derive(Debug, Clone, PartialEq)]
pub struct Next {
    pub phase: Phase,
    pub cluster_job_id: Option<String>,
    pub cursor: Option<String>,
    pub after: Duration,
}

#[derive(Debug, Clone)]
pub struct SagaOptions {
    pub poll_interval: Duration,
    /// Wait this long after the cluster was unavailable.
    pub unavailable_backoff: Duration,
    /// Accrue compute once this many GPU-seconds are unbilled (and always at the end).
    pub compute_step_gpu_seconds: Decimal,
    pub dataset_url_validity: Duration,
    /// Our webhook endpoint, passed to the cluster with each submission (optional).
    pub webhook_url: Option<String>,
}

impl Default for SagaOptions {
    fn default() -> Self {
        SagaOptions {
            poll_interval: Duration::from_secs(2),
            unavailable_backoff: Duration::from_secs(5),
            compute_step_gpu_seconds: Decimal::from(60),
            dataset_url_validity: Duration::from_secs(24 * 3600),
            webhook_url: None,
        }
    }
}

/// The id of the model a job registers: derived from the job id, so a retried completion
/// registers the same model.
pub fn model_id_of(job: JobId) -> ModelId {
    ModelId(uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        job.0.as_bytes(),
    ))
}

pub fn idempotency_key(job: JobId, attempt: u32) -> String {
    format!("{job}-{attempt}")
}

fn internal<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

pub struct TrainingSaga<JES: EventStore<Job>, MES: EventStore<Model>> {
    jobs: Arc<JobCommands<JES>>,
    models: Arc<ModelCommands<MES>>,
    cluster: Arc<dyn GpuCluster>,
    objects: Arc<dyn ObjectStore>,
    rates: Rates,
    options: SagaOptions,
    /// Files copied from the cluster at once: each is held whole in memory while it is
    /// checked and stored (megabytes), so with many jobs at a checkpoint together `serve`'s
    /// memory rose and fell by tens of MiB under load.
    copies: Arc<tokio::sync::Semaphore>,
}

/// How many cluster files `copy_checked` holds at once.
const COPIES_AT_ONCE: usize = 2;

impl<JES: EventStore<Job>, MES: EventStore<Model>> TrainingSaga<JES, MES> {
    pub fn new(
        jobs: Arc<JobCommands<JES>>,
        models: Arc<ModelCommands<MES>>,
        cluster: Arc<dyn GpuCluster>,
        objects: Arc<dyn ObjectStore>,
        rates: Rates,
        options: SagaOptions,
    ) -> Self {
        Self {
            jobs,
            models,
            cluster,
            objects,
            rates,
            options,
            copies: Arc::new(tokio::sync::Semaphore::new(COPIES_AT_ONCE)),
        }
    }

    pub fn options(&self) -> &SagaOptions {
        &self.options
    }

    fn ctx(&self, entry: &SagaEntry) -> CommandContext {
        CommandContext {
            user_id: entry.user_id,
            request_id: uuid::Uuid::now_v7().to_string(),
            correlation_id: entry.job_id.to_string(),
            causation_id: None,
        }
    }

    fn next(&self, phase: Phase, entry: &SagaEntry, after: Duration) -> Next {
        Next {
            phase,
            cluster_job_id: entry.cluster_job_id.clone(),
            cursor: entry.cursor.clone(),
            after,
        }
    }

    /// Fails the job (the domain schedules a retry when `retryable` and retries are left)
    /// and waits for what comes of it.
    async fn fail(
        &self,
        entry: &SagaEntry,
        code: &str,
        message: String,
        retryable: bool,
    ) -> anyhow::Result<Next> {
        let at = self.jobs.clock().now();
        let code = code.to_string();
        let failure = JobCommand::Fail {
            code,
            message,
            retryable,
            at,
        };
        self.command(entry, failure).await?;
        Ok(self.next(Phase::Wait, entry, Duration::from_secs(3600)))
    }

    /// Tells the cluster the saga is done with `cluster_job` (its files may go); a refusal
    /// or an unreachable cluster is only logged.
    async fn release_quietly(&self, entry: &SagaEntry, cluster_job: &str) {
        if let Err(err) = self.cluster.release(cluster_job).await {
            tracing::warn!(job_id = %entry.job_id, %cluster_job, error = %err, "the cluster job's files were not released");
        }
    }

    /// Asks the cluster to stop `cluster_job`; a refusal or an unreachable cluster is only logged.
    async fn cancel_quietly(&self, entry: &SagaEntry, cluster_job: &str) {
        if let Err(err) = self.cluster.cancel(cluster_job).await {
            tracing::debug!(job_id = %entry.job_id, %cluster_job, error = %err, "cluster job not cancelled");
        }
    }

    async fn command(&self, entry: &SagaEntry, command: JobCommand) -> anyhow::Result<()> {
        match self
            .jobs
            .execute(&self.ctx(entry), entry.job_id, command)
            .await
        {
            Ok(_) => Ok(()),
            // Changed meanwhile (a cancel): the next step sees the new state.
            Err(AppError::Conflict) => {
                Err(anyhow::anyhow!("job {} changed; retrying", entry.job_id))
            }
            Err(e) => Err(internal(e)),
        }
    }

    /// One unit of work for `entry`.
    pub async fn step(&self, entry: &SagaEntry) -> anyhow::Result<Next> {
        let job = self
            .jobs
            .load(entry.job_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| anyhow::anyhow!("no job {}", entry.job_id))?;
        match entry.phase {
            Phase::Done | Phase::Wait => {
                Ok(self.next(entry.phase, entry, Duration::from_secs(3600)))
            }
            Phase::Cancel => self.cancel(entry, &job).await,
            // Cancelled before the feed moved this row to `cancel` (the command lands in the
            // aggregate first, the feed reads it from the log after): stop the cluster job
            // now, or nothing would.
            _ if job.status() == JobStatus::Cancelled => self.cancel(entry, &job).await,
            _ if job.status().is_terminal() => Ok(self.next(Phase::Done, entry, Duration::ZERO)),
            Phase::Submit => self.submit(entry, &job).await,
            Phase::Poll => self.poll(entry, &job).await,
        }
    }

    async fn submit(&self, entry: &SagaEntry, job: &Job) -> anyhow::Result<Next> {
        let key = idempotency_key(entry.job_id, entry.attempt);
        let now = self.jobs.clock().now();
        self.command(
            entry,
            JobCommand::StartSubmission {
                attempt: entry.attempt,
                idempotency_key: key.clone(),
                at: now,
            },
        )
        .await?;
        let dataset_key = domain::dataset::object_key(entry.user_id, entry.dataset_id);
        let url = self
            .objects
            .presign_get(&dataset_key, self.options.dataset_url_validity, now)
            .await?;
        // A job that continues a model starts from that model's adapter.
        let initial_adapter_url = match entry.parent_model_id {
            None => match job.initial_adapter() {
                Some(key) => Some(
                    self.objects
                        .presign_get(key, self.options.dataset_url_validity, now)
                        .await?
                        .url,
                ),
                None => None,
            },
            Some(parent) => {
                let model = self.models.load(parent).await.map_err(internal)?;
                match model.as_ref().and_then(|m| m.artifact(ADAPTER_WEIGHTS)) {
                    Some(adapter) => Some(
                        self.objects
                            .presign_get(&adapter.s3_key, self.options.dataset_url_validity, now)
                            .await?
                            .url,
                    ),
                    None => {
                        let message =
                            format!("model {} has no stored adapter to continue from", parent.0);
                        return self
                            .fail(entry, "PARENT_ADAPTER_UNAVAILABLE", message, false)
                            .await;
                    }
                }
            }
        };
        let c = &entry.configuration;
        let request = SubmitRequest {
            initial_adapter_url,
            idempotency_key: key,
            dataset_url: url.url,
            base_model: c.base_model.clone(),
            dataset_format: entry.dataset_format,
            hyperparameters: c.hyperparameters.clone(),
            gpu_config: c.gpu_config,
            total_steps: entry.total_steps,
            checkpoint_interval: c.options.checkpoint_interval,
            validation_split_ratio: c.options.validation_split_ratio,
            early_stopping_patience: c.options.early_stopping_patience,
            early_stopping_min_delta: c.options.early_stopping_min_delta,
            seed: c.options.seed,
            time_limit_seconds: entry.time_limit_seconds,
            webhook_url: self.options.webhook_url.clone(),
            resume_from: job.resume_from().map(str::to_string),
        };
        match self.cluster.submit(&request).await {
            Ok(submitted) => {
                // The new run has what it resumes from: the failed attempt's files may go.
                if let Some(failed) = job.resume_from() {
                    self.release_quietly(entry, failed).await;
                }
                self.command(
                    entry,
                    JobCommand::RecordSubmission {
                        attempt: entry.attempt,
                        cluster_job_id: submitted.cluster_job_id.clone(),
                        at: self.jobs.clock().now(),
                    },
                )
                .await?;
                Ok(Next {
                    phase: Phase::Poll,
                    cluster_job_id: Some(submitted.cluster_job_id),
                    cursor: None,
                    after: self.options.poll_interval,
                })
            }
            Err(ClusterCallError::Unavailable(cause)) => {
                tracing::warn!(job_id = %entry.job_id, %cause, "cluster unavailable at submission");
                Ok(self.next(Phase::Submit, entry, self.options.unavailable_backoff))
            }
            Err(e) => {
                self.fail(entry, "CLUSTER_REJECTED", e.to_string(), false)
                    .await
            }
        }
    }

    async fn poll(&self, entry: &SagaEntry, job: &Job) -> anyhow::Result<Next> {
        let Some(cluster_job) = entry.cluster_job_id.as_deref() else {
            return Ok(self.next(Phase::Submit, entry, Duration::ZERO));
        };
        let report = match self
            .cluster
            .status(cluster_job, entry.cursor.as_deref())
            .await
        {
            Ok(report) => report,
            Err(ClusterCallError::Unavailable(cause)) => {
                tracing::warn!(job_id = %entry.job_id, %cause, "cluster unavailable");
                return Ok(self.next(Phase::Poll, entry, self.options.unavailable_backoff));
            }
            // Reconciliation: the cluster lost the job; it is retried like a failure. When a
            // retry follows, the lost job is also cancelled (best effort), so a cluster that
            // only misreported it does not keep it running beside the next attempt; the last
            // attempt is left for the reconciliation pass to find.
            Err(ClusterCallError::UnknownJob(_)) => {
                if job.retry_count() < domain::job::MAX_RETRIES {
                    self.cancel_quietly(entry, cluster_job).await;
                }
                let message = format!("the cluster no longer knows job {cluster_job}");
                return self.fail(entry, "CLUSTER_LOST_JOB", message, true).await;
            }
            Err(e) => return Err(e.into()),
        };
        // A report naming a file as a path is refused whole, before anything of it is kept:
        // the job fails, and the cluster job is stopped (best effort) so it bills no more.
        if let Some(bad) = report.unusable_name() {
            tracing::error!(job_id = %entry.job_id, %cluster_job, error = %bad, "the cluster's report names a file unusably");
            self.cancel_quietly(entry, cluster_job).await;
            let message = format!("the cluster's status report was refused: {bad}");
            return self
                .fail(entry, "CLUSTER_INVALID_REPORT", message, false)
                .await;
        }
        self.record(entry, job, &report).await?;
        let mut next = Next {
            phase: Phase::Poll,
            cluster_job_id: entry.cluster_job_id.clone(),
            cursor: Some(report.cursor.clone()),
            after: self.options.poll_interval,
        };
        match report.status {
            ClusterStatus::Completed => {
                self.finish(entry, &report).await?;
                self.release_quietly(entry, cluster_job).await;
                next.phase = Phase::Done;
            }
            ClusterStatus::Failed | ClusterStatus::Cancelled => {
                let (code, message, retryable) = match &report.error {
                    Some(e) => (e.code.clone(), e.message.clone(), e.retryable),
                    None => (
                        "CLUSTER_CANCELLED".into(),
                        "the cluster stopped the job".into(),
                        false,
                    ),
                };
                let retried = job.retries(retryable);
                self.command(
                    entry,
                    JobCommand::Fail {
                        code,
                        message,
                        retryable,
                        at: self.jobs.clock().now(),
                    },
                )
                .await?;
                // Retried: the next attempt resumes from this one's newest checkpoint, and its
                // submission releases these files. Otherwise they are of no more use.
                if !retried {
                    self.release_quietly(entry, cluster_job).await;
                }
                next.phase = Phase::Wait;
                next.after = Duration::from_secs(3600);
            }
            ClusterStatus::Queued | ClusterStatus::Running => {}
        }
        Ok(next)
    }

    /// The reconciliation pass for a job our side failed: when the cluster still runs (or has
    /// completed) its last cluster job, the job is recovered and the saga follows it again.
    pub async fn reconcile(
        &self,
        entry: &SagaEntry,
        cluster_job: &str,
    ) -> anyhow::Result<Reconciliation> {
        let report = match self.cluster.status(cluster_job, None).await {
            Ok(report) => report,
            Err(ClusterCallError::UnknownJob(_)) => return Ok(Reconciliation::Agrees),
            Err(ClusterCallError::Unavailable(_)) => return Ok(Reconciliation::TryLater),
            Err(e) => return Err(e.into()),
        };
        let status = match report.status {
            ClusterStatus::Queued => "queued",
            ClusterStatus::Running => "running",
            ClusterStatus::Completed => "completed",
            ClusterStatus::Failed | ClusterStatus::Cancelled => return Ok(Reconciliation::Agrees),
        };
        tracing::warn!(job_id = %entry.job_id, %cluster_job, cluster_status = status, "the cluster disagrees with a failed job: recovering it");
        self.command(
            entry,
            JobCommand::RecoverFromCluster {
                cluster_job_id: cluster_job.to_string(),
                cluster_status: status.to_string(),
                at: self.jobs.clock().now(),
            },
        )
        .await?;
        Ok(Reconciliation::Recovered)
    }

    /// Turns a status report into commands and telemetry.
    async fn record(
        &self,
        entry: &SagaEntry,
        job: &Job,
        report: &StatusReport,
    ) -> anyhow::Result<()> {
        let now = self.jobs.clock().now();
        let ctx = self.ctx(entry);
        let stage = match report.stage {
            ClusterStage::Training => Some(JobStage::Training),
            ClusterStage::Validating => Some(JobStage::Validating),
            ClusterStage::Saving | ClusterStage::Completed => Some(JobStage::Saving),
            ClusterStage::Initializing => None,
        };
        if let Some(stage) = stage {
            let message = match stage {
                JobStage::Training => {
                    format!("Epoch {}/{} in progress", report.epoch, report.total_epochs)
                }
                JobStage::Validating => format!("Validating after epoch {}", report.epoch),
                _ => "Saving the adapter".to_string(),
            };
            self.command(
                entry,
                JobCommand::ChangeStage {
                    stage,
                    message,
                    at: now,
                },
            )
            .await?;
        }
        // The report's points, progress and logs in one append: a fast cluster (or a long
        // gap between reads) brings thousands at once, and each step must end within its lease.
        let mut telemetry: Vec<TelemetryEvent> = report
            .metrics
            .iter()
            .map(|p| {
                TelemetryEvent::MetricPointRecorded(MetricPoint {
                    job_id: entry.job_id,
                    step: p.step,
                    epoch: p.epoch,
                    training_loss: p.training_loss,
                    validation_loss: p.validation_loss,
                    learning_rate: p.learning_rate,
                    gradient_norm: Some(p.gradient_norm),
                    throughput: Some(p.throughput),
                    gpu_utilization: Some(p.gpu_utilization),
                    recorded_at: now,
                })
            })
            .collect();
        if report.step > 0 && report.status == ClusterStatus::Running {
            telemetry.push(TelemetryEvent::ProgressReported(Progress {
                job_id: entry.job_id,
                step: report.step,
                total_steps: report.total_steps,
                epoch: report.epoch,
                total_epochs: report.total_epochs,
                progress: report.progress,
                estimated_time_remaining: report.eta_seconds,
                reported_at: now,
            }));
        }
        telemetry.extend(report.logs.iter().map(|line| {
            let level = match line.level.as_str() {
                "error" => LogLevel::Error,
                "warning" => LogLevel::Warning,
                _ => LogLevel::Info,
            };
            TelemetryEvent::LogLineRecorded(LogLine {
                job_id: entry.job_id,
                // Each attempt's log starts at 0: keep them apart.
                index: u64::from(entry.attempt) * 1_000_000 + line.index,
                level,
                message: line.message.clone(),
                logged_at: now,
            })
        }));
        self.jobs
            .record_telemetry_all(&ctx, entry.job_id, telemetry)
            .await
            .map_err(internal)?;
        for c in &report.checkpoints {
            let checkpoint_id = format!("a{}-{}", entry.attempt, c.id);
            if job.has_checkpoint(&checkpoint_id) {
                continue;
            }
            let file = match &c.adapter {
                Some(adapter) => {
                    let key = format!(
                        "checkpoints/{}/{checkpoint_id}/{}",
                        entry.job_id, adapter.name
                    );
                    match self.copy_checked(adapter, key).await {
                        Ok(file) => Some(file),
                        // The cluster no longer has (or refuses) the file: the checkpoint is
                        // recorded without one rather than holding the job up forever.
                        Err(e)
                            if e.downcast_ref::<ClusterCallError>().is_some_and(|e| {
                                matches!(
                                    e,
                                    ClusterCallError::UnknownJob(_)
                                        | ClusterCallError::Rejected { .. }
                                )
                            }) =>
                        {
                            tracing::warn!(job = %entry.job_id, checkpoint = %checkpoint_id, error = %e,
                                "the checkpoint's adapter could not be copied; recorded without it");
                            None
                        }
                        Err(e) => return Err(e),
                    }
                }
                None => None,
            };
            self.command(
                entry,
                JobCommand::RecordCheckpoint {
                    checkpoint_id,
                    step: c.step,
                    epoch: c.epoch,
                    loss: c.loss,
                    file,
                    at: now,
                },
            )
            .await?;
        }
        if report.dataset_bytes > 0 {
            let gb = micros(Decimal::from(report.dataset_bytes) / Decimal::from(BYTES_PER_GB));
            self.accrue(
                entry,
                format!("transfer:dataset:{}", entry.attempt),
                CostType::DataTransfer,
                gb,
                self.rates.data_transfer_per_gb,
                serde_json::json!({"reason": "dataset fetched by the cluster", "bytes": report.dataset_bytes, "attempt": entry.attempt}),
                None,
            )
            .await?;
        }
        // Compute: the GPU time of this attempt not billed yet.
        self.accrue_compute(entry, job, report, report.status.is_terminal(), "running")
            .await?;
        Ok(())
    }

    /// Bills the GPU time of this attempt the ledger does not hold yet: once a minute's worth is
    /// unbilled, or whatever is left when `closing`. Keyed by what was billed before, so a
    /// repeated report bills nothing twice.
    async fn accrue_compute(
        &self,
        entry: &SagaEntry,
        job: &Job,
        report: &StatusReport,
        closing: bool,
        reason: &str,
    ) -> anyhow::Result<()> {
        let gpu = Decimal::from_f64(report.gpu_seconds)
            .unwrap_or_default()
            .round_dp(3);
        let billed = job.compute_accrued(entry.attempt);
        let unbilled = gpu - billed;
        if unbilled <= Decimal::ZERO
            || (unbilled < self.options.compute_step_gpu_seconds && !closing)
        {
            return Ok(());
        }
        let rate = self
            .rates
            .gpu_hour(entry.configuration.gpu_config.instance_type);
        self.accrue(
            entry,
            format!("compute:{}:{billed}", entry.attempt),
            CostType::Compute,
            domain::job::estimate::gpu_hours(unbilled),
            rate,
            serde_json::json!({"attempt": entry.attempt, "fromGpuSeconds": billed, "toGpuSeconds": gpu,
                               "clusterJobId": report.cluster_job_id, "reason": reason,
                               "clusterBilledCost": report.billed_cost}),
            Some((entry.attempt, gpu)),
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn accrue(
        &self,
        entry: &SagaEntry,
        key: String,
        cost_type: CostType,
        quantity: Decimal,
        rate: Decimal,
        details: serde_json::Value,
        compute_until: Option<(u32, Decimal)>,
    ) -> anyhow::Result<()> {
        self.command(
            entry,
            JobCommand::AccrueCost {
                entry_key: key,
                cost_type,
                quantity,
                rate,
                details,
                compute_until,
                at: self.jobs.clock().now(),
            },
        )
        .await
    }

    /// Copies the artifacts into our bucket (checked), registers the model, accrues storage and
    /// transfer, and completes the job.
    async fn finish(&self, entry: &SagaEntry, report: &StatusReport) -> anyhow::Result<()> {
        let model_id = model_id_of(entry.job_id);
        let mut artifacts = Vec::new();
        for a in &report.artifacts {
            let file = self
                .copy_checked(a, format!("models/{model_id}/{}", a.name))
                .await?;
            artifacts.push(ModelArtifact {
                name: a.name.clone(),
                s3_key: file.s3_key,
                size_bytes: file.size_bytes,
                sha256: file.sha256,
            });
        }
        let job = self
            .jobs
            .load(entry.job_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| anyhow::anyhow!("no job {}", entry.job_id))?;
        let artifact_bytes: u64 = artifacts.iter().map(|a| a.size_bytes).sum();
        let checkpoint_bytes = job.stored_checkpoint_bytes();
        let stored = artifact_bytes + checkpoint_bytes;
        let gb = |bytes: u64| micros(Decimal::from(bytes) / Decimal::from(BYTES_PER_GB));
        self.accrue(
            entry,
            format!("transfer:artifacts:{}", entry.job_id),
            CostType::DataTransfer,
            gb(artifact_bytes),
            self.rates.data_transfer_per_gb,
            serde_json::json!({"reason": "artifacts copied into storage", "bytes": artifact_bytes}),
            None,
        )
        .await?;
        self.accrue(
            entry,
            format!("storage:{}", entry.job_id),
            CostType::Storage,
            gb(stored),
            self.rates.storage_per_gb_month,
            serde_json::json!({"reason": "artifacts and checkpoint adapters, one month", "bytes": stored, "checkpointBytes": checkpoint_bytes}),
            None,
        )
        .await?;
        let evaluation = report
            .evaluation
            .clone()
            .ok_or_else(|| anyhow::anyhow!("a completed report without evaluation"))?;
        let quality = QualityMetrics {
            validation_scores: evaluation.validation_scores,
            bleu_score: evaluation.comparison.map(|c| c.adapter.bleu),
            comparison: evaluation.comparison,
            adapter_step: evaluation.adapter_step,
            ..QualityMetrics::from_losses(
                evaluation.initial_validation_loss,
                evaluation.final_training_loss,
                evaluation.final_validation_loss,
                evaluation.best_validation_loss,
            )
        };
        let parent_version = match entry.parent_model_id {
            Some(parent) => self
                .models
                .load(parent)
                .await
                .map_err(internal)?
                .and_then(|m| m.version().map(str::to_string)),
            None => None,
        };
        let registered = ModelRegistered {
            model_id,
            user_id: entry.user_id,
            job_id: entry.job_id,
            dataset_id: entry.dataset_id,
            name: format!("Model from {}", entry.dataset_name),
            version: next_version(parent_version.as_deref()),
            parent_model_id: entry.parent_model_id,
            configuration: entry.configuration.clone(),
            quality,
            training: TrainingSummary {
                total_steps: report.total_steps,
                epochs: report.total_epochs,
                gpu_seconds: report.gpu_seconds,
                retry_count: job.retry_count(),
            },
            artifacts,
            final_cost: job.current_cost(),
            registered_at: self.jobs.clock().now(),
        };
        self.models
            .register(&self.ctx(entry), registered)
            .await
            .map_err(internal)?;
        self.command(
            entry,
            JobCommand::Complete {
                final_training_loss: Some(evaluation.final_training_loss),
                final_validation_loss: Some(evaluation.final_validation_loss),
                model_id: Some(model_id),
                at: self.jobs.clock().now(),
            },
        )
        .await
    }

    /// Downloads a file the cluster offers, checks it against the size and sha256 the cluster
    /// gave, and stores it at `key` (the same key again overwrites it with the same bytes).
    async fn copy_checked(&self, a: &ClusterArtifact, key: String) -> anyhow::Result<StoredFile> {
        let _turn = self.copies.acquire().await?;
        let bytes = self.cluster.download(&a.url, a.size_bytes).await?;
        let sha = hex::encode(Sha256::digest(&bytes));
        if bytes.len() as u64 != a.size_bytes || sha != a.sha256 {
            anyhow::bail!(
                "{} does not match the cluster's size/checksum ({} bytes, {sha})",
                a.url,
                bytes.len()
            );
        }
        self.objects.put(&key, bytes).await?;
        Ok(StoredFile {
            s3_key: key,
            size_bytes: a.size_bytes,
            sha256: sha,
        })
    }

    /// The user cancelled: stop the cluster job, bill its GPU time up to the stop.
    async fn cancel(&self, entry: &SagaEntry, job: &Job) -> anyhow::Result<Next> {
        let Some(cluster_job) = entry.cluster_job_id.as_deref().or(job.cluster_job_id()) else {
            // Cancelled between attempts: the failed attempt's files were kept to resume.
            if let Some(failed) = job.resume_from() {
                self.release_quietly(entry, failed).await;
            }
            return Ok(self.next(Phase::Done, entry, Duration::ZERO));
        };
        match self.cluster.cancel(cluster_job).await {
            Ok(()) | Err(ClusterCallError::UnknownJob(_)) => {}
            Err(ClusterCallError::Unavailable(_)) => {
                return Ok(self.next(Phase::Cancel, entry, self.options.unavailable_backoff))
            }
            Err(e) => return Err(e.into()),
        }
        if let Ok(report) = self
            .cluster
            .status(cluster_job, entry.cursor.as_deref())
            .await
        {
            self.accrue_compute(entry, job, &report, true, "cancelled")
                .await?;
        }
        self.release_quietly(entry, cluster_job).await;
        if let Some(failed) = job.resume_from().filter(|f| *f != cluster_job) {
            self.release_quietly(entry, failed).await;
        }
        Ok(self.next(Phase::Done, entry, Duration::ZERO))
    }
}
