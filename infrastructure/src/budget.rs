//! The budget watcher: a durable subscription that counts every ledger entry into its
//! user's month (in one transaction with its checkpoint, keyed by entry, so a redelivery
//! counts nothing twice) and queues the month for a check; the queue (an outbox) is then
//! drained by asking the month's Budget aggregate, which raises each threshold once.

use std::sync::Arc;

use application::{Clock, CommandContext};
use async_trait::async_trait;
use cqrs_es::CqrsFramework;
use domain::budget::{budget_id, Budget, BudgetCommand};
use domain::ids::UserId;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::event_log::{ledger_entry, Interest, StoredEvent, LEDGER_EVENTS};
use crate::event_store::EventStore;
use crate::parking::{fold_batch, fold_retry, Fold, Parking};
use crate::subscription::Subscriber;

pub const BUDGET_SUBSCRIPTION: &str = "budget.alerts";

pub struct BudgetWatcher {
    budgets: CqrsFramework<Budget, EventStore<Budget>>,
    clock: Arc<dyn Clock>,
    parking: Parking,
}

impl BudgetWatcher {
    pub fn new(
        budgets: CqrsFramework<Budget, EventStore<Budget>>,
        clock: Arc<dyn Clock>,
        park_after: u32,
    ) -> Self {
        Self {
            budgets,
            clock,
            parking: Parking::new(BUDGET_SUBSCRIPTION, park_after),
        }
    }

    /// Checks the queued months against their owners' budgets; answers how many it checked.
    async fn drain(&self, pool: &PgPool) -> anyhow::Result<usize> {
        let queued: Vec<(Uuid, String, i64)> =
            sqlx::query_as("SELECT user_id, month, version FROM budget_checks LIMIT 100")
                .fetch_all(pool)
                .await?;
        for (user_id, month, version) in &queued {
            let (spent, budget): (Option<Decimal>, Option<Decimal>) = sqlx::query_as(
                "SELECT (SELECT sum(amount) FROM budget_spend_entries WHERE user_id = $1 AND month = $2), \
                        (SELECT monthly_budget FROM users WHERE id = $1)",
            )
            .bind(user_id)
            .bind(month)
            .fetch_one(pool)
            .await?;
            if let (Some(spent), Some(budget)) = (spent, budget) {
                let user = UserId(*user_id);
                let ctx = CommandContext {
                    user_id: user,
                    request_id: Uuid::now_v7().to_string(),
                    correlation_id: format!("budget-{user}-{month}"),
                    causation_id: None,
                };
                let command = BudgetCommand::CheckSpend {
                    user_id: user,
                    month: month.clone(),
                    spent,
                    budget,
                    at: self.clock.now(),
                };
                self.budgets
                    .execute_with_metadata(&budget_id(user, month), command, ctx.metadata())
                    .await
                    .map_err(|e| anyhow::anyhow!("budget check failed: {e}"))?;
            }
            sqlx::query(
                "DELETE FROM budget_checks WHERE user_id = $1 AND month = $2 AND version = $3",
            )
            .bind(user_id)
            .bind(month)
            .bind(version)
            .execute(pool)
            .await?;
        }
        Ok(queued.len())
    }
}

/// Counts a ledger entry towards its owner's month, and queues the month for a check.
struct Counting;

#[async_trait]
impl Fold for Counting {
    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        count(conn, event).await
    }

    fn interest(&self) -> Interest {
        LEDGER_EVENTS
    }
}

async fn count(conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
    let Some(entry) = ledger_entry(event)? else {
        return Ok(());
    };
    let month = entry.accrued_at.format("%Y-%m").to_string();
    let inserted = sqlx::query(
        "INSERT INTO budget_spend_entries (job_id, entry_key, user_id, month, amount) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(entry.job_id)
    .bind(&entry.entry_key)
    .bind(entry.user_id)
    .bind(&month)
    .bind(entry.amount)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted > 0 {
        sqlx::query(
            "INSERT INTO budget_checks (user_id, month) VALUES ($1, $2) \
             ON CONFLICT (user_id, month) DO UPDATE SET version = budget_checks.version + 1",
        )
        .bind(entry.user_id)
        .bind(&month)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl Subscriber for BudgetWatcher {
    fn name(&self) -> &str {
        BUDGET_SUBSCRIPTION
    }

    async fn run_batch(&self, pool: &PgPool) -> anyhow::Result<usize> {
        let counted = fold_batch(pool, &Counting, &self.parking, 500).await?;
        // Drained after the commit: a crash in between leaves the checks queued for the next run.
        let checked = self.drain(pool).await?;
        Ok(counted + checked)
    }

    async fn retry(&self, pool: &PgPool, event: &StoredEvent) -> anyhow::Result<()> {
        fold_retry(pool, &Counting, &self.parking, event).await
    }
}
