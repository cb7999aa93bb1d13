//! Reads of the API keys read model, and the keys' last use (`api_key_usage`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// A key as its owner lists it: never its secret.
#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// `user`'s keys that are not revoked, newest first.
pub async fn list(pool: &PgPool, user: Uuid) -> sqlx::Result<Vec<ApiKeyRow>> {
    sqlx::query_as!(
        ApiKeyRow,
        r#"SELECT k.id, k.name, k.prefix, k.created_at, k.expires_at, k.revoked_at,
                  u.last_used_at AS "last_used_at?"
           FROM rm_api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id
           WHERE k.user_id = $1 AND k.revoked_at IS NULL
           ORDER BY k.created_at DESC"#,
        user
    )
    .fetch_all(pool)
    .await
}

/// Records that `key` was used at `now`, unless it was within the last minute (so a busy
/// script costs a write a minute, not one a request).
pub async fn touch(pool: &PgPool, key: Uuid, now: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO api_key_usage (key_id, last_used_at) VALUES ($1, $2) \
         ON CONFLICT (key_id) DO UPDATE SET last_used_at = EXCLUDED.last_used_at \
         WHERE api_key_usage.last_used_at < EXCLUDED.last_used_at - interval '1 minute'",
        key,
        now
    )
    .execute(pool)
    .await?;
    Ok(())
}
