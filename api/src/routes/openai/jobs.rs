//! `/v1/fine_tuning/jobs`: OpenAI's fine-tuning jobs over BrightRun's jobs. A create is
//! `POST /api/jobs` with OpenAI's parameters translated (`auto` is the preset's value,
//! `learning_rate_multiplier` scales the preset's learning rate, BrightRun-only settings ride
//! in `metadata`); reads come from the jobs read model, events from the job's own stream in the
//! event store.

use std::collections::BTreeMap;

use application::jobs::NewJob;
use application::AppError;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use domain::ids::{DatasetId, JobId, ModelId};
use domain::job::config::{
    BaseModel, GpuConfig, GpuType, HyperparameterOverrides, Hyperparameters, JobRequest, Preset,
    MAX_SEED,
};
use domain::job::estimate::default_gpu_config;
use domain::job::labels::JobLabels;
use domain::job::{JobError, JobStatus};
use infrastructure::event_log::{read_aggregate_newest_first, StoredEvent};
use projections::jobs::queries::{self as read, JobRow};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::files::{file_id, parse_file_id};
use super::models::{fine_tuned_model_name, parse_model};
use super::{cursor, limit_of, parse_prefixed, unix, with_param, OpenAiErrorBody, OpenAiList};
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

// --- Requests --------------------------------------------------------------------------------

/// A number, or `"auto"` (the preset's value).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum AutoOr<T> {
    Value(T),
    /// `"auto"`
    Auto(Auto),
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Auto {
    Auto,
}

impl<T: Copy> AutoOr<T> {
    fn value(self) -> Option<T> {
        match self {
            AutoOr::Value(v) => Some(v),
            AutoOr::Auto(_) => None,
        }
    }
}

/// OpenAI's supervised hyperparameters; each absent or `"auto"` takes the preset's value.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupervisedHyperparameters {
    #[schema(value_type = Option<Object>)]
    pub n_epochs: Option<AutoOr<u32>>,
    #[schema(value_type = Option<Object>)]
    pub batch_size: Option<AutoOr<u32>>,
    /// Scales the preset's learning rate (balanced: 2e-4).
    #[schema(value_type = Option<Object>)]
    pub learning_rate_multiplier: Option<AutoOr<f64>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupervisedMethod {
    pub hyperparameters: Option<SupervisedHyperparameters>,
}

/// The fine-tuning method: only `supervised` is offered.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct Method {
    /// `supervised`
    #[serde(rename = "type")]
    pub kind: String,
    pub supervised: Option<SupervisedMethod>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub other: BTreeMap<String, Value>,
}

/// The body of `POST /v1/fine_tuning/jobs`. BrightRun-only settings ride in `metadata`:
/// `preset` (conservative | balanced | aggressive; default balanced), `gpu_type`
/// (a100-40gb | a100-80gb | h100-80gb), `gpu_count` (1, 2, 4, 8) and `lora_rank`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateFineTuningJob {
    /// A base model of `GET /v1/models`, or one of your fine-tuned models to train further.
    pub model: String,
    /// A `processed` file (`file-<uuid>`).
    pub training_file: String,
    /// Not supported: BrightRun holds out a validation split of the training file.
    pub validation_file: Option<String>,
    /// Deprecated by OpenAI in favour of `method.supervised.hyperparameters`; either is read.
    pub hyperparameters: Option<SupervisedHyperparameters>,
    pub method: Option<Method>,
    /// Part of the fine-tuned model's name, `ft:<model>:<suffix>:<id>` (letters, digits, `-`, `_`).
    pub suffix: Option<String>,
    /// The trainer's random seed, 0 to 2147483647.
    pub seed: Option<i64>,
    /// Up to 16 string pairs; the BrightRun settings above are read from here.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Not supported (no integrations); send none or an empty list.
    #[schema(value_type = Option<Vec<Object>>)]
    pub integrations: Option<Vec<Value>>,
}

/// What a create resolves to, and where each of its parameters came from.
struct Translated {
    request: JobRequest,
    dataset_id: DatasetId,
    parent_model_id: Option<ModelId>,
    labels: JobLabels,
    /// `hyperparameters` or `method.supervised.hyperparameters`: where the caller put them.
    hyperparameters_at: &'static str,
}

