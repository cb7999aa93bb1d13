//! Reads of the datasets read model: a dataset's row, its validation report, pages of them.
//! Deleted datasets are gone from every read.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{in_order, Page, Viewer};

/// One row of `rm_datasets`, as lists and details show it.
#[derive(Debug, Clone)]
pub struct DatasetRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub description: String,
    pub format: String,
    pub status: String,
    pub training_ready: bool,
    pub total_conversations: i64,
    pub total_training_pairs: i64,
    pub total_validation_pairs: i64,
    pub total_tokens: i64,
    pub avg_turns_per_conversation: f64,
    pub avg_tokens_per_turn: f64,
    pub tokenizer: Option<String>,
    pub file_size: i64,
    pub file_name: String,
    pub s3_key: String,
    pub s3_bucket: String,
    pub uploaded_at: Option<DateTime<Utc>>,
    pub processed_at: Option<DateTime<Utc>>,
    pub validated_at: Option<DateTime<Utc>>,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What validation found: the statistics, samples and the first errors and warnings.
#[derive(Debug, Clone)]
pub struct ValidationReportRow {
    pub full_statistics: Option<Value>,
    pub sample_conversations: Value,
    pub validation_errors: Value,
    pub validation_warnings: Value,
    pub error_count: i64,
    pub warning_count: i64,
}

async fn rows_by_ids(
    pool: &PgPool,
    ids: &[Uuid],
    with_deleted: bool,
) -> sqlx::Result<Vec<DatasetRow>> {
    sqlx::query_as!(
        DatasetRow,
        "SELECT id, user_id, name, description, format, status, training_ready, total_conversations, \
           total_training_pairs, total_validation_pairs, total_tokens, avg_turns_per_conversation, \
           avg_tokens_per_turn, tokenizer, file_size, file_name, s3_key, s3_bucket, uploaded_at, \
           processed_at, validated_at, error_message, created_at, updated_at \
         FROM rm_datasets WHERE id = ANY($1) AND ($2 OR deleted_at IS NULL)",
        ids,
        with_deleted
    )
    .fetch_all(pool)
    .await
}

/// The dataset when `viewer` may see it.
pub async fn find(pool: &PgPool, viewer: Viewer, id: Uuid) -> sqlx::Result<Option<DatasetRow>> {
    let row = rows_by_ids(pool, &[id], false).await?.into_iter().next();
    Ok(row.filter(|r| viewer.may_see(r.user_id)))
}

/// The dataset whoever owns it, deleted or not (for the model that was trained on it, read
/// after access to the model was checked).
pub async fn find_any(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<DatasetRow>> {
    Ok(rows_by_ids(pool, &[id], true).await?.into_iter().next())
}

/// The validation report of a dataset (read after `find` granted access).
pub async fn report(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<ValidationReportRow>> {
    sqlx::query_as!(
        ValidationReportRow,
        "SELECT full_statistics, sample_conversations, validation_errors, validation_warnings, \
           error_count, warning_count FROM rm_datasets WHERE id = $1 AND deleted_at IS NULL",
        id
    )
    .fetch_optional(pool)
    .await
}

/// What a dataset list keeps: each filter narrows it when given.
#[derive(Debug, Clone, Default)]
pub struct DatasetFilter {
    pub format: Option<String>,
    pub training_ready: Option<bool>,
    pub status: Option<String>,
    /// Matched anywhere in the name or description, case-insensitively, as plain text.
    pub search: Option<String>,
}

/// The orders a dataset list can take; ties break on the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DatasetOrder {
    #[default]
    NewestFirst,
    OldestFirst,
    NameAscending,
    NameDescending,
    SmallestFirst,
    LargestFirst,
}

impl DatasetOrder {
    fn sql(self) -> &'static str {
        match self {
            DatasetOrder::NewestFirst => "created_at DESC, id DESC",
            DatasetOrder::OldestFirst => "created_at ASC, id ASC",
            DatasetOrder::NameAscending => "lower(name) ASC, id ASC",
            DatasetOrder::NameDescending => "lower(name) DESC, id DESC",
            DatasetOrder::SmallestFirst => "file_size ASC, id ASC",
            DatasetOrder::LargestFirst => "file_size DESC, id DESC",
        }
    }
}

fn like_pattern(search: &str) -> String {
    let escaped = search
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Up to `limit` of the datasets `viewer` sees, newest first (oldest first with `oldest_first`),
/// starting after dataset `after` (a cursor: the last one of the page before) when named.
pub async fn list_after(
    pool: &PgPool,
    viewer: Viewer,
    after: Option<Uuid>,
    oldest_first: bool,
    limit: i64,
) -> sqlx::Result<Vec<DatasetRow>> {
    let ids = sqlx::query_scalar!(
        r#"SELECT d.id FROM rm_datasets d
           WHERE d.deleted_at IS NULL AND ($1::bool OR d.user_id = $2)
             AND ($3::uuid IS NULL OR
                  CASE WHEN $4::bool
                    THEN (d.created_at, d.id) > (SELECT c.created_at, c.id FROM rm_datasets c WHERE c.id = $3)
                    ELSE (d.created_at, d.id) < (SELECT c.created_at, c.id FROM rm_datasets c WHERE c.id = $3)
                  END)
           ORDER BY CASE WHEN $4::bool THEN d.created_at END ASC,
                    CASE WHEN $4::bool THEN d.id END ASC,
                    d.created_at DESC, d.id DESC
           LIMIT $5"#,
        viewer.sees_all,
        viewer.user_id,
        after,
        oldest_first,
        limit
    )
    .fetch_all(pool)
    .await?;
    let rows = rows_by_ids(pool, &ids, false).await?;
    Ok(in_order(&ids, rows, |r| r.id))
}

/// A page of the datasets `viewer` sees, and how many match in all.
pub async fn list(
    pool: &PgPool,
    viewer: Viewer,
    filter: &DatasetFilter,
    order: DatasetOrder,
    page: Page,
) -> sqlx::Result<(i64, Vec<DatasetRow>)> {
    let search = filter.search.as_deref().map(like_pattern);
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM rm_datasets
           WHERE deleted_at IS NULL AND ($1::bool OR user_id = $2) AND ($3::text IS NULL OR format = $3)
             AND ($4::bool IS NULL OR training_ready = $4)
             AND ($5::text IS NULL OR name ILIKE $5 OR description ILIKE $5)
             AND ($6::text IS NULL OR status = $6)"#,
        viewer.sees_all,
        viewer.user_id,
        filter.format,
        filter.training_ready,
        search,
        filter.status
    )
    .fetch_one(pool)
    .await?;
    // The order is one of a closed set, so this is the only SQL built at run time.
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT id FROM rm_datasets \
         WHERE deleted_at IS NULL AND ($1::bool OR user_id = $2) AND ($3::text IS NULL OR format = $3) \
           AND ($4::bool IS NULL OR training_ready = $4) \
           AND ($5::text IS NULL OR name ILIKE $5 OR description ILIKE $5) \
           AND ($6::text IS NULL OR status = $6) \
         ORDER BY {} LIMIT $7 OFFSET $8",
        order.sql()
    ))
    .bind(viewer.sees_all)
    .bind(viewer.user_id)
    .bind(&filter.format)
    .bind(filter.training_ready)
    .bind(&search)
    .bind(&filter.status)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(pool)
    .await?;
    let rows = rows_by_ids(pool, &ids, false).await?;
    Ok((total, in_order(&ids, rows, |r| r.id)))
}
