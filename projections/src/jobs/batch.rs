//! The jobs projector's set-based fold of a run of high-rate events: metric points, log lines,
//! progress reports and cost accruals, which are nearly all of a job's history.
//!
//! Their rows go in with one multi-row INSERT per table; their effects on `rm_jobs` are
//! folded in memory from the rows as they stand (read once), in log order, with the same rule
//! each one-event UPDATE has, and written back with one UPDATE. Any other event ends the run
//! (it is written first), so the tables end as the one-event fold leaves them whatever the
//! batch's bounds.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::job::telemetry::{CurrentMetrics, LogLine, MetricPoint, Progress};
use domain::job::{CostType, JobCostAccrued};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// What a run reads of a job's row.
#[derive(sqlx::FromRow)]
struct Stored {
    id: Uuid,
    status: String,
    current_step: Option<i64>,
    last_metric_step: Option<i64>,
    updated_at: DateTime<Utc>,
}

/// What a run does to one job's row.
#[derive(Debug, Clone, PartialEq)]
struct JobRow {
    status: String,
    current_step: Option<i64>,
    last_metric_step: Option<i64>,
    updated_at: DateTime<Utc>,
    metrics: Option<Value>,
    progress: Option<(f64, i64, i32, Option<DateTime<Utc>>)>,
    compute: Decimal,
    storage: Decimal,
    transfer: Decimal,
}

#[derive(Debug, Clone)]
enum Effect {
    Metric(Uuid, i64, CurrentMetrics),
    Progress(Progress),
    Cost(JobCostAccrued),
}

#[derive(Default)]
pub(super) struct Run {
    metrics: Vec<MetricPoint>,
    logs: Vec<LogLine>,
    effects: Vec<Effect>,
}

impl Run {
    pub(super) fn metric(&mut self, p: MetricPoint) -> anyhow::Result<()> {
        let step = i64::try_from(p.step)?;
        self.effects
            .push(Effect::Metric(p.job_id.0, step, CurrentMetrics::from(&p)));
        self.metrics.push(p);
        Ok(())
    }

    pub(super) fn progress(&mut self, p: Progress) {
        self.effects.push(Effect::Progress(p));
    }

    pub(super) fn log(&mut self, l: LogLine) {
        self.logs.push(l);
    }

    pub(super) fn cost(&mut self, e: JobCostAccrued) {
        self.effects.push(Effect::Cost(e));
    }

