//! The cost audit (issue: "cost audit replay"): the ledger recomputed from the cost events
//! alone, compared with the ledger read model, each job's recorded costs and the cluster's
//! own bill. Pure: the caller reads the event store and the read models, this decides.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::costs::{period_label, GroupBy};
use crate::job::estimate::{cents, micros};
use crate::job::{CostType, JobCostAccrued};
use crate::model::{ModelDownloadBilled, ModelUsageBilled};

/// One ledger entry as its event recorded it: what the ledger read model, the budget watcher
/// and the audit all read from `JobCostAccrued` and `ModelDownloadBilled`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEntry {
    pub job_id: Uuid,
    pub entry_key: String,
    pub user_id: Uuid,
    /// Downloads: the model downloaded.
    pub model_id: Option<Uuid>,
    pub cost_type: String,
    pub quantity: Decimal,
    pub rate: Decimal,
    pub amount: Decimal,
    pub details: serde_json::Value,
    pub accrued_at: DateTime<Utc>,
    /// Training entries (the job's own ledger) as opposed to downloads of its model.
    pub training: bool,
    /// Compute entries: the attempt and the cluster's cumulative bill for it at that point.
    pub cluster_billed: Option<(u32, Decimal)>,
}

impl EventEntry {
    /// A training entry; compute entries carry the cluster's own bill in
    /// `details.clusterBilledCost`.
    pub fn from_job(e: &JobCostAccrued) -> EventEntry {
        let cluster_billed = e
            .details
            .get("clusterBilledCost")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<Decimal>().ok())
            .zip(e.attempt)
            .map(|(billed, attempt)| (attempt, billed));
        EventEntry {
            job_id: e.job_id.0,
            entry_key: e.entry_key.clone(),
            user_id: e.user_id.0,
            model_id: None,
            cost_type: e.cost_type.as_str().to_string(),
            quantity: e.quantity,
            rate: e.rate,
            amount: e.amount,
            details: e.details.clone(),
            accrued_at: e.accrued_at,
            training: true,
            cluster_billed,
        }
    }

    /// A download of a model's file, billed under the model's job.
    pub fn from_download(e: &ModelDownloadBilled) -> EventEntry {
        EventEntry {
            job_id: e.job_id.0,
            entry_key: e.entry_key.clone(),
            user_id: e.user_id.0,
            model_id: Some(e.model_id.0),
            cost_type: CostType::DataTransfer.as_str().to_string(),
            quantity: e.quantity,
            rate: e.rate,
            amount: e.amount,
            details: serde_json::json!({"reason": "model download", "fileName": e.file_name, "bytes": e.bytes}),
            accrued_at: e.accrued_at,
            training: false,
            cluster_billed: None,
        }
    }
}

impl EventEntry {
    /// A chat completion's tokens on a deployed model, billed under the model's job.
    pub fn from_usage(e: &ModelUsageBilled) -> EventEntry {
        EventEntry {
            job_id: e.job_id.0,
            entry_key: e.entry_key.clone(),
            user_id: e.user_id.0,
            model_id: Some(e.model_id.0),
            cost_type: CostType::ApiCalls.as_str().to_string(),
            quantity: e.quantity,
            rate: e.rate,
            amount: e.amount,
            details: serde_json::json!({"reason": "chat completion", "deploymentId": e.deployment_id,
                "promptTokens": e.prompt_tokens, "completionTokens": e.completion_tokens}),
            accrued_at: e.accrued_at,
            training: false,
            cluster_billed: None,
        }
    }
}

/// One row of the ledger read model.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub job_id: Uuid,
    pub entry_key: String,
    pub user_id: Uuid,
    pub cost_type: String,
    pub amount: Decimal,
    pub billing_day: NaiveDate,
}

/// What a job's own events and its read model say it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct JobCosts {
    pub job_id: Uuid,
    /// From the terminal event (completed, failed: finalCost; cancelled: costSoFar).
    pub final_cost_event: Option<Decimal>,
    /// From `rm_jobs` (absent when the read model has no row).
    pub current_cost_read: Option<Decimal>,
    pub final_cost_read: Option<Decimal>,
}

/// Where a difference was found.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftScope {
    /// One cost event's own arithmetic.
    Entry,
    /// The ledger read model against the events.
    Ledger,
    /// A job's recorded costs against its ledger.
    Job,
    /// The cluster's own bill against the compute billed.
    Cluster,
    /// The ledger's totals per day or user against the events.
    Total,
}

