//! `rm_cost_ledger`: one row per ledger entry, from `JobCostAccrued`.

use async_trait::async_trait;
use cqrs_es::Aggregate;
use domain::job::{CostType, Job, JobEvent};
use infrastructure::event_log::StoredEvent;
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::Projector;

pub struct CostsProjector;

#[async_trait]
impl Projector for CostsProjector {
    fn name(&self) -> &'static str {
        "costs"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_cost_ledger"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        if event.aggregate_type != <Job as Aggregate>::TYPE || event.event_type != "JobCostAccrued"
        {
            return Ok(());
        }
        let JobEvent::JobCostAccrued(e) = event.decode::<JobEvent>()? else {
            return Ok(());
        };
        let cost_type = match e.cost_type {
            CostType::Compute => "compute",
            CostType::Storage => "storage",
            CostType::DataTransfer => "data_transfer",
        };
        sqlx::query(
            "INSERT INTO rm_cost_ledger (job_id, entry_key, user_id, cost_type, amount, rate, quantity, \
               details, billing_day, accrued_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, ($9 AT TIME ZONE 'UTC')::date, $9) \
             ON CONFLICT DO NOTHING",
        )
        .bind(e.job_id.0)
        .bind(&e.entry_key)
        .bind(e.user_id.0)
        .bind(cost_type)
        .bind(e.amount)
        .bind(e.rate)
        .bind(e.quantity)
        .bind(Json(&e.details))
        .bind(e.accrued_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
