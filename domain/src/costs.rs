//! Cost reporting rules: billing periods in UTC (days, ISO weeks starting
//! on Monday, calendar months), who may read whose costs, and the month's projection.

use chrono::{Datelike, Duration, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::identity::Role;
use crate::job::CostType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    #[default]
    Day,
    Week,
    Month,
}

/// The first day of the period holding `day`.
pub fn period_start(day: NaiveDate, group: GroupBy) -> NaiveDate {
    match group {
        GroupBy::Day => day,
        GroupBy::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
        GroupBy::Month => day.with_day(1).unwrap_or(day),
    }
}

/// The period's name: `2026-11-23`, `2026-W48` (ISO week-year), `2026-11`.
pub fn period_label(day: NaiveDate, group: GroupBy) -> String {
    match group {
        GroupBy::Day => day.format("%Y-%m-%d").to_string(),
        GroupBy::Week => {
            let week = day.iso_week();
            format!("{}-W{:02}", week.year(), week.week())
        }
        GroupBy::Month => day.format("%Y-%m").to_string(),
    }
}

/// Whose costs `reader` may read when asking for `target`: their own always; anyone's for
/// `admin` and `billing_admin`.
pub fn may_read_costs_of(reader_role: Role, reader: uuid::Uuid, target: uuid::Uuid) -> bool {
    reader == target || matches!(reader_role, Role::Admin | Role::BillingAdmin)
}

pub fn days_in_month(day: NaiveDate) -> u32 {
    let first = period_start(day, GroupBy::Month);
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    };
    next.map_or(31, |n| (n - first).num_days() as u32)
}

/// Days left in the month after `today`.
pub fn days_remaining(today: NaiveDate) -> u32 {
    days_in_month(today) - today.day()
}

/// The month's spend at the pace so far: spent ÷ days elapsed (today included) × days in month.
pub fn projected_total(spent: Decimal, today: NaiveDate) -> Decimal {
    spent / Decimal::from(today.day()) * Decimal::from(days_in_month(today))
}

/// The ledger summed for one billing day, cost type and job.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerSum {
    pub day: NaiveDate,
    /// `compute` | `storage` | `data_transfer` | `api_calls`
    pub cost_type: String,
    pub job_id: uuid::Uuid,
    pub amount: Decimal,
}

/// One period's spend by type (exact; rounded only in answers).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeriodCosts {
    /// The period's first day.
    pub start: NaiveDate,
    pub compute: Decimal,
    pub storage: Decimal,
    pub data_transfer: Decimal,
    pub api_calls: Decimal,
}

impl PeriodCosts {
    pub fn total(&self) -> Decimal {
        self.compute + self.storage + self.data_transfer + self.api_calls
    }

    fn add(&mut self, cost_type: &str, amount: Decimal) {
        if cost_type == CostType::Compute.as_str() {
            self.compute += amount;
        } else if cost_type == CostType::Storage.as_str() {
            self.storage += amount;
        } else if cost_type == CostType::ApiCalls.as_str() {
            self.api_calls += amount;
        } else {
            self.data_transfer += amount;
        }
    }
}

/// A ledger grouped by period, with its summary.
#[derive(Debug, Clone, PartialEq)]
pub struct CostReport {
    /// Periods with entries, oldest first.
    pub periods: Vec<PeriodCosts>,
    pub total: Decimal,
    /// The total over the jobs with entries (0 when there are none).
    pub average_job_cost: Decimal,
    /// The job that cost most; a tie goes to the smaller id, so the answer is stable.
    pub most_expensive_job: Option<(uuid::Uuid, Decimal)>,
}

