//! Models: list, detail with lineage and download URLs,
//! metadata edits, soft delete, deployment, billed downloads (one file or the ZIP of all),
//! and the stored-files overview. Reads come from the `rm_models` projection.

pub mod dto;

mod archive;
pub use dto::*;

use std::time::Duration;

use application::models::{ModelActor, Target};

use application::AppError;

use axum::extract::{Path, State};

use axum::response::Response;

use domain::ids::ModelId;

use domain::model::{DeployRequest, ModelArtifact, ModelError, ModelStatus};

use infrastructure::auth::Principal;

use projections::models::queries::{self as read, ModelOrder, ModelRow};

use utoipa_axum::{router::OpenApiRouter, routes};

use uuid::Uuid;

use crate::envelope::{self, pagination, Envelope, PageParams};

use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};

use crate::extract::{viewer, ApiJson, ApiQuery, AuthUser};

use crate::routes::datasets::{context, wait_for_projection, DatasetView, Deleted};

use crate::routes::jobs::{downsample, metric_points, DETAIL_POINTS};

use crate::state::AppState;

/// Download URLs are valid for one hour.
const DOWNLOAD_URL_VALIDITY: Duration = Duration::from_secs(3600);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_models))
        .routes(routes!(list_artifacts))
        .routes(routes!(get_model, update_model, delete_model))
        .routes(routes!(download_model))
        .routes(routes!(deploy_model))
        .routes(routes!(undeploy_model))
        .routes(routes!(chat_with_model))
        .routes(routes!(chat_with_base_model))
}

use domain::model::{ADAPTER_CONFIG, ADAPTER_WEIGHTS as ADAPTER_MODEL};

const TOKENIZER: &str = "tokenizer.json";

fn model_not_found(id: &str) -> ApiError {
    ApiError::not_found(ErrorCode::ModelNotFound, format!("no model {id}"))
}

fn parse_model_id(id: &str) -> ApiResult<ModelId> {
    Uuid::parse_str(id)
        .map(ModelId)
        .map_err(|_| model_not_found(id))
}

pub(crate) fn model_error(id: &str, err: AppError<ModelError>) -> ApiError {
    match err {
        AppError::Rejected(ModelError::Invalid(field)) => field.into(),
        AppError::Rejected(ModelError::NotFound) => model_not_found(id),
        AppError::Rejected(e @ ModelError::Deployed(..)) => {
            ApiError::conflict(ErrorCode::ModelDeployed, e.to_string())
        }
        AppError::Rejected(e @ ModelError::Archived) => {
            ApiError::conflict(ErrorCode::ModelArchived, e.to_string())
        }
        AppError::Rejected(e @ ModelError::NotDeployed) => {
            ApiError::conflict(ErrorCode::ModelNotDeployed, e.to_string())
        }
        AppError::Rejected(e @ ModelError::NotServing) => {
            ApiError::conflict(ErrorCode::ModelNotServing, e.to_string())
        }
        AppError::Rejected(e @ ModelError::NotServable(_)) => {
            ApiError::conflict(ErrorCode::AdapterNotServable, e.to_string())
        }
        AppError::Rejected(e @ ModelError::NoArtifacts) => ApiError::internal(e),
        AppError::Conflict => ApiError::conflict(
            ErrorCode::Conflict,
            "the model was changed by another request; retry",
        ),
        AppError::Unavailable(e) => ApiError::unavailable(e),
        AppError::Internal(e) => ApiError::internal(e),
    }
}

pub(crate) fn actor(principal: Principal) -> ModelActor {
    ModelActor {
        user_id: principal.user_id,
        is_admin: principal.role.sees_all_resources(),
    }
}

fn find_artifact<'a>(artifacts: &'a [ModelArtifact], name: &str) -> Option<&'a ModelArtifact> {
    artifacts.iter().find(|a| a.name == name)
}

/// The model if `principal` may see it (owner, or admin); deleted models are gone.
async fn find(state: &AppState, principal: Principal, id: ModelId) -> ApiResult<Option<ModelRow>> {
    read::find(&state.pool, viewer(principal), id.0)
        .await
        .map_err(ApiError::internal)
}

