//! Adapters for the job service: datasets read from `rm_datasets`, telemetry appended to the
//! events table at its natural key (the step or log index is the stream's sequence).

use anyhow::Context;
use application::jobs::{DatasetLookup, TelemetryStore};
use application::CommandContext;
use async_trait::async_trait;
use cqrs_es::DomainEvent;
use domain::dataset::{DatasetFormat, DatasetStatus};
use domain::ids::{DatasetId, JobId, ModelId, UserId};
use domain::job::config::{Hyperparameters, JobConfiguration};
use domain::job::estimate::DatasetFigures;
use domain::job::telemetry::TelemetryEvent;
use domain::job::{CheckpointForJob, DatasetForJob, ParentForJob};
use sqlx::PgPool;
use uuid::Uuid;

use crate::event_store::json_text;

#[derive(Clone)]
pub struct PgDatasetLookup(pub PgPool);

type DatasetRow = (Uuid, Uuid, String, String, String, bool, i64, i64, i64, i64);

#[async_trait]
impl DatasetLookup for PgDatasetLookup {
    async fn parent_for_job(&self, model: ModelId) -> anyhow::Result<Option<ParentForJob>> {
        let row: Option<(uuid::Uuid, String, serde_json::Value)> = sqlx::query_as(
            "SELECT user_id, base_model, configuration FROM rm_models \
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(model.0)
        .fetch_optional(&self.0)
        .await?;
        let Some((owner, base_model, configuration)) = row else {
            return Ok(None);
        };
        let configuration: JobConfiguration = serde_json::from_value(configuration)?;
        Ok(Some(ParentForJob {
            owner: UserId(owner),
            base_model,
            lora_rank: configuration.hyperparameters.lora_rank,
            target_modules: configuration.hyperparameters.target_modules,
        }))
    }

    async fn checkpoint_for_job(
        &self,
        job: JobId,
        checkpoint: &str,
    ) -> anyhow::Result<Option<CheckpointForJob>> {
        let row: Option<(uuid::Uuid, String, serde_json::Value, Option<String>)> = sqlx::query_as(
            "SELECT j.user_id, j.base_model, j.hyperparameters, c.s3_key FROM rm_jobs j \
                 JOIN rm_job_checkpoints c ON c.job_id = j.id \
                 WHERE j.id = $1 AND c.checkpoint_id = $2",
        )
        .bind(job.0)
        .bind(checkpoint)
        .fetch_optional(&self.0)
        .await?;
        let Some((owner, base_model, hyperparameters, s3_key)) = row else {
            return Ok(None);
        };
        let h: Hyperparameters = serde_json::from_value(hyperparameters)?;
        Ok(Some(CheckpointForJob {
            owner: UserId(owner),
            base_model,
            lora_rank: h.lora_rank,
            target_modules: h.target_modules,
            s3_key,
        }))
    }

    async fn for_job(&self, dataset: DatasetId) -> anyhow::Result<Option<DatasetForJob>> {
        let row: Option<DatasetRow> = sqlx::query_as(
            "SELECT id, user_id, name, format, status, training_ready, total_training_pairs, \
               total_validation_pairs, total_tokens, file_size \
             FROM rm_datasets WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(dataset.0)
        .fetch_optional(&self.0)
        .await?;
        let Some((
            id,
            owner,
            name,
            format,
            status,
            training_ready,
            train,
            validation,
            tokens,
            size,
        )) = row
        else {
            return Ok(None);
        };
        let format = DatasetFormat::parse(&format)
            .with_context(|| format!("rm_datasets holds an unknown format '{format}'"))?;
        Ok(Some(DatasetForJob {
            id: DatasetId(id),
            owner: UserId(owner),
            name,
            format,
            status: DatasetStatus::parse(&status),
            training_ready,
            figures: DatasetFigures {
                training_pairs: train.max(0) as u64,
                validation_pairs: validation.max(0) as u64,
                total_tokens: tokens.max(0) as u64,
                size_bytes: size.max(0) as u64,
            },
        }))
    }
}

#[derive(Clone)]
pub struct PgTelemetryStore(pub PgPool, pub crate::event_store::Wakeup);

#[async_trait]
impl TelemetryStore for PgTelemetryStore {
    async fn append(&self, event: &TelemetryEvent, ctx: &CommandContext) -> anyhow::Result<bool> {
        Ok(self.append_all(std::slice::from_ref(event), ctx).await? == 1)
    }

    /// One INSERT of many rows (in chunks): a report of thousands of points costs a few
    /// round trips instead of thousands. As the commands' append does, the documents go as
    /// JSON text into the `json` columns and the event ids are made here (the column's
    /// default is a PL/pgSQL function, called once a row).
    async fn append_all(
        &self,
        events: &[TelemetryEvent],
        ctx: &CommandContext,
    ) -> anyhow::Result<u64> {
        let metadata = json_text(&ctx.metadata())?;
        let mut inserted = 0;
        for chunk in events.chunks(TELEMETRY_CHUNK) {
            let mut streams = Vec::with_capacity(chunk.len());
            let mut ids = Vec::with_capacity(chunk.len());
            let mut sequences = Vec::with_capacity(chunk.len());
            let mut types = Vec::with_capacity(chunk.len());
            let mut versions = Vec::with_capacity(chunk.len());
            let mut payloads = Vec::with_capacity(chunk.len());
            let mut event_ids = Vec::with_capacity(chunk.len());
            for event in chunk {
                let (stream, key) = event.key();
                streams.push(stream.to_string());
                ids.push(event.job_id().to_string());
                sequences.push(i64::try_from(key)?);
                types.push(event.event_type());
                versions.push(event.event_version());
                payloads.push(json_text(event)?);
                event_ids.push(Uuid::now_v7());
            }
            inserted += sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id) \
                 SELECT t.stream, t.id, t.sequence, t.type, t.version, t.payload::json, $7::text::json, t.event_id \
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $8::uuid[]) \
                   AS t(stream, id, sequence, type, version, payload, event_id) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&streams)
            .bind(&ids)
            .bind(&sequences)
            .bind(&types)
            .bind(&versions)
            .bind(&payloads)
            .bind(&metadata)
            .bind(&event_ids)
            .execute(&self.0)
            .await?
            .rows_affected();
        }
        if inserted > 0 {
            self.1.appended();
        }
        Ok(inserted)
    }
}

/// Rows per telemetry INSERT.
const TELEMETRY_CHUNK: usize = 1000;

/// `('queued', 'initializing', 'running')`: the active statuses (`JobStatus::ACTIVE`) as a SQL
/// list for `status IN ...`. Written the same way as the predicate of the partial index
/// `rm_jobs_dataset_active`, so the planner can use it (a test holds the two together).
pub fn active_statuses_sql() -> String {
    let names: Vec<String> = domain::job::JobStatus::ACTIVE
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("({})", names.join(", "))
}

#[cfg(test)]
mod active_tests {
    #[test]
    fn the_active_statuses_are_the_partial_indexs_predicate() {
        let migration = include_str!("../../migrations/0005_jobs_read_model.sql");
        let predicate = format!("WHERE status IN {};", super::active_statuses_sql());
        assert!(migration.contains(&predicate), "{predicate}");
    }
}
