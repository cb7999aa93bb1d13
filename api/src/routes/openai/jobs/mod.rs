//! `/v1/fine_tuning/jobs`: OpenAI's fine-tuning jobs over BrightRun's jobs. A create is
//! `POST /api/jobs` with OpenAI's parameters translated (`auto` is the preset's value,
//! `learning_rate_multiplier` scales the preset's learning rate, BrightRun-only settings ride
//! in `metadata`); reads come from the jobs read model, events from the job's own stream in the
//! event store.

use application::jobs::NewJob;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use domain::ids::{DatasetId, JobId};
use infrastructure::event_log::read_aggregate_newest_first;
use projections::jobs::queries as read;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

mod request;
mod view;

use request::*;
use view::*;

use super::files::file_id;
use super::models::fine_tuned_model_name;
use super::{cursor, limit_of, unix, with_param, OpenAiErrorBody, OpenAiList};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{viewer, ApiJson, ApiQuery, AuthUser};
use crate::routes::datasets::{context, wait_for_projection};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs, create_job))
        .routes(routes!(get_job))
        .routes(routes!(cancel_job))
        .routes(routes!(job_events))
        .routes(routes!(job_checkpoints))
}

// --- Handlers --------------------------------------------------------------------------------

/// Create a fine-tuning job on a `processed` file: `POST /api/jobs` with OpenAI's parameters.
/// A file still being validated (one uploaded just before, as OpenAI's guide does it) is
/// waited for, at most 120 s; a file that fails validation is refused (`training_file`).
#[utoipa::path(post, path = "/v1/fine_tuning/jobs", tag = "openai", security(("bearer" = [])),
    request_body(content = CreateFineTuningJob, example = json!({"model": "smollm2-135m", "training_file": "file-0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a10", "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": 0.5}}}, "suffix": "support-bot", "metadata": {"gpu_type": "a100-80gb", "gpu_count": "1"}})),
    responses(
        (status = 200, description = "Created, `queued`", body = FineTuningJob),
        (status = 400, description = "`param` names the parameter: `model`, `training_file` (not processed or not training-ready), `hyperparameters.n_epochs` (or under `method.supervised.hyperparameters`), `suffix`, `seed`, `metadata.gpu_type`, ...", body = OpenAiErrorBody),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
        (status = 404, description = "`param` `training_file`: no such file (also another user's)", body = OpenAiErrorBody),
    ))]
async fn create_job(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiJson(body): ApiJson<CreateFineTuningJob>,
) -> ApiResult<Response> {
    let t = translate(&state, principal, body).await?;
    file_settled(&state, principal, t.dataset_id).await?;
    let at = t.hyperparameters_at;
    let receipt = state
        .jobs
        .create(
            &context(principal),
            NewJob {
                dataset_id: t.dataset_id,
                request: t.request,
                parent_model_id: t.parent_model_id,
                from_checkpoint: None,
                name: None,
                labels: t.labels,
            },
        )
        .await
        .map_err(|e| {
            let mut err = job_error(e, at);
            // A file that is not ready is a bad parameter here, not a conflict; a file that
            // does not exist (or is another user's) is not found, as in /api.
            if err.body.code == ErrorCode::DatasetNotReady.as_str() {
                err.status = axum::http::StatusCode::BAD_REQUEST;
            }
            err
        })?;
    tracing::info!(job_id = %receipt.id, user_id = %principal.user_id, "fine-tuning job created through /v1");
    wait_for_projection(&state, "jobs", receipt).await;
    let row = read::find(&state.pool, viewer(principal), receipt.id.0)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("the jobs read model did not catch up"))?;
    Ok(axum::Json(view(row)?).into_response())
}

