//! Datasets: register (the upload flow comes with the datasets capability), list and detail.
//! Reads come from the `rm_datasets` projection only, with the owner in the SQL.

pub mod dto;

pub use dto::*;
use std::time::Duration;

use application::datasets::{NewDataset, Receipt};

use application::{AppError, CommandContext, PutStreamError};

use axum::extract::FromRequest;

use axum::extract::{Path, State};

use axum::response::Response;

use domain::dataset::validator::{self, ValidatorOptions, PREVIEW_LIMIT_BYTES};

use domain::dataset::{DatasetError, DatasetFormat, DatasetStatus};

use domain::ids::DatasetId;

use infrastructure::auth::Principal;

use infrastructure::subscription::wait_for;

use infrastructure::tokenizer::O200k;

use projections::datasets::queries::{self as read, DatasetFilter, DatasetRow};

use utoipa_axum::{router::OpenApiRouter, routes};

use uuid::Uuid;

use crate::envelope::{self, pagination, Envelope, PageParams};

use crate::error::{ApiError, ApiResult, ErrorCode, ErrorDetails, ErrorEnvelope};

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

pub(crate) fn context(principal: Principal) -> CommandContext {
    let request_id = request_id::current();
    CommandContext {
        user_id: principal.user_id,
        correlation_id: request_id.clone(),
        request_id,
        causation_id: None,
    }
}

pub(crate) fn dataset_error(err: AppError<DatasetError>) -> ApiError {
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
                .with_details(ErrorDetails {
                    declared_size: Some(declared),
                    stored_size: Some(stored),
                    ..ErrorDetails::default()
                });
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
        AppError::Unavailable(cause) => ApiError::unavailable(cause),
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
    let receipt = state
        .datasets
        .delete(
            &context(principal),
            dataset_id,
            principal.role.sees_all_resources(),
        )
        .await
        .map_err(dataset_error)?;
    tracing::info!(dataset_id = %dataset_id, user_id = %principal.user_id, "dataset deleted");
    read_your_writes(&state, receipt).await;
    Ok(envelope::ok(Deleted {
        message: "Dataset marked for deletion".to_string(),
    }))
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
pub(crate) async fn confirm(
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
    // The first confirm answers the status it put the dataset in: a small file may already be
    // validated by the time the read model is read, and the answer would then race it.
    let (message, status) = if before == "uploading" {
        ("Validation started", "validating".to_string())
    } else {
        let current = find(state, principal, dataset_id)
            .await?
            .map_or(before, |d| d.status);
        ("Validation already started", current)
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
/// held in memory; passing the declared `fileSize` stops it at once with 409
/// `UPLOAD_SIZE_MISMATCH` (as a shorter body answers) and leaves nothing stored. On success the upload is confirmed as by `POST /api/datasets/{id}/confirm`.
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
        (status = 409, description = "`DATASET_NOT_UPLOADING`: the file was already received; `UPLOAD_SIZE_MISMATCH` (field `fileSize`): the body was shorter or longer than the declared `fileSize` (a longer one is cut off as it passes it); nothing was stored", body = ErrorEnvelope),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: a form field other than the file passed 4 KiB", body = ErrorEnvelope),
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
        let broken = |e: &dyn std::fmt::Display| {
            ApiError::validation("file", format!("not a multipart form: {e}"))
        };
        let mut form = axum::extract::Multipart::from_request(request, &state)
            .await
            .map_err(|e| broken(&e))?;
        let broken = |e: axum::extract::multipart::MultipartError| broken(&e);
        let mut fields = crate::multipart::FieldCount::default();
        loop {
            let field = form.next_field().await.map_err(broken)?.ok_or_else(|| {
                ApiError::validation("file", "the form has no `file` field with the JSONL file")
            })?;
            fields.one_more("file")?;
            if field.name() != Some("file") {
                // Another field before the file: read within its bound and set aside.
                crate::multipart::text(field, broken).await?;
                continue;
            }
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
    let received = stored.map_err(put_error)?;
    tracing::info!(%dataset_id, user_id = %principal.user_id, bytes = received, "dataset file received through the API");
    let mut started = confirm(&state, principal, dataset_id, &id).await?;
    started.bytes_received = Some(received);
    Ok(envelope::ok(started))
}

/// What a failed streamed upload answers; nothing was stored in any case.
pub(crate) fn put_error(err: PutStreamError) -> ApiError {
    match err {
        // Longer or shorter, the body does not match what the dataset declared: the same
        // answer both ways (the longer one is cut off the moment it passes the size).
        PutStreamError::TooLarge { limit } => {
            let mut e = ApiError::conflict(
                ErrorCode::UploadSizeMismatch,
                format!(
                    "the upload passed the declared fileSize of {limit} bytes; nothing was stored"
                ),
            );
            e.body.field = Some("fileSize".into());
            e.body.details = Some(ErrorDetails {
                declared_size: Some(limit),
                ..ErrorDetails::default()
            });
            e
        }
        PutStreamError::SizeMismatch { expected, received } => {
            let mut e = ApiError::conflict(ErrorCode::UploadSizeMismatch,
                format!("the upload had {received} bytes but fileSize declares {expected}; nothing was stored"),
            );
            e.body.field = Some("fileSize".into());
            e.body.details = Some(ErrorDetails {
                declared_size: Some(expected),
                received_size: Some(received),
                ..ErrorDetails::default()
            });
            e
        }
        PutStreamError::Body(e) => ApiError::new(
            ErrorCode::UploadInterrupted,
            format!("the upload broke off: {e}; nothing was stored"),
        ),
        PutStreamError::Store(e) => ApiError::internal(e),
    }
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
    let (page, page_size, window) = PageParams {
        page: params.page,
        page_size: params.page_size,
    }
    .resolve()?;
    let format = params.format.and_then(FormatFilter::format);
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
        window,
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
