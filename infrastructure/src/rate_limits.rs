//! Rate-limit counters in Postgres, so every instance counts against the same windows (the
//! rule, `domain::rate_limit`, decides what the counts mean).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Counts one request against each of `keys` in the window starting at `window_start`;
/// answers each key's count so far (this request included), in the order given.
pub async fn hit(
    pool: &PgPool,
    keys: &[String],
    window_start: DateTime<Utc>,
) -> sqlx::Result<Vec<i64>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO rate_limit_hits (key, window_start) SELECT k, $2 FROM unnest($1::text[]) AS k \
         ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_hits.hits + 1 \
         RETURNING key, hits",
    )
    .bind(keys)
    .bind(window_start)
    .fetch_all(pool)
    .await?;
    Ok(keys
        .iter()
        .map(|k| rows.iter().find(|(key, _)| key == k).map_or(0, |(_, n)| *n))
        .collect())
}

/// Drops the counters of windows that started before `before`; answers how many.
pub async fn forget_before(pool: &PgPool, before: DateTime<Utc>) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM rate_limit_hits WHERE window_start < $1")
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
