//! `rm_datasets`: the datasets read model behind `GET /api/datasets[/{id}]`.

use async_trait::async_trait;
use cqrs_es::Aggregate;
use domain::dataset::{Dataset, DatasetEvent};
use infrastructure::event_log::StoredEvent;
use sqlx::PgConnection;

use crate::Projector;

pub struct DatasetsProjector;

#[async_trait]
impl Projector for DatasetsProjector {
    fn name(&self) -> &'static str {
        "datasets"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_datasets"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        if event.aggregate_type != <Dataset as Aggregate>::TYPE {
            return Ok(());
        }
        match event.decode::<DatasetEvent>()? {
            DatasetEvent::DatasetRegistered(e) => {
                sqlx::query(
                    "INSERT INTO rm_datasets (id, user_id, name, description, format, status, \
                       file_size, file_name, s3_key, s3_bucket, created_at, updated_at, version) \
                     VALUES ($1, $2, $3, $4, $5, 'uploading', $6, $7, $8, $9, $10, $10, $11) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(e.dataset_id.0)
                .bind(e.user_id.0)
                .bind(&e.name)
                .bind(&e.description)
                .bind(e.format.as_str())
                .bind(i64::try_from(e.file_size)?)
                .bind(&e.file_name)
                .bind(&e.s3_key)
                .bind(&e.s3_bucket)
                .bind(e.registered_at)
                .bind(event.sequence)
                .execute(&mut *conn)
                .await?;
            }
            DatasetEvent::DatasetDetailsUpdated(e) => {
                sqlx::query(
                    "UPDATE rm_datasets SET name = COALESCE($2, name), description = COALESCE($3, description), \
                       updated_at = $4, version = $5 WHERE id = $1",
                )
                .bind(e.dataset_id.0)
                .bind(&e.name)
                .bind(&e.description)
                .bind(e.updated_at)
                .bind(event.sequence)
                .execute(&mut *conn)
                .await?;
            }
            DatasetEvent::DatasetDeleted(e) => {
                sqlx::query("UPDATE rm_datasets SET deleted_at = $2, updated_at = $2, version = $3 WHERE id = $1")
                    .bind(e.dataset_id.0)
                    .bind(e.deleted_at)
                    .bind(event.sequence)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }
}
