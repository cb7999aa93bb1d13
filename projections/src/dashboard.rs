//! The dashboard's figures: one read across the datasets, jobs, models and costs read models.

use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub struct DashboardFigures {
    pub datasets: i64,
    /// Queued, initializing or running.
    pub active_jobs: i64,
    /// Stored or deployed (archived and deleted ones do not count).
    pub completed_models: i64,
    /// Everything the user's ledger holds.
    pub total_cost: Decimal,
}

pub async fn figures(pool: &PgPool, user: Uuid) -> sqlx::Result<DashboardFigures> {
    let active: Vec<String> = domain::job::JobStatus::ACTIVE
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    let completed: Vec<String> = domain::model::ModelStatus::COMPLETED
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    sqlx::query_as!(
        DashboardFigures,
        r#"SELECT
             (SELECT count(*) FROM rm_datasets WHERE user_id = $1 AND deleted_at IS NULL) AS "datasets!",
             (SELECT count(*) FROM rm_jobs WHERE user_id = $1 AND status = ANY($2)) AS "active_jobs!",
             (SELECT count(*) FROM rm_models WHERE user_id = $1 AND deleted_at IS NULL AND status = ANY($3))
               AS "completed_models!",
             (SELECT COALESCE(sum(amount), 0) FROM rm_cost_ledger WHERE user_id = $1) AS "total_cost!""#,
        user,
        &active,
        &completed
    )
    .fetch_one(pool)
    .await
}
