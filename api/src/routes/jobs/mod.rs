//! Training jobs: the configuration catalogue, estimate, create, list, detail, metrics
//! history, metadata edits and cancel. Reads come from the jobs read model
//! (`projections::jobs::queries`); the shapes answered are in `dto`.

mod catalogue;
pub mod dto;

use application::datasets::Receipt;
use application::jobs::NewJob;
use application::AppError;
use axum::extract::{Path, State};
use axum::response::Response;
use domain::ids::{DatasetId, JobId, ModelId};
use domain::job::estimate::Estimate;
use domain::job::{JobError, Plan};
use projections::jobs::queries::{self as read, JobOrder};
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::envelope::{self, money, pagination, Envelope, PageParams};
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};
use crate::extract::{viewer, ApiJson, ApiQuery, AuthUser};
use crate::routes::datasets::context;
use crate::state::AppState;
pub use dto::*;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(catalogue::router())
        .routes(routes!(estimate_job))
        .routes(routes!(list_jobs, create_job))
        .routes(routes!(get_job, update_job))
        .routes(routes!(job_metrics))
        .routes(routes!(cancel_job))
}

fn job_error(err: AppError<JobError>) -> ApiError {
    match err {
        AppError::Rejected(JobError::Invalid(field)) => field.into(),
        AppError::Rejected(e @ JobError::DatasetNotFound(_)) => {
            let mut err = ApiError::not_found(ErrorCode::DatasetNotFound, e.to_string());
            err.body.field = Some("datasetId".to_string());
            err
        }
        AppError::Rejected(e @ JobError::DatasetNotReady { .. }) => {
            let mut err = ApiError::conflict(ErrorCode::DatasetNotReady, e.to_string());
            err.body.field = Some("datasetId".to_string());
            err
        }
        AppError::Rejected(e @ JobError::AlreadyCreated(_)) => {
            ApiError::conflict(ErrorCode::Conflict, e.to_string())
        }
        AppError::Rejected(JobError::NotFound) => job_not_found("the job"),
        AppError::Rejected(e @ JobError::NotCancellable(_)) => {
            ApiError::conflict(ErrorCode::JobNotCancellable, e.to_string())
        }
        AppError::Conflict => ApiError::conflict(
            ErrorCode::Conflict,
            "the job was changed by another request; retry",
        ),
        AppError::Unavailable(cause) => ApiError::unavailable(cause),
        AppError::Internal(cause) => ApiError::internal(cause),
    }
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::not_found(ErrorCode::JobNotFound, format!("no job {id}"))
}

pub(crate) fn parse_job_id(id: &str) -> ApiResult<JobId> {
    Uuid::parse_str(id)
        .map(JobId)
        .map_err(|_| job_not_found(id))
}

/// Cost and duration of a configuration on an owned, `ready` dataset. Takes the same body as
/// `POST /api/jobs`: what you estimate is what you launch.
#[utoipa::path(post, path = "/api/jobs/estimate", tag = "jobs", security(("bearer" = [])),
    request_body(content = JobRequestBody, example = json!({"datasetId": "0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a10", "presetId": "balanced", "baseModel": "llama-3-8b", "hyperparameters": {"loraRank": 32, "targetModules": ["q_proj", "k_proj", "v_proj"]}, "gpuConfig": {"instanceType": "a100-80gb", "numGPUs": 1}})),
    responses(
        (status = 200, description = "The estimate", body = Envelope<EstimateDto>),
        (status = 400, description = "`VALIDATION_ERROR` naming the field (e.g. `hyperparameters.loraRank`, `gpuConfig`)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`DATASET_NOT_FOUND` (also another user's)", body = ErrorEnvelope),
        (status = 409, description = "`DATASET_NOT_READY`", body = ErrorEnvelope),
    ))]
async fn estimate_job(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiJson(body): ApiJson<JobRequestBody>,
) -> ApiResult<Response> {
    let Plan {
        configuration,
        estimate,
    } = state
        .jobs
        .estimate(
            &context(principal),
            DatasetId(body.dataset_id),
            &body.request(),
        )
        .await
        .map_err(job_error)?;
    let configuration = serde_json::to_value(&configuration).map_err(ApiError::internal)?;
    Ok(envelope::ok(estimate_dto(&estimate, configuration)))
}

