//! The jobs projector's set-based fold. A run is the events of a batch up to one of a rare
//! kind (a retry, a failure, a cancel, a recovery, a metadata change): job creations, their
//! submission and stages, checkpoints, cost accruals, completions and every metric point,
//! progress report and log line, which are nearly all of a job's history.
//!
//! Their child rows and new jobs go in with one multi-row INSERT per table; their effects on
//! `rm_jobs` are folded in memory, in log order, onto the rows as they stood before the run
//! (read once), by the rules below, and written back with one UPDATE. The projector applies a
//! single event as a run of one, so these rules are the only ones for those events, and the
//! tables end the same whatever the batches' bounds.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::job::telemetry::{CurrentMetrics, LogLine, MetricPoint, Progress, TelemetryEvent};
use domain::job::{CostType, JobCheckpointSaved, JobCreated, JobEvent, JobStage, JobStatus};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

/// The columns of a job's row a run may change, as they stand.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct JobRow {
    status: String,
    current_stage: String,
    progress: f64,
    current_epoch: Option<i32>,
    current_step: Option<i64>,
    last_metric_step: Option<i64>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    estimated_completion_at: Option<DateTime<Utc>>,
    current_cost: Decimal,
    compute_cost: Decimal,
    storage_cost: Decimal,
    data_transfer_cost: Decimal,
    final_cost: Option<Decimal>,
    artifact_id: Option<Uuid>,
    cluster_job_id: Option<String>,
    updated_at: DateTime<Utc>,
    /// `current_metrics`, only once a run set it (it is never read back).
    #[sqlx(skip)]
    metrics: Option<Value>,
}

const COLUMNS: &str = "status, current_stage, progress, current_epoch, current_step, \
    last_metric_step, started_at, completed_at, estimated_completion_at, current_cost, \
    compute_cost, storage_cost, data_transfer_cost, final_cost, artifact_id, cluster_job_id, updated_at";

impl JobRow {
    /// The row `JobCreated` inserts.
    fn created(e: &JobCreated) -> JobRow {
        JobRow {
            status: JobStatus::Queued.as_str().into(),
            current_stage: JobStage::Queued.as_str().into(),
            progress: 0.0,
            current_epoch: None,
            current_step: None,
            last_metric_step: None,
            started_at: None,
            completed_at: None,
            estimated_completion_at: None,
            current_cost: Decimal::ZERO,
            compute_cost: Decimal::ZERO,
            storage_cost: Decimal::ZERO,
            data_transfer_cost: Decimal::ZERO,
            final_cost: None,
            artifact_id: None,
            cluster_job_id: None,
            updated_at: e.created_at,
            metrics: None,
        }
    }

    /// One event's effect on its job's row.
    fn fold(&mut self, effect: &Effect) -> anyhow::Result<()> {
        match effect {
            Effect::Created(_) => {}
            Effect::Job(event) => self.job_event(event)?,
            Effect::Metric(_, step, current) => {
                // The newest point is the current one; a late older point changes nothing.
                if self.last_metric_step.is_none_or(|last| last <= *step) {
                    self.last_metric_step = Some(*step);
                    self.metrics = Some(serde_json::to_value(current)?);
                }
            }
            Effect::Progress(p) => {
                // Progress only moves on, and only while the job runs.
                let step = i64::try_from(p.step)?;
                let live = [JobStatus::Initializing, JobStatus::Running]
                    .iter()
                    .any(|s| s.as_str() == self.status);
                if live && self.current_step.is_none_or(|current| current <= step) {
                    self.progress = p.progress;
                    self.current_step = Some(step);
                    self.current_epoch = Some(i32::try_from(p.epoch)?);
                    self.estimated_completion_at = super::eta(p);
                    self.updated_at = self.updated_at.max(p.reported_at);
                }
            }
        }
        Ok(())
    }

