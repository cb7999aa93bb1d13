//! `rm_api_keys`: a user's API keys as they list them, from ApiKey events.

pub mod queries;

use async_trait::async_trait;
use cqrs_es::Aggregate;
use domain::api_key::{ApiKey, ApiKeyEvent};
use infrastructure::event_log::{Interest, StoredEvent};
use sqlx::PgConnection;

use crate::Projector;

pub struct ApiKeysProjector;

#[async_trait]
impl Projector for ApiKeysProjector {
    fn name(&self) -> &'static str {
        "api_keys"
    }

    fn interest(&self) -> Interest {
        Interest::aggregates(&[<ApiKey as Aggregate>::TYPE])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_api_keys"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        if event.aggregate_type != <ApiKey as Aggregate>::TYPE {
            return Ok(());
        }
        match event.decode::<ApiKeyEvent>()? {
            ApiKeyEvent::ApiKeyCreated(e) => {
                sqlx::query(
                    "INSERT INTO rm_api_keys (id, user_id, name, prefix, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(e.key_id)
                .bind(e.user_id.0)
                .bind(&e.name)
                .bind(&e.prefix)
                .bind(e.created_at)
                .bind(e.expires_at)
                .execute(&mut *conn)
                .await?;
            }
            ApiKeyEvent::ApiKeyRevoked(e) => {
                sqlx::query("UPDATE rm_api_keys SET revoked_at = $2 WHERE id = $1")
                    .bind(e.key_id)
                    .bind(e.revoked_at)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }
}
