//! The deployment watcher: asks the deployment target about every current deployment
//! (which starts the engines of deployments this process does not serve yet, after a
//! restart too), records them serving or failed, and sweeps engines whose deployment is
//! no longer current.

use std::sync::Arc;
use std::time::Duration;

use application::models::ModelCommands;
use application::CommandContext;
use domain::ids::{ModelId, UserId};
use domain::model::Model;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::event_store::EventStore;

/// Checks current deployments every `interval` until shutdown.
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

/// One pass over the current deployments (deploying or deployed), then the sweep.
pub async fn check_deployments(
    pool: &PgPool,
    models: &ModelCommands<EventStore<Model>>,
) -> anyhow::Result<()> {
    let current: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
        "SELECT id, user_id, deployment->>'deploymentId' FROM rm_models \
         WHERE deployment->>'status' IN ('deploying', 'deployed') AND deleted_at IS NULL \
         ORDER BY id LIMIT 1000",
    )
    .fetch_all(pool)
    .await?;
    for (id, user_id, deployment_id) in current {
        let ctx = CommandContext {
            user_id: UserId(user_id),
            request_id: Uuid::now_v7().to_string(),
            correlation_id: format!("deploy-{deployment_id}"),
            causation_id: None,
        };
        if let Err(err) = models.check_deployment(&ctx, ModelId(id)).await {
            tracing::warn!(model = %id, error = %err, "deployment check failed; will retry");
        }
    }
    models
        .sweep_engines()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
