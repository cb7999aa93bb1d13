//! `rm_datasets`: the datasets read model behind `GET /api/datasets[/{id}]`.

pub mod queries;

use async_trait::async_trait;
use cqrs_es::Aggregate;
use domain::dataset::{Dataset, DatasetEvent};
use infrastructure::event_log::{Interest, StoredEvent};
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::Projector;

pub struct DatasetsProjector;

#[async_trait]
impl Projector for DatasetsProjector {
    fn name(&self) -> &'static str {
        "datasets"
    }

    fn interest(&self) -> Interest {
        Interest::aggregates(&[<Dataset as Aggregate>::TYPE])
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
            DatasetEvent::DatasetUploadConfirmed(e) => {
                sqlx::query(
                    "UPDATE rm_datasets SET status = 'validating', uploaded_at = $2, updated_at = $2, \
                       version = $3 WHERE id = $1",
                )
                .bind(e.dataset_id.0)
                .bind(e.confirmed_at)
                .bind(event.sequence)
                .execute(&mut *conn)
                .await?;
            }
            DatasetEvent::DatasetReady(e) => {
                let s = &e.statistics;
                sqlx::query(
                    "UPDATE rm_datasets SET status = 'ready', training_ready = $2, \
                       total_conversations = $3, total_training_pairs = $4, total_validation_pairs = $5, \
                       total_tokens = $6, avg_turns_per_conversation = $7, avg_tokens_per_turn = $8, \
                       tokenizer = $9, full_statistics = $10, sample_conversations = $11, \
                       validation_errors = '[]', error_count = 0, validation_warnings = $12, \
                       warning_count = $13, error_message = NULL, processed_at = $14, validated_at = $14, \
                       updated_at = $14, version = $15 WHERE id = $1",
                )
                .bind(e.dataset_id.0)
                .bind(e.training_ready)
                .bind(i64::try_from(s.total_conversations)?)
                .bind(i64::try_from(s.total_training_pairs)?)
                .bind(i64::try_from(s.total_validation_pairs)?)
                .bind(i64::try_from(s.total_tokens)?)
                .bind(s.avg_turns_per_conversation)
                .bind(s.avg_tokens_per_turn)
                .bind(&s.tokenizer)
                .bind(Json(&e.full_statistics))
                .bind(Json(&e.sample_conversations))
                .bind(Json(&e.warnings))
                .bind(i64::try_from(e.warning_count)?)
                .bind(e.validated_at)
                .bind(event.sequence)
                .execute(&mut *conn)
                .await?;
            }
            DatasetEvent::DatasetValidationFailed(e) => {
                let s = e.statistics.as_ref();
                sqlx::query(
                    "UPDATE rm_datasets SET status = 'error', training_ready = false, \
                       total_conversations = COALESCE($2, 0), total_training_pairs = COALESCE($3, 0), \
                       total_validation_pairs = COALESCE($4, 0), total_tokens = COALESCE($5, 0), \
                       tokenizer = $6, error_message = $7, validation_errors = $8, error_count = $9, \
                       validation_warnings = $10, warning_count = $11, processed_at = $12, \
                       updated_at = $12, version = $13 WHERE id = $1",
                )
                .bind(e.dataset_id.0)
                .bind(s.map(|s| i64::try_from(s.total_conversations)).transpose()?)
                .bind(s.map(|s| i64::try_from(s.total_training_pairs)).transpose()?)
                .bind(s.map(|s| i64::try_from(s.total_validation_pairs)).transpose()?)
                .bind(s.map(|s| i64::try_from(s.total_tokens)).transpose()?)
                .bind(s.map(|s| s.tokenizer.clone()))
                .bind(&e.message)
                .bind(Json(&e.errors))
                .bind(i64::try_from(e.error_count)?)
                .bind(Json(&e.warnings))
                .bind(i64::try_from(e.warning_count)?)
                .bind(e.failed_at)
                .bind(event.sequence)
                .execute(&mut *conn)
                .await?;
            }
            DatasetEvent::DatasetObjectPurged(e) => {
                sqlx::query("UPDATE rm_datasets SET purged_at = $2, version = $3 WHERE id = $1")
                    .bind(e.dataset_id.0)
                    .bind(e.purged_at)
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
