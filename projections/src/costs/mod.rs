//! `rm_cost_ledger`: one row per ledger entry, from `JobCostAccrued` (training) and
//! `ModelDownloadBilled` (downloads, under the model's job).

pub mod queries;

use async_trait::async_trait;
use infrastructure::event_log::{ledger_entry, StoredEvent};
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
        let Some(entry) = ledger_entry(event)? else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO rm_cost_ledger (job_id, entry_key, user_id, model_id, cost_type, amount, rate, quantity, \
               details, billing_day, accrued_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, ($10 AT TIME ZONE 'UTC')::date, $10) \
             ON CONFLICT DO NOTHING",
        )
        .bind(entry.job_id)
        .bind(&entry.entry_key)
        .bind(entry.user_id)
        .bind(entry.model_id)
        .bind(&entry.cost_type)
        .bind(entry.amount)
        .bind(entry.rate)
        .bind(entry.quantity)
        .bind(Json(&entry.details))
        .bind(entry.accrued_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
