//! Cost and duration estimate (`calculateTrainingCost`).
//! Money is Decimal from the rate table to the answer; durations are whole seconds.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::config::{
    check_gpu_fits, total_steps, BaseModel, GpuConfig, GpuType, JobConfiguration, GPU_COUNTS,
};

/// Seconds to start the job and to save the adapter, added to the training time.
pub const INITIALISATION_SECONDS: u64 = 300;
pub const SAVING_SECONDS: u64 = 120;
/// Storage kept besides the dataset: checkpoints and the adapter.
pub const CHECKPOINT_STORAGE_GB: u32 = 5;
pub const BYTES_PER_GB: u64 = 1 << 30;

/// The rate table; every ledger entry records the rate it used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rates {
    pub a100_40gb_per_gpu_hour: Decimal,
    pub a100_80gb_per_gpu_hour: Decimal,
    pub h100_80gb_per_gpu_hour: Decimal,
    pub storage_per_gb_month: Decimal,
    pub data_transfer_per_gb: Decimal,
    /// Chat completions on a deployed model, per 1,000 tokens (prompt and completion).
    pub api_calls_per_1k_tokens: Decimal,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            a100_40gb_per_gpu_hour: Decimal::new(250, 2),
            a100_80gb_per_gpu_hour: Decimal::new(320, 2),
            h100_80gb_per_gpu_hour: Decimal::new(450, 2),
            storage_per_gb_month: Decimal::new(23, 3),
            data_transfer_per_gb: Decimal::new(9, 2),
            api_calls_per_1k_tokens: Decimal::new(2, 3),
        }
    }
}

impl Rates {
    pub fn gpu_hour(&self, gpu: GpuType) -> Decimal {
        match gpu {
            GpuType::A100_40gb => self.a100_40gb_per_gpu_hour,
            GpuType::A100_80gb => self.a100_80gb_per_gpu_hour,
            GpuType::H100_80gb => self.h100_80gb_per_gpu_hour,
        }
    }
}

/// API money: half-even to cents.
/// A data transfer of `bytes` at `rate` USD per GB: its quantity (GB) and amount, both with
/// the ledger's 6 fractional digits. One rule for every transfer that is billed.
/// The GPUs a job on `model` starts from (a form's first choice): of those that can train
/// it, the cheapest per trained token (the GPU-hour rate over the throughput), the fewer
/// GPUs on a tie. `None` only for a model no GPU can train.
pub fn default_gpu_config(model: &BaseModel, rates: &Rates) -> Option<GpuConfig> {
    let per_token = |g: GpuConfig| -> Option<f64> {
        let hourly = rates.gpu_hour(g.instance_type).to_f64()? * f64::from(g.num_gpus);
        Some(hourly / model.throughput(g)?)
    };
    GpuType::ALL
        .iter()
        .flat_map(|&instance_type| {
            GPU_COUNTS.map(|num_gpus| GpuConfig {
                instance_type,
                num_gpus,
            })
        })
        .filter(|g| check_gpu_fits(model, *g).is_ok())
        .filter_map(|g| Some((per_token(g)?, g)))
        .min_by(|(a, ga), (b, gb)| a.total_cmp(b).then(ga.num_gpus.cmp(&gb.num_gpus)))
        .map(|(_, g)| g)
}

/// GPU time as the ledger records it: `gpu_seconds` in hours, to 10 fractional digits.
pub fn gpu_hours(gpu_seconds: Decimal) -> Decimal {
    (gpu_seconds / Decimal::from(3600)).round_dp(10)
}

/// The charge for `gpu_seconds` of GPU time at `rate_per_gpu_hour`: (GPU-hours, amount to
/// 6 digits). One rule for the ledger's compute entries and the clusters' bills, so the
/// cost audit compares like with like.
pub fn compute_charge(gpu_seconds: Decimal, rate_per_gpu_hour: Decimal) -> (Decimal, Decimal) {
    let hours = gpu_hours(gpu_seconds);
    (hours, micros(hours * rate_per_gpu_hour))
}

pub fn transfer_charge(bytes: u64, rate: Decimal) -> (Decimal, Decimal) {
    let quantity = micros(Decimal::from(bytes) / Decimal::from(BYTES_PER_GB));
    (quantity, micros(quantity * rate))
}

