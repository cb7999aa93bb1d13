//! `/v1/files`: a file with `purpose=fine-tune` is a dataset. The upload registers it (its
//! format recognised from its first line), stores it and confirms it, exactly as
//! `POST /api/datasets` then `POST /api/datasets/{id}/upload` do; it is then validated in the
//! background (`status`: `uploaded`, then `processed` or `error`).

use std::path::PathBuf;

use application::datasets::NewDataset;
use axum::extract::{FromRequest, Multipart, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use domain::dataset::{DatasetFormat, MAX_FILE_NAME_LENGTH, MAX_NAME_LENGTH};
use domain::ids::DatasetId;
use futures::StreamExt;
use projections::datasets::queries::{self as read, DatasetRow};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{cursor, limit_of, parse_prefixed, unix, with_param, OpenAiErrorBody, OpenAiList};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{viewer, ApiQuery, AuthUser};
use crate::multipart;
use crate::routes::datasets::{confirm, context, dataset_error, put_error, wait_for_projection};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(
            // The file streams through to a spool file: no request-body limit but the upload limit.
            OpenApiRouter::new()
                .routes(routes!(list_files, upload_file))
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .routes(routes!(get_file, delete_file))
        .routes(routes!(file_content))
}

const PURPOSE: &str = "fine-tune";

/// OpenAI's file object.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileObject {
    /// `file-<uuid>`: the dataset's id with OpenAI's prefix.
    pub id: String,
    /// Always `file`.
    pub object: &'static str,
    pub bytes: i64,
    /// Unix seconds.
    pub created_at: i64,
    pub filename: String,
    /// Always `fine-tune`.
    pub purpose: &'static str,
    /// `uploaded` (stored, validating), `processed` (validated) or `error`.
    pub status: &'static str,
    /// Why validation failed, when `status` is `error`.
    pub status_details: Option<String>,
    /// BrightRun: the dataset format the file was recognised as.
    pub format: String,
    /// BrightRun: whether a job can train on it (validated, enough pairs, no errors).
    pub training_ready: bool,
}

impl From<DatasetRow> for FileObject {
    fn from(row: DatasetRow) -> FileObject {
        let status = match row.status.as_str() {
            "ready" => "processed",
            "error" => "error",
            _ => "uploaded",
        };
        FileObject {
            id: file_id(row.id),
            object: "file",
            bytes: row.file_size,
            created_at: unix(row.created_at),
            filename: row.file_name,
            purpose: PURPOSE,
            status,
            status_details: (status == "error").then_some(row.error_message).flatten(),
            format: row.format,
            training_ready: row.training_ready,
        }
    }
}

pub(super) fn file_id(id: uuid::Uuid) -> String {
    format!("file-{id}")
}

pub(super) fn parse_file_id(id: &str) -> Option<DatasetId> {
    parse_prefixed(id, "file-").map(DatasetId)
}

fn file_not_found(id: &str) -> ApiError {
    ApiError::not_found(ErrorCode::DatasetNotFound, format!("no file {id}"))
}

/// The file a request names by its path, when the caller may see it.
async fn visible(
    state: &AppState,
    principal: infrastructure::auth::Principal,
    id: &str,
) -> ApiResult<DatasetRow> {
    let dataset = parse_file_id(id).ok_or_else(|| file_not_found(id))?;
    read::find(&state.pool, viewer(principal), dataset.0)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| file_not_found(id))
}

/// The multipart form of `POST /v1/files`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FileUpload {
    /// The JSONL file, in any format BrightRun reads (`openai-chat`, `sharegpt`, `alpaca`,
    /// `brightrun-lora-v4`, `brightrun-lora-v3`): recognised from its first line.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Must be `fine-tune`.
    purpose: String,
}

/// A spooled upload, removed when dropped.
struct Spool {
    path: PathBuf,
    size: u64,
    /// The first bytes, enough to recognise the format by the first line.
    head: Vec<u8>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

const HEAD_BYTES: usize = 1024 * 1024;

/// Writes the form's file to a spool file (its size is known only at its end), refusing it
/// once it passes the upload limit.
async fn spool(
    state: &AppState,
    mut field: axum::extract::multipart::Field<'_>,
) -> ApiResult<Spool> {
    let path = std::env::temp_dir().join(format!("brightrun-v1-upload-{}", uuid::Uuid::new_v4()));
    let mut spool = Spool {
        path,
        size: 0,
        head: Vec::new(),
    };
    let mut out = tokio::fs::File::create(&spool.path)
        .await
        .map_err(ApiError::internal)?;
    let limit = state.config.upload_limit_bytes;
    while let Some(chunk) = field.chunk().await.map_err(|e| {
        ApiError::new(
            ErrorCode::UploadInterrupted,
            format!("the upload broke off: {e}; nothing was stored"),
        )
    })? {
        spool.size += chunk.len() as u64;
        if spool.size > limit {
            return Err(with_param(
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "the file passed the upload limit of {limit} bytes; nothing was stored"
                    ),
                ),
                "file",
            ));
        }
        if spool.head.len() < HEAD_BYTES {
            let room = HEAD_BYTES - spool.head.len();
            spool
                .head
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        out.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    out.flush().await.map_err(ApiError::internal)?;
    Ok(spool)
}

fn form_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::validation(
        "file",
        format!("send multipart/form-data with a `file` field and `purpose=fine-tune`: {e}"),
    )
}

