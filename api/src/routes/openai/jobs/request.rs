//! A create's OpenAI parameters translated into BrightRun's job request, and the job's
//! refusals in `/v1`'s terms (the parameter at fault).

use std::collections::BTreeMap;

use application::AppError;
use domain::ids::{DatasetId, JobId, ModelId};
use domain::job::config::{
    BaseModel, GpuConfig, GpuType, HyperparameterOverrides, JobRequest, Preset, MAX_SEED,
};
use domain::job::estimate::default_gpu_config;
use domain::job::labels::JobLabels;
use domain::job::JobError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::viewer;
use crate::routes::openai::files::parse_file_id;
use crate::routes::openai::models::parse_model;
use crate::routes::openai::{parse_prefixed, with_param};
use crate::state::AppState;

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
    pub(super) fn value(self) -> Option<T> {
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
pub(super) struct Translated {
    pub(super) request: JobRequest,
    pub(super) dataset_id: DatasetId,
    pub(super) parent_model_id: Option<ModelId>,
    pub(super) labels: JobLabels,
    /// `hyperparameters` or `method.supervised.hyperparameters`: where the caller put them.
    pub(super) hyperparameters_at: &'static str,
}

pub(super) fn metadata_number(
    metadata: &BTreeMap<String, String>,
    key: &str,
) -> ApiResult<Option<u32>> {
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

pub(super) async fn translate(
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
        Some(super::super::models::ModelName::Base(base)) => (base, None),
        Some(super::super::models::ModelName::FineTuned(id)) => {
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
            early_stopping_min_delta: None,
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

pub(super) fn unknown_model(name: &str) -> ApiError {
    with_param(
        ApiError::new(
            ErrorCode::ValidationError,
            format!("model {name:?} does not exist: GET /v1/models lists the base models and your fine-tuned models"),
        ),
        "model",
    )
}

/// The `/v1` parameter behind a field the domain names as `/api` does.
pub(super) fn param_of(field: &str, hyperparameters_at: &str) -> String {
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

pub(super) fn job_error(err: AppError<JobError>, hyperparameters_at: &str) -> ApiError {
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

pub(super) fn job_not_found(id: &str) -> ApiError {
    ApiError::not_found(ErrorCode::JobNotFound, format!("no fine-tuning job {id}"))
}

pub(super) fn parse_job_id(id: &str) -> ApiResult<JobId> {
    parse_prefixed(id, "ftjob-")
        .map(JobId)
        .ok_or_else(|| job_not_found(id))
}