impl std::fmt::Display for DriftScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DriftScope::Entry => "entry",
            DriftScope::Ledger => "ledger",
            DriftScope::Job => "job",
            DriftScope::Cluster => "cluster",
            DriftScope::Total => "total",
        })
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    pub scope: DriftScope,
    /// What differs: `{jobId}/{entryKey}`, a job id, `user {id}`, `day 2026-11-23`, ...
    pub subject: String,
    pub what: String,
    pub expected: String,
    pub found: String,
}

/// Amounts are decimal strings (USD, 6 places); days `YYYY-MM-DD`, months `YYYY-MM`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    /// Cost events read.
    pub entries: usize,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "0.412345"))]
    pub total: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub by_job: BTreeMap<Uuid, Decimal>,
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub by_user: BTreeMap<Uuid, Decimal>,
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub by_day: BTreeMap<String, Decimal>,
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub by_month: BTreeMap<String, Decimal>,
    pub drifts: Vec<Drift>,
}

impl AuditReport {
    pub fn clean(&self) -> bool {
        self.drifts.is_empty()
    }
}

fn drift(
    scope: DriftScope,
    subject: String,
    what: &str,
    expected: Decimal,
    found: Option<Decimal>,
) -> Drift {
    Drift {
        scope,
        subject,
        what: what.to_string(),
        expected: expected.to_string(),
        found: found.map_or_else(|| "(missing)".to_string(), |d| d.to_string()),
    }
}

fn add(map: &mut BTreeMap<String, Decimal>, key: String, amount: Decimal) {
    *map.entry(key).or_default() += amount;
}

/// Audits `events` (the entries of the period, from the event store) against `ledger` (the
/// read model's rows of the same period), `jobs` (whole-job figures; pass none when auditing a
/// part of the history) and the cluster's bills carried on the compute entries: the books
/// grouped by job and folded with [`Audit`].
pub fn audit(events: &[EventEntry], ledger: &[LedgerRow], jobs: &[JobCosts]) -> AuditReport {
    type Books<'a> = (Vec<EventEntry>, Vec<LedgerRow>, Option<&'a JobCosts>);
    let mut by_job: BTreeMap<Uuid, Books> = BTreeMap::new();
    for e in events {
        by_job.entry(e.job_id).or_default().0.push(e.clone());
    }
    for r in ledger {
        by_job.entry(r.job_id).or_default().1.push(r.clone());
    }
    for j in jobs {
        by_job.entry(j.job_id).or_default().2 = Some(j);
    }
    let mut audit = Audit::default();
    for (events, ledger, job) in by_job.values() {
        audit.job(events, ledger, *job);
    }
    audit.finish()
}

/// The audit as a fold over jobs: the books are read one job at a time, so what it holds is
/// one job's entries and the report's totals (per job, user, day and month), never the whole
/// ledger.
#[derive(Debug, Default)]
pub struct Audit {
    report: AuditReport,
    ledger_days: BTreeMap<String, Decimal>,
    ledger_users: BTreeMap<String, Decimal>,
    event_users: BTreeMap<String, Decimal>,
}

