//! Budget alerts: one `cost_alert` per user, month and threshold, the
//! first time the month's spend reaches 80 % (high) and 100 % (critical) of `monthlyBudget`.
//!
//! One Budget aggregate per user and month (`{userId}:{YYYY-MM}`) remembers which thresholds
//! it has raised, so a repeated or replayed check raises nothing twice.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::costs::{thresholds_reached, AlertLevel};
use crate::ids::UserId;

/// The aggregate id of a user's month.
pub fn budget_id(user: UserId, month: &str) -> String {
    format!("{user}:{month}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BudgetEvent {
    BudgetThresholdCrossed(BudgetThresholdCrossed),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetThresholdCrossed {
    pub user_id: UserId,
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// 80 or 100.
    pub percent: u32,
    pub level: AlertLevel,
    /// The month's spend when it was noticed, and the budget then.
    pub spent: Decimal,
    pub budget: Decimal,
    pub crossed_at: DateTime<Utc>,
}

impl DomainEvent for BudgetEvent {
    fn event_type(&self) -> String {
        match self {
            BudgetEvent::BudgetThresholdCrossed(_) => "BudgetThresholdCrossed".to_string(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum BudgetCommand {
    /// The month's spend is now `spent` against `budget`.
    CheckSpend {
        user_id: UserId,
        month: String,
        spent: Decimal,
        budget: Decimal,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetError {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    raised: Vec<u32>,
}

impl Budget {
    pub fn decide(&self, command: BudgetCommand) -> Result<Vec<BudgetEvent>, BudgetError> {
        match command {
            BudgetCommand::CheckSpend {
                user_id,
                month,
                spent,
                budget,
                at,
            } => Ok(thresholds_reached(spent, budget)
                .into_iter()
                .filter(|(percent, _)| !self.raised.contains(percent))
                .map(|(percent, level)| {
                    BudgetEvent::BudgetThresholdCrossed(BudgetThresholdCrossed {
                        user_id,
                        month: month.clone(),
                        percent,
                        level,
                        spent,
                        budget,
                        crossed_at: at,
                    })
                })
                .collect()),
        }
    }
}

decided_aggregate!(
    Budget,
    "budget",
    BudgetCommand,
    BudgetEvent,
    BudgetError,
    fn apply(&mut self, event: BudgetEvent) {
        match event {
            BudgetEvent::BudgetThresholdCrossed(e) => self.raised.push(e.percent),
        }
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(budget: &Budget, spent: i64) -> Vec<u32> {
        budget
            .decide(BudgetCommand::CheckSpend {
                user_id: UserId(uuid::Uuid::from_u128(1)),
                month: "2026-11".into(),
                spent: Decimal::from(spent),
                budget: Decimal::from(100),
                at: DateTime::<Utc>::UNIX_EPOCH,
            })
            .unwrap()
            .into_iter()
            .map(|BudgetEvent::BudgetThresholdCrossed(e)| e.percent)
            .collect()
    }

    fn after(events: Vec<u32>) -> Budget {
        Budget { raised: events }
    }

    #[test]
    fn each_threshold_is_raised_once_per_month() {
        assert_eq!(check(&Budget::default(), 79), Vec::<u32>::new());
        assert_eq!(check(&Budget::default(), 80), vec![80]);
        // Jumping past both raises both, lowest first.
        assert_eq!(check(&Budget::default(), 130), vec![80, 100]);
        // Given 80 raised: more spend under 100 raises nothing; reaching 100 raises it.
        assert_eq!(check(&after(vec![80]), 95), Vec::<u32>::new());
        assert_eq!(check(&after(vec![80]), 100), vec![100]);
        // Given both raised: nothing, however often it is checked.
        assert_eq!(check(&after(vec![80, 100]), 500), Vec::<u32>::new());
    }
}
