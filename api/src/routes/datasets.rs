//! Datasets: register (the upload flow comes with the datasets capability), list and detail.
//! Reads come from the `rm_datasets` projection only, with the owner in the SQL.

use std::time::Duration;

use application::datasets::{NewDataset, Receipt};
use application::{AppError, CommandContext, PutStreamError};
use axum::extract::FromRequest;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::dataset::validator::{self, ValidatorOptions, PREVIEW_LIMIT_BYTES};
use domain::dataset::{DatasetError, DatasetFormat, DatasetStatus};
use domain::ids::DatasetId;
use infrastructure::auth::Principal;
use infrastructure::subscription::wait_for;
use infrastructure::tokenizer::O200k;
use projections::datasets::queries::{
    self as read, DatasetFilter, DatasetOrder, DatasetRow, ValidationReportRow,
};
use projections::Page;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::envelope::{self, pagination, Envelope, PageParams};
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};
use crate::extract::{viewer, ApiJson, ApiQuery, AuthUser};
use crate::request_id;
use crate::state::AppState;

/// How long a command waits for its read model before answering (read-your-writes).
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);
/// Presigned upload URLs are valid for one hour.
const UPLOAD_URL_VALIDITY: Duration = Duration::from_secs(3600);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_datasets, register_dataset))
        .routes(routes!(get_dataset, update_dataset, delete_dataset))
        .routes(routes!(validate_dataset))
        .routes(routes!(confirm_upload))
        .merge(
            // The file streams through: no request-body limit but the dataset's own size.
            OpenApiRouter::new()
                .routes(routes!(upload_file))
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ValidateRequest {
    /// The first 100 KB (at most 102400 bytes) of the JSONL file.
    pub content: String,
    pub format: Format,
}

/// One problem found in the file.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationIssue {
    /// 1-based line; 0 for the file as a whole.
    pub line: u64,
    /// The JSON field at fault within the line (`turns[2].role`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `INVALID_JSON`, `INVALID_UTF8`, `MISSING_FIELD`, `INVALID_TYPE`, `INVALID_VALUE`,
    /// `EMPTY_TURNS`, `LINE_TOO_LONG`, `EMPTY_FILE`, `NO_CONVERSATIONS`; warnings:
    /// `DUPLICATE_ID`, `EMPTY_CONTENT`, `CONVERSATION_TOO_LONG`, `UNKNOWN_ROLE`, `EMPTY_LINE`,
    /// `TRUNCATED_LINE`.
    pub code: String,
    pub message: String,
}

