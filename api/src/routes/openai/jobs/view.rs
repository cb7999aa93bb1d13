//! BrightRun's jobs, events and checkpoints as OpenAI's objects.

use std::collections::BTreeMap;

use domain::job::config::{BaseModel, Hyperparameters, Preset};
use domain::job::JobStatus;
use infrastructure::event_log::StoredEvent;
use projections::jobs::queries::{self as read, JobRow};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::request::{job_not_found, parse_job_id};
use crate::error::{ApiError, ApiResult};
use crate::extract::viewer;
use crate::routes::openai::files::file_id;
use crate::routes::openai::models::fine_tuned_model_name;
use crate::routes::openai::unix;
use crate::state::AppState;

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
pub(super) const TRAINER_SEED: u64 = 42;

pub(super) fn view(row: JobRow) -> ApiResult<FineTuningJob> {
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

pub(super) async fn visible(
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
pub(super) fn describe(event: &StoredEvent) -> (&'static str, String) {
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
pub(super) const INTERNAL_FIELDS: [&str; 3] = ["s3Key", "idempotencyKey", "entryKey"];

/// A recorded event (`{"<EventType>": {...}}`) as a client may see it: without
/// `INTERNAL_FIELDS`.
pub(super) fn public_data(mut payload: Value) -> Value {
    if let Value::Object(events) = &mut payload {
        for fields in events.values_mut().filter_map(Value::as_object_mut) {
            for internal in INTERNAL_FIELDS {
                fields.remove(internal);
            }
        }
    }
    payload
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
