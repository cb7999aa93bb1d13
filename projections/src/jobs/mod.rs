//! `rm_jobs` and its children (metrics, checkpoints, logs): the jobs read model behind
//! `GET /api/jobs[/{id}[/metrics]]`, from Job events and the job's telemetry streams.

mod batch;
pub mod queries;

use async_trait::async_trait;
use cqrs_es::Aggregate;
use domain::job::telemetry::{Progress, LOGS_STREAM, METRICS_STREAM, PROGRESS_STREAM};
use domain::job::{Job, JobEvent};
use infrastructure::event_log::{Interest, StoredEvent};
use sqlx::PgConnection;

use crate::Projector;

pub struct JobsProjector;

#[async_trait]
impl Projector for JobsProjector {
    fn name(&self) -> &'static str {
        "jobs"
    }

    fn interest(&self) -> Interest {
        Interest::aggregates(&[
            <Job as Aggregate>::TYPE,
            METRICS_STREAM,
            PROGRESS_STREAM,
            LOGS_STREAM,
        ])
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "rm_jobs",
            "rm_job_metrics",
            "rm_job_checkpoints",
            "rm_job_logs",
            // Kept by triggers on rm_jobs (migration 0022), rebuilt with it.
            "rm_job_counts",
        ]
    }

    /// One event is a run of one (`batch`), so each kind has one rule.
    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        self.apply_all(conn, std::slice::from_ref(event)).await
    }

    /// Runs of the common kinds are folded set-based (`batch`); a rare one ends the run and
    /// is written on its own.
    async fn apply_all(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> anyhow::Result<()> {
        let mut run = batch::Run::default();
        for event in events {
            match event.aggregate_type.as_str() {
                METRICS_STREAM | PROGRESS_STREAM | LOGS_STREAM => {
                    run.telemetry(event.decode()?)?;
                }
                t if t == <Job as Aggregate>::TYPE => {
                    if let Some(rare) = run.job(event.decode()?) {
                        run.flush(conn).await?;
                        rare_event(conn, rare).await?;
                    }
                }
                _ => {}
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

/// The kinds a run does not fold: retries, failures, cancels, recoveries, metadata changes.
async fn rare_event(conn: &mut PgConnection, event: JobEvent) -> anyhow::Result<()> {
    match event {
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
        common => {
            let mut run = batch::Run::default();
            if let Some(event) = run.job(common) {
                anyhow::bail!("no rule folds {event:?}");
            }
            run.flush(conn).await?;
        }
    }
    Ok(())
}