/// A name for the dataset from the file's: control characters dropped, cut to the bound.
fn printable(name: &str, max: usize) -> String {
    let kept: String = name
        .chars()
        .filter(|c| !domain::validation::is_refused_control(*c))
        .take(max)
        .collect();
    if kept.trim().is_empty() {
        "upload.jsonl".to_string()
    } else {
        kept
    }
}

/// Upload a file for fine-tuning (`purpose=fine-tune`). It becomes a dataset: its format is
/// recognised from its first line, it is stored and validated in the background; poll
/// `GET /v1/files/{id}` until `status` is `processed` (or `error`, with `status_details`).
#[utoipa::path(post, path = "/v1/files", tag = "openai", security(("bearer" = [])),
    request_body(content = FileUpload, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Stored; `status` `uploaded` while it is validated", body = FileObject),
        (status = 400, description = "`param` `purpose` (not `fine-tune`) or `file` (none, empty, or in no format BrightRun reads)", body = OpenAiErrorBody),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
        (status = 413, description = "The file passed the upload limit, or another field passed 4 KiB (`param` names it)", body = OpenAiErrorBody),
    ))]
async fn upload_file(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    let mut form = Multipart::from_request(request, &state)
        .await
        .map_err(form_error)?;
    let mut purpose = None;
    let mut file = None;
    let mut fields = multipart::FieldCount::default();
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        fields.one_more("file")?;
        match field.name() {
            Some("file") if file.is_some() => {
                return Err(ApiError::validation(
                    "file",
                    "send one `file` field: one file per request",
                ))
            }
            Some("file") => {
                let name = field.file_name().unwrap_or("upload.jsonl").to_string();
                file = Some((name, spool(&state, field).await?));
            }
            Some("purpose") => purpose = Some(multipart::text(field, form_error).await?),
            // Read (within the same bound) and set aside: OpenAI's clients send no others.
            _ => {
                multipart::text(field, form_error).await?;
            }
        }
    }
    match purpose.as_deref() {
        Some(PURPOSE) => {}
        Some(other) => {
            return Err(ApiError::validation(
                "purpose",
                format!("purpose {other:?} is not supported: BrightRun takes files for fine-tuning, purpose=fine-tune"),
            ))
        }
        None => {
            return Err(ApiError::validation(
                "purpose",
                "purpose is required: fine-tune",
            ))
        }
    }
    let (file_name, spool) =
        file.ok_or_else(|| ApiError::validation("file", "the form has no `file` field"))?;
    if spool.size == 0 {
        return Err(ApiError::validation("file", "the file is empty"));
    }
    let format = DatasetFormat::detect(&spool.head).ok_or_else(|| {
        ApiError::validation(
            "file",
            "the file's first line is in no format BrightRun reads: one JSON object per line with \
             `messages` (openai-chat), `conversations` (sharegpt), `instruction` and `output` \
             (alpaca), or `conversation_id` and `turns` (brightrun-lora-v4)",
        )
    })?;
    let receipt = state
        .datasets
        .register(
            &context(principal),
            NewDataset {
                name: printable(&file_name, MAX_NAME_LENGTH),
                description: String::new(),
                format,
                file_size: spool.size,
                file_name: printable(&file_name, MAX_FILE_NAME_LENGTH),
            },
        )
        .await
        .map_err(|e| {
            let err = dataset_error(e);
            if err.body.field.is_some() {
                with_param(err, "file")
            } else {
                err
            }
        })?;
    wait_for_projection(&state, "datasets", receipt).await;
    let dataset_id = receipt.id;
    let key = domain::dataset::object_key(principal.user_id, dataset_id);
    let reader = tokio::fs::File::open(&spool.path)
        .await
        .map_err(ApiError::internal)?;
    let chunks =
        tokio_util::io::ReaderStream::new(reader).map(|c| c.map_err(std::io::Error::other));
    if let Err(err) = state
        .objects
        .put_stream(&key, Box::pin(chunks), spool.size)
        .await
    {
        // Nothing was stored: the dataset registered for it goes too.
        if let Err(cleanup) = state
            .datasets
            .delete(&context(principal), dataset_id, false)
            .await
        {
            tracing::warn!(%dataset_id, error = ?cleanup, "cannot delete the dataset of a failed upload");
        }
        return Err(put_error(err));
    }
    let id = dataset_id.to_string();
    confirm(&state, principal, dataset_id, &id).await?;
    tracing::info!(%dataset_id, user_id = %principal.user_id, bytes = spool.size, format = format.as_str(), "file uploaded through /v1/files");
    let row = read::find(&state.pool, viewer(principal), dataset_id.0)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("the datasets read model did not catch up"))?;
    Ok(axum::Json(FileObject::from(row)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileListParams {
    /// Only files of this purpose (every BrightRun file is `fine-tune`).
    pub purpose: Option<String>,
    /// 1 to 10000, default 10000.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
    /// A file id: the page starts after it (the `last_id` of the page before).
    pub after: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    pub order: Option<String>,
}

/// The caller's files (its datasets, whichever way they were uploaded), newest first.
#[utoipa::path(get, path = "/v1/files", tag = "openai", security(("bearer" = [])),
    params(FileListParams),
    responses(
        (status = 200, description = "A page of files", body = OpenAiList<FileObject>),
        (status = 400, description = "`param` `limit`, `after` or `order`", body = OpenAiErrorBody),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
    ))]
