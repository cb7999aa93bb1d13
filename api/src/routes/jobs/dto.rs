//! The shapes the jobs routes take and answer.

use chrono::{DateTime, Utc};
use domain::job::config::{
    GpuConfig, GpuType, HyperparameterOverrides, JobRequest, Optimizer, Preset, Scheduler,
};
use domain::job::estimate::Estimate;
use domain::job::JobStatus;
use projections::jobs::queries::{CheckpointRow, JobRow, LogRow, MetricPointRow};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::envelope::money;

// --- Requests --------------------------------------------------------------------------------

/// Any subset of the hyperparameters; absent fields come from the preset.
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

/// The body of `POST /api/jobs` (and `POST /api/jobs/estimate`: the same body).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRequestBody {
    pub dataset_id: Uuid,
    /// The job's name, 1 to 100 characters (default "Training on <dataset name>"); rename
    /// it later with `PATCH /api/jobs/{id}`. The estimate ignores it.
    #[serde(default)]
    pub name: Option<String>,
    /// `conservative` | `balanced` | `aggressive` | `custom`
    #[schema(value_type = String, example = "balanced")]
    pub preset_id: Preset,
    #[serde(default)]
    pub hyperparameters: Option<HyperparametersInput>,
    pub gpu_config: GpuConfigInput,
    /// `llama-3-70b` (default) | `llama-3-8b` | `mistral-7b` | `smollm2-135m`
    pub base_model: Option<String>,
    /// Stop once the validation loss has not improved for this many evaluations (one at
    /// each checkpoint), and keep the best checkpoint's adapter (1-100; default: off).
    pub early_stopping_patience: Option<u32>,
    /// How much lower a validation loss must be to count as an improvement (0-10, default
    /// 0; only with earlyStoppingPatience).
    pub early_stopping_min_delta: Option<f64>,
    /// Share of conversations without an explicit split that go to validation, (0, 0.5].
    pub validation_split_ratio: Option<f64>,
    /// Save a checkpoint every this many steps (default: about ten over the run).
    pub checkpoint_interval: Option<u64>,
    /// Retrain from this model (its version's minor number is bumped): the new adapter
    /// starts from its weights (same baseModel, loraRank and targetModules).
    pub parent_model_id: Option<Uuid>,
    /// Start from a checkpoint of one of your jobs (its stored adapter's weights; same
    /// baseModel, loraRank and targetModules). Not with parentModelId.
    #[serde(default)]
    pub from_checkpoint: Option<FromCheckpointInput>,
}

/// A checkpoint of an earlier job, by the job and the checkpoint's id (`ckpt-<step>`, as
/// the job's `checkpoints` list it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FromCheckpointInput {
    pub job_id: Uuid,
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub checkpoint_id: String,
}

impl JobRequestBody {
    pub(crate) fn request(&self) -> JobRequest {
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
            early_stopping_min_delta: self.early_stopping_min_delta,
            validation_split_ratio: self.validation_split_ratio,
            checkpoint_interval: self.checkpoint_interval,
            seed: None,
        }
    }
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

/// What `POST /api/jobs/estimate` answers, with the configuration it estimated.
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
    #[schema(value_type = domain::job::config::JobConfiguration)]
    pub configuration: Value,
}

fn quantity(d: Decimal) -> f64 {
    d.round_dp(6).to_f64().unwrap_or(0.0)
}