/// How long a create waits for its training file's validation to end.
const FILE_SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits until the training file is no longer being validated: OpenAI's guide creates the
/// job right after uploading its file, and a job is created on a validated file only. A
/// missing file is left for the create to refuse; one still validating after
/// `FILE_SETTLE_WAIT` is refused (400 `training_file`), so the request never hangs.
async fn file_settled(
    state: &AppState,
    principal: infrastructure::auth::Principal,
    dataset: DatasetId,
) -> ApiResult<()> {
    let deadline = tokio::time::Instant::now() + FILE_SETTLE_WAIT;
    loop {
        let row = projections::datasets::queries::find(&state.pool, viewer(principal), dataset.0)
            .await
            .map_err(ApiError::internal)?;
        let validating = row.is_some_and(|r| {
            domain::dataset::DatasetStatus::parse(&r.status)
                == domain::dataset::DatasetStatus::Validating
        });
        if !validating {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::validation(
                "training_file",
                format!(
                    "{} is still being validated after {} s; create the job once GET /v1/files/{} says processed",
                    file_id(dataset.0),
                    FILE_SETTLE_WAIT.as_secs(),
                    file_id(dataset.0)
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The `metadata[key]=value` pairs of a job list's query, as the JSON object the jobs must hold.
fn metadata_filter(query: &str) -> ApiResult<Value> {
    let mut pairs = serde_json::Map::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "metadata" {
            return Err(ApiError::validation(
                "metadata",
                "filter by metadata as metadata[key]=value (metadata=null is not supported)",
            ));
        }
        if let Some(name) = key
            .strip_prefix("metadata[")
            .and_then(|k| k.strip_suffix(']'))
        {
            if format!("{name}{value}")
                .chars()
                .any(domain::validation::is_refused_control)
            {
                return Err(ApiError::validation(
                    format!("metadata[{name}]"),
                    "a metadata filter may not hold control characters",
                ));
            }
            pairs.insert(name.to_string(), Value::from(value.into_owned()));
        }
    }
    Ok(Value::Object(pairs))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CursorParams {
    /// An id of the list: the page starts after it.
    pub after: Option<String>,
    /// 1 to 100, default 20 (10 for checkpoints).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// The caller's fine-tuning jobs, newest first, a page at a time; `metadata[key]=value`
/// keeps the jobs whose metadata holds each pair.
#[utoipa::path(get, path = "/v1/fine_tuning/jobs", tag = "openai", security(("bearer" = [])),
    params(CursorParams),
    responses(
        (status = 200, description = "A page of jobs", body = OpenAiList<FineTuningJob>),
        (status = 400, description = "`param` `after` or `limit`", body = OpenAiErrorBody),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
    ))]
async fn list_jobs(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiQuery(params): ApiQuery<CursorParams>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let metadata = metadata_filter(query.as_deref().unwrap_or_default())?;
    let limit = limit_of(params.limit, 20, 100)?;
    let after = cursor(params.after.as_deref(), "ftjob-", "a job id")?;
    let rows = read::list_after(
        &state.pool,
        viewer(principal),
        &metadata,
        after,
        limit as i64 + 1,
    )
    .await
    .map_err(ApiError::internal)?;
    let jobs = rows.into_iter().map(view).collect::<ApiResult<Vec<_>>>()?;
    Ok(
        axum::Json(OpenAiList::page(jobs, limit, |j: &FineTuningJob| {
            j.id.clone()
        }))
        .into_response(),
    )
}

/// One fine-tuning job.
#[utoipa::path(get, path = "/v1/fine_tuning/jobs/{fine_tuning_job_id}", tag = "openai", security(("bearer" = [])),
    params(("fine_tuning_job_id" = String, Path, description = "`ftjob-<uuid>` (or the job's UUID)")),
    responses(
        (status = 200, description = "The job", body = FineTuningJob),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
        (status = 404, description = "No such job (also another user's)", body = OpenAiErrorBody),
    ))]
async fn get_job(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(fine_tuning_job_id): Path<String>,
) -> ApiResult<Response> {
    let row = visible(&state, principal, &fine_tuning_job_id).await?;
    Ok(axum::Json(view(row)?).into_response())
}

/// Cancel a job that has not ended (`POST /api/jobs/{id}/cancel`).
#[utoipa::path(post, path = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel", tag = "openai", security(("bearer" = [])),
    params(("fine_tuning_job_id" = String, Path, description = "`ftjob-<uuid>` (or the job's UUID)")),
    responses(
        (status = 200, description = "The job, `cancelled`", body = FineTuningJob),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
        (status = 404, description = "No such job (also another user's)", body = OpenAiErrorBody),
        (status = 409, description = "`job_not_cancellable`: it already ended", body = OpenAiErrorBody),
    ))]