/// Create and launch a training job on an owned `ready` + `trainingReady` dataset. The
/// resolved configuration and the estimate are stored with the job.
#[utoipa::path(post, path = "/api/jobs", tag = "jobs", security(("bearer" = [])),
    request_body(content = JobRequestBody, example = json!({"datasetId": "0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a10", "presetId": "balanced", "baseModel": "llama-3-8b", "hyperparameters": {"loraRank": 32, "targetModules": ["q_proj", "k_proj", "v_proj"]}, "gpuConfig": {"instanceType": "a100-80gb", "numGPUs": 1}})),
    responses(
        (status = 201, description = "Created, `queued`", body = Envelope<JobCreatedDto>),
        (status = 400, description = "`VALIDATION_ERROR` naming the field", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`DATASET_NOT_FOUND` (also another user's)", body = ErrorEnvelope),
        (status = 409, description = "`DATASET_NOT_READY`: not validated, or not training-ready", body = ErrorEnvelope),
    ))]
async fn create_job(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiJson(body): ApiJson<JobRequestBody>,
) -> ApiResult<Response> {
    let receipt = state
        .jobs
        .create(
            &context(principal),
            NewJob {
                dataset_id: DatasetId(body.dataset_id),
                request: body.request(),
                parent_model_id: body.parent_model_id.map(ModelId),
                from_checkpoint: body
                    .from_checkpoint
                    .map(|c| (domain::ids::JobId(c.job_id), c.checkpoint_id)),
                name: body.name,
                labels: Default::default(),
            },
        )
        .await
        .map_err(job_error)?;
    tracing::info!(job_id = %receipt.id, user_id = %principal.user_id, "job created");
    read_your_writes(&state, receipt).await;
    let row = read::find(&state.pool, viewer(principal), receipt.id.0)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("the jobs read model did not catch up"))?;
    let estimate: Estimate =
        serde_json::from_value(row.estimate.clone()).map_err(ApiError::internal)?;
    let c = &estimate.cost;
    Ok(envelope::created(JobCreatedDto {
        job_id: row.id,
        status: row.status.clone(),
        estimated_cost: EstimatedCost {
            gpu_cost: money(c.compute.total),
            storage_cost: money(c.storage.total),
            data_cost: money(c.data_transfer.total),
            total: money(c.total),
            currency: "USD".to_string(),
        },
        estimated_duration: MinMax {
            min: estimate.duration.min,
            max: estimate.duration.max,
        },
        queue_position: read::queue_position(&state.pool, &row)
            .await
            .map_err(ApiError::internal)?,
        created_at: row.created_at,
    }))
}

async fn read_your_writes(state: &AppState, receipt: Receipt<JobId>) {
    crate::routes::datasets::wait_for_projection(state, "jobs", receipt).await
}

/// The caller's jobs, paginated, filtered by status and sorted.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs", security(("bearer" = [])),
    params(JobListParams),
    responses(
        (status = 200, description = "A page of jobs; `meta.pagination`", body = Envelope<JobList>),
        (status = 400, description = "`VALIDATION_ERROR` (status, page, pageSize, sortBy)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn list_jobs(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiQuery(params): ApiQuery<JobListParams>,
) -> ApiResult<Response> {
    let (page, page_size, window) = PageParams {
        page: params.page,
        page_size: params.page_size,
    }
    .resolve()?;
    let status = params.status.and_then(StatusFilter::status);
    let order = match params.sort_by.unwrap_or_default() {
        JobSort::CreatedDesc => JobOrder::NewestFirst,
        JobSort::CreatedAsc => JobOrder::OldestFirst,
        JobSort::CostDesc => JobOrder::CostliestFirst,
    };
    let (total, rows) = read::list(
        &state.pool,
        viewer(principal),
        status.map(|s| s.as_str()),
        order,
        window,
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(envelope::page(
        JobList {
            jobs: rows.into_iter().map(JobView::from).collect(),
        },
        pagination(page, page_size, total),
    ))
}

/// Points of a metrics history, evenly thinned to at most `max` (first and last kept).
pub(crate) fn downsample<T>(points: Vec<T>, max: usize) -> Vec<T> {
    let n = points.len();
    if max == 0 || n <= max {
        return points;
    }
    if max == 1 {
        return points.into_iter().last().into_iter().collect();
    }
    let keep: std::collections::BTreeSet<usize> = (0..max)
        .map(|i| (i * (n - 1) + (max - 1) / 2) / (max - 1))
        .collect();
    points
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, p)| p)
        .collect()
}

