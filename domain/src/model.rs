//! The Model aggregate: a trained LoRA adapter, registered when its job completes
//!. Quality metrics are computed here, from the run's losses.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{DatasetId, JobId, ModelId, UserId};
use crate::job::config::JobConfiguration;
use crate::validation::text_length;
use crate::FieldError;

/// How well the validation curve converged (documented in the README):
/// `score = clamp(drop, 0, 1) × (1 − clamp(gap, 0, 1))`, where `drop = 1 − final / initial`
/// validation loss and `gap = (finalValidation − finalTraining) / finalValidation`; a final
/// validation loss more than 5 % above the best one (overfitting) costs one level.
/// Levels: excellent ≥ 0.6, good ≥ 0.4, acceptable ≥ 0.2 (the names the API answers), poor below.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Convergence {
    Excellent,
    Good,
    Acceptable,
    Poor,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QualityMetrics {
    pub final_training_loss: f64,
    pub final_validation_loss: f64,
    pub best_validation_loss: f64,
    /// exp(finalValidationLoss)
    pub perplexity: f64,
    pub convergence_score: f64,
    pub convergence_quality: Convergence,
    /// The cluster's evaluation on the validation split, each in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_scores: Option<ValidationScores>,
    /// The adapter's BLEU (0-100) on the validation pairs (real runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bleu_score: Option<f64>,
    /// The base model against the adapter on the validation pairs (real runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<BaseComparison>,
    /// The training step the model's adapter is from: with early stopping, the checkpoint
    /// of the best validation loss; otherwise the last step (real runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_step: Option<u64>,
}

/// One side of the comparison: loss, perplexity and the generated answers' scores.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelScores {
    /// Mean cross-entropy on the answers' tokens.
    pub loss: f64,
    /// exp(loss)
    pub perplexity: f64,
    /// sacrebleu's corpus BLEU of the greedy answers against the dataset's, 0-100.
    pub bleu: f64,
    /// Mean ROUGE-L F-measure, 0-100.
    #[serde(rename = "rougeL")]
    pub rouge_l: f64,
}

/// The base model and the adapter on the same held-out validation pairs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseComparison {
    /// Pairs the losses are over.
    pub validation_pairs: u32,
    /// Pairs answered by both (BLEU, ROUGE-L): the first of them, generation being slow.
    pub generated_pairs: u32,
    pub base: ModelScores,
    pub adapter: ModelScores,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationScores {
    pub semantic_similarity: f64,
    pub coherence: f64,
    pub fluency: f64,
    pub task_accuracy: f64,
}

impl QualityMetrics {
    pub fn from_losses(
        initial_validation: f64,
        final_training: f64,
        final_validation: f64,
        best_validation: f64,
    ) -> QualityMetrics {
        let drop = if initial_validation > 0.0 {
            1.0 - final_validation / initial_validation
        } else {
            0.0
        };
        let gap = if final_validation > 0.0 {
            (final_validation - final_training) / final_validation
        } else {
            0.0
        };
        let score = drop.clamp(0.0, 1.0) * (1.0 - gap.clamp(0.0, 1.0));
        let mut level = match score {
            s if s >= 0.6 => 0,
            s if s >= 0.4 => 1,
            s if s >= 0.2 => 2,
            _ => 3,
        };
        if final_validation > best_validation * 1.05 {
            level = (level + 1).min(3);
        }
        QualityMetrics {
            final_training_loss: final_training,
            final_validation_loss: final_validation,
            best_validation_loss: best_validation,
            perplexity: final_validation.exp(),
            convergence_score: score,
            convergence_quality: [
                Convergence::Excellent,
                Convergence::Good,
                Convergence::Acceptable,
                Convergence::Poor,
            ][level],
            validation_scores: None,
            bleu_score: None,
            comparison: None,
            adapter_step: None,
        }
    }
}

/// The next version of a retrained model: the parent's minor number bumped (1.0.0 → 1.1.0).
pub fn next_version(parent: Option<&str>) -> String {
    let Some(parent) = parent else {
        return "1.0.0".to_string();
    };
    let mut parts = parent.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let major = parts.next().unwrap_or(1);
    let minor = parts.next().unwrap_or(0);
    format!("{major}.{}.0", minor + 1)
}

