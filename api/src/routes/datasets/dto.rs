//! The shapes the datasets routes take and answer.

use chrono::{DateTime, Utc};
use domain::dataset::validator;
use domain::dataset::{DatasetFormat, DatasetStatus};
use projections::datasets::queries::{DatasetOrder, DatasetRow, ValidationReportRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

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

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub enum Format {
    #[serde(rename = "brightrun-lora-v4")]
    BrightrunLoraV4,
    #[serde(rename = "brightrun-lora-v3")]
    BrightrunLoraV3,
    /// OpenAI's fine-tuning chat format (`{"messages": [...]}`).
    #[serde(rename = "openai-chat")]
    OpenaiChat,
    /// `{"conversations": [{"from": "system|human|gpt", "value"}]}`.
    #[serde(rename = "sharegpt")]
    Sharegpt,
    /// `{"instruction", "input"?, "output"}`.
    #[serde(rename = "alpaca")]
    Alpaca,
}

impl From<Format> for DatasetFormat {
    fn from(f: Format) -> DatasetFormat {
        match f {
            Format::BrightrunLoraV4 => DatasetFormat::BrightrunLoraV4,
            Format::BrightrunLoraV3 => DatasetFormat::BrightrunLoraV3,
            Format::OpenaiChat => DatasetFormat::OpenaiChat,
            Format::Sharegpt => DatasetFormat::Sharegpt,
            Format::Alpaca => DatasetFormat::Alpaca,
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
    /// `brightrun-lora-v4` | `brightrun-lora-v3` | `openai-chat` | `sharegpt` | `alpaca`
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
    pub(super) fn new(row: DatasetRow, report: ValidationReportRow) -> Self {
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
    pub(super) fn order(self) -> DatasetOrder {
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
    #[serde(rename = "openai-chat")]
    OpenaiChat,
    #[serde(rename = "sharegpt")]
    Sharegpt,
    #[serde(rename = "alpaca")]
    Alpaca,
}

impl FormatFilter {
    /// The one format to list; `None` for all.
    pub fn format(self) -> Option<DatasetFormat> {
        match self {
            FormatFilter::All => None,
            FormatFilter::BrightrunLoraV4 => Some(DatasetFormat::BrightrunLoraV4),
            FormatFilter::BrightrunLoraV3 => Some(DatasetFormat::BrightrunLoraV3),
            FormatFilter::OpenaiChat => Some(DatasetFormat::OpenaiChat),
            FormatFilter::Sharegpt => Some(DatasetFormat::Sharegpt),
            FormatFilter::Alpaca => Some(DatasetFormat::Alpaca),
        }
    }
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
    pub(super) fn status(self) -> Option<DatasetStatus> {
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
    /// `all` (default) | `brightrun-lora-v4` | `brightrun-lora-v3` | `openai-chat` | `sharegpt` | `alpaca`
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