/// The longest history the detail carries before thinning (use `/metrics` for all of it).
pub(crate) const DETAIL_POINTS: usize = 1000;

/// The log lines the detail carries: the last ones.
const DETAIL_LOG_LINES: i64 = 500;

/// The job when `principal` may see it, else `JOB_NOT_FOUND`.
pub(crate) async fn find_visible(
    state: &AppState,
    principal: infrastructure::auth::Principal,
    id: JobId,
) -> ApiResult<read::JobRow> {
    read::find(&state.pool, viewer(principal), id.0)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| job_not_found(&id.to_string()))
}

/// A job's metrics history in step order, optionally between two steps (inclusive).
pub(crate) async fn metric_points(
    state: &AppState,
    job: Uuid,
    from: Option<i64>,
    to: Option<i64>,
) -> ApiResult<Vec<MetricPointDto>> {
    let points = read::metric_points(&state.pool, job, from, to)
        .await
        .map_err(ApiError::internal)?;
    Ok(points.into_iter().map(MetricPointDto::from).collect())
}

fn loss_curve(points: &[MetricPointDto]) -> LossCurve {
    LossCurve {
        steps: points.iter().map(|p| p.step).collect(),
        training_loss: points.iter().map(|p| p.training_loss).collect(),
        validation_loss: points.iter().map(|p| p.validation_loss).collect(),
    }
}

/// One job with its metrics history, loss curve, checkpoints and logs.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id (UUID)")),
    responses(
        (status = 200, description = "The job", body = Envelope<JobOne>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`JOB_NOT_FOUND` (also another user's)", body = ErrorEnvelope),
    ))]
async fn get_job(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let job_id = parse_job_id(&id)?;
    let row = find_visible(&state, principal, job_id).await?;
    let estimate: Estimate =
        serde_json::from_value(row.estimate.clone()).map_err(ApiError::internal)?;
    let configuration = serde_json::json!({
        "presetId": row.preset_id, "baseModel": row.base_model, "hyperparameters": row.hyperparameters,
        "gpuConfig": row.gpu_config, "options": row.options,
    });
    let points = downsample(
        metric_points(&state, row.id, None, None).await?,
        DETAIL_POINTS,
    );
    let checkpoints = read::checkpoints(&state.pool, row.id)
        .await
        .map_err(ApiError::internal)?;
    let logs = read::recent_logs(&state.pool, row.id, DETAIL_LOG_LINES)
        .await
        .map_err(ApiError::internal)?;
    let queue_position = read::queue_position(&state.pool, &row)
        .await
        .map_err(ApiError::internal)?;
    Ok(envelope::ok(JobOne {
        job: JobDetail {
            estimate: estimate_dto(&estimate, configuration),
            queue_position,
            loss_curve: loss_curve(&points),
            metrics_history: points,
            checkpoints: checkpoints.into_iter().map(Into::into).collect(),
            logs: logs.into_iter().map(Into::into).collect(),
            job: row.into(),
        },
    }))
}

/// A job's metrics history over a step range, optionally thinned for long curves.
#[utoipa::path(get, path = "/api/jobs/{id}/metrics", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id (UUID)"), MetricsParams),
    responses(
        (status = 200, description = "The points, in step order", body = Envelope<MetricsDto>),
        (status = 400, description = "`VALIDATION_ERROR` (fromStep, toStep, points)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`JOB_NOT_FOUND`", body = ErrorEnvelope),
    ))]
