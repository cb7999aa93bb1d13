//! `rm_jobs` and its children (metrics, checkpoints, logs): the jobs read model behind
//! `GET /api/jobs[/{id}[/metrics]]`, from Job events and the job's telemetry streams.

mod batch;
pub mod queries;

use async_trait::async_trait;
use cqrs_es::Aggregate;
use domain::job::telemetry::{
    Progress, TelemetryEvent, LOGS_STREAM, METRICS_STREAM, PROGRESS_STREAM,
};
use domain::job::{CostType, Job, JobEvent, JobStage, JobStatus};
use infrastructure::event_log::StoredEvent;
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Projector;

pub struct JobsProjector;

#[async_trait]
impl Projector for JobsProjector {
    fn name(&self) -> &'static str {
        "jobs"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "rm_jobs",
            "rm_job_metrics",
            "rm_job_checkpoints",
            "rm_job_logs",
        ]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        match event.aggregate_type.as_str() {
            t if t == <Job as Aggregate>::TYPE => job_event(conn, event.decode()?).await,
            METRICS_STREAM | PROGRESS_STREAM | LOGS_STREAM => {
                telemetry(conn, event.decode()?).await
            }
            _ => Ok(()),
        }
    }

    /// Runs of telemetry and cost accruals go in set-based (`batch`); any other event ends
    /// the run and is applied on its own.
    async fn apply_all(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> anyhow::Result<()> {
        let mut run = batch::Run::default();
        for event in events {
            match event.aggregate_type.as_str() {
                METRICS_STREAM | PROGRESS_STREAM | LOGS_STREAM => match event.decode()? {
                    TelemetryEvent::MetricPointRecorded(p) => run.metric(p)?,
                    TelemetryEvent::ProgressReported(p) => run.progress(p),
                    TelemetryEvent::LogLineRecorded(l) => run.log(l),
                },
                t if t == <Job as Aggregate>::TYPE && event.event_type == "JobCostAccrued" => {
                    match event.decode()? {
                        JobEvent::JobCostAccrued(e) => run.cost(e),
                        other => {
                            run.flush(conn).await?;
                            job_event(conn, other).await?;
                        }
                    }
                }
                _ => {
                    run.flush(conn).await?;
                    self.apply(conn, event).await?;
                }
            }
        }
        run.flush(conn).await
    }
}

/// When a job is expected to finish, from a progress report.
fn eta(p: &Progress) -> Option<chrono::DateTime<chrono::Utc>> {
    p.estimated_time_remaining
        .map(|s| p.reported_at + chrono::Duration::seconds(s as i64))
}