impl Audit {
    /// One job's books: its cost entries from the events (in log order), its ledger rows and,
    /// when the whole history is audited, its read-model figures. Every argument is of the
    /// same job.
    pub fn job(&mut self, events: &[EventEntry], ledger: &[LedgerRow], job: Option<&JobCosts>) {
        let report = &mut self.report;
        report.entries += events.len();
        let mut rows: BTreeMap<&str, &LedgerRow> =
            ledger.iter().map(|r| (r.entry_key.as_str(), r)).collect();
        for r in ledger {
            add(
                &mut self.ledger_days,
                period_label(r.billing_day, GroupBy::Day),
                r.amount,
            );
            add(&mut self.ledger_users, r.user_id.to_string(), r.amount);
        }
        let mut training_sum = Decimal::ZERO;
        let mut compute_sum: BTreeMap<u32, Decimal> = BTreeMap::new();
        let mut cluster_bill: BTreeMap<u32, Decimal> = BTreeMap::new();
        for e in events {
            let subject = format!("{}/{}", e.job_id, e.entry_key);
            let recomputed = micros(e.quantity * e.rate);
            if recomputed != e.amount {
                report.drifts.push(drift(
                    DriftScope::Entry,
                    subject.clone(),
                    "amount is not quantity x rate",
                    recomputed,
                    Some(e.amount),
                ));
            }
            match rows.remove(e.entry_key.as_str()) {
                None => report.drifts.push(drift(
                    DriftScope::Ledger,
                    subject.clone(),
                    "ledger row missing",
                    e.amount,
                    None,
                )),
                Some(row) => {
                    if row.amount != e.amount {
                        report.drifts.push(drift(
                            DriftScope::Ledger,
                            subject.clone(),
                            "ledger amount differs from the event",
                            e.amount,
                            Some(row.amount),
                        ));
                    }
                    if row.user_id != e.user_id || row.cost_type != e.cost_type {
                        report.drifts.push(Drift {
                            scope: DriftScope::Ledger,
                            subject: subject.clone(),
                            what: "ledger user or cost type differs from the event".into(),
                            expected: format!("{} {}", e.user_id, e.cost_type),
                            found: format!("{} {}", row.user_id, row.cost_type),
                        });
                    }
                    if row.billing_day != e.accrued_at.date_naive() {
                        report.drifts.push(Drift {
                            scope: DriftScope::Ledger,
                            subject: subject.clone(),
                            what: "ledger billing day differs from the event".into(),
                            expected: e.accrued_at.date_naive().to_string(),
                            found: row.billing_day.to_string(),
                        });
                    }
                }
            }
            report.total += e.amount;
            *report.by_job.entry(e.job_id).or_default() += e.amount;
            *report.by_user.entry(e.user_id).or_default() += e.amount;
            add(&mut self.event_users, e.user_id.to_string(), e.amount);
            let day = e.accrued_at.date_naive();
            add(
                &mut report.by_day,
                period_label(day, GroupBy::Day),
                e.amount,
            );
            add(
                &mut report.by_month,
                period_label(day, GroupBy::Month),
                e.amount,
            );
            if e.training {
                training_sum += e.amount;
            }
            if let Some((attempt, billed)) = e.cluster_billed {
                *compute_sum.entry(attempt).or_default() += e.amount;
                cluster_bill.insert(attempt, billed);
            }
        }
        for (key, row) in rows {
            report.drifts.push(Drift {
                scope: DriftScope::Ledger,
                subject: format!("{}/{key}", row.job_id),
                what: "ledger row without a cost event".into(),
                expected: "(none)".into(),
                found: row.amount.to_string(),
            });
        }
        let job_id = events
            .first()
            .map(|e| e.job_id)
            .or(ledger.first().map(|r| r.job_id))
            .or(job.map(|j| j.job_id));
        for (attempt, billed) in &cluster_bill {
            let ours = compute_sum.get(attempt).copied().unwrap_or_default();
            // The cluster bills its exact GPU seconds; the ledger rounds each entry to 6
            // digits: a cent apart is a difference, a rounding is not.
            if (ours - *billed).abs() >= Decimal::new(1, 2) {
                report.drifts.push(drift(
                    DriftScope::Cluster,
                    format!("{} attempt {attempt}", job_id.unwrap_or_default()),
                    "compute billed differs from the cluster's own bill",
                    cents(*billed),
                    Some(cents(ours)),
                ));
            }
        }
        let Some(job) = job else {
            return;
        };
        if let Some(current) = job.current_cost_read {
            if current != training_sum {
                report.drifts.push(drift(
                    DriftScope::Job,
                    job.job_id.to_string(),
                    "currentCost differs from the job's ledger",
                    training_sum,
                    Some(current),
                ));
            }
        }
        if let Some(final_event) = job.final_cost_event {
            if final_event != cents(training_sum) {
                report.drifts.push(drift(
                    DriftScope::Job,
                    job.job_id.to_string(),
                    "the final cost recorded differs from the job's ledger",
                    cents(training_sum),
                    Some(final_event),
                ));
            }
            if job.final_cost_read != Some(final_event) {
                report.drifts.push(drift(
                    DriftScope::Job,
                    job.job_id.to_string(),
                    "finalCost in the read model differs from the event",
                    final_event,
                    job.final_cost_read,
                ));
            }
        }
    }

