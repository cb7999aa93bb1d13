//! Reads of the models read model: a model's row (with its job's dataset name, training time
//! and newer versions), pages of them, and the stored files of the caller's models. Deleted
//! models are gone from every read.

use chrono::{DateTime, Utc};
use domain::job::config::JobConfiguration;
use domain::model::{ModelArtifact, QualityMetrics, TrainingSummary};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{in_order, Page, Viewer};

/// The row every model read starts from.
#[derive(Debug, Clone)]
pub struct ModelRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub job_id: Uuid,
    pub dataset_id: Uuid,
    pub dataset_name: Option<String>,
    pub name: String,
    pub version: String,
    pub description: String,
    pub status: String,
    pub deployed_at: Option<DateTime<Utc>>,
    pub deployment: Option<Value>,
    pub parent_model_id: Option<Uuid>,
    /// Newer versions retrained from this model, oldest first.
    pub child_model_ids: Vec<Uuid>,
    pub configuration: Json<JobConfiguration>,
    pub quality: Json<QualityMetrics>,
    pub training: Json<TrainingSummary>,
    pub artifacts: Json<Vec<ModelArtifact>>,
    pub archive: Option<Json<ModelArtifact>>,
    pub size_bytes: i64,
    pub final_cost: Decimal,
    /// From the start of training to completion.
    pub training_seconds: Option<f64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

async fn rows_by_ids(pool: &PgPool, ids: &[Uuid]) -> sqlx::Result<Vec<ModelRow>> {
    sqlx::query_as!(
        ModelRow,
        r#"SELECT m.id, m.user_id, m.job_id, m.dataset_id, j.dataset_name AS "dataset_name?", m.name,
             m.version, m.description, m.status, m.deployed_at, m.deployment, m.parent_model_id,
             ARRAY(SELECT c.id FROM rm_models c WHERE c.parent_model_id = m.id AND c.deleted_at IS NULL
                   ORDER BY c.created_at, c.id) AS "child_model_ids!",
             m.configuration AS "configuration: Json<JobConfiguration>",
             m.quality AS "quality: Json<QualityMetrics>",
             m.training AS "training: Json<TrainingSummary>",
             m.artifacts AS "artifacts: Json<Vec<ModelArtifact>>",
             m.archive AS "archive: Json<ModelArtifact>",
             m.size_bytes, m.final_cost,
             extract(epoch FROM (j.completed_at - j.started_at))::float8 AS training_seconds,
             m.created_at, m.updated_at
           FROM rm_models m LEFT JOIN rm_jobs j ON j.id = m.job_id
           WHERE m.id = ANY($1) AND m.deleted_at IS NULL"#,
        ids
    )
    .fetch_all(pool)
    .await
}

/// The model when `viewer` may see it.
pub async fn find(pool: &PgPool, viewer: Viewer, id: Uuid) -> sqlx::Result<Option<ModelRow>> {
    let row = rows_by_ids(pool, &[id]).await?.into_iter().next();
    Ok(row.filter(|r| viewer.may_see(r.user_id)))
}

/// The orders a model list can take; ties break on creation, then the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelOrder {
    #[default]
    NewestFirst,
    BestConvergenceFirst,
    LargestFirst,
}

impl ModelOrder {
    fn sql(self) -> &'static str {
        match self {
            ModelOrder::NewestFirst => "created_at DESC, id DESC",
            ModelOrder::BestConvergenceFirst => {
                "(quality->>'convergenceScore')::float8 DESC, created_at DESC, id DESC"
            }
            ModelOrder::LargestFirst => "size_bytes DESC, created_at DESC, id DESC",
        }
    }
}