/// The archive of every file of the model: stored once, then reused.
async fn archive(
    state: &AppState,
    principal: Principal,
    row: &ModelRow,
) -> ApiResult<ModelArtifact> {
    if let Some(archive) = &row.archive {
        return Ok(archive.0.clone());
    }
    let id = ModelId(row.id);
    // The read model may lag behind an archive another request just recorded.
    if let Some(model) = state
        .models
        .load(id)
        .await
        .map_err(|e| model_error(&row.id.to_string(), e))?
    {
        if let Some(archive) = model.archive() {
            return Ok(archive.clone());
        }
    }
    let key = format!("models/{}/archive.zip", row.id);
    let (size_bytes, sha256) = archive::store(state.objects.clone(), &row.artifacts.0, &key)
        .await
        .map_err(ApiError::internal)?;
    let archive = ModelArtifact {
        name: format!("model-{}-{}.zip", row.id, row.version),
        s3_key: key,
        size_bytes,
        sha256,
    };
    state
        .models
        .record_archive(&context(principal), id, archive.clone())
        .await
        .map_err(|e| model_error(&row.id.to_string(), e))?;
    Ok(archive)
}

/// The stored adapter of one of the model's checkpoints: `checkpoint_id`'s, or the newest
/// (the last of the job's) when none is named.
async fn checkpoint_file(
    state: &AppState,
    row: &ModelRow,
    checkpoint_id: Option<String>,
) -> ApiResult<ModelArtifact> {
    let checkpoints = projections::jobs::queries::stored_checkpoints(&state.pool, &[row.job_id])
        .await
        .map_err(ApiError::internal)?;
    let mut stored = checkpoints.iter().filter_map(CheckpointArtifact::of);
    let wanted = checkpoint_id;
    let found = match &wanted {
        Some(wanted) => stored.find(|c| &c.id == wanted),
        None => stored.next_back(),
    };
    found
        .map(|c| ModelArtifact {
            name: c.file_name,
            s3_key: c.s3_key,
            size_bytes: c.size,
            sha256: c.checksum,
        })
        .ok_or_else(|| {
            let which = wanted.map_or_else(String::new, |w| format!(" {w:?}"));
            ApiError::not_found(
                ErrorCode::ArtifactNotFound,
                format!("model {} has no stored checkpoint{which}", row.id),
            )
        })
}

/// The views of `rows`, each with its job's stored checkpoints (one query for all).
async fn views(state: &AppState, rows: &[ModelRow]) -> ApiResult<Vec<ModelView>> {
    let jobs: Vec<_> = rows.iter().map(|r| r.job_id).collect();
    let checkpoints = projections::jobs::queries::stored_checkpoints(&state.pool, &jobs)
        .await
        .map_err(ApiError::internal)?;
    Ok(rows
        .iter()
        .map(|row| ModelView::new(row, &checkpoints))
        .collect())
}

/// The view of one model with its job's stored checkpoints.
async fn view(state: &AppState, row: &ModelRow) -> ApiResult<ModelView> {
    let checkpoints = projections::jobs::queries::stored_checkpoints(&state.pool, &[row.job_id])
        .await
        .map_err(ApiError::internal)?;
    Ok(ModelView::new(row, &checkpoints))
}

/// A presigned download of one of the model's files, or of the ZIP of all of them.
/// Issuing the URL bills its data transfer (GB × rate) to the owner's ledger.
/// Another user's model answers 404.
#[utoipa::path(get, path = "/api/models/{id}/download", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "Model id (UUID)"), DownloadParams),
    responses(
        (status = 200, description = "Where to download the file", body = Envelope<Download>,
            example = json!({"success": true, "data": {"modelId": "0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a10", "downloadUrl": "http://127.0.0.1:9000/brightrun/models/0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a10/adapter_model.safetensors?X-Amz-Signature=…", "fileName": "adapter_model.safetensors", "fileSize": 13631488, "expiresAt": "2026-11-23T11:00:00Z", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "transferCost": 0.0}})),
        (status = 400, description = "`VALIDATION_ERROR` (artifact, checkpointId)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`MODEL_NOT_FOUND`, or `ARTIFACT_NOT_FOUND` when the model has no such file or stored checkpoint", body = ErrorEnvelope),
    ))]
