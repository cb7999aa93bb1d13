//! Cost reporting rules (DOMAIN.md "Costs"): billing periods in UTC (days, ISO weeks starting
//! on Monday, calendar months), who may read whose costs, and the month's projection.

use chrono::{Datelike, Duration, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::identity::Role;

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
/// `admin` and `billing_admin` (DOMAIN.md "Wire format").
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

#[cfg(test)]
mod tests {
    use super::*;

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

/// The thresholds of a monthly budget: a warning at 80 %, critical at 100 % (DOMAIN.md).
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
