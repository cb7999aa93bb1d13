//! The simulated deployment target and the watcher that marks deployments ready.
//!
//! The simulated target is stateless: a deployment is ready once its estimated time has
//! passed, so a restarted process loses nothing and needs no store of its own.

use std::sync::Arc;
use std::time::Duration;

use application::models::{Deployer, ModelCommands};
use application::CommandContext;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::ids::{ModelId, UserId};
use domain::model::{DeployEnvironment, DeploymentTicket, Model};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::event_store::EventStore;

pub struct SimulatedDeployer {
    /// How long a deployment takes to become ready.
    pub ready_after: Duration,
}

#[async_trait]
impl Deployer for SimulatedDeployer {
    async fn deploy(
        &self,
        _model: ModelId,
        environment: DeployEnvironment,
        endpoint_name: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<DeploymentTicket> {
        let env = match environment {
            DeployEnvironment::Staging => "staging",
            DeployEnvironment::Production => "production",
        };
        Ok(DeploymentTicket {
            deployment_id: format!("dep_{}", Uuid::new_v4().simple()),
            endpoint_url: format!("https://{endpoint_name}.{env}.inference.brightrun.invalid/v1"),
            estimated_ready_at: now + chrono::Duration::from_std(self.ready_after)?,
        })
    }

    async fn is_ready(
        &self,
        _deployment_id: &str,
        estimated_ready_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        Ok(now >= estimated_ready_at)
    }
}

/// Checks pending deployments every `interval` until shutdown.
pub async fn run_deployment_watcher(
    pool: PgPool,
    models: Arc<ModelCommands<EventStore<Model>>>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(err) = check_deployments(&pool, &models).await {
            tracing::warn!(error = %format!("{err:#}"), "deployment check failed; will retry");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// One pass over the deployments in progress: answers how many became ready.
pub async fn check_deployments(
    pool: &PgPool,
    models: &ModelCommands<EventStore<Model>>,
) -> anyhow::Result<usize> {
    let pending: Vec<(Uuid, Uuid, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, user_id, deployment->>'deploymentId', (deployment->>'estimatedReadyAt')::timestamptz \
         FROM rm_models WHERE deployment->>'status' = 'deploying' AND deleted_at IS NULL LIMIT 100",
    )
    .fetch_all(pool)
    .await?;
    let mut ready = 0;
    for (id, user_id, deployment_id, estimated_ready_at) in pending {
        let ctx = CommandContext {
            user_id: UserId(user_id),
            request_id: Uuid::now_v7().to_string(),
            correlation_id: format!("deploy-{deployment_id}"),
            causation_id: None,
        };
        if models
            .check_deployment(&ctx, ModelId(id), &deployment_id, estimated_ready_at)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            ready += 1;
        }
    }
    Ok(ready)
}
