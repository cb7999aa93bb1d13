//! `rm_cost_ledger`: one row per ledger entry, from `JobCostAccrued` (training) and
//! `ModelDownloadBilled` (downloads, under the model's job).

use async_trait::async_trait;
use cqrs_es::Aggregate;
use domain::job::{CostType, Job, JobEvent};
use domain::model::{Model, ModelEvent};
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
        let entry = match (event.aggregate_type.as_str(), event.event_type.as_str()) {
            (t, "JobCostAccrued") if t == <Job as Aggregate>::TYPE => {
                let JobEvent::JobCostAccrued(e) = event.decode::<JobEvent>()? else {
                    return Ok(());
                };
                let cost_type = match e.cost_type {
                    CostType::Compute => "compute",
                    CostType::Storage => "storage",
                    CostType::DataTransfer => "data_transfer",
                };
                Entry {
                    job_id: e.job_id.0,
                    entry_key: e.entry_key,
                    user_id: e.user_id.0,
                    model_id: None,
                    cost_type,
                    amount: e.amount,
                    rate: e.rate,
                    quantity: e.quantity,
                    details: e.details,
                    accrued_at: e.accrued_at,
                }
            }
            (t, "ModelDownloadBilled") if t == <Model as Aggregate>::TYPE => {
                let ModelEvent::ModelDownloadBilled(e) = event.decode::<ModelEvent>()? else {
                    return Ok(());
                };
                Entry {
                    job_id: e.job_id.0,
                    entry_key: e.entry_key,
                    user_id: e.user_id.0,
                    model_id: Some(e.model_id.0),
                    cost_type: "data_transfer",
                    amount: e.amount,
                    rate: e.rate,
                    quantity: e.quantity,
                    details: serde_json::json!({"reason": "model download", "fileName": e.file_name, "bytes": e.bytes}),
                    accrued_at: e.accrued_at,
                }
            }
            _ => return Ok(()),
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
        .bind(entry.cost_type)
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

struct Entry {
    job_id: uuid::Uuid,
    entry_key: String,
    user_id: uuid::Uuid,
    model_id: Option<uuid::Uuid>,
    cost_type: &'static str,
    amount: rust_decimal::Decimal,
    rate: rust_decimal::Decimal,
    quantity: rust_decimal::Decimal,
    details: serde_json::Value,
    accrued_at: chrono::DateTime<chrono::Utc>,
}
