//! `rm_cost_ledger`: one row per ledger entry, from `JobCostAccrued` (training) and
//! `ModelDownloadBilled` (downloads, under the model's job).

pub mod queries;

use async_trait::async_trait;
use domain::audit::EventEntry;
use infrastructure::event_log::{ledger_entry, Interest, StoredEvent, LEDGER_EVENTS};
use rust_decimal::Decimal;
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::Projector;

pub struct CostsProjector;

#[async_trait]
impl Projector for CostsProjector {
    fn name(&self) -> &'static str {
        "costs"
    }

    fn interest(&self) -> Interest {
        LEDGER_EVENTS
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

    /// A batch's entries in one multi-row INSERT (a ledger row depends on no other event).
    async fn apply_all(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> anyhow::Result<()> {
        let mut entries = Vec::new();
        for event in events {
            if let Some(entry) = ledger_entry(event)? {
                entries.push(entry);
            }
        }
        if entries.is_empty() {
            return Ok(());
        }
        let column = |f: fn(&EventEntry) -> Decimal| entries.iter().map(f).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO rm_cost_ledger (job_id, entry_key, user_id, model_id, cost_type, amount, rate, quantity, \
               details, billing_day, accrued_at) \
             SELECT job_id, entry_key, user_id, model_id, cost_type, amount, rate, quantity, details, \
               (accrued_at AT TIME ZONE 'UTC')::date, accrued_at \
             FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::text[], $6::numeric[], \
               $7::numeric[], $8::numeric[], $9::jsonb[], $10::timestamptz[]) \
               AS e(job_id, entry_key, user_id, model_id, cost_type, amount, rate, quantity, details, accrued_at) \
             ON CONFLICT DO NOTHING",
        )
        .bind(entries.iter().map(|e| e.job_id).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.entry_key.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.user_id).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.model_id).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.cost_type.clone()).collect::<Vec<_>>())
        .bind(column(|e| e.amount))
        .bind(column(|e| e.rate))
        .bind(column(|e| e.quantity))
        .bind(entries.iter().map(|e| Json(&e.details)).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.accrued_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