fn metadata_number(metadata: &BTreeMap<String, String>, key: &str) -> ApiResult<Option<u32>> {
    metadata
        .get(key)
        .map(|v| {
            v.trim().parse::<u32>().map_err(|_| {
                ApiError::validation(
                    format!("metadata.{key}"),
                    format!("metadata.{key} must be a whole number, was {v:?}"),
                )
            })
        })
        .transpose()
}

async fn translate(
    state: &AppState,
    principal: infrastructure::auth::Principal,
    body: CreateFineTuningJob,
) -> ApiResult<Translated> {
    if body.validation_file.is_some() {
        return Err(ApiError::validation(
            "validation_file",
            "a separate validation file is not supported: BrightRun holds out a validation split of the training file (metadata.validation_split_ratio is not offered either; the default is 0.1)",
        ));
    }
    if body.integrations.as_ref().is_some_and(|i| !i.is_empty()) {
        return Err(ApiError::validation(
            "integrations",
            "integrations are not supported",
        ));
    }
    let (hyperparameters, hyperparameters_at) = match (&body.method, &body.hyperparameters) {
        (Some(method), top) => {
            if method.kind != "supervised" {
                return Err(ApiError::validation(
                    "method.type",
                    format!(
                        "method {:?} is not supported: BrightRun trains LoRA adapters by supervised fine-tuning",
                        method.kind
                    ),
                ));
            }
            if let Some(key) = method.other.keys().next() {
                return Err(ApiError::validation(
                    format!("method.{key}"),
                    format!("method.{key} is not supported with method.type supervised"),
                ));
            }
            let inner = method
                .supervised
                .as_ref()
                .and_then(|s| s.hyperparameters.clone());
            match (inner, top) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::validation(
                        "hyperparameters",
                        "send the hyperparameters once: in method.supervised.hyperparameters (or the deprecated top-level hyperparameters), not both",
                    ))
                }
                (Some(h), None) => (h, "method.supervised.hyperparameters"),
                (None, top) => (top.clone().unwrap_or_default(), "hyperparameters"),
            }
        }
        (None, top) => (top.clone().unwrap_or_default(), "hyperparameters"),
    };
    let metadata = body.metadata.unwrap_or_default();
    let preset = match metadata.get("preset").map(String::as_str) {
        None => Preset::Balanced,
        Some(name) => Preset::parse(name)
            .filter(|p| *p != Preset::Custom)
            .ok_or_else(|| {
                ApiError::validation(
                    "metadata.preset",
                    "metadata.preset must be conservative, balanced or aggressive",
                )
            })?,
    };
    // The model: a base model of the catalogue, or a fine-tuned model to train further.
    let (base, parent_model_id) = match parse_model(&body.model) {
        Some(super::models::ModelName::Base(base)) => (base, None),
        Some(super::models::ModelName::FineTuned(id)) => {
            let row = projections::models::queries::find(&state.pool, viewer(principal), id)
                .await
                .map_err(ApiError::internal)?
                .ok_or_else(|| unknown_model(&body.model))?;
            let base = BaseModel::find(&row.configuration.0.base_model)
                .ok_or_else(|| unknown_model(&body.model))?;
            (base, Some(ModelId(id)))
        }
        None => return Err(unknown_model(&body.model)),
    };
    let dataset_id = parse_file_id(&body.training_file).ok_or_else(|| {
        ApiError::validation(
            "training_file",
            format!("{} is not a file id (file-<uuid>)", body.training_file),
        )
    })?;
    let gpu_type = metadata
        .get("gpu_type")
        .map(|name| {
            GpuType::parse(name).ok_or_else(|| {
                ApiError::validation(
                    "metadata.gpu_type",
                    "metadata.gpu_type must be a100-40gb, a100-80gb or h100-80gb",
                )
            })
        })
        .transpose()?;
    let gpu_count = metadata_number(&metadata, "gpu_count")?;
    let gpu_config = match (gpu_type, gpu_count) {
        (Some(instance_type), count) => GpuConfig {
            instance_type,
            num_gpus: count.unwrap_or(1),
        },
        (None, count) => {
            let default = default_gpu_config(base, state.jobs.rates()).ok_or_else(|| {
                ApiError::validation("model", format!("no GPU type can train {}", base.id))
            })?;
            GpuConfig {
                num_gpus: count.unwrap_or(default.num_gpus),
                ..default
            }
        }
    };
    // The domain checks the upper bound; a negative seed is refused here, where it is read.
    let seed = body
        .seed
        .map(|s| {
            u64::try_from(s).map_err(|_| {
                ApiError::validation("seed", format!("seed must be between 0 and {MAX_SEED}"))
            })
        })
        .transpose()?;
    let overrides = HyperparameterOverrides {
        learning_rate: hyperparameters
            .learning_rate_multiplier
            .and_then(AutoOr::value)
            .map(|m| m * preset.hyperparameters_for(base).learning_rate),
        batch_size: hyperparameters.batch_size.and_then(AutoOr::value),
        num_epochs: hyperparameters.n_epochs.and_then(AutoOr::value),
        lora_rank: metadata_number(&metadata, "lora_rank")?,
        ..HyperparameterOverrides::default()
    };
    Ok(Translated {
        request: JobRequest {
            preset,
            overrides,
            gpu_config,
            base_model: Some(base.id.to_string()),
            early_stopping_patience: None,
            validation_split_ratio: None,
            checkpoint_interval: None,
            seed,
        },
        dataset_id,
        parent_model_id,
        labels: JobLabels {
            suffix: body.suffix,
            metadata,
        },
        hyperparameters_at,
    })
}