    /// Writes the run and empties it.
    pub(super) async fn flush(&mut self, conn: &mut PgConnection) -> anyhow::Result<()> {
        let run = std::mem::take(self);
        if !run.metrics.is_empty() {
            insert_metrics(conn, &run.metrics).await?;
        }
        if !run.logs.is_empty() {
            insert_logs(conn, &run.logs).await?;
        }
        if !run.effects.is_empty() {
            update_jobs(conn, &run.effects).await?;
        }
        Ok(())
    }
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
    let mut levels = Vec::with_capacity(lines.len());
    for l in lines {
        indexes.push(i64::try_from(l.index)?);
        levels.push(l.level.as_str());
    }
    sqlx::query(
        "INSERT INTO rm_job_logs (job_id, idx, level, message, logged_at) \
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(lines.iter().map(|l| l.job_id.0).collect::<Vec<_>>())
    .bind(indexes)
    .bind(levels)
    .bind(lines.iter().map(|l| l.message.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.logged_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl JobRow {
    /// One event's effect, by the rule of its one-event UPDATE (see `super::telemetry` and
    /// `super::job_event`).
    fn fold(&mut self, effect: &Effect) -> anyhow::Result<()> {
        match effect {
            Effect::Metric(_, step, current) => {
                if self.last_metric_step.is_none_or(|last| last <= *step) {
                    self.last_metric_step = Some(*step);
                    self.metrics = Some(serde_json::to_value(current)?);
                }
            }
            Effect::Progress(p) => {
                let step = i64::try_from(p.step)?;
                let live = matches!(self.status.as_str(), "initializing" | "running");
                if live && self.current_step.is_none_or(|current| current <= step) {
                    self.current_step = Some(step);
                    self.progress =
                        Some((p.progress, step, i32::try_from(p.epoch)?, super::eta(p)));
                    self.updated_at = self.updated_at.max(p.reported_at);
                }
            }
            Effect::Cost(e) => {
                match e.cost_type {
                    CostType::Compute => self.compute += e.amount,
                    CostType::Storage => self.storage += e.amount,
                    CostType::DataTransfer => self.transfer += e.amount,
                }
                self.updated_at = e.accrued_at;
            }
        }
        Ok(())
    }
}

fn job_of(effect: &Effect) -> Uuid {
    match effect {
        Effect::Metric(job, _, _) => *job,
        Effect::Progress(p) => p.job_id.0,
        Effect::Cost(e) => e.job_id.0,
    }
}

async fn update_jobs(conn: &mut PgConnection, effects: &[Effect]) -> anyhow::Result<()> {
    let mut ids: Vec<Uuid> = effects.iter().map(job_of).collect();
    ids.sort_unstable();
    ids.dedup();
    let read: Vec<Stored> = sqlx::query_as(
        "SELECT id, status, current_step, last_metric_step, updated_at FROM rm_jobs WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut rows: HashMap<Uuid, JobRow> = read
        .into_iter()
        .map(|r| {
            let row = JobRow {
                status: r.status,
                current_step: r.current_step,
                last_metric_step: r.last_metric_step,
                updated_at: r.updated_at,
                metrics: None,
                progress: None,
                compute: Decimal::ZERO,
                storage: Decimal::ZERO,
                transfer: Decimal::ZERO,
            };
            (r.id, row)
        })
        .collect();
    // A job without a row is left alone, as each one-event UPDATE would leave it.
    for effect in effects {
        if let Some(row) = rows.get_mut(&job_of(effect)) {
            row.fold(effect)?;
        }
    }
    let rows: Vec<(Uuid, JobRow)> = rows.into_iter().collect();
    let column = |f: fn(&JobRow) -> Option<f64>| rows.iter().map(|(_, r)| f(r)).collect::<Vec<_>>();
    sqlx::query(
        "UPDATE rm_jobs j SET \
           current_metrics = COALESCE(u.metrics, j.current_metrics), \
           last_metric_step = CASE WHEN u.metrics IS NULL THEN j.last_metric_step ELSE u.last_metric_step END, \
           progress = CASE WHEN u.moved THEN u.progress ELSE j.progress END, \
           current_step = CASE WHEN u.moved THEN u.current_step ELSE j.current_step END, \
           current_epoch = CASE WHEN u.moved THEN u.current_epoch ELSE j.current_epoch END, \
           estimated_completion_at = CASE WHEN u.moved THEN u.eta ELSE j.estimated_completion_at END, \
           current_cost = j.current_cost + u.compute + u.storage + u.transfer, \
           compute_cost = j.compute_cost + u.compute, \
           storage_cost = j.storage_cost + u.storage, \
           data_transfer_cost = j.data_transfer_cost + u.transfer, \
           updated_at = u.updated_at \
         FROM unnest($1::uuid[], $2::jsonb[], $3::bigint[], $4::bool[], $5::float8[], $6::bigint[], \
           $7::int[], $8::timestamptz[], $9::numeric[], $10::numeric[], $11::numeric[], $12::timestamptz[]) \
           AS u(id, metrics, last_metric_step, moved, progress, current_step, current_epoch, eta, \
                compute, storage, transfer, updated_at) \
         WHERE j.id = u.id",
    )
    .bind(rows.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.metrics.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.last_metric_step).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.progress.is_some()).collect::<Vec<_>>())
    .bind(column(|r| r.progress.map(|p| p.0)))
    .bind(rows.iter().map(|(_, r)| r.progress.map(|p| p.1)).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.progress.map(|p| p.2)).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.progress.and_then(|p| p.3)).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.compute).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.storage).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.transfer).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.updated_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ids::{JobId, UserId};

    fn row(status: &str) -> JobRow {
        JobRow {
            status: status.into(),
            current_step: Some(5),
            last_metric_step: Some(5),
            updated_at: at(10),
            metrics: None,
            progress: None,
            compute: Decimal::ZERO,
            storage: Decimal::ZERO,
            transfer: Decimal::ZERO,
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
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

    fn fold(mut r: JobRow, effects: &[Effect]) -> JobRow {
        for e in effects {
            r.fold(e).unwrap_or_default();
        }
        r
    }

    #[test]
    fn progress_keeps_the_furthest_step_and_the_latest_time_of_those_it_took() {
        let r = fold(
            row("running"),
            &[progress(7, 30), progress(6, 50), progress(9, 20)],
        );
        assert_eq!(r.current_step, Some(9));
        assert_eq!(r.progress.map(|p| p.1), Some(9));
        // 6 was behind 7, so its time is not taken.
        assert_eq!(r.updated_at, at(30));
    }

    #[test]
    fn progress_behind_the_row_or_of_a_finished_job_changes_nothing() {
        assert_eq!(fold(row("running"), &[progress(4, 99)]), row("running"));
        assert_eq!(fold(row("completed"), &[progress(8, 99)]), row("completed"));
    }

    #[test]
    fn the_newest_metric_point_wins_and_a_late_older_one_does_not() {
        let r = fold(
            row("running"),
            &[metric(8, 0.5), metric(6, 0.9), metric(3, 2.0)],
        );
        assert_eq!(r.last_metric_step, Some(8));
        assert_eq!(
            r.metrics.as_ref().map(|m| m["trainingLoss"].clone()),
            Some(0.5.into())
        );
        assert_eq!(fold(row("running"), &[metric(4, 1.0)]), row("running"));
    }

    #[test]
    fn costs_add_up_by_type_and_the_last_accrual_sets_the_time() {
        let cost = |cost_type, amount: i64, s| {
            Effect::Cost(JobCostAccrued {
                job_id: JobId(Uuid::nil()),
                user_id: UserId(Uuid::nil()),
                entry_key: format!("e{s}"),
                cost_type,
                amount: Decimal::new(amount, 6),
                rate: Decimal::ONE,
                quantity: Decimal::new(amount, 6),
                details: serde_json::json!({}),
                job_total: Decimal::ZERO,
                estimated_total: Decimal::ZERO,
                attempt: None,
                gpu_seconds_until: None,
                accrued_at: at(s),
            })
        };
        let r = fold(
            row("running"),
            &[
                cost(CostType::Compute, 10, 40),
                cost(CostType::Storage, 3, 20),
                cost(CostType::Compute, 5, 30),
                progress(6, 35),
            ],
        );
        assert_eq!(r.compute, Decimal::new(15, 6));
        assert_eq!(r.storage, Decimal::new(3, 6));
        // The accrual sets the time (30), the progress after it may only move it on (35).
        assert_eq!(r.updated_at, at(35));
    }
}