    /// The report, once every job has been folded: the ledger's totals per day and per user
    /// against the events' come last.
    pub fn finish(mut self) -> AuditReport {
        let report = &mut self.report;
        let mut totals = Vec::new();
        for (label, recomputed, read) in [
            ("day", &report.by_day, &self.ledger_days),
            ("user", &self.event_users, &self.ledger_users),
        ] {
            let only_read = read.keys().filter(|k| !recomputed.contains_key(*k));
            for key in recomputed.keys().chain(only_read) {
                let (a, b) = (recomputed.get(key), read.get(key));
                if a != b {
                    totals.push(drift(
                        DriftScope::Total,
                        format!("{label} {key}"),
                        "ledger total differs from the events",
                        a.copied().unwrap_or_default(),
                        b.copied(),
                    ));
                }
            }
        }
        report.drifts.extend(totals);
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-12-{day:02}T23:59:59Z"))
            .unwrap()
            .with_timezone(&Utc)
    }

    const JOB: Uuid = Uuid::from_u128(7);
    const USER: Uuid = Uuid::from_u128(1);

    fn entry(key: &str, quantity: i64, day: u32, billed: Option<i64>) -> EventEntry {
        let rate = Decimal::new(320, 2);
        let quantity = Decimal::new(quantity, 2);
        EventEntry {
            job_id: JOB,
            entry_key: key.into(),
            user_id: USER,
            model_id: None,
            cost_type: "compute".into(),
            quantity,
            rate,
            amount: micros(quantity * rate),
            details: serde_json::Value::Null,
            accrued_at: at(day),
            training: true,
            cluster_billed: billed.map(|b| (1, Decimal::new(b, 2))),
        }
    }

    fn row(e: &EventEntry) -> LedgerRow {
        LedgerRow {
            job_id: e.job_id,
            entry_key: e.entry_key.clone(),
            user_id: e.user_id,
            cost_type: e.cost_type.clone(),
            amount: e.amount,
            billing_day: e.accrued_at.date_naive(),
        }
    }

    fn job(final_cost: Option<i64>, current: i64) -> JobCosts {
        JobCosts {
            job_id: JOB,
            final_cost_event: final_cost.map(|c| Decimal::new(c, 2)),
            current_cost_read: Some(Decimal::new(current, 2)),
            final_cost_read: final_cost.map(|c| Decimal::new(c, 2)),
        }
    }

    #[test]
    fn a_clean_history_has_no_drift_and_totals_per_day_and_month() {
        // 0.50 h and 0.25 h at 3.20: 1.60 + 0.80 = 2.40, the cluster billed 2.40 in all.
        let events = vec![
            entry("compute:1:0", 50, 30, Some(160)),
            entry("compute:1:1800", 25, 31, Some(240)),
        ];
        let ledger: Vec<LedgerRow> = events.iter().map(row).collect();
        let report = audit(&events, &ledger, &[job(Some(240), 240)]);
        assert!(report.clean(), "{:?}", report.drifts);
        assert_eq!(report.total, Decimal::new(240, 2));
        assert_eq!(report.by_day["2026-12-30"], Decimal::new(160, 2));
        assert_eq!(report.by_month["2026-12"], Decimal::new(240, 2));
    }

    #[test]
    fn a_tampered_ledger_row_is_named() {
        let events = vec![
            entry("compute:1:0", 50, 30, None),
            entry("compute:1:1800", 25, 31, None),
        ];
        let mut ledger: Vec<LedgerRow> = events.iter().map(row).collect();
        ledger[1].amount += Decimal::new(1, 2);
        let report = audit(&events, &ledger, &[]);
        assert!(!report.clean());
        assert_eq!(report.drifts[0].subject, format!("{JOB}/compute:1:1800"));
        assert_eq!(
            report.drifts[0].found.parse::<Decimal>().unwrap(),
            Decimal::new(81, 2)
        );
        // The day's total is off too.
        assert!(report.drifts.iter().any(|d| d.subject == "day 2026-12-31"));
    }

    #[test]
    fn missing_and_extra_rows_a_wrong_amount_and_cluster_and_job_drift_are_reported() {
        let mut events = vec![entry("compute:1:0", 50, 30, Some(170))];
        events[0].amount += Decimal::new(1, 6);
        let extra = LedgerRow {
            entry_key: "storage:x".into(),
            ..row(&events[0])
        };
        let report = audit(&events, &[extra], &[job(Some(150), 100)]);
        let whats: Vec<&str> = report.drifts.iter().map(|d| d.what.as_str()).collect();
        for expected in [
            "amount is not quantity x rate",
            "ledger row missing",
            "ledger row without a cost event",
            "compute billed differs from the cluster's own bill",
            "currentCost differs from the job's ledger",
            "the final cost recorded differs from the job's ledger",
        ] {
            assert!(whats.contains(&expected), "{expected} in {whats:?}");
        }
    }
}
