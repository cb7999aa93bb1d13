//! Reads of the jobs read model: a job's row, pages of them, its metrics history,
//! checkpoints and logs. The SQL is checked against the schema at compile time (`.sqlx/`).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{in_order, Page, Viewer};

/// One row of `rm_jobs`, as every job read starts from.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub dataset_id: Uuid,
    pub dataset_name: String,
    pub status: String,
    pub current_stage: String,
    pub preset_id: String,
    pub base_model: String,
    pub hyperparameters: Value,
    pub gpu_config: Value,
    pub options: Value,
    pub estimate: Value,
    pub progress: f64,
    pub current_epoch: Option<i32>,
    pub total_epochs: i32,
    pub current_step: Option<i64>,
    pub total_steps: i64,
    pub current_metrics: Option<Value>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub estimated_completion_at: Option<DateTime<Utc>>,
    pub current_cost: Decimal,
    pub compute_cost: Decimal,
    pub storage_cost: Decimal,
    pub data_transfer_cost: Decimal,
    pub estimated_total_cost: Decimal,
    pub final_cost: Option<Decimal>,
    pub refund_amount: Option<Decimal>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub retry_count: i32,
    pub artifact_id: Option<Uuid>,
    pub parent_model_id: Option<Uuid>,
    pub name: Option<String>,
    pub description: String,
    pub tags: Value,
    pub suffix: Option<String>,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

async fn rows_by_ids(pool: &PgPool, ids: &[Uuid]) -> sqlx::Result<Vec<JobRow>> {
    sqlx::query_as!(
        JobRow,
        "SELECT id, user_id, dataset_id, dataset_name, status, current_stage, preset_id, base_model, \
           hyperparameters, gpu_config, options, estimate, progress, current_epoch, total_epochs, \
           current_step, total_steps, current_metrics, started_at, completed_at, estimated_completion_at, \
           current_cost, compute_cost, storage_cost, data_transfer_cost, estimated_total_cost, final_cost, \
           refund_amount, error_code, error_message, retry_count, artifact_id, parent_model_id, name, \
           description, tags, suffix, metadata, created_at, updated_at \
         FROM rm_jobs WHERE id = ANY($1)",
        ids
    )
    .fetch_all(pool)
    .await
}

/// The job when `viewer` may see it.
pub async fn find(pool: &PgPool, viewer: Viewer, id: Uuid) -> sqlx::Result<Option<JobRow>> {
    let row = rows_by_ids(pool, &[id]).await?.into_iter().next();
    Ok(row.filter(|r| viewer.may_see(r.user_id)))
}

/// The orders a job list can take; ties break on the id, so pages never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobOrder {
    #[default]
    NewestFirst,
    OldestFirst,
    CostliestFirst,
}

impl JobOrder {
    fn sql(self) -> &'static str {
        match self {
            JobOrder::NewestFirst => "created_at DESC, id DESC",
            JobOrder::OldestFirst => "created_at ASC, id ASC",
            JobOrder::CostliestFirst => {
                "COALESCE(final_cost, current_cost) DESC, created_at DESC, id DESC"
            }
        }
    }
}

/// A page of the jobs `viewer` sees, optionally in one status, and how many there are in all.
pub async fn list(
    pool: &PgPool,
    viewer: Viewer,
    status: Option<&str>,
    order: JobOrder,
    page: Page,
) -> sqlx::Result<(i64, Vec<JobRow>)> {
    // From the counts the triggers of migration 0022 keep: a few rows, however many jobs.
    let total = sqlx::query_scalar!(
        r#"SELECT COALESCE(sum(n), 0)::bigint AS "n!" FROM rm_job_counts
           WHERE ($1::bool OR user_id = $2) AND ($3::text IS NULL OR status = $3)"#,
        viewer.sees_all,
        viewer.user_id,
        status
    )
    .fetch_one(pool)
    .await?;
    // The order and the filters are of a closed set, so this is the only SQL built at run
    // time. Each filter is written only when it applies: an `($n OR ...)` would leave a
    // cached generic plan unable to use the owner's index.
    let mut filters = Vec::new();
    if !viewer.sees_all {
        filters.push("user_id = $3");
    }
    if status.is_some() {
        filters.push("status = $4");
    }
    // $3 and $4 are bound in every variant (typed, so one a variant leaves out is fine).
    let filters = if filters.is_empty() {
        "true".to_string()
    } else {
        filters.join(" AND ")
    };
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT id FROM rm_jobs WHERE {filters} ORDER BY {} LIMIT $1 OFFSET $2",
        order.sql()
    ))
    .bind(page.limit)
    .bind(page.offset)
    .bind(viewer.user_id)
    .bind(status)
    .fetch_all(pool)
    .await?;
    let rows = rows_by_ids(pool, &ids).await?;
    Ok((total, in_order(&ids, rows, |r| r.id)))
}