impl From<validator::Issue> for ValidationIssue {
    fn from(i: validator::Issue) -> ValidationIssue {
        ValidationIssue {
            line: i.line,
            field: i.field,
            code: i.code,
            message: i.message,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewStatistics {
    /// Training pairs (user turn then assistant turn) in the preview, both splits.
    pub estimated_pairs: u64,
    pub total_conversations: u64,
    pub total_training_pairs: u64,
    pub total_validation_pairs: u64,
    pub total_tokens: u64,
    pub avg_turns_per_conversation: f64,
    pub avg_tokens_per_turn: f64,
    /// The BPE vocabulary tokens were counted with (`o200k_base`).
    pub tokenizer: String,
    /// The first conversation, normalised to `{conversationId, turns: [{role, content}]}`.
    pub sample_conversation: Option<validator::SampleConversation>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewResult {
    pub is_valid: bool,
    /// The first 100 errors; `errorCount` counts them all.
    pub errors: Vec<ValidationIssue>,
    pub error_count: u64,
    pub warnings: Vec<ValidationIssue>,
    pub warning_count: u64,
    pub statistics: PreviewStatistics,
}

impl From<validator::ValidationReport> for PreviewResult {
    fn from(r: validator::ValidationReport) -> PreviewResult {
        let s = r.statistics;
        PreviewResult {
            is_valid: r.is_valid,
            errors: r.errors.into_iter().map(Into::into).collect(),
            error_count: r.error_count,
            warnings: r.warnings.into_iter().map(Into::into).collect(),
            warning_count: r.warning_count,
            statistics: PreviewStatistics {
                estimated_pairs: s.estimated_pairs,
                total_conversations: s.total_conversations,
                total_training_pairs: s.total_training_pairs,
                total_validation_pairs: s.total_validation_pairs,
                total_tokens: s.total_tokens,
                avg_turns_per_conversation: s.avg_turns_per_conversation,
                avg_tokens_per_turn: s.avg_tokens_per_turn,
                tokenizer: s.tokenizer,
                sample_conversation: r.sample_conversations.into_iter().next(),
            },
        }
    }
}

/// Check the start of a file before uploading it: the same validator the upload
/// runs, on the first 100 KB. A last line cut by the 100 KB boundary is skipped with a
/// `TRUNCATED_LINE` warning.
#[utoipa::path(post, path = "/api/datasets/validate", tag = "datasets", security(("bearer" = [])),
    request_body(content = ValidateRequest, example = json!({"format": "brightrun-lora-v4", "content": "{\"conversation_id\": \"c1\", \"turns\": [{\"role\": \"user\", \"content\": \"How do I reset my password?\"}, {\"role\": \"assistant\", \"content\": \"Open Settings, then Security.\"}]}\n"})),
    responses(
        (status = 200, description = "The preview's report (problems in the file are data, not an error)", body = Envelope<PreviewResult>),
        (status = 400, description = "`VALIDATION_ERROR`: content over 100 KB or format unknown", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn validate_dataset(
    _caller: AuthUser,
    ApiJson(req): ApiJson<ValidateRequest>,
) -> ApiResult<Response> {
    if req.content.len() > PREVIEW_LIMIT_BYTES {
        return Err(ApiError::validation(
            "content",
            format!("content is {} bytes; send at most the first {PREVIEW_LIMIT_BYTES} bytes of the file", req.content.len()),
        ));
    }
    let format: DatasetFormat = req.format.into();
    let report = tokio::task::spawn_blocking(move || {
        let tokenizer = O200k::load()?;
        Ok::<_, anyhow::Error>(validator::validate_preview(
            format,
            &req.content,
            &tokenizer,
            ValidatorOptions::default(),
        ))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(envelope::ok(PreviewResult::from(report)))
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub enum Format {
    #[serde(rename = "brightrun-lora-v4")]
    BrightrunLoraV4,
    #[serde(rename = "brightrun-lora-v3")]
    BrightrunLoraV3,
}

impl From<Format> for DatasetFormat {
    fn from(f: Format) -> DatasetFormat {
        match f {
            Format::BrightrunLoraV4 => DatasetFormat::BrightrunLoraV4,
            Format::BrightrunLoraV3 => DatasetFormat::BrightrunLoraV3,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterDatasetRequest {
    /// 1 to 200 characters.
    pub name: String,
    /// At most 2000 characters.
    #[serde(default)]
    pub description: String,
    pub format: Format,
    /// Bytes, 1 to the upload limit (10 GiB by default).
    pub file_size: u64,
    pub file_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetRegistered {
    pub dataset_id: Uuid,
    /// Presigned URL (valid one hour) to upload the file to, with `uploadMethod` and every
    /// header in `uploadHeaders`: `curl -X PUT -T file.jsonl "$uploadUrl"`. The signature covers
    /// the declared `fileSize`: a body of another size is refused by the store.
    pub upload_url: String,
    /// `PUT`
    pub upload_method: String,
    pub upload_headers: std::collections::BTreeMap<String, String>,
    pub upload_expires_at: DateTime<Utc>,
    /// The dataset as the read model shows it (absent only if the read model lags > 5 s).
    pub dataset: Option<DatasetView>,
}

/// A dataset as the read model shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub description: String,
    /// `brightrun-lora-v4` | `brightrun-lora-v3`
    pub format: String,
    /// `uploading` | `validating` | `ready` | `error`
    pub status: String,
    pub training_ready: bool,
    pub total_conversations: i64,
    pub total_training_pairs: i64,
    pub total_validation_pairs: i64,
    pub total_tokens: i64,
    pub avg_turns_per_conversation: f64,
    pub avg_tokens_per_turn: f64,
    /// The BPE vocabulary the tokens were counted with (`o200k_base`), once validated.
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

/// `GET /api/datasets/{id}`: the dataset with its statistics and validation report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetDetail {
    #[serde(flatten)]
    pub dataset: DatasetView,
    /// Absent until the dataset is validated.
    #[schema(value_type = Option<validator::FullStatistics>)]
    pub full_statistics: Option<Value>,
    #[schema(value_type = Vec<validator::SampleConversation>)]
    pub sample_conversations: Value,
    /// The first 100 errors; `validationErrorCount` counts all.
    #[schema(value_type = Vec<validator::Issue>)]
    pub validation_errors: Value,
    /// The first 100 warnings; `validationWarningCount` counts all.
    #[schema(value_type = Vec<validator::Issue>)]
    pub validation_warnings: Value,
    pub validation_error_count: i64,
    pub validation_warning_count: i64,
}

impl From<DatasetRow> for DatasetView {
    fn from(r: DatasetRow) -> Self {
        DatasetView {
            id: r.id,
            user_id: r.user_id,
            name: r.name,
            description: r.description,
            format: r.format,
            status: r.status,
            training_ready: r.training_ready,
            total_conversations: r.total_conversations,
            total_training_pairs: r.total_training_pairs,
            total_validation_pairs: r.total_validation_pairs,
            total_tokens: r.total_tokens,
            avg_turns_per_conversation: r.avg_turns_per_conversation,
            avg_tokens_per_turn: r.avg_tokens_per_turn,
            tokenizer: r.tokenizer,
            file_size: r.file_size,
            file_name: r.file_name,
            s3_key: r.s3_key,
            s3_bucket: r.s3_bucket,
            uploaded_at: r.uploaded_at,
            processed_at: r.processed_at,
            validated_at: r.validated_at,
            error_message: r.error_message,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl DatasetDetail {
    fn new(row: DatasetRow, report: ValidationReportRow) -> Self {
        DatasetDetail {
            dataset: row.into(),
            full_statistics: report.full_statistics,
            sample_conversations: report.sample_conversations,
            validation_errors: report.validation_errors,
            validation_warnings: report.validation_warnings,
            validation_error_count: report.error_count,
            validation_warning_count: report.warning_count,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetList {
    pub datasets: Vec<DatasetView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetOne {
    pub dataset: DatasetDetail,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default)]
pub enum SortBy {
    #[serde(rename = "date-desc")]
    #[default]
    DateDesc,
    #[serde(rename = "date-asc")]
    DateAsc,
    #[serde(rename = "name-asc")]
    NameAsc,
    #[serde(rename = "name-desc")]
    NameDesc,
    #[serde(rename = "size-asc")]
    SizeAsc,
    #[serde(rename = "size-desc")]
    SizeDesc,
}

impl SortBy {
    fn order(self) -> DatasetOrder {
        match self {
            SortBy::DateDesc => DatasetOrder::NewestFirst,
            SortBy::DateAsc => DatasetOrder::OldestFirst,
            SortBy::NameAsc => DatasetOrder::NameAscending,
            SortBy::NameDesc => DatasetOrder::NameDescending,
            SortBy::SizeAsc => DatasetOrder::SmallestFirst,
            SortBy::SizeDesc => DatasetOrder::LargestFirst,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TrainingReadyFilter {
    All,
    True,
    False,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
pub enum FormatFilter {
    #[serde(rename = "all")]
    All,
    #[serde(rename = "brightrun-lora-v4")]
    BrightrunLoraV4,
    #[serde(rename = "brightrun-lora-v3")]
    BrightrunLoraV3,
}

/// A dataset status to list (`all`: every status).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    All,
    Uploading,
    Validating,
    Ready,
    Error,
}

impl StatusFilter {
    fn status(self) -> Option<DatasetStatus> {
        match self {
            StatusFilter::All => None,
            StatusFilter::Uploading => Some(DatasetStatus::Uploading),
            StatusFilter::Validating => Some(DatasetStatus::Validating),
            StatusFilter::Ready => Some(DatasetStatus::Ready),
            StatusFilter::Error => Some(DatasetStatus::Error),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page number, from 1 (default 1).
    pub page: Option<u32>,
    /// Items per page, 1..=100 (default 20).
    pub page_size: Option<u32>,
    /// `date-desc` (default) | `date-asc` | `name-asc` | `name-desc` | `size-asc` | `size-desc`
    #[param(inline)]
    pub sort_by: Option<SortBy>,
    /// `all` (default) | `brightrun-lora-v4` | `brightrun-lora-v3`
    #[param(inline)]
    pub format: Option<FormatFilter>,
    /// `all` (default) | `true` | `false`
    #[param(inline)]
    pub training_ready: Option<TrainingReadyFilter>,
    /// `all` (default) | `uploading` | `validating` | `ready` | `error`
    #[param(inline)]
    #[param(inline)]
    pub status: Option<StatusFilter>,
    /// Case-insensitive search in name and description.
    pub search: Option<String>,
}

pub(crate) fn context(principal: Principal) -> CommandContext {
    let request_id = request_id::current();
    CommandContext {
        user_id: principal.user_id,
        correlation_id: request_id.clone(),
        request_id,
        causation_id: None,
    }
}

fn dataset_error(err: AppError<DatasetError>) -> ApiError {
    match err {
        AppError::Rejected(DatasetError::Invalid(field)) => field.into(),
        AppError::Rejected(e @ DatasetError::AlreadyRegistered(_)) => {
            ApiError::conflict(ErrorCode::Conflict, e.to_string())
        }
        AppError::Rejected(DatasetError::NotFound) => {
            ApiError::not_found(ErrorCode::DatasetNotFound, "no such dataset")
        }
        AppError::Rejected(e @ DatasetError::UploadMissing) => {
            ApiError::conflict(ErrorCode::UploadNotFound, e.to_string())
        }
        AppError::Rejected(e @ DatasetError::SizeMismatch { declared, stored }) => {
            let mut err = ApiError::conflict(ErrorCode::UploadSizeMismatch, e.to_string())
                .with_details(serde_json::json!({"declaredSize": declared, "storedSize": stored}));
            err.body.field = Some("fileSize".to_string());
            err
        }
        AppError::Rejected(e @ DatasetError::InUse) => {
            ApiError::conflict(ErrorCode::DatasetInUse, e.to_string())
        }
        AppError::Rejected(e @ DatasetError::PurgeNotDue { .. }) => {
            ApiError::conflict(ErrorCode::Conflict, e.to_string())
        }
        AppError::Conflict => ApiError::conflict(
            ErrorCode::Conflict,
            "the dataset was changed by another request; retry",
        ),
        AppError::Internal(cause) => ApiError::internal(cause),
    }
}

/// Register a dataset (`POST /api/datasets`). Answers once the read model shows it.
#[utoipa::path(post, path = "/api/datasets", tag = "datasets", security(("bearer" = [])),
    request_body(content = RegisterDatasetRequest, example = json!({"name": "Support chats, October", "description": "Customer support conversations", "format": "brightrun-lora-v4", "fileSize": 2097152, "fileName": "support-chats.jsonl"})),
    responses(
        (status = 201, description = "Registered; status `uploading`", body = Envelope<DatasetRegistered>),
        (status = 400, description = "`VALIDATION_ERROR` naming the field", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn register_dataset(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiJson(req): ApiJson<RegisterDatasetRequest>,
) -> ApiResult<Response> {
    let file_size = req.file_size;
    let receipt = state
        .datasets
        .register(
            &context(principal),
            NewDataset {
                name: req.name,
                description: req.description,
                format: req.format.into(),
                file_size: req.file_size,
                file_name: req.file_name,
            },
        )
        .await
        .map_err(dataset_error)?;
    tracing::info!(dataset_id = %receipt.id, user_id = %principal.user_id, "dataset registered");
    read_your_writes(&state, receipt).await;
    let key = domain::dataset::object_key(principal.user_id, receipt.id);
    let upload = state
        .objects
        .presign_put(&key, file_size, UPLOAD_URL_VALIDITY, state.clock.now())
        .await
        .map_err(ApiError::internal)?;
    let dataset = find(&state, principal, receipt.id)
        .await?
        .map(DatasetView::from);
    Ok(envelope::created(DatasetRegistered {
        dataset_id: receipt.id.0,
        upload_url: upload.url,
        upload_method: upload.method,
        upload_headers: upload.headers.into_iter().collect(),
        upload_expires_at: upload.expires_at,
        dataset,
    }))
}

/// Waits (bounded) until the datasets read model shows the command's effect.
async fn read_your_writes(state: &AppState, receipt: Receipt<DatasetId>) {
    wait_for_projection(state, "datasets", receipt).await
}

/// Waits (bounded) until `projection` shows a command's effect: read-your-writes.
pub(crate) async fn wait_for_projection<Id: std::fmt::Display>(
    state: &AppState,
    projection: &str,
    receipt: Receipt<Id>,
) {
    if let Some(position) = receipt.position {
        let name = projections::subscription_name(projection);
        if !wait_for(&state.pool, &name, position, READ_YOUR_WRITES).await {
            tracing::warn!(id = %receipt.id, projection, "read model did not catch up in time");
        }
    }
}

/// Unknown, deleted and another user's datasets all answer this (no existence leak).
fn dataset_not_found(id: &str) -> ApiError {
    ApiError::not_found(ErrorCode::DatasetNotFound, format!("no dataset {id}"))
}

fn parse_id(id: &str) -> ApiResult<DatasetId> {
    Uuid::parse_str(id)
        .map(DatasetId)
        .map_err(|_| dataset_not_found(id))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDatasetRequest {
    /// 1 to 200 characters.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    pub name: Option<String>,
    /// At most 2000 characters.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub message: String,
}

/// Change a dataset's name and/or description (`PATCH /api/datasets/{id}`).
#[utoipa::path(patch, path = "/api/datasets/{id}", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Dataset id (UUID)")),
    request_body(content = UpdateDatasetRequest, example = json!({"name": "Support chats, October (clean)", "description": "Deduplicated"})),
    responses(
        (status = 200, description = "The updated dataset", body = Envelope<DatasetOne>),
        (status = 400, description = "`VALIDATION_ERROR` naming the field", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`DATASET_NOT_FOUND` (also for another user's dataset)", body = ErrorEnvelope),
    ))]
async fn update_dataset(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateDatasetRequest>,
) -> ApiResult<Response> {
    let dataset_id = parse_id(&id)?;
    let receipt = state
        .datasets
        .update_details(
            &context(principal),
            dataset_id,
            principal.role.sees_all_resources(),
            req.name,
            req.description,
        )
        .await
        .map_err(dataset_error)?;
    read_your_writes(&state, receipt).await;
    let dataset = detail(&state, principal, dataset_id)
        .await?
        .ok_or_else(|| dataset_not_found(&id))?;
    Ok(envelope::ok(DatasetOne { dataset }))
}

/// Delete a dataset (soft): it leaves every list and read at once, and its file is
/// purged from storage after 30 days.
#[utoipa::path(delete, path = "/api/datasets/{id}", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Dataset id (UUID)")),
    responses(
        (status = 200, description = "`Dataset marked for deletion`", body = Envelope<Deleted>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`DATASET_NOT_FOUND` (also when already deleted)", body = ErrorEnvelope),
        (status = 409, description = "`DATASET_IN_USE`: a queued or running job trains on it", body = ErrorEnvelope),
    ))]
async fn delete_dataset(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let dataset_id = parse_id(&id)?;
    let in_use = projections::jobs::queries::dataset_in_use(&state.pool, dataset_id.0)
        .await
        .map_err(ApiError::internal)?;
    let receipt = state
        .datasets
        .delete(
            &context(principal),
            dataset_id,
            principal.role.sees_all_resources(),
            in_use,
        )
        .await
        .map_err(dataset_error)?;
    tracing::info!(dataset_id = %dataset_id, user_id = %principal.user_id, "dataset deleted");
    read_your_writes(&state, receipt).await;
    Ok(envelope::ok(Deleted {
        message: "Dataset marked for deletion".to_string(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationStarted {
    /// `Validation started` (or `Validation already started` on a repeated confirm).
    pub message: String,
    pub dataset_id: Uuid,
    /// `validating` right after the confirm; poll `GET /api/datasets/{id}` for `ready` | `error`.
    pub status: String,
    /// Bytes stored (`POST /api/datasets/{id}/upload` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<u64>,
}

/// Confirm that the file is uploaded: storage must hold exactly the declared
/// `fileSize` at the dataset's key. The dataset moves to `validating` and is validated in the
/// background; poll `GET /api/datasets/{id}` until `ready` or `error`. Confirming again is
/// harmless.
#[utoipa::path(post, path = "/api/datasets/{id}/confirm", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Dataset id (UUID)")),
    responses(
        (status = 200, description = "`Validation started`", body = Envelope<ValidationStarted>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`DATASET_NOT_FOUND` (also for another user's dataset)", body = ErrorEnvelope),
        (status = 409, description = "`UPLOAD_NOT_FOUND`: nothing uploaded yet; `UPLOAD_SIZE_MISMATCH` (field `fileSize`, `details.declaredSize`/`storedSize`): upload the whole file again. The dataset stays `uploading`.", body = ErrorEnvelope),
    ))]
async fn confirm_upload(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let dataset_id = parse_id(&id)?;
    Ok(envelope::ok(
        confirm(&state, principal, dataset_id, &id).await?,
    ))
}

/// Checks the stored object against the declared size and starts validation.
async fn confirm(
    state: &AppState,
    principal: Principal,
    dataset_id: DatasetId,
    id: &str,
) -> ApiResult<ValidationStarted> {
    let visible = find(state, principal, dataset_id)
        .await?
        .ok_or_else(|| dataset_not_found(id))?;
    let stored_size = state
        .objects
        .size_of(&visible.s3_key)
        .await
        .map_err(ApiError::internal)?;
    let before = visible.status;
    let receipt = state
        .datasets
        .confirm_upload(
            &context(principal),
            dataset_id,
            principal.role.sees_all_resources(),
            stored_size,
        )
        .await
        .map_err(dataset_error)?;
    read_your_writes(state, receipt).await;
    let status = find(state, principal, dataset_id)
        .await?
        .map_or_else(|| "validating".to_string(), |d| d.status);
    let message = if before == "uploading" {
        "Validation started"
    } else {
        "Validation already started"
    };
    tracing::info!(%dataset_id, user_id = %principal.user_id, ?stored_size, "dataset upload confirmed");
    Ok(ValidationStarted {
        message: message.to_string(),
        dataset_id: dataset_id.0,
        status,
        bytes_received: None,
    })
}

/// Upload the file through the API (`POST /api/datasets/{id}/upload`), for clients
/// that cannot reach object storage: the body is either the raw file
/// (`curl --data-binary @chats.jsonl`) or `multipart/form-data` with a `file` field
/// (`curl -F file=@chats.jsonl`). It streams to storage (multipart above 8 MiB) without being
/// held in memory; passing the declared `fileSize` stops it at once with 413 and leaves nothing
/// stored. On success the upload is confirmed as by `POST /api/datasets/{id}/confirm`.
#[utoipa::path(post, path = "/api/datasets/{id}/upload", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Dataset id (UUID)")),
    request_body(description = "The JSONL file: the raw bytes, or multipart/form-data with a `file` field",
        content(
            (Vec<u8> = "application/octet-stream", example = json!("{\"conversation_id\": \"c1\", \"turns\": [...]}\n")),
            (Vec<u8> = "multipart/form-data"),
        )),
    responses(
        (status = 200, description = "Stored and confirmed: `Validation started`", body = Envelope<ValidationStarted>,
            example = json!({"success": true, "data": {"message": "Validation started", "datasetId": "0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a10", "status": "validating", "bytesReceived": 2048}})),
        (status = 400, description = "`VALIDATION_ERROR` (field `file`: no file in the form) or `UPLOAD_INTERRUPTED` (the body broke off)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`DATASET_NOT_FOUND` (also for another user's dataset)", body = ErrorEnvelope),
        (status = 409, description = "`DATASET_NOT_UPLOADING`: the file was already received; `UPLOAD_SIZE_MISMATCH` (field `fileSize`): the body was shorter than the declared `fileSize`", body = ErrorEnvelope),
        (status = 413, description = "`PAYLOAD_TOO_LARGE` (field `fileSize`): the body passed the declared `fileSize`; nothing was stored", body = ErrorEnvelope),
    ))]
async fn upload_file(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    use futures::StreamExt;
    let dataset_id = parse_id(&id)?;
    let visible = find(&state, principal, dataset_id)
        .await?
        .ok_or_else(|| dataset_not_found(&id))?;
    if !DatasetStatus::parse(&visible.status).accepts_file() {
        return Err(ApiError::conflict(
            ErrorCode::DatasetNotUploading,
            format!(
                "dataset {id} is {}: its file was already received",
                visible.status
            ),
        ));
    }
    let expected = (visible.file_size.max(0) as u64).min(state.config.upload_limit_bytes);
    let key = visible.s3_key.clone();
    let multipart = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let stored = if multipart {
        let mut form = axum::extract::Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::validation("file", format!("not a multipart form: {e}")))?;
        loop {
            let field = form
                .next_field()
                .await
                .map_err(|e| ApiError::validation("file", format!("not a multipart form: {e}")))?
                .ok_or_else(|| {
                    ApiError::validation("file", "the form has no `file` field with the JSONL file")
                })?;
            if field.name() == Some("file") {
                let chunks = futures::stream::unfold(field, |mut field| async move {
                    match field.chunk().await {
                        Ok(Some(bytes)) => Some((Ok(bytes), field)),
                        Ok(None) => None,
                        Err(e) => Some((Err(std::io::Error::other(e)), field)),
                    }
                });
                break state
                    .objects
                    .put_stream(&key, Box::pin(chunks), expected)
                    .await;
            }
        }
    } else {
        let chunks = request
            .into_body()
            .into_data_stream()
            .map(|chunk| chunk.map_err(std::io::Error::other));
        state
            .objects
            .put_stream(&key, Box::pin(chunks), expected)
            .await
    };
    let received = stored.map_err(|err| match err {
        PutStreamError::TooLarge { limit } => {
            let mut e = ApiError::new(ErrorCode::PayloadTooLarge,
                format!("the upload passed the declared fileSize of {limit} bytes; nothing was stored"),
            );
            e.body.field = Some("fileSize".into());
            e.body.details = Some(serde_json::json!({"declaredSize": limit}));
            e
        }
        PutStreamError::SizeMismatch { expected, received } => {
            let mut e = ApiError::conflict(ErrorCode::UploadSizeMismatch,
                format!("the upload had {received} bytes but fileSize declares {expected}; nothing was stored"),
            );
            e.body.field = Some("fileSize".into());
            e.body.details = Some(serde_json::json!({"declaredSize": expected, "receivedSize": received}));
            e
        }
        PutStreamError::Body(e) => ApiError::new(ErrorCode::UploadInterrupted,
            format!("the upload broke off: {e}; nothing was stored"),
        ),
        PutStreamError::Store(e) => ApiError::internal(e),
    })?;
    tracing::info!(%dataset_id, user_id = %principal.user_id, bytes = received, "dataset file received through the API");
    let mut started = confirm(&state, principal, dataset_id, &id).await?;
    started.bytes_received = Some(received);
    Ok(envelope::ok(started))
}

/// The dataset with its validation report when `principal` may see it.
async fn detail(
    state: &AppState,
    principal: Principal,
    id: DatasetId,
) -> ApiResult<Option<DatasetDetail>> {
    let Some(row) = find(state, principal, id).await? else {
        return Ok(None);
    };
    let report = read::report(&state.pool, id.0)
        .await
        .map_err(ApiError::internal)?;
    Ok(report.map(|report| DatasetDetail::new(row, report)))
}

/// The dataset when `principal` may see it; deleted datasets are gone.
async fn find(
    state: &AppState,
    principal: Principal,
    id: DatasetId,
) -> ApiResult<Option<DatasetRow>> {
    read::find(&state.pool, viewer(principal), id.0)
        .await
        .map_err(ApiError::internal)
}

/// List the caller's datasets, paginated, filtered and sorted.
#[utoipa::path(get, path = "/api/datasets", tag = "datasets", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of datasets; `meta.pagination`", body = Envelope<DatasetList>),
        (status = 400, description = "`VALIDATION_ERROR` (page, pageSize, sortBy, format, trainingReady, status)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn list_datasets(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Response> {
    let (page, page_size, offset) = PageParams {
        page: params.page,
        page_size: params.page_size,
    }
    .resolve()?;
    let format = match params.format {
        None | Some(FormatFilter::All) => None,
        Some(FormatFilter::BrightrunLoraV4) => Some(DatasetFormat::BrightrunLoraV4),
        Some(FormatFilter::BrightrunLoraV3) => Some(DatasetFormat::BrightrunLoraV3),
    };
    let training_ready = match params.training_ready {
        None | Some(TrainingReadyFilter::All) => None,
        Some(TrainingReadyFilter::True) => Some(true),
        Some(TrainingReadyFilter::False) => Some(false),
    };
    if let Some(search) = &params.search {
        if search.chars().any(char::is_control) {
            return Err(ApiError::validation(
                "search",
                "search must not contain control characters",
            ));
        }
    }
    let filter = DatasetFilter {
        format: format.map(|f| f.as_str().to_string()),
        training_ready,
        status: params
            .status
            .and_then(StatusFilter::status)
            .map(|s| s.as_str().to_string()),
        search: params
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    };
    let (total, rows) = read::list(
        &state.pool,
        viewer(principal),
        &filter,
        params.sort_by.unwrap_or_default().order(),
        Page {
            limit: i64::from(page_size),
            offset,
        },
    )
    .await
    .map_err(ApiError::internal)?;
    let datasets = rows.into_iter().map(DatasetView::from).collect();
    Ok(envelope::page(
        DatasetList { datasets },
        pagination(page, page_size, total),
    ))
}

/// One dataset with `fullStatistics`, `sampleConversations` and the validation report.
/// Another user's dataset answers 404, like one that does not exist.
#[utoipa::path(get, path = "/api/datasets/{id}", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Dataset id (UUID)")),
    responses(
        (status = 200, description = "The dataset", body = Envelope<DatasetOne>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`DATASET_NOT_FOUND`", body = ErrorEnvelope),
    ))]
async fn get_dataset(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let dataset_id = parse_id(&id)?;
    let dataset = detail(&state, principal, dataset_id)
        .await?
        .ok_or_else(|| dataset_not_found(&id))?;
    Ok(envelope::ok(DatasetOne { dataset }))
}