fn unknown_model(name: &str) -> ApiError {
    with_param(
        ApiError::new(
            ErrorCode::ValidationError,
            format!("model {name:?} does not exist: GET /v1/models lists the base models and your fine-tuned models"),
        ),
        "model",
    )
}

/// The `/v1` parameter behind a field the domain names as `/api` does.
fn param_of(field: &str, hyperparameters_at: &str) -> String {
    match field {
        "hyperparameters.numEpochs" => format!("{hyperparameters_at}.n_epochs"),
        "hyperparameters.batchSize" => format!("{hyperparameters_at}.batch_size"),
        "hyperparameters.learningRate" => format!("{hyperparameters_at}.learning_rate_multiplier"),
        "hyperparameters.loraRank" => "metadata.lora_rank".to_string(),
        f if f.starts_with("gpuConfig") => "metadata.gpu_type".to_string(),
        "baseModel" | "parentModelId" => "model".to_string(),
        "datasetId" => "training_file".to_string(),
        other => other.to_string(),
    }
}

fn job_error(err: AppError<JobError>, hyperparameters_at: &str) -> ApiError {
    match err {
        AppError::Rejected(JobError::Invalid(e)) => {
            let param = param_of(&e.field, hyperparameters_at);
            let message = if e.field == "hyperparameters.learningRate" {
                format!(
                    "learning_rate_multiplier × the preset's learning rate is out of bounds ({})",
                    e.message
                )
            } else {
                e.message.replace(&e.field, &param)
            };
            ApiError::validation(param, message)
        }
        AppError::Rejected(e @ JobError::DatasetNotFound(_)) => with_param(
            ApiError::new(
                ErrorCode::DatasetNotFound,
                e.to_string().replace("dataset", "file"),
            ),
            "training_file",
        ),
        AppError::Rejected(e @ JobError::DatasetNotReady { .. }) => with_param(
            ApiError::new(
                ErrorCode::DatasetNotReady,
                e.to_string().replace("dataset", "file"),
            ),
            "training_file",
        ),
        AppError::Rejected(JobError::NotFound) => job_not_found("the job"),
        AppError::Rejected(e @ JobError::NotCancellable(_)) => {
            ApiError::conflict(ErrorCode::JobNotCancellable, e.to_string())
        }
        AppError::Rejected(e) => ApiError::conflict(ErrorCode::Conflict, e.to_string()),
        AppError::Conflict => ApiError::conflict(
            ErrorCode::Conflict,
            "the job was changed by another request; retry",
        ),
        AppError::Unavailable(cause) => ApiError::unavailable(cause),
        AppError::Internal(cause) => ApiError::internal(cause),
    }
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::not_found(ErrorCode::JobNotFound, format!("no fine-tuning job {id}"))
}

fn parse_job_id(id: &str) -> ApiResult<JobId> {
    parse_prefixed(id, "ftjob-")
        .map(JobId)
        .ok_or_else(|| job_not_found(id))
}

