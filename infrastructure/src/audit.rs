//! Reads what the cost audit compares (domain::audit): the cost events from the event store
//! (never the projections), and the ledger and jobs read models of the same period.

use crate::event_log::{ledger_entry, read_of_types};

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::Aggregate;
use domain::audit::{audit, AuditReport, JobCosts, LedgerRow};
use domain::job::{Job, JobEvent};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user: Option<Uuid>,
    /// Billing days from, inclusive (UTC).
    pub from: Option<NaiveDate>,
    /// Billing days to, inclusive: the ledger as it stood at the end of that day.
    pub to: Option<NaiveDate>,
}

impl AuditFilter {
    fn keeps(&self, user: Uuid, at: DateTime<Utc>) -> bool {
        let day = at.date_naive();
        self.user.is_none_or(|u| u == user)
            && self.from.is_none_or(|f| day >= f)
            && self.to.is_none_or(|t| day <= t)
    }

    /// Whole-job figures are comparable only when the whole history is audited.
    fn whole_history(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }
}

pub async fn audit_costs(pool: &PgPool, filter: &AuditFilter) -> anyhow::Result<AuditReport> {
    let mut events = Vec::new();
    let mut finals: Vec<(Uuid, Uuid, Decimal)> = Vec::new();
    let history = read_of_types(
        pool,
        &[
            "JobCostAccrued",
            "ModelDownloadBilled",
            "JobCompleted",
            "JobFailed",
        ],
    )
    .await?;
    for event in &history {
        if let Some(entry) = ledger_entry(event)? {
            if filter.keeps(entry.user_id, entry.accrued_at) {
                events.push(entry);
            }
            continue;
        }
        if event.aggregate_type == <Job as Aggregate>::TYPE {
            match event.decode::<JobEvent>()? {
                JobEvent::JobCompleted(e) => finals.push((e.job_id.0, e.user_id.0, e.final_cost)),
                JobEvent::JobFailed(e) => finals.push((e.job_id.0, e.user_id.0, e.final_cost)),
                _ => {}
            }
        }
    }
    let ledger: Vec<(Uuid, String, Uuid, String, Decimal, NaiveDate)> = sqlx::query_as(
        "SELECT job_id, entry_key, user_id, cost_type, amount, billing_day FROM rm_cost_ledger \
         WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::date IS NULL OR billing_day >= $2) \
           AND ($3::date IS NULL OR billing_day <= $3)",
    )
    .bind(filter.user)
    .bind(filter.from)
    .bind(filter.to)
    .fetch_all(pool)
    .await?;
    let ledger: Vec<LedgerRow> = ledger
        .into_iter()
        .map(
            |(job_id, entry_key, user_id, cost_type, amount, billing_day)| LedgerRow {
                job_id,
                entry_key,
                user_id,
                cost_type,
                amount,
                billing_day,
            },
        )
        .collect();
    let mut jobs = Vec::new();
    if filter.whole_history() {
        let read: Vec<(Uuid, Decimal, Option<Decimal>)> = sqlx::query_as(
            "SELECT id, current_cost, final_cost FROM rm_jobs WHERE ($1::uuid IS NULL OR user_id = $1)",
        )
        .bind(filter.user)
        .fetch_all(pool)
        .await?;
        for (job_id, current, final_read) in read {
            // The last terminal event counts: a job recovered by reconciliation fails, then completes.
            let final_event = finals
                .iter()
                .rev()
                .find(|(j, _, _)| *j == job_id)
                .map(|(_, _, c)| *c);
            jobs.push(JobCosts {
                job_id,
                final_cost_event: final_event,
                current_cost_read: Some(current),
                final_cost_read: final_read,
            });
        }
        // A job the read model lost still has its events.
        for (job_id, user, final_cost) in &finals {
            if filter.user.is_none_or(|u| u == *user) && !jobs.iter().any(|j| j.job_id == *job_id) {
                jobs.push(JobCosts {
                    job_id: *job_id,
                    final_cost_event: Some(*final_cost),
                    current_cost_read: None,
                    final_cost_read: None,
                });
            }
        }
    }
    Ok(audit(&events, &ledger, &jobs))
}

/// The report for people: totals, then every difference, one per line.
pub fn render(report: &AuditReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cost audit: {} ledger entries recomputed from the event store",
        report.entries
    );
    let _ = writeln!(out, "total {} USD", report.total);
    for (month, amount) in &report.by_month {
        let _ = writeln!(out, "  month {month}: {amount}");
    }
    for (day, amount) in &report.by_day {
        let _ = writeln!(out, "  day {day}: {amount}");
    }
    for (user, amount) in &report.by_user {
        let _ = writeln!(out, "  user {user}: {amount}");
    }
    for (job, amount) in &report.by_job {
        let _ = writeln!(out, "  job {job}: {amount}");
    }
    if report.clean() {
        let _ = writeln!(
            out,
            "zero drift: the ledger, the jobs and the cluster's bills agree with the events"
        );
    } else {
        let _ = writeln!(out, "{} differences:", report.drifts.len());
        for d in &report.drifts {
            let _ = writeln!(
                out,
                "  [{}] {}: {} (events say {}, found {})",
                d.scope, d.subject, d.what, d.expected, d.found
            );
        }
    }
    out
}