async fn job_metrics(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<MetricsParams>,
) -> ApiResult<Response> {
    let job_id = parse_job_id(&id)?;
    if let (Some(from), Some(to)) = (params.from_step, params.to_step) {
        if from > to {
            return Err(ApiError::validation(
                "fromStep",
                "fromStep must not be after toStep",
            ));
        }
    }
    if let Some(n) = params.points {
        if !(2..=10_000).contains(&n) {
            return Err(ApiError::validation(
                "points",
                "points must be between 2 and 10000",
            ));
        }
    }
    let row = find_visible(&state, principal, job_id).await?;
    let all = metric_points(&state, row.id, params.from_step, params.to_step).await?;
    let total_points = all.len();
    let points = downsample(all, params.points.unwrap_or(0));
    Ok(envelope::ok(MetricsDto {
        job_id: row.id,
        total_points,
        loss_curve: loss_curve(&points),
        metrics_history: points,
    }))
}

/// Change a job's name, description (or `notes`) and tags. The configuration is fixed at
/// creation: naming one of its fields answers `VALIDATION_ERROR` with that field.
#[utoipa::path(patch, path = "/api/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id (UUID)")),
    request_body(content = UpdateJobRequest, example = json!({"name": "Support bot, October", "description": "Balanced preset on the October tickets", "tags": ["support", "october"]})),
    responses(
        (status = 200, description = "The updated job", body = Envelope<JobOne>),
        (status = 400, description = "`VALIDATION_ERROR` naming the field: name, description, tags[i], tags, or a configuration field (presetId, hyperparameters, gpuConfig, ...), which cannot change", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`JOB_NOT_FOUND` (also another user's)", body = ErrorEnvelope),
    ))]
async fn update_job(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Map<String, Value>>,
) -> ApiResult<Response> {
    let job_id = parse_job_id(&id)?;
    for field in body.keys() {
        if domain::job::config::CONFIGURATION_FIELDS.contains(&field.as_str()) {
            return Err(ApiError::validation(
                field.clone(),
                format!("{field} is part of the job's configuration, which cannot change: launch a new job instead"),
            ));
        }
        if !["name", "description", "notes", "tags"].contains(&field.as_str()) {
            return Err(ApiError::validation(
                field.clone(),
                format!("unknown field {field}: a job's name, description (or notes) and tags can change"),
            ));
        }
    }
    let request: UpdateJobRequest = serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::validation("body", format!("invalid metadata: {e}")))?;
    if let Some(notes) = &request.notes {
        domain::validation::text_length("notes", notes, 0, 2000)?;
    }
    let receipt = state
        .jobs
        .update_metadata(
            &context(principal),
            job_id,
            principal.role.sees_all_resources(),
            request.name,
            request.description.or(request.notes),
            request.tags,
        )
        .await
        .map_err(job_error)?;
    read_your_writes(&state, receipt).await;
    get_job(State(state), AuthUser(principal), Path(id)).await
}

/// Cancel a queued, initializing or running job: it is `cancelled` at once; the
/// cluster job is stopped and the cost closed in the background.
#[utoipa::path(post, path = "/api/jobs/{id}/cancel", tag = "jobs", security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id (UUID)")),
    responses(
        (status = 200, description = "Cancelled", body = Envelope<CancelledDto>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`JOB_NOT_FOUND` (also another user's)", body = ErrorEnvelope),
        (status = 409, description = "`JOB_NOT_CANCELLABLE`: completed, failed or already cancelled", body = ErrorEnvelope),
    ))]
async fn cancel_job(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let job_id = parse_job_id(&id)?;
    let receipt = state
        .jobs
        .cancel(
            &context(principal),
            job_id,
            principal.role.sees_all_resources(),
        )
        .await
        .map_err(|e| match e {
            AppError::Rejected(JobError::NotFound) => job_not_found(&id),
            other => job_error(other),
        })?;
    tracing::info!(%job_id, user_id = %principal.user_id, "job cancelled");
    read_your_writes(&state, receipt).await;
    let row = find_visible(&state, principal, job_id).await?;
    let cost = row.final_cost.unwrap_or(row.current_cost);
    let refund = row.refund_amount.unwrap_or_default();
    Ok(envelope::ok(CancelledDto {
        job_id: row.id,
        status: row.status,
        cost_so_far: money(cost),
        refund_amount: money(refund),
        message: format!(
            "Job cancelled; {} spent, {} of unused compute refunded",
            money(cost),
            money(refund)
        ),
    }))
}