/// Up to `limit` of the jobs `viewer` sees whose metadata holds every pair of `metadata`,
/// newest first, starting after job `after` (a cursor: the last job of the page before) when
/// one is named.
pub async fn list_after(
    pool: &PgPool,
    viewer: Viewer,
    metadata: &Value,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<JobRow>> {
    let ids = sqlx::query_scalar!(
        r#"SELECT j.id FROM rm_jobs j
           WHERE ($1::bool OR j.user_id = $2) AND j.metadata @> $3::jsonb
             AND ($4::uuid IS NULL OR (j.created_at, j.id) <
                  (SELECT c.created_at, c.id FROM rm_jobs c WHERE c.id = $4))
           ORDER BY j.created_at DESC, j.id DESC LIMIT $5"#,
        viewer.sees_all,
        viewer.user_id,
        metadata,
        after,
        limit
    )
    .fetch_all(pool)
    .await?;
    let rows = rows_by_ids(pool, &ids).await?;
    Ok(in_order(&ids, rows, |r| r.id))
}

/// The suffix each of `jobs` was created with (its models' names carry it).
pub async fn suffixes(pool: &PgPool, jobs: &[Uuid]) -> sqlx::Result<Vec<(Uuid, Option<String>)>> {
    let rows = sqlx::query!("SELECT id, suffix FROM rm_jobs WHERE id = ANY($1)", jobs)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.suffix)).collect())
}

/// Queued jobs created before this one, plus one (`None` once it left the queue).
pub async fn queue_position(pool: &PgPool, job: &JobRow) -> sqlx::Result<Option<i64>> {
    if job.status != domain::job::JobStatus::Queued.as_str() {
        return Ok(None);
    }
    let ahead = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM rm_jobs
           WHERE status = 'queued' AND (created_at, id) < ($1, $2)"#,
        job.created_at,
        job.id
    )
    .fetch_one(pool)
    .await?;
    Ok(Some(ahead + 1))
}

/// Whether a job that is not finished trains on `dataset`.
pub async fn dataset_in_use(pool: &PgPool, dataset: Uuid) -> sqlx::Result<bool> {
    let active: Vec<String> = domain::job::JobStatus::ACTIVE
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM rm_jobs WHERE dataset_id = $1 AND status = ANY($2)) AS "in_use!""#,
        dataset,
        &active
    )
    .fetch_one(pool)
    .await
}

/// The dataset commands' `DatasetUsage`, read from the jobs read model.
pub struct ActiveJobsUsage(pub PgPool);

#[async_trait::async_trait]
impl application::datasets::DatasetUsage for ActiveJobsUsage {
    async fn in_use(&self, dataset: domain::ids::DatasetId) -> anyhow::Result<bool> {
        Ok(dataset_in_use(&self.0, dataset.0).await?)
    }
}

/// The name of the dataset a job trained on.
pub async fn dataset_name(pool: &PgPool, job: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!("SELECT dataset_name FROM rm_jobs WHERE id = $1", job)
        .fetch_optional(pool)
        .await
}

/// One point of a job's metrics history.
#[derive(Debug, Clone)]
pub struct MetricPointRow {
    pub recorded_at: DateTime<Utc>,
    pub epoch: i32,
    pub step: i64,
    pub training_loss: f64,
    pub validation_loss: Option<f64>,
    pub learning_rate: f64,
    pub gradient_norm: Option<f64>,
    pub throughput: Option<f64>,
    pub gpu_utilization: Option<f64>,
}

