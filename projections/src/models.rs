//! `rm_models`: the models read model, from Model events.

use async_trait::async_trait;
use cqrs_es::Aggregate;
use domain::model::{Model, ModelEvent};
use infrastructure::event_log::StoredEvent;
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::Projector;

pub struct ModelsProjector;

#[async_trait]
impl Projector for ModelsProjector {
    fn name(&self) -> &'static str {
        "models"
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
        }
        Ok(())
    }
}
