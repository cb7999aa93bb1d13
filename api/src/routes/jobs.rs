//! Training jobs (seed 001 "Training Jobs API"): the configuration catalogue, estimate,
//! create, list, detail, metrics history and cancel. Reads come from the `rm_jobs` projection.

use application::datasets::Receipt;
use application::jobs::NewJob;
use application::AppError;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::ids::{DatasetId, JobId, ModelId};
use domain::job::config::{
    GpuConfig, GpuType, HyperparameterOverrides, JobRequest, Optimizer, Preset, Scheduler,
    TargetModule, BASE_MODELS, DEFAULT_BASE_MODEL, GPU_COUNTS,
};
use domain::job::estimate::Estimate;
use domain::job::{JobError, Plan};
use infrastructure::auth::Principal;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::envelope::{self, money, pagination, Envelope, PageParams};
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery, AuthUser};
use crate::routes::datasets::context;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(presets))
        .routes(routes!(estimate_job))
        .routes(routes!(list_jobs, create_job))
        .routes(routes!(get_job, update_job))
        .routes(routes!(job_metrics))
        .routes(routes!(cancel_job))
}

// --- The catalogue ---------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresetInfo {
    /// `conservative` | `balanced` | `aggressive` | `custom`
    pub id: String,
    pub description: String,
    /// Every hyperparameter the preset sets (custom: the defaults overrides start from).
    #[schema(value_type = Object)]
    pub hyperparameters: Value,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bound {
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// True when `min` itself is not allowed (learning rate > 0).
    pub min_exclusive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaseModelInfo {
    pub id: String,
    pub hidden_size: u32,
    pub layers: u32,
    pub min_gpu_memory_gb: u32,
    /// Tokens per second on one GPU, by GPU type; absent where the model is not allowed.
    #[schema(value_type = Object)]
    pub tokens_per_second: Value,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuTypeInfo {
    pub id: String,
    pub memory_gb: u32,
    pub rate_per_gpu_hour: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Catalogue {
    pub presets: Vec<PresetInfo>,
    pub bounds: Vec<Bound>,
    pub base_models: Vec<BaseModelInfo>,
    pub default_base_model: String,
    pub gpu_types: Vec<GpuTypeInfo>,
    #[serde(rename = "numGPUs")]
    pub num_gpus: Vec<u32>,
    pub storage_rate_per_gb_month: f64,
    pub data_transfer_rate_per_gb: f64,
}

fn bound(field: &str, min: f64, max: f64, min_exclusive: bool) -> Bound {
    Bound {
        field: field.to_string(),
        min: Some(min),
        max: Some(max),
        min_exclusive,
        values: None,
    }
}

fn choice<S: ToString>(field: &str, values: Vec<S>) -> Bound {
    Bound {
        field: field.to_string(),
        min: None,
        max: None,
        min_exclusive: false,
        values: Some(values.iter().map(ToString::to_string).collect()),
    }
}

/// Everything a client needs to build a job form: presets with their values, field bounds,
/// base models with their GPU needs, GPU types with their rates.
#[utoipa::path(get, path = "/api/jobs/presets", tag = "jobs", security(("bearer" = [])),
    responses(
        (status = 200, description = "The configuration catalogue", body = Envelope<Catalogue>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn presets(State(state): State<AppState>, _caller: AuthUser) -> ApiResult<Response> {
    let rates = state.jobs.rates();
    let h = "hyperparameters.";
    Ok(envelope::ok(Catalogue {
        presets: Preset::ALL
            .iter()
            .map(|p| PresetInfo {
                id: p.as_str().to_string(),
                description: p.description().to_string(),
                hyperparameters: serde_json::to_value(p.hyperparameters()).unwrap_or_default(),
            })
            .collect(),
        bounds: domain::job::config::bounds::ALL
            .iter()
            .map(|b| bound(b.field, b.min, b.max, b.min_exclusive))
            .chain([
                choice(
                    &format!("{h}targetModules"),
                    TargetModule::ALL.iter().map(|m| m.as_str()).collect(),
                ),
                choice(
                    &format!("{h}optimizerType"),
                    vec!["adamw", "sgd", "adafactor"],
                ),
                choice(
                    &format!("{h}scheduler"),
                    vec!["linear", "cosine", "constant"],
                ),
                choice("gpuConfig.numGPUs", GPU_COUNTS.to_vec()),
            ])
            .collect(),
        base_models: BASE_MODELS
            .iter()
            .map(|m| BaseModelInfo {
                id: m.id.to_string(),
                hidden_size: m.hidden_size,
                layers: m.layers,
                min_gpu_memory_gb: m.min_gpu_memory_gb,
                tokens_per_second: m
                    .tokens_per_second
                    .iter()
                    .filter_map(|(g, t)| t.map(|t| (g.as_str().to_string(), Value::from(t))))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
            })
            .collect(),
        default_base_model: DEFAULT_BASE_MODEL.to_string(),
        gpu_types: GpuType::ALL
            .iter()
            .map(|g| GpuTypeInfo {
                id: g.as_str().to_string(),
                memory_gb: g.memory_gb(),
                rate_per_gpu_hour: rates.gpu_hour(*g).to_f64().unwrap_or(0.0),
            })
            .collect(),
        num_gpus: GPU_COUNTS.to_vec(),
        storage_rate_per_gb_month: rates.storage_per_gb_month.to_f64().unwrap_or(0.0),
        data_transfer_rate_per_gb: rates.data_transfer_per_gb.to_f64().unwrap_or(0.0),
    }))
}

// --- Requests --------------------------------------------------------------------------------

/// Any subset of seed 001 `HyperparameterConfig`; absent fields come from the preset.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HyperparametersInput {
    pub learning_rate: Option<f64>,
    pub batch_size: Option<u32>,
    pub num_epochs: Option<u32>,
    pub warmup_steps: Option<u32>,
    pub lora_rank: Option<u32>,
    pub lora_alpha: Option<u32>,
    pub lora_dropout: Option<f64>,
    pub target_modules: Option<Vec<String>>,
    /// `adamw` | `sgd` | `adafactor`
    #[schema(value_type = Option<String>)]
    pub optimizer_type: Option<Optimizer>,
    pub weight_decay: Option<f64>,
    pub gradient_accumulation_steps: Option<u32>,
    pub max_grad_norm: Option<f64>,
    /// `linear` | `cosine` | `constant`
    #[schema(value_type = Option<String>)]
    pub scheduler: Option<Scheduler>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuConfigInput {
    /// `a100-40gb` | `a100-80gb` | `h100-80gb`
    #[schema(value_type = String, example = "a100-80gb")]
    pub instance_type: GpuType,
    /// 1, 2, 4 or 8
    #[serde(rename = "numGPUs")]
    pub num_gpus: u32,
}

/// Seed 001 `POST /api/jobs` (and `POST /api/jobs/estimate`: the same body).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRequestBody {
    pub dataset_id: Uuid,
    /// `conservative` | `balanced` | `aggressive` | `custom`
    #[schema(value_type = String, example = "balanced")]
    pub preset_id: Preset,
    #[serde(default)]
    pub hyperparameters: Option<HyperparametersInput>,
    pub gpu_config: GpuConfigInput,
    /// `llama-3-70b` (default) | `llama-3-8b` | `mistral-7b` | `smollm2-135m`
    pub base_model: Option<String>,
    pub early_stopping_patience: Option<u32>,
    /// Share of conversations without an explicit split that go to validation, (0, 0.5].
    pub validation_split_ratio: Option<f64>,
    /// Save a checkpoint every this many steps (default: about ten over the run).
    pub checkpoint_interval: Option<u64>,
    /// Retrain from this model (its version's minor number is bumped).
    pub parent_model_id: Option<Uuid>,
}

impl JobRequestBody {
    fn request(&self) -> JobRequest {
        let h = self.hyperparameters.as_ref();
        let overrides = h.map_or_else(HyperparameterOverrides::default, |h| {
            HyperparameterOverrides {
                learning_rate: h.learning_rate,
                batch_size: h.batch_size,
                num_epochs: h.num_epochs,
                warmup_steps: h.warmup_steps,
                lora_rank: h.lora_rank,
                lora_alpha: h.lora_alpha,
                lora_dropout: h.lora_dropout,
                target_modules: h.target_modules.clone(),
                optimizer_type: h.optimizer_type,
                weight_decay: h.weight_decay,
                gradient_accumulation_steps: h.gradient_accumulation_steps,
                max_grad_norm: h.max_grad_norm,
                scheduler: h.scheduler,
            }
        });
        JobRequest {
            preset: self.preset_id,
            overrides,
            gpu_config: GpuConfig {
                instance_type: self.gpu_config.instance_type,
                num_gpus: self.gpu_config.num_gpus,
            },
            base_model: self.base_model.clone(),
            early_stopping_patience: self.early_stopping_patience,
            validation_split_ratio: self.validation_split_ratio,
            checkpoint_interval: self.checkpoint_interval,
        }
    }
}

fn job_error(err: AppError<JobError>) -> ApiError {
    match err {
        AppError::Rejected(JobError::Invalid(field)) => field.into(),
        AppError::Rejected(e @ JobError::DatasetNotFound(_)) => {
            let mut err = ApiError::not_found("DATASET_NOT_FOUND", e.to_string());
            err.body.field = Some("datasetId".to_string());
            err
        }
        AppError::Rejected(e @ JobError::DatasetNotReady { .. }) => {
            let mut err = ApiError::conflict("DATASET_NOT_READY", e.to_string());
            err.body.field = Some("datasetId".to_string());
            err
        }
        AppError::Rejected(e @ JobError::AlreadyCreated(_)) => {
            ApiError::conflict("CONFLICT", e.to_string())
        }
        AppError::Rejected(JobError::NotFound) => job_not_found("the job"),
        AppError::Rejected(e @ JobError::NotCancellable(_)) => {
            ApiError::conflict("JOB_NOT_CANCELLABLE", e.to_string())
        }
        AppError::Conflict => {
            ApiError::conflict("CONFLICT", "the job was changed by another request; retry")
        }
        AppError::Internal(cause) => ApiError::internal(cause),
    }
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::not_found("JOB_NOT_FOUND", format!("no job {id}"))
}

pub(crate) fn parse_job_id(id: &str) -> ApiResult<JobId> {
    Uuid::parse_str(id)
        .map(JobId)
        .map_err(|_| job_not_found(id))
}

// --- Estimate --------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoursLine {
    pub hours: f64,
    /// Per hour, for all the GPUs.
    pub rate: f64,
    pub total: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GbLine {
    pub gb: f64,
    pub rate: f64,
    pub total: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostBreakdown {
    pub compute: HoursLine,
    pub storage: GbLine,
    pub data_transfer: GbLine,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostDto {
    pub breakdown: CostBreakdown,
    pub total: f64,
    /// `USD`
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DurationDto {
    /// Seconds.
    pub estimated: u64,
    pub min: u64,
    pub max: u64,
}

/// Seed 001 `POST /api/jobs/estimate` answer, plus the configuration it estimated.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EstimateDto {
    pub cost: CostDto,
    pub duration: DurationDto,
    pub tokens_per_second: u64,
    pub total_steps: u64,
    /// Tokens of the training split, the basis of the duration.
    pub training_tokens: u64,
    /// The resolved configuration: preset values with the overrides applied.
    #[schema(value_type = Object)]
    pub configuration: Value,
}

fn quantity(d: Decimal) -> f64 {
    d.round_dp(6).to_f64().unwrap_or(0.0)
}

fn estimate_dto(estimate: &Estimate, configuration: Value) -> EstimateDto {
    let c = &estimate.cost;
    EstimateDto {
        cost: CostDto {
            breakdown: CostBreakdown {
                compute: HoursLine {
                    hours: quantity(c.compute.quantity),
                    rate: quantity(c.compute.rate),
                    total: money(c.compute.total),
                },
                storage: GbLine {
                    gb: quantity(c.storage.quantity),
                    rate: quantity(c.storage.rate),
                    total: money(c.storage.total),
                },
                data_transfer: GbLine {
                    gb: quantity(c.data_transfer.quantity),
                    rate: quantity(c.data_transfer.rate),
                    total: money(c.data_transfer.total),
                },
            },
            total: money(c.total),
            currency: "USD".to_string(),
        },
        duration: DurationDto {
            estimated: estimate.duration.estimated,
            min: estimate.duration.min,
            max: estimate.duration.max,
        },
        tokens_per_second: estimate.tokens_per_second,
        total_steps: estimate.total_steps,
        training_tokens: estimate.training_tokens,
        configuration,
    }
}

/// Cost and duration of a configuration on an owned, `ready` dataset (seed 001). Takes the
/// same body as `POST /api/jobs`: what you estimate is what you launch.
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

// --- Create ----------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EstimatedCost {
    pub gpu_cost: f64,
    pub storage_cost: f64,
    pub data_cost: f64,
    pub total: f64,
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MinMax {
    pub min: u64,
    pub max: u64,
}

/// Seed 001 `POST /api/jobs` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobCreatedDto {
    pub job_id: Uuid,
    /// `queued`
    pub status: String,
    pub estimated_cost: EstimatedCost,
    /// Seconds.
    pub estimated_duration: MinMax,
    /// 1 = next to start.
    pub queue_position: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// Create and launch a training job on an owned `ready` + `trainingReady` dataset
/// (seed 001). The resolved configuration and the estimate are stored with the job.
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
            },
        )
        .await
        .map_err(job_error)?;
    tracing::info!(job_id = %receipt.id, user_id = %principal.user_id, "job created");
    read_your_writes(&state, receipt).await;
    let row = find(&state.pool, principal, receipt.id.0)
        .await?
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
        queue_position: queue_position(&state.pool, &row).await?,
        created_at: row.created_at,
    }))
}