async fn cancel_job(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(fine_tuning_job_id): Path<String>,
) -> ApiResult<Response> {
    let row = visible(&state, principal, &fine_tuning_job_id).await?;
    let receipt = state
        .jobs
        .cancel(
            &context(principal),
            JobId(row.id),
            principal.role.sees_all_resources(),
        )
        .await
        .map_err(|e| job_error(e, "hyperparameters"))?;
    wait_for_projection(&state, "jobs", receipt).await;
    let row = visible(&state, principal, &fine_tuning_job_id).await?;
    Ok(axum::Json(view(row)?).into_response())
}

/// The job's events from the event store, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events", tag = "openai", security(("bearer" = [])),
    params(("fine_tuning_job_id" = String, Path, description = "`ftjob-<uuid>` (or the job's UUID)"), CursorParams),
    responses(
        (status = 200, description = "A page of events", body = OpenAiList<FineTuningEvent>),
        (status = 400, description = "`param` `after` or `limit`", body = OpenAiErrorBody),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
        (status = 404, description = "No such job (also another user's)", body = OpenAiErrorBody),
    ))]
async fn job_events(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(fine_tuning_job_id): Path<String>,
    ApiQuery(params): ApiQuery<CursorParams>,
) -> ApiResult<Response> {
    let limit = limit_of(params.limit, 20, 100)?;
    let after = cursor(params.after.as_deref(), "ftevent-", "an event id")?;
    let row = visible(&state, principal, &fine_tuning_job_id).await?;
    let events = read_aggregate_newest_first(
        &state.pool,
        <domain::job::Job as cqrs_es::Aggregate>::TYPE,
        &row.id.to_string(),
        after,
        limit as i64 + 1,
    )
    .await
    .map_err(ApiError::internal)?;
    let events = events
        .into_iter()
        .map(|event| {
            let (level, message) = describe(&event);
            FineTuningEvent {
                id: format!("ftevent-{}", event.event_id),
                object: "fine_tuning.job.event",
                created_at: unix(event.recorded_at),
                level,
                message,
                kind: "message",
                data: public_data(event.payload),
            }
        })
        .collect();
    Ok(
        axum::Json(OpenAiList::page(events, limit, |e: &FineTuningEvent| {
            e.id.clone()
        }))
        .into_response(),
    )
}

/// The job's checkpoints with the metrics at their step, newest first.
#[utoipa::path(get, path = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints", tag = "openai", security(("bearer" = [])),
    params(("fine_tuning_job_id" = String, Path, description = "`ftjob-<uuid>` (or the job's UUID)"), CursorParams),
    responses(
        (status = 200, description = "A page of checkpoints", body = OpenAiList<FineTuningCheckpoint>),
        (status = 400, description = "`param` `after` or `limit`", body = OpenAiErrorBody),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
        (status = 404, description = "No such job (also another user's), or `param` `after` names no checkpoint of it", body = OpenAiErrorBody),
    ))]