async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: JobStatus,
    stage: Option<JobStage>,
    at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE rm_jobs SET status = $2, current_stage = COALESCE($3, current_stage), updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(stage.map(JobStage::as_str))
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn job_event(conn: &mut PgConnection, event: JobEvent) -> anyhow::Result<()> {
    match event {
        JobEvent::JobCreated(e) => {
            let c = &e.configuration;
            sqlx::query(
                "INSERT INTO rm_jobs (id, user_id, dataset_id, dataset_name, status, current_stage, \
                   preset_id, base_model, hyperparameters, gpu_config, options, estimate, total_epochs, \
                   total_steps, estimated_total_cost, parent_model_id, suffix, metadata, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'queued', 'queued', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(e.job_id.0)
            .bind(e.user_id.0)
            .bind(e.dataset_id.0)
            .bind(&e.dataset_name)
            .bind(c.preset_id.as_str())
            .bind(&c.base_model)
            .bind(Json(&c.hyperparameters))
            .bind(Json(&c.gpu_config))
            .bind(Json(&c.options))
            .bind(Json(&e.estimate))
            .bind(i32::try_from(c.hyperparameters.num_epochs)?)
            .bind(i64::try_from(e.estimate.total_steps)?)
            .bind(e.estimate.cost.total)
            .bind(e.parent_model_id.map(|m| m.0))
            .bind(&e.suffix)
            .bind(Json(&e.metadata))
            .bind(e.created_at)
            .execute(&mut *conn)
            .await?;
        }
        JobEvent::JobSubmissionStarted(e) => {
            set_status(
                conn,
                e.job_id.0,
                JobStatus::Initializing,
                Some(JobStage::Initializing),
                e.started_at,
            )
            .await?;
        }
        JobEvent::JobSubmitted(e) => {
            sqlx::query("UPDATE rm_jobs SET cluster_job_id = $2, updated_at = $3 WHERE id = $1")
                .bind(e.job_id.0)
                .bind(&e.cluster_job_id)
                .bind(e.submitted_at)
                .execute(&mut *conn)
                .await?;
        }
        JobEvent::JobStageChanged(e) => {
            sqlx::query(
                "UPDATE rm_jobs SET status = 'running', current_stage = $2, \
                   started_at = COALESCE(started_at, $3), updated_at = $3 WHERE id = $1",
            )
            .bind(e.job_id.0)
            .bind(e.stage.as_str())
            .bind(e.changed_at)
            .execute(&mut *conn)
            .await?;
        }
        JobEvent::JobCheckpointSaved(e) => {
            sqlx::query(
                "INSERT INTO rm_job_checkpoints (job_id, checkpoint_id, step, epoch, loss, s3_key, \
                 size_bytes, sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(e.job_id.0)
            .bind(&e.checkpoint_id)
            .bind(i64::try_from(e.step)?)
            .bind(i32::try_from(e.epoch)?)
            .bind(e.loss)
            .bind(&e.s3_key)
            .bind(e.size_bytes.map(i64::try_from).transpose()?)
            .bind(&e.sha256)
            .bind(e.saved_at)
            .execute(&mut *conn)
            .await?;
        }
        JobEvent::JobCostAccrued(e) => {
            let column = match e.cost_type {
                CostType::Compute => "compute_cost",
                CostType::Storage => "storage_cost",
                CostType::DataTransfer => "data_transfer_cost",
            };
            sqlx::query(&format!(
                "UPDATE rm_jobs SET current_cost = current_cost + $2, {column} = {column} + $2, \
                   updated_at = $3 WHERE id = $1"
            ))
            .bind(e.job_id.0)
            .bind(e.amount)
            .bind(e.accrued_at)
            .execute(&mut *conn)
            .await?;
        }
        JobEvent::JobRetryScheduled(e) => {
            sqlx::query(
                "UPDATE rm_jobs SET status = 'queued', current_stage = 'queued', retry_count = $2, \
                   error_code = $3, error_message = $4, cluster_job_id = NULL, updated_at = $5 WHERE id = $1",
            )
            .bind(e.job_id.0)
            .bind(i32::try_from(e.retry_count)?)
            .bind(&e.code)
            .bind(&e.message)
            .bind(e.scheduled_at)
            .execute(&mut *conn)
            .await?;
        }
        JobEvent::JobCompleted(e) => {
            sqlx::query(
                "UPDATE rm_jobs SET status = 'completed', current_stage = 'completed', progress = 100, \
                   final_cost = $2, artifact_id = $3, completed_at = $4, estimated_completion_at = NULL, \
                   updated_at = $4 WHERE id = $1",
            )
            .bind(e.job_id.0)
            .bind(e.final_cost)
            .bind(e.model_id.map(|m| m.0))
            .bind(e.completed_at)
            .execute(&mut *conn)
            .await?;
        }
        JobEvent::JobFailed(e) => {
            sqlx::query(
                "UPDATE rm_jobs SET status = 'failed', final_cost = $2, error_code = $3, error_message = $4, \
                   retry_count = $5, completed_at = $6, estimated_completion_at = NULL, updated_at = $6 WHERE id = $1",
            )
            .bind(e.job_id.0)
            .bind(e.final_cost)
            .bind(&e.code)
            .bind(&e.message)
            .bind(i32::try_from(e.retry_count)?)
            .bind(e.failed_at)
            .execute(&mut *conn)
            .await?;
        }
        JobEvent::JobCancelled(e) => {
            sqlx::query(
                "UPDATE rm_jobs SET status = 'cancelled', final_cost = $2, refund_amount = $3, \
                   completed_at = $4, estimated_completion_at = NULL, updated_at = $4 WHERE id = $1",
            )
            .bind(e.job_id.0)
            .bind(e.cost_so_far)
            .bind(e.refund_amount)
            .bind(e.cancelled_at)
            .execute(&mut *conn)
            .await?;
        }
        JobEvent::JobRecoveredFromCluster(e) => {
            sqlx::query(
                "UPDATE rm_jobs SET status = 'running', current_stage = 'training', error_code = NULL, \
                   error_message = NULL, final_cost = NULL, completed_at = NULL, cluster_job_id = $2, \
                   updated_at = $3 WHERE id = $1",
            )
            .bind(e.job_id.0)
            .bind(&e.cluster_job_id)
            .bind(e.recovered_at)
            .execute(&mut *conn)
            .await?;
        }
        JobEvent::JobMetadataUpdated(e) => {
            sqlx::query(
                "UPDATE rm_jobs SET name = coalesce($2, name), description = coalesce($3, description), \
                   tags = coalesce($4, tags), updated_at = $5 WHERE id = $1",
            )
            .bind(e.job_id.0)
            .bind(e.name)
            .bind(e.description)
            .bind(e.tags.map(sqlx::types::Json))
            .bind(e.updated_at)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

async fn telemetry(conn: &mut PgConnection, event: TelemetryEvent) -> anyhow::Result<()> {
    match event {
        TelemetryEvent::MetricPointRecorded(p) => {
            let step = i64::try_from(p.step)?;
            sqlx::query(
                "INSERT INTO rm_job_metrics (job_id, step, epoch, training_loss, validation_loss, \
                   learning_rate, gradient_norm, throughput, gpu_utilization, recorded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            )
            .bind(p.job_id.0)
            .bind(step)
            .bind(i32::try_from(p.epoch)?)
            .bind(p.training_loss)
            .bind(p.validation_loss)
            .bind(p.learning_rate)
            .bind(p.gradient_norm)
            .bind(p.throughput)
            .bind(p.gpu_utilization)
            .bind(p.recorded_at)
            .execute(&mut *conn)
            .await?;
            let current = domain::job::telemetry::CurrentMetrics::from(&p);
            sqlx::query(
                "UPDATE rm_jobs SET current_metrics = $2, last_metric_step = $3 \
                 WHERE id = $1 AND (last_metric_step IS NULL OR last_metric_step <= $3)",
            )
            .bind(p.job_id.0)
            .bind(Json(current))
            .bind(step)
            .execute(&mut *conn)
            .await?;
        }
        TelemetryEvent::ProgressReported(p) => {
            let eta = eta(&p);
            sqlx::query(
                "UPDATE rm_jobs SET progress = $2, current_step = $3, current_epoch = $4, \
                   estimated_completion_at = $5, updated_at = GREATEST(updated_at, $6) \
                 WHERE id = $1 AND (current_step IS NULL OR current_step <= $3) \
                   AND status IN ('initializing', 'running')",
            )
            .bind(p.job_id.0)
            .bind(p.progress)
            .bind(i64::try_from(p.step)?)
            .bind(i32::try_from(p.epoch)?)
            .bind(eta)
            .bind(p.reported_at)
            .execute(&mut *conn)
            .await?;
        }
        TelemetryEvent::LogLineRecorded(l) => {
            sqlx::query(
                "INSERT INTO rm_job_logs (job_id, idx, level, message, logged_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(l.job_id.0)
            .bind(i64::try_from(l.index)?)
            .bind(l.level.as_str())
            .bind(&l.message)
            .bind(l.logged_at)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