async fn read_your_writes(state: &AppState, receipt: Receipt<JobId>) {
    crate::routes::datasets::wait_for_projection(state, "jobs", receipt).await
}

/// Queued jobs created before this one, plus one (`None` once it left the queue).
async fn queue_position(pool: &PgPool, row: &JobRow) -> ApiResult<Option<i64>> {
    if row.status != "queued" {
        return Ok(None);
    }
    let ahead: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rm_jobs WHERE status = 'queued' AND (created_at, id) < ($1, $2)",
    )
    .bind(row.created_at)
    .bind(row.id)
    .fetch_one(pool)
    .await
    .map_err(ApiError::internal)?;
    Ok(Some(ahead + 1))
}

// --- Reads -----------------------------------------------------------------------------------

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct JobRow {
    pub(crate) id: Uuid,
    pub(crate) user_id: Uuid,
    pub(crate) dataset_id: Uuid,
    pub(crate) dataset_name: String,
    pub(crate) status: String,
    pub(crate) current_stage: String,
    pub(crate) preset_id: String,
    pub(crate) base_model: String,
    pub(crate) hyperparameters: Value,
    pub(crate) gpu_config: Value,
    pub(crate) options: Value,
    pub(crate) estimate: Value,
    pub(crate) progress: f64,
    pub(crate) current_epoch: Option<i32>,
    pub(crate) total_epochs: i32,
    pub(crate) current_step: Option<i64>,
    pub(crate) total_steps: i64,
    pub(crate) current_metrics: Option<Value>,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) completed_at: Option<DateTime<Utc>>,
    pub(crate) estimated_completion_at: Option<DateTime<Utc>>,
    pub(crate) current_cost: Decimal,
    pub(crate) compute_cost: Decimal,
    pub(crate) storage_cost: Decimal,
    pub(crate) data_transfer_cost: Decimal,
    pub(crate) estimated_total_cost: Decimal,
    pub(crate) final_cost: Option<Decimal>,
    pub(crate) refund_amount: Option<Decimal>,
    pub(crate) error_code: Option<String>,
    pub(crate) error_message: Option<String>,
    pub(crate) retry_count: i32,
    pub(crate) artifact_id: Option<Uuid>,
    pub(crate) parent_model_id: Option<Uuid>,
    pub(crate) name: Option<String>,
    pub(crate) description: String,
    pub(crate) tags: Value,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostSoFar {
    pub compute: f64,
    pub storage: f64,
    pub data_transfer: f64,
}