async fn job_checkpoints(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(fine_tuning_job_id): Path<String>,
    ApiQuery(params): ApiQuery<CursorParams>,
) -> ApiResult<Response> {
    let limit = limit_of(params.limit, 10, 100)?;
    let row = visible(&state, principal, &fine_tuning_job_id).await?;
    let checkpoint_id = |checkpoint: &str| format!("ftckpt-{}-{checkpoint}", row.id);
    let mut checkpoints = read::checkpoints(&state.pool, row.id)
        .await
        .map_err(ApiError::internal)?;
    checkpoints.sort_by_key(|c| std::cmp::Reverse(c.step));
    if let Some(after) = &params.after {
        let at = checkpoints
            .iter()
            .position(|c| checkpoint_id(&c.checkpoint_id) == *after)
            .ok_or_else(|| {
                with_param(
                    ApiError::not_found(
                        ErrorCode::NotFound,
                        format!("{after} is not a checkpoint of this job"),
                    ),
                    "after",
                )
            })?;
        checkpoints.drain(..=at);
    }
    checkpoints.truncate(limit + 1);
    let steps: Vec<i64> = checkpoints.iter().map(|c| c.step).collect();
    let points = read::metric_points_at(&state.pool, row.id, &steps)
        .await
        .map_err(ApiError::internal)?;
    let name = fine_tuned_model_name(&row.base_model, row.suffix.as_deref(), row.id);
    let data = checkpoints
        .into_iter()
        .map(|c| {
            let point = points.iter().rev().find(|p| p.step <= c.step);
            let metrics = json!({
                "step": c.step,
                "epoch": c.epoch,
                "train_loss": c.loss,
                "valid_loss": point.and_then(|p| p.validation_loss),
                "learning_rate": point.map(|p| p.learning_rate),
            });
            FineTuningCheckpoint {
                id: checkpoint_id(&c.checkpoint_id),
                object: "fine_tuning.job.checkpoint",
                created_at: unix(c.created_at),
                fine_tuned_model_checkpoint: format!("{name}:ckpt-step-{}", c.step),
                fine_tuning_job_id: format!("ftjob-{}", row.id),
                step_number: c.step,
                metrics,
            }
        })
        .collect();
    Ok(
        axum::Json(OpenAiList::page(data, limit, |c: &FineTuningCheckpoint| {
            c.id.clone()
        }))
        .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_statuses_read_as_openais() {
        assert_eq!(openai_status("queued"), "queued");
        assert_eq!(openai_status("initializing"), "running");
        assert_eq!(openai_status("running"), "running");
        assert_eq!(openai_status("completed"), "succeeded");
        assert_eq!(openai_status("failed"), "failed");
        assert_eq!(openai_status("cancelled"), "cancelled");
    }

    #[test]
    fn the_domains_fields_are_named_as_the_caller_sent_them() {
        let at = "method.supervised.hyperparameters";
        assert_eq!(
            param_of("hyperparameters.numEpochs", at),
            "method.supervised.hyperparameters.n_epochs"
        );
        assert_eq!(
            param_of("hyperparameters.batchSize", "hyperparameters"),
            "hyperparameters.batch_size"
        );
        assert_eq!(
            param_of("hyperparameters.learningRate", "hyperparameters"),
            "hyperparameters.learning_rate_multiplier"
        );
        assert_eq!(param_of("gpuConfig.numGPUs", at), "metadata.gpu_type");
        assert_eq!(param_of("baseModel", at), "model");
        assert_eq!(param_of("suffix", at), "suffix");
    }

    #[test]
    fn auto_or_a_number_is_read_from_json() {
        let h: SupervisedHyperparameters = serde_json::from_value(json!({
            "n_epochs": "auto", "batch_size": 4, "learning_rate_multiplier": 0.5
        }))
        .unwrap();
        assert_eq!(h.n_epochs.and_then(AutoOr::value), None);
        assert_eq!(h.batch_size.and_then(AutoOr::value), Some(4));
        assert_eq!(
            h.learning_rate_multiplier.and_then(AutoOr::value),
            Some(0.5)
        );
        assert!(
            serde_json::from_value::<SupervisedHyperparameters>(json!({"n_epochs": "many"}))
                .is_err()
        );
    }
}