    fn job_event(&mut self, event: &JobEvent) -> anyhow::Result<()> {
        match event {
            JobEvent::JobSubmissionStarted(e) => {
                self.status = JobStatus::Initializing.as_str().into();
                self.current_stage = JobStage::Initializing.as_str().into();
                self.updated_at = e.started_at;
            }
            JobEvent::JobSubmitted(e) => {
                self.cluster_job_id = Some(e.cluster_job_id.clone());
                self.updated_at = e.submitted_at;
            }
            JobEvent::JobStageChanged(e) => {
                self.status = JobStatus::Running.as_str().into();
                self.current_stage = e.stage.as_str().into();
                self.started_at = self.started_at.or(Some(e.changed_at));
                self.updated_at = e.changed_at;
            }
            JobEvent::JobCostAccrued(e) => {
                let column = match e.cost_type {
                    CostType::Compute => &mut self.compute_cost,
                    CostType::Storage => &mut self.storage_cost,
                    // Chat completions are billed by the model, never accrued by a job.
                    CostType::DataTransfer | CostType::ApiCalls => &mut self.data_transfer_cost,
                };
                *column = numeric_6(*column + e.amount);
                self.current_cost = numeric_6(self.current_cost + e.amount);
                self.updated_at = e.accrued_at;
            }
            JobEvent::JobCompleted(e) => {
                self.status = JobStatus::Completed.as_str().into();
                self.current_stage = JobStage::Completed.as_str().into();
                self.progress = 100.0;
                self.final_cost = Some(numeric_2(e.final_cost));
                self.artifact_id = e.model_id.map(|m| m.0);
                self.completed_at = Some(e.completed_at);
                self.estimated_completion_at = None;
                self.updated_at = e.completed_at;
            }
            // Checkpoints only add a row of their own; the rest are not folded here.
            _ => {}
        }
        Ok(())
    }
}

/// A value as a `numeric(20, 6)` column stores it (Postgres rounds half away from zero).
fn numeric_6(v: Decimal) -> Decimal {
    v.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
}

