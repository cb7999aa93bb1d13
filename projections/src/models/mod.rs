//! `rm_models`: the models read model, from Model events.

pub mod queries;

use async_trait::async_trait;
use cqrs_es::Aggregate;
use domain::model::{Model, ModelEvent};
use infrastructure::event_log::{Interest, StoredEvent};
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::Projector;

pub struct ModelsProjector;

#[async_trait]
impl Projector for ModelsProjector {
    fn name(&self) -> &'static str {
        "models"
    }

    fn interest(&self) -> Interest {
        Interest::aggregates(&[<Model as Aggregate>::TYPE])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_models"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        if event.aggregate_type != <Model as Aggregate>::TYPE {
            return Ok(());
        }
        match event.decode::<ModelEvent>()? {
            ModelEvent::ModelRegistered(e) => {
                let size: u64 = e.artifacts.iter().map(|a| a.size_bytes).sum();
                sqlx::query(
                    "INSERT INTO rm_models (id, user_id, job_id, dataset_id, name, version, status, \
                       parent_model_id, base_model, configuration, quality, training, artifacts, \
                       size_bytes, final_cost, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'stored', $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(e.model_id.0)
                .bind(e.user_id.0)
                .bind(e.job_id.0)
                .bind(e.dataset_id.0)
                .bind(&e.name)
                .bind(&e.version)
                .bind(e.parent_model_id.map(|m| m.0))
                .bind(&e.configuration.base_model)
                .bind(Json(&e.configuration))
                .bind(Json(&e.quality))
                .bind(Json(&e.training))
                .bind(Json(&e.artifacts))
                .bind(i64::try_from(size)?)
                .bind(e.final_cost)
                .bind(e.registered_at)
                .execute(&mut *conn)
                .await?;
            }
            ModelEvent::ModelMetadataUpdated(e) => {
                sqlx::query(
                    "UPDATE rm_models SET name = coalesce($2, name), description = coalesce($3, description), \
                       status = coalesce($4, status), updated_at = $5 WHERE id = $1",
                )
                .bind(e.model_id.0)
                .bind(e.name)
                .bind(e.description)
                .bind(e.status.map(|s| s.as_str()))
                .bind(e.updated_at)
                .execute(&mut *conn)
                .await?;
            }
            ModelEvent::ModelDeleted(e) => {
                sqlx::query("UPDATE rm_models SET deleted_at = $2, updated_at = $2 WHERE id = $1")
                    .bind(e.model_id.0)
                    .bind(e.deleted_at)
                    .execute(&mut *conn)
                    .await?;
            }
            ModelEvent::ModelDeploymentRequested(e) => {
                let deployment = Json(domain::model::DeploymentState::from(&e));
                sqlx::query("UPDATE rm_models SET deployment = $2, updated_at = $3 WHERE id = $1")
                    .bind(e.model_id.0)
                    .bind(deployment)
                    .bind(e.requested_at)
                    .execute(&mut *conn)
                    .await?;
            }
            ModelEvent::ModelDeployed(e) => {
                sqlx::query(
                    "UPDATE rm_models SET status = 'deployed', deployed_at = $2, updated_at = $2, \
                       deployment = deployment || jsonb_build_object('status', 'deployed', 'deployedAt', $2) \
                     WHERE id = $1",
                )
                .bind(e.model_id.0)
                .bind(e.deployed_at)
                .execute(&mut *conn)
                .await?;
            }
            ModelEvent::ModelDeploymentFailed(e) => {
                sqlx::query(
                    "UPDATE rm_models SET status = 'stored', deployed_at = NULL, updated_at = $2, \
                       deployment = deployment || jsonb_build_object('status', 'failed', \
                         'failureReason', $3::text, 'endedAt', $2) \
                     WHERE id = $1 AND deployment->>'deploymentId' = $4",
                )
                .bind(e.model_id.0)
                .bind(e.failed_at)
                .bind(&e.reason)
                .bind(&e.deployment_id)
                .execute(&mut *conn)
                .await?;
            }
            ModelEvent::ModelUndeployed(e) => {
                sqlx::query(
                    "UPDATE rm_models SET status = 'stored', deployed_at = NULL, updated_at = $2, \
                       deployment = deployment || jsonb_build_object('status', 'stopped', 'endedAt', $2) \
                     WHERE id = $1 AND deployment->>'deploymentId' = $3",
                )
                .bind(e.model_id.0)
                .bind(e.undeployed_at)
                .bind(&e.deployment_id)
                .execute(&mut *conn)
                .await?;
            }
            ModelEvent::ModelArchiveStored(e) => {
                sqlx::query("UPDATE rm_models SET archive = $2 WHERE id = $1")
                    .bind(e.model_id.0)
                    .bind(Json(&e.archive))
                    .execute(&mut *conn)
                    .await?;
            }
            // The cost ledger projection records downloads.
            ModelEvent::ModelDownloadBilled(_) | ModelEvent::ModelUsageBilled(_) => {}
        }
        Ok(())
    }
}