/// Groups ledger sums into `group` periods and summarises them.
pub fn report(sums: &[LedgerSum], group: GroupBy) -> CostReport {
    let mut periods: std::collections::BTreeMap<NaiveDate, PeriodCosts> = Default::default();
    let mut per_job: std::collections::BTreeMap<uuid::Uuid, Decimal> = Default::default();
    let mut total = Decimal::ZERO;
    for sum in sums {
        let start = period_start(sum.day, group);
        periods
            .entry(start)
            .or_insert_with(|| PeriodCosts {
                start,
                ..PeriodCosts::default()
            })
            .add(&sum.cost_type, sum.amount);
        *per_job.entry(sum.job_id).or_default() += sum.amount;
        total += sum.amount;
    }
    let most_expensive_job = per_job
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(id, cost)| (*id, *cost));
    let average_job_cost = if per_job.is_empty() {
        Decimal::ZERO
    } else {
        total / Decimal::from(per_job.len())
    };
    CostReport {
        periods: periods.into_values().collect(),
        total,
        average_job_cost,
        most_expensive_job,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(day: NaiveDate, cost_type: &str, job: u128, amount: &str) -> LedgerSum {
        LedgerSum {
            day,
            cost_type: cost_type.to_string(),
            job_id: uuid::Uuid::from_u128(job),
            amount: amount.parse().unwrap(),
        }
    }

    #[test]
    fn a_report_groups_by_week_and_averages_over_the_jobs_with_entries() {
        let sums = [
            sum(d(2026, 11, 23), "compute", 1, "1.000001"),
            sum(d(2026, 11, 29), "storage", 1, "0.5"),
            sum(d(2026, 11, 30), "compute", 2, "3"),
            sum(d(2026, 11, 30), "data_transfer", 2, "0.25"),
        ];
        let r = report(&sums, GroupBy::Week);
        assert_eq!(r.periods.len(), 2);
        assert_eq!(r.periods[0].start, d(2026, 11, 23));
        assert_eq!(r.periods[0].compute, "1.000001".parse::<Decimal>().unwrap());
        assert_eq!(r.periods[0].storage, "0.5".parse::<Decimal>().unwrap());
        assert_eq!(r.periods[1].start, d(2026, 11, 30));
        assert_eq!(r.periods[1].total(), "3.25".parse::<Decimal>().unwrap());
        assert_eq!(r.total, "4.750001".parse::<Decimal>().unwrap());
        assert_eq!(r.average_job_cost, "2.3750005".parse::<Decimal>().unwrap());
        assert_eq!(
            r.most_expensive_job,
            Some((uuid::Uuid::from_u128(2), "3.25".parse().unwrap()))
        );
    }

    #[test]
    fn an_empty_ledger_reports_nothing_and_a_tie_goes_to_the_smaller_id() {
        let empty = report(&[], GroupBy::Month);
        assert!(empty.periods.is_empty());
        assert_eq!(empty.average_job_cost, Decimal::ZERO);
        assert_eq!(empty.most_expensive_job, None);
        let tie = report(
            &[
                sum(d(2026, 11, 2), "compute", 9, "1"),
                sum(d(2026, 11, 3), "compute", 4, "1"),
            ],
            GroupBy::Month,
        );
        assert_eq!(tie.periods.len(), 1);
        assert_eq!(
            tie.most_expensive_job.map(|j| j.0),
            Some(uuid::Uuid::from_u128(4))
        );
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn weeks_are_iso_weeks_starting_monday_across_year_boundaries() {
        // Thursday 31 Dec 2026 and Friday 1 Jan 2027 are both in 2026-W53.
        assert_eq!(
            period_start(d(2026, 12, 31), GroupBy::Week),
            d(2026, 12, 28)
        );
        assert_eq!(period_start(d(2027, 1, 1), GroupBy::Week), d(2026, 12, 28));
        assert_eq!(period_label(d(2027, 1, 1), GroupBy::Week), "2026-W53");
        // Monday 4 Jan 2027 starts 2027-W01.
        assert_eq!(period_label(d(2027, 1, 4), GroupBy::Week), "2027-W01");
        // Sunday belongs to the week that started on the Monday before.
        assert_eq!(
            period_start(d(2026, 11, 29), GroupBy::Week),
            d(2026, 11, 23)
        );
    }

    #[test]
    fn months_and_days() {
        assert_eq!(period_start(d(2026, 2, 28), GroupBy::Month), d(2026, 2, 1));
        assert_eq!(period_label(d(2026, 12, 31), GroupBy::Month), "2026-12");
        assert_eq!(period_label(d(2026, 12, 31), GroupBy::Day), "2026-12-31");
        assert_eq!(days_in_month(d(2028, 2, 10)), 29);
        assert_eq!(days_in_month(d(2026, 12, 10)), 31);
        assert_eq!(days_remaining(d(2026, 11, 23)), 7);
    }

    #[test]
    fn the_projection_follows_the_pace_of_the_month() {
        // 30 spent by the 10th of a 30-day month: 90 at that pace.
        assert_eq!(
            projected_total(Decimal::from(30), d(2026, 11, 10)),
            Decimal::from(90)
        );
    }

    #[test]
    fn billing_admins_and_admins_read_anyones_costs() {
        let (me, other) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        assert!(may_read_costs_of(Role::User, me, me));
        assert!(!may_read_costs_of(Role::User, me, other));
        assert!(may_read_costs_of(Role::BillingAdmin, me, other));
        assert!(may_read_costs_of(Role::Admin, me, other));
    }
}

/// The thresholds of a monthly budget: a warning at 80 %, critical at 100 %.
pub const BUDGET_THRESHOLDS: [(u32, AlertLevel); 2] =
    [(80, AlertLevel::Warning), (100, AlertLevel::Critical)];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertLevel {
    Warning,
    Critical,
}

/// The thresholds `spent` has reached of `budget`, lowest first.
pub fn thresholds_reached(spent: Decimal, budget: Decimal) -> Vec<(u32, AlertLevel)> {
    if budget <= Decimal::ZERO {
        return vec![];
    }
    BUDGET_THRESHOLDS
        .into_iter()
        .filter(|(percent, _)| spent * Decimal::from(100) >= budget * Decimal::from(*percent))
        .collect()
}

/// `monthlyBudget` (USD): greater than 0, at most 1,000,000,000, cents at most.
pub fn check_budget(value: f64) -> Result<Decimal, crate::FieldError> {
    use rust_decimal::prelude::FromPrimitive;
    let invalid = || {
        crate::FieldError::new(
            "monthlyBudget",
            "monthlyBudget must be greater than 0 and at most 1000000000 (USD, cents at most)",
        )
    };
    let amount = Decimal::from_f64(value).ok_or_else(invalid)?;
    if amount <= Decimal::ZERO
        || amount > Decimal::from(1_000_000_000)
        || amount.round_dp(2) != amount
    {
        return Err(invalid());
    }
    Ok(amount)
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn thresholds_are_reached_at_80_and_100_percent() {
        let b = Decimal::from(100);
        assert!(thresholds_reached(Decimal::from(79), b).is_empty());
        assert_eq!(
            thresholds_reached(Decimal::from(80), b),
            vec![(80, AlertLevel::Warning)]
        );
        assert_eq!(thresholds_reached(Decimal::from(100), b).len(), 2);
        assert!(thresholds_reached(Decimal::from(5), Decimal::ZERO).is_empty());
    }

    #[test]
    fn a_budget_is_positive_and_in_cents() {
        assert_eq!(check_budget(250.5).unwrap(), Decimal::new(2505, 1));
        for bad in [0.0, -1.0, 0.001, 2e9, f64::NAN] {
            assert_eq!(
                check_budget(bad).unwrap_err().field,
                "monthlyBudget",
                "{bad}"
            );
        }
    }
}