/// A value as a `numeric(20, 2)` column stores it.
fn numeric_2(v: Decimal) -> Decimal {
    v.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

#[derive(Debug, Clone)]
enum Effect {
    Created(Uuid),
    Job(JobEvent),
    Metric(Uuid, i64, CurrentMetrics),
    Progress(Progress),
}

impl Effect {
    fn job(&self) -> Option<Uuid> {
        match self {
            Effect::Created(job) | Effect::Metric(job, _, _) => Some(*job),
            Effect::Progress(p) => Some(p.job_id.0),
            Effect::Job(e) => job_of(e),
        }
    }
}

fn job_of(e: &JobEvent) -> Option<Uuid> {
    Some(match e {
        JobEvent::JobSubmissionStarted(e) => e.job_id.0,
        JobEvent::JobSubmitted(e) => e.job_id.0,
        JobEvent::JobStageChanged(e) => e.job_id.0,
        JobEvent::JobCostAccrued(e) => e.job_id.0,
        JobEvent::JobCompleted(e) => e.job_id.0,
        _ => return None,
    })
}

#[derive(Default)]
pub(super) struct Run {
    created: Vec<JobCreated>,
    metrics: Vec<MetricPoint>,
    logs: Vec<LogLine>,
    checkpoints: Vec<JobCheckpointSaved>,
    effects: Vec<Effect>,
}

impl Run {
    /// Takes `event` into the run if it is of a kind folded here; answers it back if not.
    pub(super) fn job(&mut self, event: JobEvent) -> Option<JobEvent> {
        match event {
            JobEvent::JobCreated(e) => {
                self.effects.push(Effect::Created(e.job_id.0));
                self.created.push(*e);
            }
            JobEvent::JobCheckpointSaved(e) => self.checkpoints.push(e),
            e @ (JobEvent::JobSubmissionStarted(_)
            | JobEvent::JobSubmitted(_)
            | JobEvent::JobStageChanged(_)
            | JobEvent::JobCostAccrued(_)
            | JobEvent::JobCompleted(_)) => self.effects.push(Effect::Job(e)),
            rare => return Some(rare),
        }
        None
    }

    pub(super) fn telemetry(&mut self, event: TelemetryEvent) -> anyhow::Result<()> {
        match event {
            TelemetryEvent::MetricPointRecorded(p) => {
                let step = i64::try_from(p.step)?;
                self.effects
                    .push(Effect::Metric(p.job_id.0, step, CurrentMetrics::from(&p)));
                self.metrics.push(p);
            }
            TelemetryEvent::ProgressReported(p) => self.effects.push(Effect::Progress(p)),
            TelemetryEvent::LogLineRecorded(l) => self.logs.push(l),
        }
        Ok(())
    }

    /// Writes the run and empties it.
    pub(super) async fn flush(&mut self, conn: &mut PgConnection) -> anyhow::Result<()> {
        let run = std::mem::take(self);
        let mut rows = if run.effects.is_empty() {
            HashMap::new()
        } else {
            read_rows(conn, &run.effects).await?
        };
        if !run.created.is_empty() {
            insert_jobs(conn, &run.created).await?;
        }
        if !run.metrics.is_empty() {
            insert_metrics(conn, &run.metrics).await?;
        }
        if !run.logs.is_empty() {
            insert_logs(conn, &run.logs).await?;
        }
        if !run.checkpoints.is_empty() {
            insert_checkpoints(conn, &run.checkpoints).await?;
        }
        if run.effects.is_empty() {
            return Ok(());
        }
        // A job without a row is left alone, as an UPDATE of no row would leave it; a job
        // created in the run has the row its creation inserted (unless it had one already).
        let created: HashMap<Uuid, &JobCreated> =
            run.created.iter().map(|e| (e.job_id.0, e)).collect();
        for effect in &run.effects {
            let Some(job) = effect.job() else { continue };
            if let Effect::Created(_) = effect {
                if let Some(e) = created.get(&job) {
                    rows.entry(job).or_insert_with(|| JobRow::created(e));
                }
                continue;
            }
            if let Some(row) = rows.get_mut(&job) {
                row.fold(effect)?;
            }
        }
        update_rows(conn, rows).await
    }
}

async fn read_rows(
    conn: &mut PgConnection,
    effects: &[Effect],
) -> anyhow::Result<HashMap<Uuid, JobRow>> {
    #[derive(sqlx::FromRow)]
    struct Read {
        id: Uuid,
        #[sqlx(flatten)]
        row: JobRow,
    }
    let mut ids: Vec<Uuid> = effects.iter().filter_map(Effect::job).collect();
    ids.sort_unstable();
    ids.dedup();
    let read: Vec<Read> = sqlx::query_as(&format!(
        "SELECT id, {COLUMNS} FROM rm_jobs WHERE id = ANY($1)"
    ))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(read.into_iter().map(|r| (r.id, r.row)).collect())
}

async fn update_rows(conn: &mut PgConnection, rows: HashMap<Uuid, JobRow>) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let rows: Vec<(Uuid, JobRow)> = rows.into_iter().collect();
    fn col<T>(rows: &[(Uuid, JobRow)], f: impl Fn(&JobRow) -> T) -> Vec<T> {
        rows.iter().map(|(_, r)| f(r)).collect()
    }
    sqlx::query(
        "UPDATE rm_jobs j SET status = u.status, current_stage = u.current_stage, \
           progress = u.progress, current_epoch = u.current_epoch, current_step = u.current_step, \
           last_metric_step = u.last_metric_step, started_at = u.started_at, \
           completed_at = u.completed_at, estimated_completion_at = u.estimated_completion_at, \
           current_cost = u.current_cost, compute_cost = u.compute_cost, \
           storage_cost = u.storage_cost, data_transfer_cost = u.data_transfer_cost, \
           final_cost = u.final_cost, artifact_id = u.artifact_id, cluster_job_id = u.cluster_job_id, \
           updated_at = u.updated_at, current_metrics = COALESCE(u.metrics, j.current_metrics) \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[], $5::int[], $6::bigint[], \
           $7::bigint[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::numeric[], \
           $12::numeric[], $13::numeric[], $14::numeric[], $15::numeric[], $16::uuid[], $17::text[], \
           $18::timestamptz[], $19::jsonb[]) \
           AS u(id, status, current_stage, progress, current_epoch, current_step, last_metric_step, \
                started_at, completed_at, estimated_completion_at, current_cost, compute_cost, \
                storage_cost, data_transfer_cost, final_cost, artifact_id, cluster_job_id, \
                updated_at, metrics) \
         WHERE j.id = u.id",
    )
    .bind(rows.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(col(&rows, |r| r.status.clone()))
    .bind(col(&rows, |r| r.current_stage.clone()))
    .bind(col(&rows, |r| r.progress))
    .bind(col(&rows, |r| r.current_epoch))
    .bind(col(&rows, |r| r.current_step))
    .bind(col(&rows, |r| r.last_metric_step))
    .bind(col(&rows, |r| r.started_at))
    .bind(col(&rows, |r| r.completed_at))
    .bind(col(&rows, |r| r.estimated_completion_at))
    .bind(col(&rows, |r| r.current_cost))
    .bind(col(&rows, |r| r.compute_cost))
    .bind(col(&rows, |r| r.storage_cost))
    .bind(col(&rows, |r| r.data_transfer_cost))
    .bind(col(&rows, |r| r.final_cost))
    .bind(col(&rows, |r| r.artifact_id))
    .bind(col(&rows, |r| r.cluster_job_id.clone()))
    .bind(col(&rows, |r| r.updated_at))
    .bind(col(&rows, |r| r.metrics.clone()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_jobs(conn: &mut PgConnection, created: &[JobCreated]) -> anyhow::Result<()> {
    let mut epochs = Vec::with_capacity(created.len());
    let mut steps = Vec::with_capacity(created.len());
    for e in created {
        epochs.push(i32::try_from(e.configuration.hyperparameters.num_epochs)?);
        steps.push(i64::try_from(e.estimate.total_steps)?);
    }
    fn col<'a, T>(created: &'a [JobCreated], f: impl Fn(&'a JobCreated) -> T) -> Vec<T> {
        created.iter().map(f).collect()
    }
    sqlx::query(
        "INSERT INTO rm_jobs (id, user_id, dataset_id, dataset_name, status, current_stage, \
           preset_id, base_model, hyperparameters, gpu_config, options, estimate, total_epochs, \
           total_steps, estimated_total_cost, parent_model_id, suffix, metadata, created_at, updated_at, name) \
         SELECT id, user_id, dataset_id, dataset_name, 'queued', 'queued', preset_id, base_model, \
           hyperparameters, gpu_config, options, estimate, total_epochs, total_steps, \
           estimated_total_cost, parent_model_id, suffix, metadata, created_at, created_at, name \
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
           $7::jsonb[], $8::jsonb[], $9::jsonb[], $10::jsonb[], $11::int[], $12::bigint[], \
           $13::numeric[], $14::uuid[], $15::text[], $16::jsonb[], $17::timestamptz[], $18::text[]) \
           AS c(id, user_id, dataset_id, dataset_name, preset_id, base_model, hyperparameters, \
                gpu_config, options, estimate, total_epochs, total_steps, estimated_total_cost, \
                parent_model_id, suffix, metadata, created_at, name) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(col(created, |e| e.job_id.0))
    .bind(col(created, |e| e.user_id.0))
    .bind(col(created, |e| e.dataset_id.0))
    .bind(col(created, |e| e.dataset_name.clone()))
    .bind(col(created, |e| e.configuration.preset_id.as_str().to_string()))
    .bind(col(created, |e| e.configuration.base_model.clone()))
    .bind(col(created, |e| Json(&e.configuration.hyperparameters)))
    .bind(col(created, |e| Json(&e.configuration.gpu_config)))
    .bind(col(created, |e| Json(&e.configuration.options)))
    .bind(col(created, |e| Json(&e.estimate)))
    .bind(epochs)
    .bind(steps)
    .bind(col(created, |e| e.estimate.cost.total))
    .bind(col(created, |e| e.parent_model_id.map(|m| m.0)))
    .bind(col(created, |e| e.suffix.clone()))
    .bind(col(created, |e| Json(&e.metadata)))
    .bind(col(created, |e| e.created_at))
    .bind(col(created, JobCreated::name))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_checkpoints(
    conn: &mut PgConnection,
    saved: &[JobCheckpointSaved],
) -> anyhow::Result<()> {
    let (mut steps, mut epochs, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for e in saved {
        steps.push(i64::try_from(e.step)?);
        epochs.push(i32::try_from(e.epoch)?);
        sizes.push(e.size_bytes.map(i64::try_from).transpose()?);
    }
    sqlx::query(
        "INSERT INTO rm_job_checkpoints (job_id, checkpoint_id, step, epoch, loss, s3_key, \
           size_bytes, sha256, created_at) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::int[], $5::float8[], \
           $6::text[], $7::bigint[], $8::text[], $9::timestamptz[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(saved.iter().map(|e| e.job_id.0).collect::<Vec<_>>())
    .bind(
        saved
            .iter()
            .map(|e| e.checkpoint_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(steps)
    .bind(epochs)
    .bind(saved.iter().map(|e| e.loss).collect::<Vec<_>>())
    .bind(saved.iter().map(|e| e.s3_key.clone()).collect::<Vec<_>>())
    .bind(sizes)
    .bind(saved.iter().map(|e| e.sha256.clone()).collect::<Vec<_>>())
    .bind(saved.iter().map(|e| e.saved_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_metrics(conn: &mut PgConnection, points: &[MetricPoint]) -> anyhow::Result<()> {
    let mut steps = Vec::with_capacity(points.len());
    let mut epochs = Vec::with_capacity(points.len());
    for p in points {
        steps.push(i64::try_from(p.step)?);
        epochs.push(i32::try_from(p.epoch)?);
    }
    let column = |f: fn(&MetricPoint) -> Option<f64>| points.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO rm_job_metrics (job_id, step, epoch, training_loss, validation_loss, \
           learning_rate, gradient_norm, throughput, gpu_utilization, recorded_at) \
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::float8[], $5::float8[], \
           $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::timestamptz[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(points.iter().map(|p| p.job_id.0).collect::<Vec<_>>())
    .bind(steps)
    .bind(epochs)
    .bind(points.iter().map(|p| p.training_loss).collect::<Vec<_>>())
    .bind(column(|p| p.validation_loss))
    .bind(points.iter().map(|p| p.learning_rate).collect::<Vec<_>>())
    .bind(column(|p| p.gradient_norm))
    .bind(column(|p| p.throughput))
    .bind(column(|p| p.gpu_utilization))
    .bind(points.iter().map(|p| p.recorded_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_logs(conn: &mut PgConnection, lines: &[LogLine]) -> anyhow::Result<()> {
    let mut indexes = Vec::with_capacity(lines.len());
    for l in lines {
        indexes.push(i64::try_from(l.index)?);
    }
    sqlx::query(
        "INSERT INTO rm_job_logs (job_id, idx, level, message, logged_at) \
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(lines.iter().map(|l| l.job_id.0).collect::<Vec<_>>())
    .bind(indexes)
    .bind(lines.iter().map(|l| l.level.as_str()).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.message.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.logged_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ids::{JobId, UserId};
    use domain::job::{JobCompleted, JobCostAccrued, JobStageChanged};

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    fn row(status: JobStatus) -> JobRow {
        JobRow {
            status: status.as_str().into(),
            current_stage: JobStage::Training.as_str().into(),
            progress: 5.0,
            current_epoch: Some(1),
            current_step: Some(5),
            last_metric_step: Some(5),
            started_at: Some(at(1)),
            completed_at: None,
            estimated_completion_at: None,
            current_cost: Decimal::ZERO,
            compute_cost: Decimal::ZERO,
            storage_cost: Decimal::ZERO,
            data_transfer_cost: Decimal::ZERO,
            final_cost: None,
            artifact_id: None,
            cluster_job_id: Some("c-1".into()),
            updated_at: at(10),
            metrics: None,
        }
    }

    fn progress(step: u64, reported: i64) -> Effect {
        Effect::Progress(Progress {
            job_id: JobId(Uuid::nil()),
            step,
            total_steps: 100,
            epoch: 1,
            total_epochs: 1,
            progress: step as f64,
            estimated_time_remaining: None,
            reported_at: at(reported),
        })
    }

    fn metric(step: i64, loss: f64) -> Effect {
        Effect::Metric(
            Uuid::nil(),
            step,
            CurrentMetrics {
                training_loss: loss,
                validation_loss: None,
                learning_rate: 1e-4,
                throughput: None,
                gpu_utilization: None,
            },
        )
    }

    fn cost(cost_type: CostType, micros: i64, s: i64) -> Effect {
        Effect::Job(JobEvent::JobCostAccrued(JobCostAccrued {
            job_id: JobId(Uuid::nil()),
            user_id: UserId(Uuid::nil()),
            entry_key: format!("e{s}"),
            cost_type,
            amount: Decimal::new(micros, 6),
            rate: Decimal::ONE,
            quantity: Decimal::new(micros, 6),
            details: serde_json::json!({}),
            job_total: Decimal::ZERO,
            estimated_total: Decimal::ZERO,
            attempt: None,
            gpu_seconds_until: None,
            accrued_at: at(s),
        }))
    }

    fn fold(mut r: JobRow, effects: &[Effect]) -> JobRow {
        for e in effects {
            r.fold(e).unwrap_or_default();
        }
        r
    }

    #[test]
    fn progress_keeps_the_furthest_step_and_the_latest_time_of_those_it_took() {
        let r = fold(
            row(JobStatus::Running),
            &[progress(7, 30), progress(6, 50), progress(9, 20)],
        );
        assert_eq!((r.current_step, r.progress), (Some(9), 9.0));
        // 6 was behind 7, so its time is not taken.
        assert_eq!(r.updated_at, at(30));
    }

    #[test]
    fn progress_behind_the_row_or_of_a_finished_job_changes_nothing() {
        let running = row(JobStatus::Running);
        assert_eq!(fold(running.clone(), &[progress(4, 99)]), running);
        let done = row(JobStatus::Completed);
        assert_eq!(fold(done.clone(), &[progress(8, 99)]), done);
    }

    #[test]
    fn the_newest_metric_point_wins_and_a_late_older_one_does_not() {
        let r = fold(
            row(JobStatus::Running),
            &[metric(8, 0.5), metric(6, 0.9), metric(3, 2.0)],
        );
        assert_eq!(r.last_metric_step, Some(8));
        assert_eq!(
            r.metrics.as_ref().map(|m| m["trainingLoss"].clone()),
            Some(0.5.into())
        );
        let running = row(JobStatus::Running);
        assert_eq!(fold(running.clone(), &[metric(4, 1.0)]), running);
    }

    #[test]
    fn costs_add_up_by_type_and_the_last_accrual_sets_the_time() {
        let r = fold(
            row(JobStatus::Running),
            &[
                cost(CostType::Compute, 10, 40),
                cost(CostType::Storage, 3, 20),
                cost(CostType::Compute, 5, 30),
                progress(6, 35),
            ],
        );
        assert_eq!(r.compute_cost, Decimal::new(15, 6));
        assert_eq!(r.storage_cost, Decimal::new(3, 6));
        assert_eq!(r.current_cost, Decimal::new(18, 6));
        // The accrual sets the time (30), the progress after it may only move it on (35).
        assert_eq!(r.updated_at, at(35));
    }

    #[test]
    fn a_stage_starts_the_job_once_and_completion_ends_it_whole() {
        let stage = |s, t| {
            Effect::Job(JobEvent::JobStageChanged(JobStageChanged {
                job_id: JobId(Uuid::nil()),
                stage: s,
                message: String::new(),
                changed_at: at(t),
            }))
        };
        let mut queued = row(JobStatus::Initializing);
        queued.started_at = None;
        let r = fold(
            queued,
            &[
                stage(JobStage::Training, 20),
                stage(JobStage::Validating, 30),
            ],
        );
        assert_eq!(r.status, JobStatus::Running.as_str());
        assert_eq!(r.current_stage, JobStage::Validating.as_str());
        assert_eq!(r.started_at, Some(at(20)));
        let done = fold(
            r,
            &[
                progress(50, 40),
                Effect::Job(JobEvent::JobCompleted(JobCompleted {
                    job_id: JobId(Uuid::nil()),
                    user_id: UserId(Uuid::nil()),
                    final_training_loss: None,
                    final_validation_loss: None,
                    model_id: None,
                    final_cost: Decimal::new(1225, 3),
                    completed_at: at(50),
                })),
                progress(60, 60),
            ],
        );
        assert_eq!(done.status, JobStatus::Completed.as_str());
        assert_eq!(done.progress, 100.0, "no progress after the end");
        assert_eq!(
            done.final_cost,
            Some(Decimal::new(123, 2)),
            "as numeric(20, 2) stores it: half away from zero"
        );
        assert_eq!(done.updated_at, at(50));
    }
}