async fn download_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<DownloadParams>,
) -> ApiResult<Response> {
    let model_id = parse_model_id(&id)?;
    if params.checkpoint_id.as_deref() == Some("") {
        return Err(ApiError::validation(
            "checkpointId",
            "checkpointId names one of artifacts.checkpoints[].id (leave it out for the newest)",
        ));
    }
    let row = find(&state, principal, model_id)
        .await?
        .ok_or_else(|| model_not_found(&id))?;
    let artifact = match params.artifact.unwrap_or(ArtifactChoice::AdapterModel) {
        ArtifactChoice::All => archive(&state, principal, &row).await?,
        ArtifactChoice::Checkpoint => checkpoint_file(&state, &row, params.checkpoint_id).await?,
        choice => {
            let wanted = match choice {
                ArtifactChoice::AdapterConfig => ADAPTER_CONFIG,
                ArtifactChoice::Tokenizer => TOKENIZER,
                _ => ADAPTER_MODEL,
            };
            find_artifact(&row.artifacts.0, wanted)
                .cloned()
                .ok_or_else(|| {
                    ApiError::not_found(
                        ErrorCode::ArtifactNotFound,
                        format!("model {id} has no {wanted}"),
                    )
                })?
        }
    };
    let presigned = state
        .objects
        .presign_get(&artifact.s3_key, DOWNLOAD_URL_VALIDITY, state.clock.now())
        .await
        .map_err(ApiError::internal)?;
    let rate = state.jobs.rates().data_transfer_per_gb;
    state
        .models
        .bill_download(
            &context(principal),
            model_id,
            actor(principal),
            &artifact.name,
            artifact.size_bytes,
            rate,
        )
        .await
        .map_err(|e| model_error(&id, e))?;
    let (_, transfer_cost) = domain::job::estimate::transfer_charge(artifact.size_bytes, rate);
    Ok(envelope::ok(Download {
        model_id: model_id.0,
        download_url: presigned.url,
        file_name: artifact.name,
        file_size: artifact.size_bytes,
        expires_at: presigned.expires_at,
        sha256: artifact.sha256,
        transfer_cost: envelope::money(transfer_cost),
    }))
}

/// One model with its training history, dataset lineage and download URLs.
#[utoipa::path(get, path = "/api/models/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "Model id (UUID)")),
    responses(
        (status = 200, description = "The model", body = Envelope<ModelOne>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`MODEL_NOT_FOUND` (also for another user's or a deleted model)", body = ErrorEnvelope),
    ))]
async fn get_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let model_id = parse_model_id(&id)?;
    let row = find(&state, principal, model_id)
        .await?
        .ok_or_else(|| model_not_found(&id))?;
    Ok(envelope::ok(ModelOne {
        model: detail(&state, &row).await?,
    }))
}