/// A page of the models `viewer` sees, optionally in one status, and how many there are.
pub async fn list(
    pool: &PgPool,
    viewer: Viewer,
    status: Option<&str>,
    order: ModelOrder,
    page: Page,
) -> sqlx::Result<(i64, Vec<ModelRow>)> {
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM rm_models
           WHERE deleted_at IS NULL AND ($1::bool OR user_id = $2) AND ($3::text IS NULL OR status = $3)"#,
        viewer.sees_all,
        viewer.user_id,
        status
    )
    .fetch_one(pool)
    .await?;
    // The order is one of a closed set, so this is the only SQL built at run time.
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT id FROM rm_models \
         WHERE deleted_at IS NULL AND ($1::bool OR user_id = $2) AND ($3::text IS NULL OR status = $3) \
         ORDER BY {} LIMIT $4 OFFSET $5",
        order.sql()
    ))
    .bind(viewer.sees_all)
    .bind(viewer.user_id)
    .bind(status)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(pool)
    .await?;
    let rows = rows_by_ids(pool, &ids).await?;
    Ok((total, in_order(&ids, rows, |r| r.id)))
}

/// One stored file of a model.
#[derive(Debug, Clone)]
pub struct StoredFileRow {
    pub model_id: Uuid,
    pub model_name: String,
    pub version: String,
    pub file_name: String,
    /// `adapter` (the model's own files) | `archive` (the ZIP of them all)
    pub kind: String,
    pub s3_key: String,
    pub size: i64,
    pub checksum: String,
    pub created_at: DateTime<Utc>,
}

/// A page of the stored files of the models `viewer` sees (optionally one model's), newest
/// model first, with how many files and bytes match in all.
pub async fn stored_files(
    pool: &PgPool,
    viewer: Viewer,
    model: Option<Uuid>,
    page: Page,
) -> sqlx::Result<(i64, i64, Vec<StoredFileRow>)> {
    let totals = sqlx::query!(
        r#"WITH files AS (
             SELECT (a->>'sizeBytes')::bigint AS size
             FROM rm_models m CROSS JOIN LATERAL jsonb_array_elements(m.artifacts) a
             WHERE m.deleted_at IS NULL AND ($1::bool OR m.user_id = $2) AND ($3::uuid IS NULL OR m.id = $3)
             UNION ALL
             SELECT (m.archive->>'sizeBytes')::bigint FROM rm_models m
             WHERE m.archive IS NOT NULL AND m.deleted_at IS NULL AND ($1::bool OR m.user_id = $2)
               AND ($3::uuid IS NULL OR m.id = $3))
           SELECT count(*) AS "files!", sum(size) AS bytes FROM files"#,
        viewer.sees_all,
        viewer.user_id,
        model
    )
    .fetch_one(pool)
    .await?;
    let files = sqlx::query_as!(
        StoredFileRow,
        r#"WITH files AS (
             SELECT m.id AS model_id, m.name AS model_name, m.version, a->>'name' AS file_name,
               'adapter' AS kind, a->>'s3Key' AS s3_key, (a->>'sizeBytes')::bigint AS size,
               a->>'sha256' AS checksum, m.created_at
             FROM rm_models m CROSS JOIN LATERAL jsonb_array_elements(m.artifacts) a
             WHERE m.deleted_at IS NULL AND ($1::bool OR m.user_id = $2) AND ($3::uuid IS NULL OR m.id = $3)
             UNION ALL
             SELECT m.id, m.name, m.version, m.archive->>'name', 'archive', m.archive->>'s3Key',
               (m.archive->>'sizeBytes')::bigint, m.archive->>'sha256', m.created_at
             FROM rm_models m
             WHERE m.archive IS NOT NULL AND m.deleted_at IS NULL AND ($1::bool OR m.user_id = $2)
               AND ($3::uuid IS NULL OR m.id = $3))
           SELECT model_id AS "model_id!", model_name AS "model_name!", version AS "version!",
             file_name AS "file_name!", kind AS "kind!", s3_key AS "s3_key!", size AS "size!",
             checksum AS "checksum!", created_at AS "created_at!"
           FROM files ORDER BY created_at DESC, model_id, kind DESC, file_name LIMIT $4 OFFSET $5"#,
        viewer.sees_all,
        viewer.user_id,
        model,
        page.limit,
        page.offset
    )
    .fetch_all(pool)
    .await?;
    let bytes = totals.bytes.and_then(|d| d.to_i64()).unwrap_or(0);
    Ok((totals.files, bytes, files))
}