/// Seed 001 `TrainingJob`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub dataset_id: Uuid,
    pub dataset_name: String,
    /// The user's name for the job (`PATCH /api/jobs/{id}`); absent until given.
    pub name: Option<String>,
    pub description: String,
    /// The user's labels, in the order given.
    pub tags: Vec<String>,
    /// `queued` | `initializing` | `running` | `completed` | `failed` | `cancelled`
    pub status: String,
    pub preset_id: String,
    pub base_model: String,
    #[schema(value_type = Object)]
    pub hyperparameters: Value,
    #[schema(value_type = Object)]
    pub gpu_config: Value,
    /// `earlyStoppingPatience`, `validationSplitRatio`, `checkpointInterval`.
    #[schema(value_type = Object)]
    pub options: Value,
    /// `queued` | `initializing` | `training` | `validating` | `saving` | `completed`
    pub current_stage: String,
    /// 0 to 100.
    pub progress: f64,
    pub current_epoch: Option<i32>,
    pub total_epochs: i32,
    pub current_step: Option<i64>,
    pub total_steps: i64,
    /// `trainingLoss`, `validationLoss`, `learningRate`, `throughput`, `gpuUtilization`.
    #[schema(value_type = Option<Object>)]
    pub current_metrics: Option<Value>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub estimated_completion_at: Option<DateTime<Utc>>,
    /// The job's ledger so far, USD rounded half-even to cents.
    pub current_cost: f64,
    /// The ledger so far by type (USD, cents).
    pub cost_breakdown: CostSoFar,
    pub estimated_total_cost: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_amount: Option<f64>,
    pub retry_count: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_model_id: Option<Uuid>,
    /// When the job entered the queue: its creation (seed 001 `queuedAt`).
    pub queued_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<JobRow> for JobView {
    fn from(r: JobRow) -> JobView {
        JobView {
            id: r.id,
            user_id: r.user_id,
            dataset_id: r.dataset_id,
            dataset_name: r.dataset_name,
            name: r.name,
            description: r.description,
            tags: serde_json::from_value(r.tags).unwrap_or_default(),
            status: r.status,
            preset_id: r.preset_id,
            base_model: r.base_model,
            hyperparameters: r.hyperparameters,
            gpu_config: r.gpu_config,
            options: r.options,
            current_stage: r.current_stage,
            progress: r.progress,
            current_epoch: r.current_epoch,
            total_epochs: r.total_epochs,
            current_step: r.current_step,
            total_steps: r.total_steps,
            current_metrics: r.current_metrics,
            started_at: r.started_at,
            completed_at: r.completed_at,
            estimated_completion_at: r.estimated_completion_at,
            current_cost: money(r.current_cost),
            cost_breakdown: CostSoFar {
                compute: money(r.compute_cost),
                storage: money(r.storage_cost),
                data_transfer: money(r.data_transfer_cost),
            },
            estimated_total_cost: money(r.estimated_total_cost),
            final_cost: r.final_cost.map(money),
            refund_amount: r.refund_amount.map(money),
            retry_count: r.retry_count,
            error_code: r.error_code,
            error_message: r.error_message,
            artifact_id: r.artifact_id,
            parent_model_id: r.parent_model_id,
            queued_at: r.created_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

const JOB_COLUMNS: &str = "id, user_id, dataset_id, dataset_name, status, current_stage, preset_id, \
    base_model, hyperparameters, gpu_config, options, estimate, progress, current_epoch, total_epochs, \
    current_step, total_steps, current_metrics, started_at, completed_at, estimated_completion_at, \
    current_cost, compute_cost, storage_cost, data_transfer_cost, estimated_total_cost, final_cost, refund_amount, error_code, error_message, \
    retry_count, artifact_id, parent_model_id, name, description, tags, created_at, updated_at";

const VISIBLE: &str = "($1::bool OR user_id = $2)";

/// What the stream shows first: the job's row.
pub(crate) type JobSnapshot = JobRow;

/// The job when `principal` may see it, else `JOB_NOT_FOUND`.
pub(crate) async fn find_visible(
    pool: &PgPool,
    principal: Principal,
    id: JobId,
) -> ApiResult<JobRow> {
    find(pool, principal, id.0)
        .await?
        .ok_or_else(|| job_not_found(&id.to_string()))
}

async fn find(pool: &PgPool, principal: Principal, id: Uuid) -> ApiResult<Option<JobRow>> {
    sqlx::query_as::<_, JobRow>(&format!(
        "SELECT {JOB_COLUMNS} FROM rm_jobs WHERE {VISIBLE} AND id = $3"
    ))
    .bind(principal.role.sees_all_resources())
    .bind(principal.user_id.0)
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(ApiError::internal)
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    All,
    Queued,
    Initializing,
    Running,
    Completed,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default)]
pub enum JobSort {
    #[serde(rename = "created-desc")]
    #[default]
    CreatedDesc,
    #[serde(rename = "created-asc")]
    CreatedAsc,
    #[serde(rename = "cost-desc")]
    CostDesc,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct JobListParams {
    /// `all` (default) | `queued` | `initializing` | `running` | `completed` | `failed` | `cancelled`
    #[param(value_type = Option<String>)]
    pub status: Option<StatusFilter>,
    pub page: Option<u32>,
    pub page_size: Option<u32>,
    /// `created-desc` (default) | `created-asc` | `cost-desc`
    #[param(value_type = Option<String>)]
    pub sort_by: Option<JobSort>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

/// The caller's jobs, paginated, filtered by status and sorted (seed 001).
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
    let (page, page_size, offset) = PageParams {
        page: params.page,
        page_size: params.page_size,
    }
    .resolve()?;
    let status = match params.status {
        None | Some(StatusFilter::All) => None,
        Some(s) => Some(
            serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        ),
    };
    let order = match params.sort_by.unwrap_or_default() {
        JobSort::CreatedDesc => "created_at DESC, id DESC",
        JobSort::CreatedAsc => "created_at ASC, id ASC",
        JobSort::CostDesc => "COALESCE(final_cost, current_cost) DESC, created_at DESC, id DESC",
    };
    let filter = format!("{VISIBLE} AND ($3::text IS NULL OR status = $3)");
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM rm_jobs WHERE {filter}"))
        .bind(principal.role.sees_all_resources())
        .bind(principal.user_id.0)
        .bind(&status)
        .fetch_one(&state.pool)
        .await
        .map_err(ApiError::internal)?;
    let rows = sqlx::query_as::<_, JobRow>(&format!(
        "SELECT {JOB_COLUMNS} FROM rm_jobs WHERE {filter} ORDER BY {order} LIMIT $4 OFFSET $5"
    ))
    .bind(principal.role.sees_all_resources())
    .bind(principal.user_id.0)
    .bind(&status)
    .bind(page_size as i64)
    .bind(offset)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::internal)?;
    Ok(envelope::page(
        JobList {
            jobs: rows.into_iter().map(JobView::from).collect(),
        },
        pagination(page, page_size, total),
    ))
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct MetricPointDto {
    #[sqlx(rename = "recorded_at")]
    pub timestamp: DateTime<Utc>,
    pub epoch: i32,
    pub step: i64,
    pub training_loss: f64,
    pub validation_loss: Option<f64>,
    pub learning_rate: f64,
    pub gradient_norm: Option<f64>,
    pub throughput: Option<f64>,
    pub gpu_utilization: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LossCurve {
    pub steps: Vec<i64>,
    pub training_loss: Vec<f64>,
    /// Aligned with `steps`; null where the step has no validation loss.
    pub validation_loss: Vec<Option<f64>>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointDto {
    #[sqlx(rename = "checkpoint_id")]
    pub id: String,
    pub step: i64,
    pub epoch: i32,
    pub loss: f64,
    pub s3_key: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct LogDto {
    #[sqlx(rename = "logged_at")]
    pub timestamp: DateTime<Utc>,
    /// `info` | `warning` | `error`
    pub level: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: JobView,
    /// The stored estimate (seed 001 estimate shape).
    pub estimate: EstimateDto,
    pub queue_position: Option<i64>,
    pub metrics_history: Vec<MetricPointDto>,
    pub loss_curve: LossCurve,
    pub checkpoints: Vec<CheckpointDto>,
    /// The last 500 lines.
    pub logs: Vec<LogDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobOne {
    pub job: JobDetail,
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

pub(crate) async fn metric_points(
    pool: &PgPool,
    job: Uuid,
    from: Option<i64>,
    to: Option<i64>,
) -> ApiResult<Vec<MetricPointDto>> {
    sqlx::query_as::<_, MetricPointDto>(
        "SELECT recorded_at, epoch, step, training_loss, validation_loss, learning_rate, gradient_norm, \
           throughput, gpu_utilization FROM rm_job_metrics \
         WHERE job_id = $1 AND ($2::bigint IS NULL OR step >= $2) AND ($3::bigint IS NULL OR step <= $3) \
         ORDER BY step",
    )
    .bind(job)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
    .map_err(ApiError::internal)
}

fn loss_curve(points: &[MetricPointDto]) -> LossCurve {
    LossCurve {
        steps: points.iter().map(|p| p.step).collect(),
        training_loss: points.iter().map(|p| p.training_loss).collect(),
        validation_loss: points.iter().map(|p| p.validation_loss).collect(),
    }
}

/// One job with its metrics history, loss curve, checkpoints and logs (seed 001).
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
    let row = find(&state.pool, principal, job_id.0)
        .await?
        .ok_or_else(|| job_not_found(&id))?;
    let estimate: Estimate =
        serde_json::from_value(row.estimate.clone()).map_err(ApiError::internal)?;
    let configuration = serde_json::json!({
        "presetId": row.preset_id, "baseModel": row.base_model, "hyperparameters": row.hyperparameters,
        "gpuConfig": row.gpu_config, "options": row.options,
    });
    let points = downsample(
        metric_points(&state.pool, row.id, None, None).await?,
        DETAIL_POINTS,
    );
    let checkpoints = sqlx::query_as::<_, CheckpointDto>(
        "SELECT checkpoint_id, step, epoch, loss, s3_key, created_at FROM rm_job_checkpoints \
         WHERE job_id = $1 ORDER BY step, checkpoint_id",
    )
    .bind(row.id)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::internal)?;
    let mut logs = sqlx::query_as::<_, LogDto>(
        "SELECT logged_at, level, message FROM rm_job_logs WHERE job_id = $1 ORDER BY idx DESC LIMIT 500",
    )
    .bind(row.id)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::internal)?;
    logs.reverse();
    let queue_position = queue_position(&state.pool, &row).await?;
    Ok(envelope::ok(JobOne {
        job: JobDetail {
            estimate: estimate_dto(&estimate, configuration),
            queue_position,
            loss_curve: loss_curve(&points),
            metrics_history: points,
            checkpoints,
            logs,
            job: row.into(),
        },
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct MetricsParams {
    /// First step (inclusive).
    pub from_step: Option<i64>,
    /// Last step (inclusive).
    pub to_step: Option<i64>,
    /// Thin the curve evenly to at most this many points (first and last kept), 2..=10000.
    pub points: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsDto {
    pub job_id: Uuid,
    /// Points in the range before thinning.
    pub total_points: usize,
    pub metrics_history: Vec<MetricPointDto>,
    pub loss_curve: LossCurve,
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
    let row = find(&state.pool, principal, job_id.0)
        .await?
        .ok_or_else(|| job_not_found(&id))?;
    let all = metric_points(&state.pool, row.id, params.from_step, params.to_step).await?;
    let total_points = all.len();
    let points = downsample(all, params.points.unwrap_or(0));
    Ok(envelope::ok(MetricsDto {
        job_id: row.id,
        total_points,
        loss_curve: loss_curve(&points),
        metrics_history: points,
    }))
}

/// Seed 001 cancel answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelledDto {
    pub job_id: Uuid,
    /// `cancelled`
    pub status: String,
    /// What the job cost up to the cancellation (USD).
    pub cost_so_far: f64,
    /// Estimated total minus the cost so far, at least 0.
    pub refund_amount: f64,
    pub message: String,
}

/// `PATCH /api/jobs/{id}`: the job's user-facing metadata only.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateJobRequest {
    /// 1 to 100 characters.
    pub name: Option<String>,
    /// At most 2000 characters.
    pub description: Option<String>,
    /// Another name for `description` (ignored when `description` is given).
    pub notes: Option<String>,
    /// At most 20, each 1 to 50 characters; repeats are dropped. Replaces the job's tags.
    pub tags: Option<Vec<String>>,
}

/// Change a job's name, description (or `notes`) and tags (seed 001 route tree `PATCH`). The
/// configuration is fixed at creation: naming one of its fields answers `VALIDATION_ERROR`
/// with that field.
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

/// Cancel a queued, initializing or running job (seed 001): it is `cancelled` at once; the
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
    let row = find(&state.pool, principal, job_id.0)
        .await?
        .ok_or_else(|| job_not_found(&id))?;
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