pub(crate) fn estimate_dto(estimate: &Estimate, configuration: Value) -> EstimateDto {
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

/// What `POST /api/jobs` answers.
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

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostSoFar {
    pub compute: f64,
    pub storage: f64,
    pub data_transfer: f64,
}

/// A training job as the read model shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub dataset_id: Uuid,
    pub dataset_name: String,
    /// The job's name: given at creation or by `PATCH /api/jobs/{id}`, else "Training on
    /// <dataset name>".
    pub name: String,
    pub description: String,
    /// The user's labels, in the order given.
    pub tags: Vec<String>,
    /// `queued` | `initializing` | `running` | `completed` | `failed` | `cancelled`
    pub status: String,
    pub preset_id: String,
    pub base_model: String,
    #[schema(value_type = domain::job::config::Hyperparameters)]
    pub hyperparameters: Value,
    #[schema(value_type = domain::job::config::GpuConfig)]
    pub gpu_config: Value,
    #[schema(value_type = domain::job::config::TrainingOptions)]
    pub options: Value,
    /// `queued` | `initializing` | `training` | `validating` | `saving` | `completed`
    pub current_stage: String,
    /// 0 to 100.
    pub progress: f64,
    pub current_epoch: Option<i32>,
    pub total_epochs: i32,
    pub current_step: Option<i64>,
    pub total_steps: i64,
    /// The newest metric point's figures; absent before the first.
    #[schema(value_type = Option<domain::job::telemetry::CurrentMetrics>)]
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
    /// When the job entered the queue: its creation.
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
            // Rows projected before every job was named at creation.
            name: r
                .name
                .unwrap_or_else(|| domain::job::default_name(&r.dataset_name)),
            dataset_name: r.dataset_name,
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

impl StatusFilter {
    /// The one status to keep, or `None` for all.
    pub fn status(self) -> Option<JobStatus> {
        match self {
            StatusFilter::All => None,
            StatusFilter::Queued => Some(JobStatus::Queued),
            StatusFilter::Initializing => Some(JobStatus::Initializing),
            StatusFilter::Running => Some(JobStatus::Running),
            StatusFilter::Completed => Some(JobStatus::Completed),
            StatusFilter::Failed => Some(JobStatus::Failed),
            StatusFilter::Cancelled => Some(JobStatus::Cancelled),
        }
    }
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
    #[param(inline)]
    pub status: Option<StatusFilter>,
    pub page: Option<u32>,
    pub page_size: Option<u32>,
    /// `created-desc` (default) | `created-asc` | `cost-desc`
    #[param(inline)]
    pub sort_by: Option<JobSort>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricPointDto {
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

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointDto {
    pub id: String,
    pub step: i64,
    pub epoch: i32,
    pub loss: f64,
    /// Where the checkpoint's adapter is stored (`null`: the cluster kept no file for it);
    /// the model made by the job lists it under `artifacts.checkpoints` to download.
    pub s3_key: Option<String>,
    /// The stored adapter's bytes.
    pub size: Option<u64>,
    /// The stored adapter's sha256, hex.
    pub checksum: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogDto {
    pub timestamp: DateTime<Utc>,
    /// `info` | `warning` | `error`
    pub level: String,
    pub message: String,
}

impl From<MetricPointRow> for MetricPointDto {
    fn from(p: MetricPointRow) -> Self {
        MetricPointDto {
            timestamp: p.recorded_at,
            epoch: p.epoch,
            step: p.step,
            training_loss: p.training_loss,
            validation_loss: p.validation_loss,
            learning_rate: p.learning_rate,
            gradient_norm: p.gradient_norm,
            throughput: p.throughput,
            gpu_utilization: p.gpu_utilization,
        }
    }
}

impl From<CheckpointRow> for CheckpointDto {
    fn from(c: CheckpointRow) -> Self {
        let stored = c
            .stored()
            .map(|(key, size, sha)| (key.to_string(), size, sha.to_string()));
        CheckpointDto {
            id: c.checkpoint_id,
            step: c.step,
            epoch: c.epoch,
            loss: c.loss,
            s3_key: stored.as_ref().map(|s| s.0.clone()),
            size: stored.as_ref().map(|s| s.1),
            checksum: stored.map(|s| s.2),
            created_at: c.created_at,
        }
    }
}

impl From<LogRow> for LogDto {
    fn from(l: LogRow) -> Self {
        LogDto {
            timestamp: l.logged_at,
            level: l.level,
            message: l.message,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: JobView,
    /// The estimate stored with the job (the shape `POST /api/jobs/estimate` answers).
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
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    pub name: Option<String>,
    /// At most 2000 characters.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    pub description: Option<String>,
    /// Another name for `description` (ignored when `description` is given).
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    pub notes: Option<String>,
    /// At most 20, each 1 to 50 characters; repeats are dropped. Replaces the job's tags.
    #[serde(default, deserialize_with = "crate::extract::not_null")]
    pub tags: Option<Vec<String>>,
}
