//! Reads of the cost ledger read model: sums by billing day, cost type and job, which the
//! domain's cost rules group into periods and summaries.

use chrono::NaiveDate;
use domain::costs::LedgerSum;
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

/// The ledger of `user` summed by billing day, cost type and job, between two billing days
/// (inclusive, each optional), optionally for one job.
pub async fn daily_sums(
    pool: &PgPool,
    user: Uuid,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    job: Option<Uuid>,
) -> sqlx::Result<Vec<LedgerSum>> {
    sqlx::query_as!(
        LedgerSum,
        r#"SELECT billing_day AS day, cost_type, job_id, sum(amount) AS "amount!"
           FROM rm_cost_ledger
           WHERE user_id = $1 AND ($2::date IS NULL OR billing_day >= $2)
             AND ($3::date IS NULL OR billing_day <= $3) AND ($4::uuid IS NULL OR job_id = $4)
           GROUP BY billing_day, cost_type, job_id"#,
        user,
        from,
        to,
        job
    )
    .fetch_all(pool)
    .await
}

/// What `user` spent between two billing days, inclusive.
pub async fn spent(
    pool: &PgPool,
    user: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> sqlx::Result<Decimal> {
    sqlx::query_scalar!(
        r#"SELECT COALESCE(sum(amount), 0) AS "spent!" FROM rm_cost_ledger
           WHERE user_id = $1 AND billing_day >= $2 AND billing_day <= $3"#,
        user,
        from,
        to
    )
    .fetch_one(pool)
    .await
}
