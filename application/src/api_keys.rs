//! API key commands: make a key (its secret answered once), revoke one, and authenticate a
//! presented key against the event store, so a revocation holds at once on every instance
//! (no read model lag between the revoke and the next request).

use chrono::{DateTime, Utc};
use cqrs_es::{AggregateContext, CqrsFramework, EventStore};
use domain::api_key::{
    format_key, key_id_of, secret_hash, ApiKey, ApiKeyCommand, ApiKeyError, CreateApiKey,
};
use domain::ids::UserId;
use rand::RngCore;
use std::sync::Arc;
use uuid::Uuid;

use crate::datasets::Receipt;
use crate::{AppError, Clock, CommandContext, LogPositions};

/// A key just made: the only time its secret is known.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key_id: Uuid,
    pub key: String,
    pub receipt: Receipt<Uuid>,
}

pub struct ApiKeyCommands<ES: EventStore<ApiKey>> {
    cqrs: CqrsFramework<ApiKey, ES>,
    store: ES,
    positions: Arc<dyn LogPositions>,
    clock: Arc<dyn Clock>,
}

impl<ES: EventStore<ApiKey>> ApiKeyCommands<ES> {
    pub fn new(
        cqrs: CqrsFramework<ApiKey, ES>,
        store: ES,
        positions: Arc<dyn LogPositions>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            cqrs,
            store,
            positions,
            clock,
        }
    }

    pub async fn create(
        &self,
        ctx: &CommandContext,
        name: String,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<NewApiKey, AppError<ApiKeyError>> {
        let key_id = Uuid::now_v7();
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let key = format_key(key_id, &hex::encode(secret));
        let command = ApiKeyCommand::Create(CreateApiKey {
            key_id,
            user_id: ctx.user_id,
            name,
            secret_hash: secret_hash(&key),
            expires_at,
            at: self.clock.now(),
        });
        let receipt = crate::appended::on_fresh(key_id, self.execute(ctx, key_id, command)).await?;
        Ok(NewApiKey {
            key_id,
            key,
            receipt,
        })
    }

    pub async fn revoke(
        &self,
        ctx: &CommandContext,
        key_id: Uuid,
    ) -> Result<Receipt<Uuid>, AppError<ApiKeyError>> {
        let command = ApiKeyCommand::Revoke {
            user_id: ctx.user_id,
            at: self.clock.now(),
        };
        self.execute(ctx, key_id, command).await
    }

    /// The user a presented key authenticates as now; `None` for anything else (not a key,
    /// unknown, revoked, expired, a wrong secret).
    pub async fn authenticate(&self, presented: &str) -> anyhow::Result<Option<(Uuid, UserId)>> {
        let Some(key_id) = key_id_of(presented) else {
            return Ok(None);
        };
        let mut context = self
            .store
            .load_aggregate(&key_id.to_string())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(context
            .aggregate()
            .authenticates(presented, self.clock.now())
            .map(|user| (key_id, user)))
    }

    async fn execute(
        &self,
        ctx: &CommandContext,
        key_id: Uuid,
        command: ApiKeyCommand,
    ) -> Result<Receipt<Uuid>, AppError<ApiKeyError>> {
        // A revoke is safe to repeat: a concurrent change is retried, not answered CONFLICT.
        let repeatable = matches!(command, ApiKeyCommand::Revoke { .. });
        crate::execute(
            &self.cqrs,
            &*self.positions,
            ctx,
            key_id,
            command,
            repeatable,
        )
        .await
    }
}