// --- Answers ---------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct HyperparametersView {
    pub n_epochs: u32,
    pub batch_size: u32,
    pub learning_rate_multiplier: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SupervisedView {
    pub hyperparameters: HyperparametersView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MethodView {
    /// Always `supervised`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub supervised: SupervisedView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobErrorView {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
}

/// OpenAI's fine-tuning job object.
#[derive(Debug, Serialize, ToSchema)]
pub struct FineTuningJob {
    /// `ftjob-<uuid>`: the job's id with OpenAI's prefix.
    pub id: String,
    /// Always `fine_tuning.job`.
    pub object: &'static str,
    /// Unix seconds.
    pub created_at: i64,
    pub finished_at: Option<i64>,
    /// The base model.
    pub model: String,
    /// `ft:<model>:<suffix>:<model id>` once it succeeded.
    pub fine_tuned_model: Option<String>,
    /// The owner (`user-<uuid>`).
    pub organization_id: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: &'static str,
    pub hyperparameters: HyperparametersView,
    pub method: MethodView,
    pub training_file: String,
    pub validation_file: Option<String>,
    pub result_files: Vec<String>,
    pub trained_tokens: Option<i64>,
    pub error: Option<JobErrorView>,
    pub user_provided_suffix: Option<String>,
    pub seed: u64,
    pub estimated_finish: Option<i64>,
    #[schema(value_type = Vec<Object>)]
    pub integrations: Vec<Value>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// BrightRun: the job's status as `/api/jobs` names it, and its cost so far in USD.
    pub brightrun: BrightRunJobFacts,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BrightRunJobFacts {
    pub status: String,
    pub progress: f64,
    pub preset: String,
    pub gpu_config: Value,
    pub cost: f64,
}

/// OpenAI's status for one of ours: `initializing` (the cluster is being given the job) is
/// already `running`.
pub(crate) fn openai_status(status: &str) -> &'static str {
    match JobStatus::parse(status) {
        Some(JobStatus::Completed) => "succeeded",
        Some(JobStatus::Failed) => "failed",
        Some(JobStatus::Cancelled) => "cancelled",
        Some(JobStatus::Initializing | JobStatus::Running) => "running",
        _ => "queued",
    }
}

/// The trainer's seed when the job named none (`trainer/`'s default).
const TRAINER_SEED: u64 = 42;

fn view(row: JobRow) -> ApiResult<FineTuningJob> {
    let h: Hyperparameters =
        serde_json::from_value(row.hyperparameters.clone()).map_err(ApiError::internal)?;
    let preset = Preset::parse(&row.preset_id).ok_or_else(|| {
        ApiError::internal(format!("job {} has preset {}", row.id, row.preset_id))
    })?;
    let preset_rate = match BaseModel::find(&row.base_model) {
        Some(model) => preset.hyperparameters_for(model).learning_rate,
        None => preset.hyperparameters().learning_rate,
    };
    let hyperparameters = || HyperparametersView {
        n_epochs: h.num_epochs,
        batch_size: h.batch_size,
        learning_rate_multiplier: (h.learning_rate / preset_rate * 1e6).round() / 1e6,
    };
    let metadata: BTreeMap<String, String> =
        serde_json::from_value(row.metadata.clone()).unwrap_or_default();
    let seed = row
        .options
        .get("seed")
        .and_then(Value::as_u64)
        .unwrap_or(TRAINER_SEED);
    let status = openai_status(&row.status);
    let trained_tokens = row
        .estimate
        .get("totalTokens")
        .and_then(Value::as_i64)
        .filter(|_| status == "succeeded");
    Ok(FineTuningJob {
        id: format!("ftjob-{}", row.id),
        object: "fine_tuning.job",
        created_at: unix(row.created_at),
        finished_at: row.completed_at.map(unix),
        fine_tuned_model: row
            .artifact_id
            .map(|m| fine_tuned_model_name(&row.base_model, row.suffix.as_deref(), m)),
        organization_id: format!("user-{}", row.user_id),
        status,
        hyperparameters: hyperparameters(),
        method: MethodView {
            kind: "supervised",
            supervised: SupervisedView {
                hyperparameters: hyperparameters(),
            },
        },
        training_file: file_id(row.dataset_id),
        validation_file: None,
        result_files: Vec::new(),
        trained_tokens,
        error: (status == "failed").then(|| JobErrorView {
            code: row
                .error_code
                .clone()
                .unwrap_or_else(|| "training_failed".to_string())
                .to_ascii_lowercase(),
            message: row.error_message.clone().unwrap_or_default(),
            param: None,
        }),
        user_provided_suffix: row.suffix.clone(),
        seed,
        estimated_finish: row.estimated_completion_at.map(unix),
        integrations: Vec::new(),
        metadata: (!metadata.is_empty()).then_some(metadata),
        brightrun: BrightRunJobFacts {
            preset: row.preset_id.clone(),
            gpu_config: row.gpu_config.clone(),
            progress: row.progress,
            cost: crate::envelope::money(row.final_cost.unwrap_or(row.current_cost)),
            status: row.status,
        },
        model: row.base_model,
    })
}

async fn visible(
    state: &AppState,
    principal: infrastructure::auth::Principal,
    id: &str,
) -> ApiResult<JobRow> {
    let job = parse_job_id(id)?;
    read::find(&state.pool, viewer(principal), job.0)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| job_not_found(id))
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

/// OpenAI's fine-tuning event object.
#[derive(Debug, Serialize, ToSchema)]
pub struct FineTuningEvent {
    /// `ftevent-<uuid>`: the event's id in the event store.
    pub id: String,
    /// Always `fine_tuning.job.event`.
    pub object: &'static str,
    pub created_at: i64,
    /// `info`, `warn` or `error`.
    pub level: &'static str,
    pub message: String,
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The event as BrightRun recorded it (`{"<EventType>": {...}}`), less what is internal
    /// (where files lie in storage, bookkeeping keys).
    #[schema(value_type = Object)]
    pub data: Value,
}

/// What one of the job's events says, in a sentence, and how loudly.
fn describe(event: &StoredEvent) -> (&'static str, String) {
    let e = event.data();
    let text = |key: &str| match e.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let number = |key: &str| e.get(key).and_then(Value::as_f64).unwrap_or_default();
    match event.event_type.as_str() {
        "JobCreated" => ("info", "Created fine-tuning job".to_string()),
        "JobSubmissionStarted" => (
            "info",
            format!(
                "Submitting the job to the GPU cluster (attempt {})",
                number("attempt")
            ),
        ),
        "JobSubmitted" => (
            "info",
            format!("The cluster accepted the job as {}", text("clusterJobId")),
        ),
        "JobStageChanged" => ("info", format!("{}: {}", text("stage"), text("message"))),
        "JobCheckpointSaved" => (
            "info",
            format!(
                "Checkpoint saved at step {} (loss {:.4})",
                number("step"),
                number("loss")
            ),
        ),
        "JobCostAccrued" => (
            "info",
            format!(
                "Cost accrued: {} USD ({})",
                text("amount"),
                text("costType")
            ),
        ),
        "JobRetryScheduled" => (
            "warn",
            format!("Retrying after {}: {}", text("code"), text("message")),
        ),
        "JobCompleted" => ("info", "The job has successfully completed".to_string()),
        "JobFailed" => (
            "error",
            format!("The job failed ({}): {}", text("code"), text("message")),
        ),
        "JobCancelled" => ("info", "The job was cancelled".to_string()),
        "JobMetadataUpdated" => (
            "info",
            "The job's name, description or tags changed".to_string(),
        ),
        "JobRecoveredFromCluster" => (
            "warn",
            "The cluster still had the job: following it again".to_string(),
        ),
        other => ("info", other.to_string()),
    }
}

/// Fields of a recorded job event that are ours, not the client's: where a file lies in our
/// bucket, and the saga's and the ledger's bookkeeping keys.
const INTERNAL_FIELDS: [&str; 3] = ["s3Key", "idempotencyKey", "entryKey"];

/// A recorded event (`{"<EventType>": {...}}`) as a client may see it: without
/// `INTERNAL_FIELDS`.
fn public_data(mut payload: Value) -> Value {
    if let Value::Object(events) = &mut payload {
        for fields in events.values_mut().filter_map(Value::as_object_mut) {
            for internal in INTERNAL_FIELDS {
                fields.remove(internal);
            }
        }
    }
    payload
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

/// OpenAI's checkpoint object.
#[derive(Debug, Serialize, ToSchema)]
pub struct FineTuningCheckpoint {
    /// `ftckpt-<job uuid>-<checkpoint id>`.
    pub id: String,
    /// Always `fine_tuning.job.checkpoint`.
    pub object: &'static str,
    pub created_at: i64,
    /// `ft:<model>:<suffix>:<job id>:ckpt-step-<step>`: a name for the checkpoint (download
    /// its adapter with `GET /api/models/{id}/download?artifact=checkpoint`).
    pub fine_tuned_model_checkpoint: String,
    pub fine_tuning_job_id: String,
    pub step_number: i64,
    #[schema(value_type = Object)]
    pub metrics: Value,
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