async fn detail(state: &AppState, row: &ModelRow) -> ApiResult<ModelDetail> {
    let points = metric_points(state, row.job_id, None, None).await?;
    let dataset = projections::datasets::queries::find_any(&state.pool, row.dataset_id)
        .await
        .map_err(ApiError::internal)?
        .map(DatasetView::from);
    let options = &row.configuration.0.options;
    let splits = Splits {
        train: dataset.as_ref().map_or(0, |d| d.total_training_pairs),
        validation: dataset.as_ref().map_or(0, |d| d.total_validation_pairs),
    };
    let preprocessing_steps = vec![
        format!(
            "parsed {} JSONL, one conversation per line",
            dataset.as_ref().map_or("brightrun-lora-v4", |d| d.format.as_str())
        ),
        "validated roles, turns and content; lines with errors excluded".to_string(),
        format!(
            "tokenized with {}",
            dataset
                .as_ref()
                .and_then(|d| d.tokenizer.clone())
                .unwrap_or_else(|| "o200k_base".to_string())
        ),
        "paired each user turn with the assistant turn that follows".to_string(),
        format!(
            "split by each conversation's `split` field, otherwise by a stable hash of its id at validationSplitRatio {}",
            options.validation_split_ratio
        ),
    ];
    let now = state.clock.now();
    let mut urls = std::collections::BTreeMap::new();
    for name in [ADAPTER_MODEL, ADAPTER_CONFIG, TOKENIZER] {
        if let Some(a) = find_artifact(&row.artifacts.0, name) {
            let presigned = state
                .objects
                .presign_get(&a.s3_key, DOWNLOAD_URL_VALIDITY, now)
                .await
                .map_err(ApiError::internal)?;
            urls.insert(name, presigned.url);
        }
    }
    let all = match &row.archive {
        Some(archive) => Some(
            state
                .objects
                .presign_get(&archive.0.s3_key, DOWNLOAD_URL_VALIDITY, now)
                .await
                .map_err(ApiError::internal)?
                .url,
        ),
        None => None,
    };
    Ok(ModelDetail {
        model: view(state, row).await?,
        metrics_history: downsample(points, DETAIL_POINTS),
        dataset_lineage: DatasetLineage {
            original_dataset: dataset,
            preprocessing_steps,
            splits,
        },
        download_urls: DownloadUrls {
            adapter_model: urls.remove(ADAPTER_MODEL),
            adapter_config: urls.remove(ADAPTER_CONFIG),
            tokenizer: urls.remove(TOKENIZER),
            all_artifacts: all,
            expires_at: now + DOWNLOAD_URL_VALIDITY,
        },
    })
}

/// Change a model's name, description or status (`stored` | `archived`). A
/// deployed model keeps its status.
#[utoipa::path(patch, path = "/api/models/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "Model id (UUID)")),
    request_body(content = UpdateModelRequest, example = json!({"name": "Support bot v1", "description": "Trained on October tickets", "status": "archived"})),
    responses(
        (status = 200, description = "The updated model", body = Envelope<ModelSingle>),
        (status = 400, description = "`VALIDATION_ERROR` naming the field (name, description, status)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`MODEL_NOT_FOUND`", body = ErrorEnvelope),
        (status = 409, description = "`MODEL_DEPLOYED`: a deployed model's status cannot change", body = ErrorEnvelope),
    ))]
async fn update_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateModelRequest>,
) -> ApiResult<Response> {
    let model_id = parse_model_id(&id)?;
    let receipt = state
        .models
        .update_metadata(
            &context(principal),
            model_id,
            actor(principal),
            req.name,
            req.description,
            req.status,
        )
        .await
        .map_err(|e| model_error(&id, e))?;
    wait_for_projection(&state, "models", receipt).await;
    let row = find(&state, principal, model_id)
        .await?
        .ok_or_else(|| model_not_found(&id))?;
    Ok(envelope::ok(ModelSingle {
        model: view(&state, &row).await?,
    }))
}

/// Delete a model (soft): it leaves every list and read at once. Its files stay in
/// storage.
#[utoipa::path(delete, path = "/api/models/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "Model id (UUID)")),
    responses(
        (status = 200, description = "`Model deleted`", body = Envelope<Deleted>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`MODEL_NOT_FOUND` (also when already deleted)", body = ErrorEnvelope),
        (status = 409, description = "`MODEL_DEPLOYED`: undeploy first", body = ErrorEnvelope),
    ))]
async fn delete_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let model_id = parse_model_id(&id)?;
    let receipt = state
        .models
        .delete(&context(principal), model_id, actor(principal))
        .await
        .map_err(|e| model_error(&id, e))?;
    wait_for_projection(&state, "models", receipt).await;
    Ok(envelope::ok(Deleted {
        message: "Model deleted".to_string(),
    }))
}

