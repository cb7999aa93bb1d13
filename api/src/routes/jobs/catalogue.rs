//! The configuration catalogue: everything a job form needs, answered from the domain's
//! tables (presets, bounds, base models, GPU types) and the configured rates.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use domain::job::config::{
    GpuConfig, GpuType, NumericBound, Preset, TargetModule, BASE_MODELS, DEFAULT_BASE_MODEL,
    GPU_COUNTS,
};
use domain::job::estimate::default_gpu_config;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::envelope::{self, Envelope};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::AuthUser;
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(presets))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresetInfo {
    /// `conservative` | `balanced` | `aggressive` | `custom`
    pub id: String,
    pub description: String,
    /// Every hyperparameter the preset sets (custom: the defaults overrides start from), for
    /// a 7-70B model: a base model's `presetHyperparameters` has them for that model. A run
    /// shorter than ten times `warmupSteps` warms up for a tenth of its steps.
    #[schema(value_type = domain::job::config::Hyperparameters)]
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
    /// The range fine-tuning usually takes, inside `min`..`max` (numeric fields): a value
    /// outside it is accepted, and deserves a second look. Every preset lies inside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typical_min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typical_max: Option<f64>,
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
    pub tokens_per_second: BTreeMap<String, f64>,
    /// The GPUs a job on this model starts from: of those that can train it, the cheapest
    /// per trained token at the service's rates.
    #[schema(value_type = Option<domain::job::config::GpuConfig>)]
    pub default_gpu_config: Option<GpuConfig>,
    /// Each preset's hyperparameters on this model (by preset id): the presets' own, with
    /// the learning rate scaled for the model (small models need a higher rate to learn in a
    /// few steps). What a job on the model trains with unless a field is given.
    #[schema(value_type = BTreeMap<String, domain::job::config::Hyperparameters>)]
    pub preset_hyperparameters: BTreeMap<String, Value>,
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

fn bound(b: &NumericBound) -> Bound {
    Bound {
        field: b.field.to_string(),
        min: Some(b.min),
        max: Some(b.max),
        min_exclusive: b.min_exclusive,
        typical_min: Some(b.typical_min),
        typical_max: Some(b.typical_max),
        values: None,
    }
}

fn choice<S: ToString>(field: &str, values: Vec<S>) -> Bound {
    Bound {
        field: field.to_string(),
        min: None,
        max: None,
        min_exclusive: false,
        typical_min: None,
        typical_max: None,
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
            .map(bound)
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
                    .filter_map(|(g, t)| t.map(|t| (g.as_str().to_string(), t)))
                    .collect(),
                default_gpu_config: default_gpu_config(m, rates),
                preset_hyperparameters: Preset::ALL
                    .iter()
                    .map(|p| {
                        let h = serde_json::to_value(p.hyperparameters_for(m)).unwrap_or_default();
                        (p.as_str().to_string(), h)
                    })
                    .collect(),
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