/// A chat completion's charge: (thousands of tokens, amount), both to 6 digits.
pub fn usage_charge(tokens: u64, rate_per_1k: Decimal) -> (Decimal, Decimal) {
    let quantity = micros(Decimal::from(tokens) / Decimal::from(1000));
    (quantity, micros(quantity * rate_per_1k))
}

pub fn cents(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)
}

/// Ledger precision: 6 fractional digits.
pub fn micros(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(6, RoundingStrategy::MidpointNearestEven)
}

/// What the estimate needs to know of the dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DatasetFigures {
    pub training_pairs: u64,
    pub validation_pairs: u64,
    pub total_tokens: u64,
    pub size_bytes: u64,
}

impl DatasetFigures {
    /// Tokens of the training split: the dataset's tokens in proportion of its pairs.
    pub fn training_tokens(&self) -> u64 {
        let pairs = self.training_pairs + self.validation_pairs;
        if pairs == 0 {
            return 0;
        }
        ((u128::from(self.total_tokens) * u128::from(self.training_pairs)) / u128::from(pairs))
            as u64
    }

    pub fn size_gb(&self) -> Decimal {
        micros(Decimal::from(self.size_bytes) / Decimal::from(BYTES_PER_GB))
    }
}

/// One line of the breakdown: `quantity` (hours or GB) × `rate` = `total` (cents).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostLine {
    pub quantity: Decimal,
    pub rate: Decimal,
    pub total: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostEstimate {
    /// GPU hours × (rate per GPU-hour × numGPUs).
    pub compute: CostLine,
    /// GB-month (dataset + 5 GB of checkpoints) × storage rate.
    pub storage: CostLine,
    /// GB (dataset in and out) × transfer rate.
    pub data_transfer: CostLine,
    /// The sum of the three rounded lines.
    pub total: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DurationEstimate {
    pub estimated: u64,
    pub min: u64,
    pub max: u64,
}

impl DurationEstimate {
    /// The wall-clock limit a cluster job gets, so a hung trainer is stopped: twice the
    /// longest estimate, and never under 15 minutes (start-up alone can take minutes).
    pub fn time_limit_seconds(&self) -> u64 {
        self.max.saturating_mul(2).max(15 * 60)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    pub total_steps: u64,
    pub training_tokens: u64,
    pub tokens_per_second: u64,
    pub duration: DurationEstimate,
    pub cost: CostEstimate,
}

/// The estimate of a resolved configuration on a dataset. The configuration was checked by
/// `resolve`, so the model exists and fits the GPUs.
pub fn estimate(config: &JobConfiguration, dataset: DatasetFigures, rates: &Rates) -> Estimate {
    let h = &config.hyperparameters;
    let gpus = config.gpu_config;
    let throughput = BaseModel::find(&config.base_model)
        .and_then(|m| m.throughput(gpus))
        .unwrap_or(1.0)
        .max(1.0);
    let training_tokens = dataset.training_tokens();
    let tokens = training_tokens as f64 * f64::from(h.num_epochs);
    let training_seconds = (tokens / throughput).ceil() as u64;
    let estimated = training_seconds + INITIALISATION_SECONDS + SAVING_SECONDS;
    let scale = |factor: f64| (estimated as f64 * factor).round() as u64;

    let hours = micros(Decimal::from(estimated) / Decimal::from(3600));
    let gpu_rate = rates.gpu_hour(gpus.instance_type) * Decimal::from(gpus.num_gpus);
    let compute = CostLine {
        quantity: hours,
        rate: gpu_rate,
        total: cents(hours * gpu_rate),
    };
    let gb = dataset.size_gb();
    let stored_gb = gb + Decimal::from(CHECKPOINT_STORAGE_GB);
    let storage = CostLine {
        quantity: stored_gb,
        rate: rates.storage_per_gb_month,
        total: cents(stored_gb * rates.storage_per_gb_month),
    };
    let moved_gb = gb * Decimal::from(2);
    let data_transfer = CostLine {
        quantity: moved_gb,
        rate: rates.data_transfer_per_gb,
        total: cents(moved_gb * rates.data_transfer_per_gb),
    };
    let total = compute.total + storage.total + data_transfer.total;
    Estimate {
        total_steps: total_steps(dataset.training_pairs, h),
        training_tokens,
        tokens_per_second: throughput.round().to_u64().unwrap_or(u64::MAX),
        duration: DurationEstimate {
            estimated,
            min: scale(0.8),
            max: scale(1.3),
        },
        cost: CostEstimate {
            compute,
            storage,
            data_transfer,
            total,
        },
    }
}