/// Deploy a model to the inference service: its adapter is served by an engine for its
/// base model (llama.cpp on CPU for smollm2-135m): `deploying` at once, `deployed` when the
/// engine answers, `failed` (with `failureReason`) when it cannot serve the adapter.
#[utoipa::path(post, path = "/api/models/{id}/deploy", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "Model id (UUID)")),
    request_body(content = DeployModelRequest, example = json!({"environment": "staging", "endpointName": "support-bot", "minReplicas": 1, "maxReplicas": 2})),
    responses(
        (status = 202, description = "The deployment started", body = Envelope<DeploymentStarted>),
        (status = 400, description = "`VALIDATION_ERROR` naming the field (environment, endpointName, instanceType, minReplicas, maxReplicas)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`MODEL_NOT_FOUND`", body = ErrorEnvelope),
        (status = 409, description = "`MODEL_DEPLOYED` (one deployment at a time), `MODEL_ARCHIVED`, or `ADAPTER_NOT_SERVABLE` (no engine here serves the model as trained)", body = ErrorEnvelope),
    ))]
async fn deploy_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<DeployModelRequest>,
) -> ApiResult<Response> {
    let model_id = parse_model_id(&id)?;
    let request = DeployRequest {
        environment: req.environment,
        endpoint_name: req.endpoint_name,
        instance_type: req.instance_type,
        min_replicas: req.min_replicas,
        max_replicas: req.max_replicas,
    };
    let (receipt, ticket) = state
        .models
        .deploy(&context(principal), model_id, actor(principal), request)
        .await
        .map_err(|e| model_error(&id, e))?;
    wait_for_projection(&state, "models", receipt).await;
    Ok(envelope::with_status(
        axum::http::StatusCode::ACCEPTED,
        DeploymentStarted {
            deployment_id: ticket.deployment_id,
            endpoint_url: ticket.endpoint_url,
            status: "deploying".to_string(),
            estimated_ready_at: ticket.estimated_ready_at,
        },
    ))
}

/// Stop the model's deployment (serving or still starting); the model is `stored` again.
#[utoipa::path(post, path = "/api/models/{id}/undeploy", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "Model id (UUID)")),
    responses(
        (status = 200, description = "The deployment stopped", body = Envelope<DeploymentStopped>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`MODEL_NOT_FOUND`", body = ErrorEnvelope),
        (status = 409, description = "`MODEL_NOT_DEPLOYED`", body = ErrorEnvelope),
    ))]
async fn undeploy_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let model_id = parse_model_id(&id)?;
    let (receipt, deployment_id) = state
        .models
        .undeploy(&context(principal), model_id, actor(principal))
        .await
        .map_err(|e| model_error(&id, e))?;
    wait_for_projection(&state, "models", receipt).await;
    Ok(envelope::ok(DeploymentStopped {
        deployment_id,
        status: "stopped".to_string(),
    }))
}

/// A chat completion from the caller's deployed model, in OpenAI's `chat.completion`
/// shape inside the envelope (`stream: true`: server-sent `chat.completion.chunk` events,
/// then `[DONE]`). The owner only; its tokens are billed as `api_calls`.
#[utoipa::path(post, path = "/api/models/{id}/chat", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "Model id (UUID)")),
    request_body(content = crate::routes::chat::ChatRequest, example = json!({"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 32})),
    responses(
        (status = 200, description = "The completion (or its stream)", body = Envelope<serde_json::Value>),
        (status = 400, description = "`VALIDATION_ERROR` naming the field (messages, max_tokens, temperature, top_p, stop)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`MODEL_NOT_FOUND` (also another user's)", body = ErrorEnvelope),
        (status = 409, description = "`MODEL_NOT_DEPLOYED`, or `MODEL_NOT_SERVING` while its engine starts", body = ErrorEnvelope),
    ))]
async fn chat_with_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<crate::routes::chat::ChatRequest>,
) -> ApiResult<Response> {
    chat(&state, principal, &id, req, Target::Adapter).await
}