/// The artifact holding a model's adapter weights (PEFT's file name): what a deployment
/// serves and what a job that continues the model starts from.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The artifact holding the adapter's configuration (rank, alpha, target modules).
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelArtifact {
    pub name: String,
    pub s3_key: String,
    pub size_bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingSummary {
    pub total_steps: u64,
    pub epochs: u32,
    /// GPU time of the successful attempt, seconds (all GPUs).
    pub gpu_seconds: f64,
    pub retry_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ModelEvent {
    ModelRegistered(Box<ModelRegistered>),
    ModelMetadataUpdated(ModelMetadataUpdated),
    ModelDeleted(ModelDeleted),
    ModelDeploymentRequested(ModelDeploymentRequested),
    ModelDeployed(ModelDeployed),
    ModelDeploymentFailed(ModelDeploymentFailed),
    ModelUndeployed(ModelUndeployed),
    ModelArchiveStored(ModelArchiveStored),
    ModelDownloadBilled(ModelDownloadBilled),
    ModelUsageBilled(ModelUsageBilled),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRegistered {
    pub model_id: ModelId,
    pub user_id: UserId,
    pub job_id: JobId,
    pub dataset_id: DatasetId,
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_model_id: Option<ModelId>,
    pub configuration: JobConfiguration,
    pub quality: QualityMetrics,
    pub training: TrainingSummary,
    pub artifacts: Vec<ModelArtifact>,
    pub final_cost: Decimal,
    pub registered_at: DateTime<Utc>,
}

/// The user-facing fields that changed (absent: unchanged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelMetadataUpdated {
    pub model_id: ModelId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ModelStatus>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeleted {
    pub model_id: ModelId,
    pub deleted_by: UserId,
    pub deleted_at: DateTime<Utc>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployEnvironment {
    Staging,
    Production,
}

impl DeployEnvironment {
    pub const ALL: [DeployEnvironment; 2] =
        [DeployEnvironment::Staging, DeployEnvironment::Production];

    pub fn as_str(self) -> &'static str {
        match self {
            DeployEnvironment::Staging => "staging",
            DeployEnvironment::Production => "production",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentRequested {
    pub model_id: ModelId,
    pub deployment_id: String,
    pub environment: DeployEnvironment,
    pub endpoint_name: String,
    pub instance_type: String,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub endpoint_url: String,
    pub estimated_ready_at: DateTime<Utc>,
    pub requested_at: DateTime<Utc>,
}

/// Where a deployment is: requested (`deploying`), serving (`deployed`), then `stopped` by
/// an undeploy or `failed` when its engine could not serve it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentStatus {
    Deploying,
    Deployed,
    Failed,
    Stopped,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Deploying => "deploying",
            DeploymentStatus::Deployed => "deployed",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Stopped => "stopped",
        }
    }
}

/// A model's current deployment, as the models read model keeps it: what was requested,
/// and when it started serving.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentState {
    pub deployment_id: String,
    pub status: DeploymentStatus,
    pub environment: DeployEnvironment,
    pub endpoint_name: String,
    pub endpoint_url: String,
    pub instance_type: String,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub estimated_ready_at: DateTime<Utc>,
    pub requested_at: DateTime<Utc>,
    /// Absent until it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<DateTime<Utc>>,
    /// Why it failed (a `failed` deployment only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// When it stopped or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
}

impl From<&ModelDeploymentRequested> for DeploymentState {
    fn from(e: &ModelDeploymentRequested) -> Self {
        DeploymentState {
            deployment_id: e.deployment_id.clone(),
            status: DeploymentStatus::Deploying,
            environment: e.environment,
            endpoint_name: e.endpoint_name.clone(),
            endpoint_url: e.endpoint_url.clone(),
            instance_type: e.instance_type.clone(),
            min_replicas: e.min_replicas,
            max_replicas: e.max_replicas,
            estimated_ready_at: e.estimated_ready_at,
            requested_at: e.requested_at,
            deployed_at: None,
            failure_reason: None,
            ended_at: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeployed {
    pub model_id: ModelId,
    pub deployment_id: String,
    pub deployed_at: DateTime<Utc>,
}

/// The engine could not serve the deployment (the adapter refused by its converter, the
/// engine not starting or dying for good): the model is back to `stored`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentFailed {
    pub model_id: ModelId,
    pub deployment_id: String,
    /// `ADAPTER_NOT_SERVABLE: ...`, or what the engine said.
    pub reason: String,
    pub failed_at: DateTime<Utc>,
}

/// The deployment was stopped by its owner (or an admin): the model is back to `stored`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelUndeployed {
    pub model_id: ModelId,
    pub deployment_id: String,
    pub undeployed_by: UserId,
    pub undeployed_at: DateTime<Utc>,
}

/// Tokens a chat completion used on a deployed model: billed to its owner as `api_calls`
/// (tokens / 1000 × the rate), under the model's job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelUsageBilled {
    pub model_id: ModelId,
    pub user_id: UserId,
    pub job_id: JobId,
    pub entry_key: String,
    pub deployment_id: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Thousands of tokens, 6 fractional digits.
    pub quantity: Decimal,
    /// Per 1,000 tokens.
    pub rate: Decimal,
    /// quantity × rate, 6 fractional digits.
    pub amount: Decimal,
    pub accrued_at: DateTime<Utc>,
}

/// The one archive of all the model's files (`artifact=all`), built once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelArchiveStored {
    pub model_id: ModelId,
    pub archive: ModelArtifact,
    pub stored_at: DateTime<Utc>,
}

/// A download URL was issued: data transfer (GB × rate) lands in the owner's ledger, under
/// the model's job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelDownloadBilled {
    pub model_id: ModelId,
    pub user_id: UserId,
    pub job_id: JobId,
    pub entry_key: String,
    pub file_name: String,
    pub bytes: u64,
    /// GB (2^30 bytes), 6 fractional digits.
    pub quantity: Decimal,
    pub rate: Decimal,
    /// quantity × rate, 6 fractional digits.
    pub amount: Decimal,
    pub accrued_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModelStatus {
    #[default]
    Stored,
    Deployed,
    Archived,
}

impl ModelStatus {
    /// The models the dashboard counts as completed: stored or deployed, not archived.
    pub const COMPLETED: [ModelStatus; 2] = [ModelStatus::Stored, ModelStatus::Deployed];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelStatus::Stored => "stored",
            ModelStatus::Deployed => "deployed",
            ModelStatus::Archived => "archived",
        }
    }
}

