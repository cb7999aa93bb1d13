//! Reads what the cost audit compares (domain::audit): the cost events from the event store
//! (never the projections), and the ledger and jobs read models of the same period.

use std::pin::Pin;

use crate::event_log::{ledger_entry, stream_of_types_by_job};

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::Aggregate;
use domain::audit::{Audit, AuditReport, JobCosts, LedgerRow};
use domain::job::{Job, JobEvent};
use futures::stream::Peekable;
use futures::{Stream, StreamExt};
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

/// Audits the books one job at a time: the cost events (grouped by job), the ledger rows and
/// the jobs' read-model figures are three streams in job order, merged, so memory holds one
/// job's books and the report's totals, however long the history.
pub async fn audit_costs(pool: &PgPool, filter: &AuditFilter) -> anyhow::Result<AuditReport> {
    let types: Vec<String> = [
        "JobCostAccrued",
        "ModelDownloadBilled",
        "ModelUsageBilled",
        "JobCompleted",
        "JobFailed",
    ]
    .map(String::from)
    .to_vec();
    let mut events = Box::pin(stream_of_types_by_job(pool, &types).peekable());
    let mut ledger = Box::pin(
        sqlx::query_as::<_, (Uuid, String, Uuid, String, Decimal, NaiveDate)>(
            "SELECT job_id, entry_key, user_id, cost_type, amount, billing_day FROM rm_cost_ledger \
             WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::date IS NULL OR billing_day >= $2) \
               AND ($3::date IS NULL OR billing_day <= $3) \
             ORDER BY job_id, entry_key",
        )
        .bind(filter.user)
        .bind(filter.from)
        .bind(filter.to)
        .fetch(pool)
        .peekable(),
    );
    let whole_history = filter.whole_history();
    let mut jobs = Box::pin(
        sqlx::query_as::<_, (Uuid, Decimal, Option<Decimal>)>(
            "SELECT id, current_cost, final_cost FROM rm_jobs \
             WHERE $1 AND ($2::uuid IS NULL OR user_id = $2) ORDER BY id",
        )
        .bind(whole_history)
        .bind(filter.user)
        .fetch(pool)
        .peekable(),
    );

    let mut audit = Audit::default();
    loop {
        // The next job: the least id at the head of any stream.
        let heads = [
            head(events.as_mut(), |(job, _)| *job).await?,
            head(ledger.as_mut(), |r| r.0).await?,
            head(jobs.as_mut(), |r| r.0).await?,
        ];
        let Some(job) = heads.into_iter().flatten().min() else {
            break;
        };
        let mut entries = Vec::new();
        // The last terminal event counts: a job recovered by reconciliation fails, then completes.
        let mut final_event = None;
        while let Some((_, event)) = take_if(events.as_mut(), |(j, _)| *j == job).await? {
            if let Some(entry) = ledger_entry(&event)? {
                if filter.keeps(entry.user_id, entry.accrued_at) {
                    entries.push(entry);
                }
                continue;
            }
            if event.aggregate_type == <Job as Aggregate>::TYPE {
                match event.decode::<JobEvent>()? {
                    JobEvent::JobCompleted(e) => final_event = Some((e.user_id.0, e.final_cost)),
                    JobEvent::JobFailed(e) => final_event = Some((e.user_id.0, e.final_cost)),
                    _ => {}
                }
            }
        }
        let mut rows = Vec::new();
        while let Some((job_id, entry_key, user_id, cost_type, amount, billing_day)) =
            take_if(ledger.as_mut(), |r| r.0 == job).await?
        {
            rows.push(LedgerRow {
                job_id,
                entry_key,
                user_id,
                cost_type,
                amount,
                billing_day,
            });
        }
        let read = take_if(jobs.as_mut(), |r| r.0 == job).await?;
        let costs = match (read, final_event) {
            (Some((job_id, current, final_read)), _) => Some(JobCosts {
                job_id,
                final_cost_event: final_event.map(|(_, c)| c),
                current_cost_read: Some(current),
                final_cost_read: final_read,
            }),
            // A job the read model lost still has its events.
            (None, Some((user, final_cost)))
                if whole_history && filter.user.is_none_or(|u| u == user) =>
            {
                Some(JobCosts {
                    job_id: job,
                    final_cost_event: Some(final_cost),
                    current_cost_read: None,
                    final_cost_read: None,
                })
            }
            (None, _) => None,
        };
        audit.job(&entries, &rows, costs.as_ref());
    }
    Ok(audit.finish())
}

/// The key of the next item of `stream`, without taking it.
async fn head<T, E, K>(
    mut stream: Pin<&mut Peekable<impl Stream<Item = Result<T, E>>>>,
    key: impl Fn(&T) -> K,
) -> anyhow::Result<Option<K>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match stream.as_mut().peek().await {
        Some(Ok(item)) => Ok(Some(key(item))),
        Some(Err(_)) => match stream.next().await {
            Some(Err(err)) => Err(err.into()),
            _ => Ok(None),
        },
        None => Ok(None),
    }
}

/// The next item of `stream` if it satisfies `wanted`.
async fn take_if<T, E>(
    mut stream: Pin<&mut Peekable<impl Stream<Item = Result<T, E>>>>,
    wanted: impl Fn(&T) -> bool,
) -> anyhow::Result<Option<T>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    if head(stream.as_mut(), |item| wanted(item)).await? != Some(true) {
        return Ok(None);
    }
    match stream.next().await {
        Some(Ok(item)) => Ok(Some(item)),
        Some(Err(err)) => Err(err.into()),
        None => Ok(None),
    }
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