/// The base model's answer to a chat request, from the engine of the base model alone
/// that a deployment runs beside the fine-tuned one: the same request to both shows what
/// training changed. Its answers carry the base model's name; the owner only; its tokens
/// are billed as `api_calls`, as the fine-tuned model's are.
#[utoipa::path(post, path = "/api/models/{id}/chat/base", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "Model id (UUID) of the deployed fine-tuned model")),
    request_body(content = crate::routes::chat::ChatRequest, example = json!({"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 32})),
    responses(
        (status = 200, description = "The base model's completion (or its stream)", body = Envelope<serde_json::Value>),
        (status = 400, description = "`VALIDATION_ERROR` naming the field (messages, max_tokens, temperature, top_p, stop)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`MODEL_NOT_FOUND` (also another user's)", body = ErrorEnvelope),
        (status = 409, description = "`MODEL_NOT_DEPLOYED`, or `MODEL_NOT_SERVING` while its engines start", body = ErrorEnvelope),
    ))]
async fn chat_with_base_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<crate::routes::chat::ChatRequest>,
) -> ApiResult<Response> {
    chat(&state, principal, &id, req, Target::Base).await
}

async fn chat(
    state: &AppState,
    principal: Principal,
    id: &str,
    req: crate::routes::chat::ChatRequest,
    target: Target,
) -> ApiResult<Response> {
    use crate::routes::chat::{complete, Completion};
    let model_id = parse_model_id(id)?;
    match complete(
        state,
        principal,
        model_id,
        req,
        target,
        model_id.0.to_string(),
    )
    .await?
    {
        Completion::Whole(answer) => Ok(envelope::ok(answer)),
        Completion::Stream(response) => Ok(response),
    }
}

/// Every stored file of the caller's models, newest model first, for
/// storage overviews.
#[utoipa::path(get, path = "/api/models/artifacts", tag = "models", security(("bearer" = [])),
    params(ArtifactListParams),
    responses(
        (status = 200, description = "A page of files; `meta.pagination`", body = Envelope<ArtifactList>),
        (status = 400, description = "`VALIDATION_ERROR` (modelId, page, pageSize)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn list_artifacts(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiQuery(params): ApiQuery<ArtifactListParams>,
) -> ApiResult<Response> {
    let (page, page_size, window) = PageParams {
        page: params.page,
        page_size: params.page_size,
    }
    .resolve()?;
    let (total, total_size, files) =
        read::stored_files(&state.pool, viewer(principal), params.model_id, window)
            .await
            .map_err(ApiError::internal)?;
    Ok(envelope::page(
        ArtifactList {
            artifacts: files.into_iter().map(StoredArtifact::from).collect(),
            total_size,
        },
        pagination(page, page_size, total),
    ))
}

/// The caller's models, filtered by status, sorted, paginated.
#[utoipa::path(get, path = "/api/models", tag = "models", security(("bearer" = [])),
    params(ModelListParams),
    responses(
        (status = 200, description = "A page of models; `meta.pagination`", body = Envelope<ModelList>),
        (status = 400, description = "`VALIDATION_ERROR` (status, sortBy, page, pageSize)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn list_models(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiQuery(params): ApiQuery<ModelListParams>,
) -> ApiResult<Response> {
    let (page, page_size, window) = PageParams {
        page: params.page,
        page_size: params.page_size,
    }
    .resolve()?;
    let status = match params.status {
        None | Some(ModelStatusFilter::All) => None,
        Some(ModelStatusFilter::Stored) => Some(ModelStatus::Stored),
        Some(ModelStatusFilter::Deployed) => Some(ModelStatus::Deployed),
        Some(ModelStatusFilter::Archived) => Some(ModelStatus::Archived),
    };
    let order = match params.sort_by.unwrap_or_default() {
        ModelSort::CreatedDesc => ModelOrder::NewestFirst,
        ModelSort::QualityDesc => ModelOrder::BestConvergenceFirst,
        ModelSort::SizeDesc => ModelOrder::LargestFirst,
    };
    let (total, rows) = read::list(
        &state.pool,
        viewer(principal),
        status.map(ModelStatus::as_str),
        order,
        window,
    )
    .await
    .map_err(ApiError::internal)?;
    let models = views(&state, &rows).await?;
    Ok(envelope::page(
        ModelList { models },
        pagination(page, page_size, total),
    ))
}