/// A job's metrics history in step order, optionally between two steps (inclusive).
pub async fn metric_points(
    pool: &PgPool,
    job: Uuid,
    from_step: Option<i64>,
    to_step: Option<i64>,
) -> sqlx::Result<Vec<MetricPointRow>> {
    sqlx::query_as!(
        MetricPointRow,
        "SELECT recorded_at, epoch, step, training_loss, validation_loss, learning_rate, gradient_norm, \
           throughput, gpu_utilization FROM rm_job_metrics \
         WHERE job_id = $1 AND ($2::bigint IS NULL OR step >= $2) AND ($3::bigint IS NULL OR step <= $3) \
         ORDER BY step",
        job,
        from_step,
        to_step
    )
    .fetch_all(pool)
    .await
}

/// For each of `steps`, the job's latest metric point at or before it (a step with none
/// before it has none), in step order.
pub async fn metric_points_at(
    pool: &PgPool,
    job: Uuid,
    steps: &[i64],
) -> sqlx::Result<Vec<MetricPointRow>> {
    sqlx::query_as!(
        MetricPointRow,
        r#"SELECT DISTINCT ON (m.step) m.recorded_at AS "recorded_at!", m.epoch AS "epoch!",
             m.step AS "step!", m.training_loss AS "training_loss!", m.validation_loss,
             m.learning_rate AS "learning_rate!", m.gradient_norm, m.throughput, m.gpu_utilization
           FROM unnest($2::bigint[]) AS s(step)
           CROSS JOIN LATERAL (
             SELECT * FROM rm_job_metrics p
             WHERE p.job_id = $1 AND p.step <= s.step ORDER BY p.step DESC LIMIT 1) m
           ORDER BY m.step"#,
        job,
        steps
    )
    .fetch_all(pool)
    .await
}

/// A checkpoint the cluster saved.
#[derive(Debug, Clone)]
pub struct CheckpointRow {
    pub job_id: Uuid,
    pub checkpoint_id: String,
    pub step: i64,
    pub epoch: i32,
    pub loss: f64,
    pub s3_key: Option<String>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl CheckpointRow {
    /// Key, size and checksum of the stored adapter, when its checked copy was recorded.
    pub fn stored(&self) -> Option<(&str, u64, &str)> {
        match (&self.s3_key, self.size_bytes, &self.sha256) {
            (Some(key), Some(size), Some(sha)) => Some((key, u64::try_from(size).ok()?, sha)),
            _ => None,
        }
    }
}

/// A job's checkpoints in step order.
pub async fn checkpoints(pool: &PgPool, job: Uuid) -> sqlx::Result<Vec<CheckpointRow>> {
    sqlx::query_as!(
        CheckpointRow,
        "SELECT job_id, checkpoint_id, step, epoch, loss, s3_key, size_bytes, sha256, created_at \
         FROM rm_job_checkpoints WHERE job_id = $1 ORDER BY step, checkpoint_id",
        job
    )
    .fetch_all(pool)
    .await
}

/// The checkpoints of `jobs` whose adapter is stored, each job's in step order.
pub async fn stored_checkpoints(pool: &PgPool, jobs: &[Uuid]) -> sqlx::Result<Vec<CheckpointRow>> {
    sqlx::query_as!(
        CheckpointRow,
        "SELECT job_id, checkpoint_id, step, epoch, loss, s3_key, size_bytes, sha256, created_at \
         FROM rm_job_checkpoints WHERE job_id = ANY($1) AND size_bytes IS NOT NULL \
         ORDER BY job_id, step, checkpoint_id",
        jobs
    )
    .fetch_all(pool)
    .await
}

/// A line of a job's log.
#[derive(Debug, Clone)]
pub struct LogRow {
    pub logged_at: DateTime<Utc>,
    pub level: String,
    pub message: String,
}

/// The last `limit` lines of a job's log, oldest first.
pub async fn recent_logs(pool: &PgPool, job: Uuid, limit: i64) -> sqlx::Result<Vec<LogRow>> {
    let mut lines = sqlx::query_as!(
        LogRow,
        "SELECT logged_at, level, message FROM rm_job_logs WHERE job_id = $1 ORDER BY idx DESC LIMIT $2",
        job,
        limit
    )
    .fetch_all(pool)
    .await?;
    lines.reverse();
    Ok(lines)
}