async fn list_files(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiQuery(params): ApiQuery<FileListParams>,
) -> ApiResult<Response> {
    let limit = limit_of(params.limit, 10_000, 10_000)?;
    let oldest_first = match params.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => return Err(ApiError::validation("order", "order must be asc or desc")),
    };
    let after = cursor(params.after.as_deref(), "file-", "a file id")?;
    let rows = if params.purpose.as_deref().is_some_and(|p| p != PURPOSE) {
        Vec::new()
    } else {
        read::list_after(
            &state.pool,
            viewer(principal),
            after,
            oldest_first,
            limit as i64 + 1,
        )
        .await
        .map_err(ApiError::internal)?
    };
    let files = rows.into_iter().map(FileObject::from).collect();
    Ok(axum::Json(OpenAiList::page(files, limit, |f: &FileObject| {
        f.id.clone()
    }))
    .into_response())
}

/// One file.
#[utoipa::path(get, path = "/v1/files/{file_id}", tag = "openai", security(("bearer" = [])),
    params(("file_id" = String, Path, description = "`file-<uuid>` (or the dataset's UUID)")),
    responses(
        (status = 200, description = "The file", body = FileObject),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
        (status = 404, description = "No such file (also another user's)", body = OpenAiErrorBody),
    ))]
async fn get_file(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(file_id): Path<String>,
) -> ApiResult<Response> {
    let row = visible(&state, principal, &file_id).await?;
    Ok(axum::Json(FileObject::from(row)).into_response())
}

/// What `DELETE /v1/files/{file_id}` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileDeleted {
    pub id: String,
    /// Always `file`.
    pub object: &'static str,
    pub deleted: bool,
}

/// Delete a file (its dataset), unless a job that has not ended trains on it.
#[utoipa::path(delete, path = "/v1/files/{file_id}", tag = "openai", security(("bearer" = [])),
    params(("file_id" = String, Path, description = "`file-<uuid>` (or the dataset's UUID)")),
    responses(
        (status = 200, description = "Deleted", body = FileDeleted),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
        (status = 404, description = "No such file (also another user's, or already deleted)", body = OpenAiErrorBody),
        (status = 409, description = "`dataset_in_use`: a job that has not ended trains on it", body = OpenAiErrorBody),
    ))]
async fn delete_file(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(file_id): Path<String>,
) -> ApiResult<Response> {
    let row = visible(&state, principal, &file_id).await?;
    let receipt = state
        .datasets
        .delete(
            &context(principal),
            DatasetId(row.id),
            principal.role.sees_all_resources(),
        )
        .await
        .map_err(dataset_error)?;
    wait_for_projection(&state, "datasets", receipt).await;
    Ok(axum::Json(FileDeleted {
        id: self::file_id(row.id),
        object: "file",
        deleted: true,
    })
    .into_response())
}

/// The file's bytes, as uploaded.
#[utoipa::path(get, path = "/v1/files/{file_id}/content", tag = "openai", security(("bearer" = [])),
    params(("file_id" = String, Path, description = "`file-<uuid>` (or the dataset's UUID)")),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
        (status = 404, description = "No such file (also another user's)", body = OpenAiErrorBody),
        (status = 409, description = "`upload_not_found`: its bytes were never received", body = OpenAiErrorBody),
    ))]
async fn file_content(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(file_id): Path<String>,
) -> ApiResult<Response> {
    let row = visible(&state, principal, &file_id).await?;
    let reader = state
        .objects
        .read(&row.s3_key)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::not_found(
                ErrorCode::UploadNotFound,
                format!("file {file_id} has no stored bytes yet"),
            )
        })?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    let disposition = format!(
        "attachment; filename=\"{}\"",
        row.file_name.replace(['"', '\\', '\r', '\n'], "_")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}