impl DomainEvent for ModelEvent {
    fn event_type(&self) -> String {
        match self {
            ModelEvent::ModelRegistered(_) => "ModelRegistered",
            ModelEvent::ModelMetadataUpdated(_) => "ModelMetadataUpdated",
            ModelEvent::ModelDeleted(_) => "ModelDeleted",
            ModelEvent::ModelDeploymentRequested(_) => "ModelDeploymentRequested",
            ModelEvent::ModelDeployed(_) => "ModelDeployed",
            ModelEvent::ModelDeploymentFailed(_) => "ModelDeploymentFailed",
            ModelEvent::ModelUndeployed(_) => "ModelUndeployed",
            ModelEvent::ModelArchiveStored(_) => "ModelArchiveStored",
            ModelEvent::ModelDownloadBilled(_) => "ModelDownloadBilled",
            ModelEvent::ModelUsageBilled(_) => "ModelUsageBilled",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// What a deployment target answered when asked to deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentTicket {
    pub deployment_id: String,
    pub endpoint_url: String,
    pub estimated_ready_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeployRequest {
    pub environment: DeployEnvironment,
    pub endpoint_name: Option<String>,
    pub instance_type: Option<String>,
    pub min_replicas: Option<u32>,
    pub max_replicas: Option<u32>,
}

/// The defaults of a deployment: one replica, at most one, on `gpu-a10g`.
pub const DEFAULT_INSTANCE_TYPE: &str = "gpu-a10g";
pub const MAX_REPLICAS: u32 = 16;

impl DeployRequest {
    /// Checks the request field by field; answers (endpointName, instanceType, min, max).
    pub fn resolve(&self, model_id: ModelId) -> Result<(String, String, u32, u32), FieldError> {
        let endpoint_name = match &self.endpoint_name {
            Some(name) => {
                let valid = !name.is_empty()
                    && name.len() <= 63
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !name.starts_with('-')
                    && !name.ends_with('-');
                if !valid {
                    return Err(FieldError::new(
                        "endpointName",
                        "endpointName must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'",
                    ));
                }
                name.clone()
            }
            None => format!("model-{}", &model_id.to_string()[..8]),
        };
        let instance_type = match &self.instance_type {
            Some(t) => {
                text_length("instanceType", t, 1, 64)?;
                t.trim().to_string()
            }
            None => DEFAULT_INSTANCE_TYPE.to_string(),
        };
        let min = self.min_replicas.unwrap_or(1);
        let max = self.max_replicas.unwrap_or(min.max(1));
        if !(1..=MAX_REPLICAS).contains(&min) {
            return Err(FieldError::new(
                "minReplicas",
                format!("minReplicas must be between 1 and {MAX_REPLICAS}"),
            ));
        }
        if !(min..=MAX_REPLICAS).contains(&max) {
            return Err(FieldError::new(
                "maxReplicas",
                format!("maxReplicas must be between minReplicas ({min}) and {MAX_REPLICAS}"),
            ));
        }
        Ok((endpoint_name, instance_type, min, max))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelCommand {
    /// Registering again (a saga retry after a crash) records nothing.
    Register(Box<ModelRegistered>),
    /// PATCH: name (1-100), description (at most 2000), status stored | archived.
    UpdateMetadata {
        actor: UserId,
        is_admin: bool,
        name: Option<String>,
        description: Option<String>,
        status: Option<ModelStatus>,
        at: DateTime<Utc>,
    },
    /// Soft delete; deleting again is refused as not found.
    Delete {
        actor: UserId,
        is_admin: bool,
        at: DateTime<Utc>,
    },
    RequestDeployment {
        actor: UserId,
        is_admin: bool,
        request: DeployRequest,
        ticket: DeploymentTicket,
        at: DateTime<Utc>,
    },
    /// The target reports the deployment ready; a repeat records nothing.
    CompleteDeployment {
        deployment_id: String,
        at: DateTime<Utc>,
    },
    /// The engine could not serve the deployment; a repeat, or a report about a deployment
    /// that is no longer the model's, records nothing.
    FailDeployment {
        deployment_id: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Stops the model's deployment, serving or still starting.
    Undeploy {
        actor: UserId,
        is_admin: bool,
        at: DateTime<Utc>,
    },
    /// A chat completion's tokens, on the deployment that answered it (owner only).
    BillUsage {
        actor: UserId,
        deployment_id: String,
        entry_key: String,
        prompt_tokens: u64,
        completion_tokens: u64,
        rate: Decimal,
        at: DateTime<Utc>,
    },
    /// The archive was stored; only the first one is recorded.
    RecordArchive {
        archive: ModelArtifact,
        at: DateTime<Utc>,
    },
    BillDownload {
        actor: UserId,
        is_admin: bool,
        entry_key: String,
        file_name: String,
        bytes: u64,
        rate: Decimal,
        at: DateTime<Utc>,
    },
}

impl ModelCommand {
    /// Whether the command may be decided again on the model's newer state when another
    /// command changed it first: every command but `Register` (a conflict there means the
    /// model already exists).
    pub fn is_repeatable(&self) -> bool {
        !matches!(self, ModelCommand::Register(_))
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("a model needs at least its adapter file")]
    NoArtifacts,
    /// No such model for this user (or it was deleted).
    #[error("no such model")]
    NotFound,
    #[error("{}", .0.message)]
    Invalid(FieldError),
    /// The model is deployed (or being deployed): archive or delete it after undeploying.
    #[error("the model is {0}: {1}")]
    Deployed(&'static str, &'static str),
    #[error("the model is archived: set its status to stored before deploying it")]
    Archived,
    #[error("the model is not deployed")]
    NotDeployed,
    /// The deployment target cannot serve this model (no engine for its base model, an
    /// adapter the engine cannot apply whole): refused, never served as the base model.
    #[error("{0}")]
    NotServable(String),
    /// Chat needs a deployment that serves: this one is still starting.
    #[error("the model's deployment is still starting: try again once its status is deployed")]
    NotServing,
}

/// A model's current deployment, as an engine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub model_id: ModelId,
    pub deployment_id: String,
    pub base_model: String,
    pub artifacts: Vec<ModelArtifact>,
    /// How many engines of the fine-tuned model serve it at least (the request's
    /// `minReplicas`)...
    pub replicas: u32,
    /// ...and at most, under load (`maxReplicas`).
    pub max_replicas: u32,
    /// Recorded as serving (`ModelDeployed`), not only requested.
    pub serving: bool,
}

/// How many chat requests one replica of the fine-tuned model takes at a time before its
/// deployment wants another: the CPU engine answers one request at a time, so a second is
/// a queue.
pub const REQUESTS_PER_REPLICA: u32 = 1;

impl Deployment {
    /// The replicas `in_flight` requests ask for: enough that none has more than
    /// `REQUESTS_PER_REPLICA`, never under `minReplicas` nor over `maxReplicas`.
    pub fn wanted_replicas(&self, in_flight: u32) -> u32 {
        let min = self.replicas.max(1);
        in_flight
            .div_ceil(REQUESTS_PER_REPLICA)
            .clamp(min, self.max_replicas.max(min))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Model {
    id: Option<ModelId>,
    owner: Option<UserId>,
    job: Option<JobId>,
    version: String,
    status: ModelStatus,
    deleted: bool,
    base_model: String,
    artifacts: Vec<ModelArtifact>,
    deploying: Option<String>,
    serving: Option<String>,
    /// The engines the current deployment asked for: at least, and at most.
    replicas: u32,
    max_replicas: u32,
    archive: Option<ModelArtifact>,
}

impl Model {
    pub fn version(&self) -> Option<&str> {
        self.id.map(|_| self.version.as_str())
    }

    pub fn owner(&self) -> Option<UserId> {
        self.owner
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// The stored file `name` of the model's artifacts (`adapter_model.safetensors`, ...).
    pub fn artifact(&self, name: &str) -> Option<&ModelArtifact> {
        self.artifacts.iter().find(|a| a.name == name)
    }

    pub fn archive(&self) -> Option<&ModelArtifact> {
        self.archive.as_ref()
    }

    /// The model as `actor` may see it: not found for anyone else (unless admin) and once deleted.
    fn visible_to(&self, actor: UserId, is_admin: bool) -> Result<(ModelId, UserId), ModelError> {
        match (self.id, self.owner) {
            (Some(id), Some(owner)) if !self.deleted && (owner == actor || is_admin) => {
                Ok((id, owner))
            }
            _ => Err(ModelError::NotFound),
        }
    }

    pub fn decide(&self, command: ModelCommand) -> Result<Vec<ModelEvent>, ModelError> {
        match command {
            ModelCommand::Register(registered) => {
                if self.id.is_some() {
                    return Ok(vec![]);
                }
                if registered.artifacts.is_empty() {
                    return Err(ModelError::NoArtifacts);
                }
                Ok(vec![ModelEvent::ModelRegistered(registered)])
            }
            ModelCommand::UpdateMetadata {
                actor,
                is_admin,
                name,
                description,
                status,
                at,
            } => {
                let (model_id, _) = self.visible_to(actor, is_admin)?;
                if let Some(name) = &name {
                    text_length("name", name, 1, 100).map_err(ModelError::Invalid)?;
                }
                if let Some(description) = &description {
                    text_length("description", description, 0, 2000)
                        .map_err(ModelError::Invalid)?;
                }
                match status {
                    Some(ModelStatus::Deployed) => {
                        return Err(ModelError::Invalid(FieldError::new(
                            "status",
                            "status must be stored or archived (deploy through POST /api/models/{id}/deploy)",
                        )))
                    }
                    Some(wanted) if wanted != self.status && self.is_deployed_or_deploying() => {
                        return Err(ModelError::Deployed(
                            self.deployment_word(),
                            "its status changes when it is undeployed",
                        ))
                    }
                    _ => {}
                }
                let status = status.filter(|s| *s != self.status);
                let name = name.map(|n| n.trim().to_string());
                let description = description.map(|d| d.trim().to_string());
                if name.is_none() && description.is_none() && status.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![ModelEvent::ModelMetadataUpdated(
                    ModelMetadataUpdated {
                        model_id,
                        name,
                        description,
                        status,
                        updated_at: at,
                    },
                )])
            }
            ModelCommand::Delete {
                actor,
                is_admin,
                at,
            } => {
                let (model_id, _) = self.visible_to(actor, is_admin)?;
                if self.is_deployed_or_deploying() {
                    return Err(ModelError::Deployed(
                        self.deployment_word(),
                        "undeploy it before deleting",
                    ));
                }
                Ok(vec![ModelEvent::ModelDeleted(ModelDeleted {
                    model_id,
                    deleted_by: actor,
                    deleted_at: at,
                })])
            }
            ModelCommand::RequestDeployment {
                actor,
                is_admin,
                request,
                ticket,
                at,
            } => {
                let (model_id, _) = self.visible_to(actor, is_admin)?;
                if self.status == ModelStatus::Archived {
                    return Err(ModelError::Archived);
                }
                if self.is_deployed_or_deploying() {
                    return Err(ModelError::Deployed(
                        self.deployment_word(),
                        "one deployment at a time",
                    ));
                }
                let (endpoint_name, instance_type, min_replicas, max_replicas) =
                    request.resolve(model_id).map_err(ModelError::Invalid)?;
                Ok(vec![ModelEvent::ModelDeploymentRequested(
                    ModelDeploymentRequested {
                        model_id,
                        deployment_id: ticket.deployment_id,
                        environment: request.environment,
                        endpoint_name,
                        instance_type,
                        min_replicas,
                        max_replicas,
                        endpoint_url: ticket.endpoint_url,
                        estimated_ready_at: ticket.estimated_ready_at,
                        requested_at: at,
                    },
                )])
            }
            ModelCommand::CompleteDeployment { deployment_id, at } => {
                match (&self.deploying, self.id) {
                    (Some(pending), Some(model_id)) if *pending == deployment_id => {
                        Ok(vec![ModelEvent::ModelDeployed(ModelDeployed {
                            model_id,
                            deployment_id,
                            deployed_at: at,
                        })])
                    }
                    _ => Ok(vec![]),
                }
            }
            ModelCommand::FailDeployment {
                deployment_id,
                reason,
                at,
            } => {
                match self.id {
                    Some(model_id) if self.current_deployment() == Some(&deployment_id) => Ok(
                        vec![ModelEvent::ModelDeploymentFailed(ModelDeploymentFailed {
                            model_id,
                            deployment_id,
                            reason,
                            failed_at: at,
                        })],
                    ),
                    _ => Ok(vec![]),
                }
            }
            ModelCommand::Undeploy {
                actor,
                is_admin,
                at,
            } => {
                let (model_id, _) = self.visible_to(actor, is_admin)?;
                let deployment_id = self
                    .current_deployment()
                    .ok_or(ModelError::NotDeployed)?
                    .clone();
                Ok(vec![ModelEvent::ModelUndeployed(ModelUndeployed {
                    model_id,
                    deployment_id,
                    undeployed_by: actor,
                    undeployed_at: at,
                })])
            }
            ModelCommand::BillUsage {
                actor,
                deployment_id,
                entry_key,
                prompt_tokens,
                completion_tokens,
                rate,
                at,
            } => {
                let (model_id, owner) = self.visible_to(actor, false)?;
                let job_id = self.job.ok_or(ModelError::NotFound)?;
                if self.serving.as_ref() != Some(&deployment_id) {
                    return Err(ModelError::NotDeployed);
                }
                let (quantity, amount) = crate::job::estimate::usage_charge(
                    prompt_tokens.saturating_add(completion_tokens),
                    rate,
                );
                Ok(vec![ModelEvent::ModelUsageBilled(ModelUsageBilled {
                    model_id,
                    user_id: owner,
                    job_id,
                    entry_key,
                    deployment_id,
                    prompt_tokens,
                    completion_tokens,
                    quantity,
                    rate,
                    amount,
                    accrued_at: at,
                })])
            }
            ModelCommand::RecordArchive { archive, at } => match self.id {
                Some(model_id) if self.archive.is_none() => {
                    Ok(vec![ModelEvent::ModelArchiveStored(ModelArchiveStored {
                        model_id,
                        archive,
                        stored_at: at,
                    })])
                }
                Some(_) => Ok(vec![]),
                None => Err(ModelError::NotFound),
            },
            ModelCommand::BillDownload {
                actor,
                is_admin,
                entry_key,
                file_name,
                bytes,
                rate,
                at,
            } => {
                let (model_id, owner) = self.visible_to(actor, is_admin)?;
                let job_id = self.job.ok_or(ModelError::NotFound)?;
                let (quantity, amount) = crate::job::estimate::transfer_charge(bytes, rate);
                Ok(vec![ModelEvent::ModelDownloadBilled(ModelDownloadBilled {
                    model_id,
                    user_id: owner,
                    job_id,
                    entry_key,
                    file_name,
                    bytes,
                    quantity,
                    rate,
                    amount,
                    accrued_at: at,
                })])
            }
        }
    }

    fn is_deployed_or_deploying(&self) -> bool {
        self.current_deployment().is_some()
    }

    /// The deployment starting or serving, if any.
    fn current_deployment(&self) -> Option<&String> {
        self.deploying.as_ref().or(self.serving.as_ref())
    }

    /// What an engine needs to serve the model's current deployment (`None` without one).
    pub fn deployment(&self) -> Option<Deployment> {
        let model_id = self.id?;
        let deployment_id = self.current_deployment()?.clone();
        Some(Deployment {
            model_id,
            deployment_id,
            base_model: self.base_model.clone(),
            artifacts: self.artifacts.clone(),
            replicas: self.replicas.max(1),
            max_replicas: self.max_replicas.max(self.replicas).max(1),
            serving: self.serving.is_some(),
        })
    }

    /// The deployment that answers chat: refused when there is none or it is still starting.
    pub fn serving_deployment(&self, actor: UserId) -> Result<Deployment, ModelError> {
        self.visible_to(actor, false)?;
        match self.deployment() {
            Some(d) if d.serving => Ok(d),
            Some(_) => Err(ModelError::NotServing),
            None => Err(ModelError::NotDeployed),
        }
    }

    fn deployment_word(&self) -> &'static str {
        if self.deploying.is_some() {
            "being deployed"
        } else {
            "deployed"
        }
    }
}

decided_aggregate!(
    Model,
    "model",
    ModelCommand,
    ModelEvent,
    ModelError,
    fn apply(&mut self, event: ModelEvent) {
        match event {
            ModelEvent::ModelRegistered(e) => {
                self.id = Some(e.model_id);
                self.owner = Some(e.user_id);
                self.job = Some(e.job_id);
                self.version = e.version;
                self.base_model = e.configuration.base_model;
                self.artifacts = e.artifacts;
            }
            ModelEvent::ModelMetadataUpdated(e) => {
                if let Some(status) = e.status {
                    self.status = status;
                }
            }
            ModelEvent::ModelDeleted(_) => self.deleted = true,
            ModelEvent::ModelDeploymentRequested(e) => {
                self.deploying = Some(e.deployment_id);
                self.replicas = e.min_replicas;
                self.max_replicas = e.max_replicas;
            }
            ModelEvent::ModelDeployed(e) => {
                self.deploying = None;
                self.serving = Some(e.deployment_id);
                self.status = ModelStatus::Deployed;
            }
            ModelEvent::ModelDeploymentFailed(_) | ModelEvent::ModelUndeployed(_) => {
                self.deploying = None;
                self.serving = None;
                self.status = ModelStatus::Stored;
            }
            ModelEvent::ModelArchiveStored(e) => self.archive = Some(e.archive),
            ModelEvent::ModelDownloadBilled(_) | ModelEvent::ModelUsageBilled(_) => {}
        }
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::config::{GpuConfig, GpuType};
    use cqrs_es::Aggregate;

    fn at(minute: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-11-23T10:{minute:02}:00Z"))
            .unwrap()
            .with_timezone(&Utc)
    }

    const OWNER: UserId = UserId(uuid::Uuid::from_u128(1));
    const OTHER: UserId = UserId(uuid::Uuid::from_u128(2));

    fn registered() -> ModelRegistered {
        let configuration = crate::job::config::JobRequest {
            preset: crate::job::config::Preset::Balanced,
            overrides: Default::default(),
            gpu_config: GpuConfig {
                instance_type: GpuType::A100_80gb,
                num_gpus: 1,
            },
            base_model: Some("mistral-7b".into()),
            early_stopping_patience: None,
            early_stopping_min_delta: None,
            validation_split_ratio: None,
            checkpoint_interval: None,
            seed: None,
        }
        .resolve(1000)
        .unwrap();
        ModelRegistered {
            model_id: ModelId(uuid::Uuid::from_u128(10)),
            user_id: OWNER,
            job_id: JobId(uuid::Uuid::from_u128(20)),
            dataset_id: DatasetId(uuid::Uuid::from_u128(30)),
            name: "Model from chats".into(),
            version: "1.0.0".into(),
            parent_model_id: None,
            configuration,
            quality: QualityMetrics::from_losses(2.0, 0.45, 0.5, 0.5),
            training: TrainingSummary {
                total_steps: 100,
                epochs: 3,
                gpu_seconds: 3600.0,
                retry_count: 0,
            },
            artifacts: vec![ModelArtifact {
                name: "adapter_model.safetensors".into(),
                s3_key: "models/x/adapter_model.safetensors".into(),
                size_bytes: 1 << 20,
                sha256: "00".into(),
            }],
            final_cost: Decimal::new(1234, 2),
            registered_at: at(0),
        }
    }

    /// Given these events, the model.
    fn given(events: Vec<ModelEvent>) -> Model {
        let mut model = Model::default();
        for e in events {
            model.apply(e);
        }
        model
    }

    fn stored() -> Model {
        given(vec![ModelEvent::ModelRegistered(Box::new(registered()))])
    }

    fn deploy(model: &Model, id: &str) -> Result<Vec<ModelEvent>, ModelError> {
        deploy_replicas(model, id, None, None)
    }

    fn deploy_replicas(
        model: &Model,
        id: &str,
        min_replicas: Option<u32>,
        max_replicas: Option<u32>,
    ) -> Result<Vec<ModelEvent>, ModelError> {
        model.decide(ModelCommand::RequestDeployment {
            actor: OWNER,
            is_admin: false,
            request: DeployRequest {
                environment: DeployEnvironment::Staging,
                endpoint_name: None,
                instance_type: None,
                min_replicas,
                max_replicas,
            },
            ticket: DeploymentTicket {
                deployment_id: id.into(),
                endpoint_url: format!("https://{id}.example"),
                estimated_ready_at: at(5),
            },
            at: at(1),
        })
    }

    #[test]
    fn metadata_updates_are_checked_and_only_changes_are_recorded() {
        let model = stored();
        let update = |name: Option<&str>, status: Option<ModelStatus>| {
            model.decide(ModelCommand::UpdateMetadata {
                actor: OWNER,
                is_admin: false,
                name: name.map(String::from),
                description: None,
                status,
                at: at(1),
            })
        };
        let events = update(Some("  Support bot  "), Some(ModelStatus::Archived)).unwrap();
        let ModelEvent::ModelMetadataUpdated(e) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(e.name.as_deref(), Some("Support bot"));
        assert_eq!(e.status, Some(ModelStatus::Archived));
        // Setting what already is records nothing.
        assert_eq!(update(None, Some(ModelStatus::Stored)).unwrap(), vec![]);
        assert!(matches!(
            update(Some(" "), None),
            Err(ModelError::Invalid(f)) if f.field == "name"
        ));
        assert!(matches!(
            update(None, Some(ModelStatus::Deployed)),
            Err(ModelError::Invalid(f)) if f.field == "status"
        ));
        // Someone else's model does not exist for them.
        assert_eq!(
            model.decide(ModelCommand::Delete {
                actor: OTHER,
                is_admin: false,
                at: at(1)
            }),
            Err(ModelError::NotFound)
        );
    }

    #[test]
    fn deployment_goes_deploying_then_deployed_once() {
        let model = stored();
        let requested = deploy(&model, "dep-1").unwrap();
        let ModelEvent::ModelDeploymentRequested(e) = &requested[0] else {
            panic!("{requested:?}")
        };
        assert_eq!(e.endpoint_name, "model-00000000");
        assert_eq!((e.min_replicas, e.max_replicas), (1, 1));
        let deploying = given(
            [ModelEvent::ModelRegistered(Box::new(registered()))]
                .into_iter()
                .chain(requested)
                .collect(),
        );
        // One deployment at a time; archive and delete wait for it.
        assert!(matches!(
            deploy(&deploying, "dep-2"),
            Err(ModelError::Deployed(..))
        ));
        assert!(matches!(
            deploying.decide(ModelCommand::Delete {
                actor: OWNER,
                is_admin: false,
                at: at(2)
            }),
            Err(ModelError::Deployed(..))
        ));
        let done = deploying
            .decide(ModelCommand::CompleteDeployment {
                deployment_id: "dep-1".into(),
                at: at(5),
            })
            .unwrap();
        assert_eq!(done.len(), 1);
        let mut deployed = deploying.clone();
        deployed.apply(done[0].clone());
        assert_eq!(deployed.status, ModelStatus::Deployed);
        // The engines serve the replicas it asked for.
        let deployment = deployed.deployment().unwrap();
        assert_eq!((deployment.replicas, deployment.serving), (1, true));
        // A repeated report records nothing.
        assert_eq!(
            deployed
                .decide(ModelCommand::CompleteDeployment {
                    deployment_id: "dep-1".into(),
                    at: at(6)
                })
                .unwrap(),
            vec![]
        );
    }

    #[test]
    fn load_asks_for_replicas_between_min_and_max() {
        let mut model = stored();
        let events = deploy_replicas(&model, "dep-1", Some(2), Some(4)).unwrap();
        for e in events {
            model.apply(e);
        }
        let deployment = model.deployment().unwrap();
        assert_eq!((deployment.replicas, deployment.max_replicas), (2, 4));
        // Idle or lightly used: the minimum; one request per replica up to the maximum.
        let wanted: Vec<u32> = (0..=6).map(|n| deployment.wanted_replicas(n)).collect();
        assert_eq!(wanted, [2, 2, 2, 3, 4, 4, 4]);
        // A deployment recorded before the maximum was kept scales nowhere.
        let old = Deployment {
            max_replicas: 0,
            ..deployment
        };
        assert_eq!(old.wanted_replicas(5), 2);
    }

    /// The stored model with `dep-1` requested, and served when `served`.
    fn deployed(served: bool) -> Model {
        let mut model = stored();
        for e in deploy(&model, "dep-1").unwrap() {
            model.apply(e);
        }
        if served {
            let done = model
                .decide(ModelCommand::CompleteDeployment {
                    deployment_id: "dep-1".into(),
                    at: at(5),
                })
                .unwrap();
            done.into_iter().for_each(|e| model.apply(e));
        }
        model
    }

    fn apply_all(model: &mut Model, events: Vec<ModelEvent>) {
        events.into_iter().for_each(|e| model.apply(e));
    }

    #[test]
    fn a_failed_deployment_leaves_the_model_stored_and_deployable_again() {
        for served in [false, true] {
            let mut model = deployed(served);
            // A report about another deployment records nothing.
            let stale = ModelCommand::FailDeployment {
                deployment_id: "dep-0".into(),
                reason: "old".into(),
                at: at(6),
            };
            assert_eq!(model.decide(stale).unwrap(), vec![]);
            let failed = model
                .decide(ModelCommand::FailDeployment {
                    deployment_id: "dep-1".into(),
                    reason: "ADAPTER_NOT_SERVABLE: modules_to_save".into(),
                    at: at(6),
                })
                .unwrap();
            assert!(matches!(&failed[..], [ModelEvent::ModelDeploymentFailed(e)]
                if e.reason.starts_with("ADAPTER_NOT_SERVABLE") && e.deployment_id == "dep-1"));
            apply_all(&mut model, failed);
            assert_eq!(model.status, ModelStatus::Stored);
            assert!(model.deployment().is_none());
            // A repeat records nothing; a new deployment may start.
            let again = ModelCommand::FailDeployment {
                deployment_id: "dep-1".into(),
                reason: "again".into(),
                at: at(7),
            };
            assert_eq!(model.decide(again).unwrap(), vec![]);
            assert!(deploy(&model, "dep-2").is_ok());
        }
    }

    #[test]
    fn undeploying_stops_a_deployment_serving_or_starting_and_only_the_owner_s() {
        for served in [false, true] {
            let mut model = deployed(served);
            let undeploy = |actor, is_admin| ModelCommand::Undeploy {
                actor,
                is_admin,
                at: at(8),
            };
            assert_eq!(
                model.decide(undeploy(OTHER, false)),
                Err(ModelError::NotFound)
            );
            let stopped = model.decide(undeploy(OWNER, false)).unwrap();
            assert!(matches!(&stopped[..], [ModelEvent::ModelUndeployed(e)]
                if e.deployment_id == "dep-1" && e.undeployed_by == OWNER));
            apply_all(&mut model, stopped);
            assert_eq!(model.status, ModelStatus::Stored);
            assert_eq!(
                model.decide(undeploy(OWNER, false)),
                Err(ModelError::NotDeployed)
            );
            // Stopped, it can be deleted.
            let delete = ModelCommand::Delete {
                actor: OWNER,
                is_admin: false,
                at: at(9),
            };
            assert!(model.decide(delete).is_ok());
        }
    }

    #[test]
    fn chat_tokens_are_billed_to_the_owner_on_the_serving_deployment_only() {
        let bill = |deployment: &str, actor| ModelCommand::BillUsage {
            actor,
            deployment_id: deployment.into(),
            entry_key: "usage:1".into(),
            prompt_tokens: 1200,
            completion_tokens: 300,
            rate: Decimal::new(2, 3),
            at: at(9),
        };
        let starting = deployed(false);
        assert_eq!(
            starting.serving_deployment(OWNER),
            Err(ModelError::NotServing)
        );
        assert_eq!(
            starting.decide(bill("dep-1", OWNER)),
            Err(ModelError::NotDeployed)
        );
        let serving = deployed(true);
        assert_eq!(
            serving.serving_deployment(OWNER).map(|d| d.base_model),
            Ok("mistral-7b".to_string())
        );
        assert_eq!(serving.serving_deployment(OTHER), Err(ModelError::NotFound));
        assert_eq!(
            serving.decide(bill("dep-1", OTHER)),
            Err(ModelError::NotFound)
        );
        assert_eq!(
            serving.decide(bill("dep-0", OWNER)),
            Err(ModelError::NotDeployed)
        );
        let billed = serving.decide(bill("dep-1", OWNER)).unwrap();
        let [ModelEvent::ModelUsageBilled(e)] = &billed[..] else {
            panic!("{billed:?}")
        };
        // 1,500 tokens at 0.002 per 1k.
        assert_eq!(e.quantity, Decimal::new(15, 1));
        assert_eq!(e.amount, Decimal::new(3, 3));
        assert_eq!((e.user_id, e.job_id), (OWNER, registered().job_id));
        assert_eq!(
            stored().serving_deployment(OWNER),
            Err(ModelError::NotDeployed)
        );
    }

    #[test]
    fn archived_models_are_not_deployed_and_deleted_ones_are_gone() {
        let mut model = stored();
        model.apply(ModelEvent::ModelMetadataUpdated(ModelMetadataUpdated {
            model_id: ModelId(uuid::Uuid::from_u128(10)),
            name: None,
            description: None,
            status: Some(ModelStatus::Archived),
            updated_at: at(1),
        }));
        assert_eq!(deploy(&model, "dep-1"), Err(ModelError::Archived));
        let deleted = model
            .decide(ModelCommand::Delete {
                actor: OWNER,
                is_admin: false,
                at: at(2),
            })
            .unwrap();
        model.apply(deleted[0].clone());
        assert_eq!(deploy(&model, "dep-1"), Err(ModelError::NotFound));
    }

    #[test]
    fn a_download_bills_its_gigabytes_at_the_transfer_rate() {
        let events = stored()
            .decide(ModelCommand::BillDownload {
                actor: OWNER,
                is_admin: false,
                entry_key: "download:1".into(),
                file_name: "adapter_model.safetensors".into(),
                bytes: 3 << 29, // 1.5 GB
                rate: Decimal::new(9, 2),
                at: at(3),
            })
            .unwrap();
        let ModelEvent::ModelDownloadBilled(e) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(e.quantity, Decimal::new(15, 1));
        assert_eq!(e.amount, Decimal::new(135, 3));
        assert_eq!(e.job_id, JobId(uuid::Uuid::from_u128(20)));
        assert_eq!(e.user_id, OWNER);
    }

    #[test]
    fn deploy_requests_are_checked_field_by_field() {
        let id = ModelId(uuid::Uuid::from_u128(10));
        let request = |name: Option<&str>, min: Option<u32>, max: Option<u32>| DeployRequest {
            environment: DeployEnvironment::Production,
            endpoint_name: name.map(String::from),
            instance_type: None,
            min_replicas: min,
            max_replicas: max,
        };
        assert_eq!(
            request(Some("Bad_Name"), None, None)
                .resolve(id)
                .unwrap_err()
                .field,
            "endpointName"
        );
        assert_eq!(
            request(None, Some(0), None).resolve(id).unwrap_err().field,
            "minReplicas"
        );
        assert_eq!(
            request(None, Some(3), Some(2))
                .resolve(id)
                .unwrap_err()
                .field,
            "maxReplicas"
        );
        assert_eq!(
            request(Some("support-bot"), Some(2), None)
                .resolve(id)
                .unwrap(),
            (
                "support-bot".to_string(),
                DEFAULT_INSTANCE_TYPE.to_string(),
                2,
                2
            )
        );
    }

    #[test]
    fn versions_bump_the_minor_number() {
        assert_eq!(next_version(None), "1.0.0");
        assert_eq!(next_version(Some("1.0.0")), "1.1.0");
        assert_eq!(next_version(Some("2.3.1")), "2.4.0");
    }

    #[test]
    fn convergence_follows_the_documented_rule() {
        // drop 1 - 0.5/2.0 = 0.75, gap (0.5-0.45)/0.5 = 0.1: score 0.675, excellent.
        let q = QualityMetrics::from_losses(2.0, 0.45, 0.5, 0.5);
        assert!((q.convergence_score - 0.675).abs() < 1e-12);
        assert_eq!(q.convergence_quality, Convergence::Excellent);
        assert!((q.perplexity - 0.5f64.exp()).abs() < 1e-12);
        // The same run ending 10 % above its best validation loss loses a level.
        let overfit = QualityMetrics::from_losses(2.0, 0.45, 0.5, 0.45);
        assert_eq!(overfit.convergence_quality, Convergence::Good);
        // Hardly any drop: poor.
        let flat = QualityMetrics::from_losses(1.0, 0.9, 0.95, 0.95);
        assert_eq!(flat.convergence_quality, Convergence::Poor);
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn convergence_levels_use_seed_001s_names() {
        let names: Vec<String> = [
            Convergence::Excellent,
            Convergence::Good,
            Convergence::Acceptable,
            Convergence::Poor,
        ]
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
        assert_eq!(names, vec!["excellent", "good", "acceptable", "poor"]);
        // A middling run is "acceptable".
        let q = QualityMetrics::from_losses(1.0, 0.6, 0.7, 0.7);
        assert_eq!(q.convergence_quality, Convergence::Acceptable);
    }
}
