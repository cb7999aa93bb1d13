//! Model command service: registration (from the training saga), the user's metadata edits,
//! soft delete, deployment through the `Deployer` port, the stored archive and billed
//! downloads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use cqrs_es::{AggregateContext, CqrsFramework, EventStore};
use domain::ids::{ModelId, UserId};
use domain::model::{
    DeployRequest, Deployment, DeploymentTicket, Model, ModelArtifact, ModelCommand, ModelError,
    ModelRegistered, ModelStatus,
};
use rust_decimal::Decimal;

use crate::datasets::Receipt;
use crate::{AppError, Clock, CommandContext, LogPositions};

/// How an engine is doing with a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineHealth {
    /// Fetching the adapter, converting it, loading it: not answering yet.
    Starting,
    Serving,
    /// It cannot serve this deployment (the reason is recorded as the deployment's).
    Failed(String),
}

/// Where a deployment's chat completions go: an OpenAI-compatible base URL and the model
/// name the engine answers to. Held until the answer has ended: its lease counts the
/// request as the engine's load.
#[derive(Debug)]
pub struct Route {
    pub base_url: String,
    pub model: String,
    pub lease: Lease,
}

/// A request counted in its engine's load while held (what scaling reads); none where the
/// engine's load is not counted here (it runs in another process).
#[derive(Debug, Default)]
pub struct Lease(Option<Arc<AtomicUsize>>);

impl Lease {
    /// Counts one more request on `load` until dropped.
    pub fn on(load: &Arc<AtomicUsize>) -> Lease {
        load.fetch_add(1, Ordering::Relaxed);
        Lease(Some(load.clone()))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(load) = &self.0 {
            load.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Which engine of a deployment answers: the fine-tuned model (one of its replicas), or
/// the base model it was trained from, served beside it for side-by-side answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Adapter,
    Base,
}

/// Where models are served: inference engines, started from the model's own artifacts.
#[async_trait]
pub trait Deployer: Send + Sync {
    /// Whether this target can serve the deployment at all (an engine for its base model).
    /// Answers why not, and what to change.
    fn check(&self, deployment: &Deployment) -> Result<(), String>;

    /// Where callers reach a deployment of this target (BrightRun's own `/v1`).
    fn endpoint_url(&self) -> String;

    /// How long an engine usually takes to serve.
    fn expected_start(&self) -> std::time::Duration;

    /// How the deployment's engine is. One this process does not run yet (just requested,
    /// or recorded before a restart) is started in the background, and answers `Starting`.
    async fn health(&self, deployment: &Deployment) -> anyhow::Result<EngineHealth>;

    /// Stops the deployment's engine and removes its files; stopping one that does not run
    /// is not an error.
    async fn stop(&self, deployment_id: &str) -> anyhow::Result<()>;

    /// The deployments whose engines this target runs, or left behind by an earlier
    /// process: (model, deployment).
    async fn running(&self) -> anyhow::Result<Vec<(ModelId, String)>>;

    /// Where the deployment's chat completions for `target` go, when an engine of it
    /// serves (replicas in turn).
    async fn route(&self, deployment_id: &str, target: Target) -> Option<Route>;
}

/// Who acts on a model.
#[derive(Debug, Clone, Copy)]
pub struct ModelActor {
    pub user_id: UserId,
    pub is_admin: bool,
}

pub struct ModelCommands<ES: EventStore<Model>> {
    cqrs: CqrsFramework<Model, ES>,
    store: ES,
    positions: Arc<dyn LogPositions>,
    clock: Arc<dyn Clock>,
    deployer: Arc<dyn Deployer>,
}

impl<ES: EventStore<Model>> ModelCommands<ES> {
    pub fn new(
        cqrs: CqrsFramework<Model, ES>,
        store: ES,
        positions: Arc<dyn LogPositions>,
        clock: Arc<dyn Clock>,
        deployer: Arc<dyn Deployer>,
    ) -> Self {
        Self {
            cqrs,
            store,
            positions,
            clock,
            deployer,
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Registers the model; registering the same id again records nothing.
    pub async fn register(
        &self,
        ctx: &CommandContext,
        registered: ModelRegistered,
    ) -> Result<ModelId, AppError<ModelError>> {
        let id = registered.model_id;
        self.execute(ctx, id, ModelCommand::Register(Box::new(registered)))
            .await?;
        Ok(id)
    }

    /// The model as its events fold (`None` when it was never registered).
    pub async fn load(&self, id: ModelId) -> Result<Option<Model>, AppError<ModelError>> {
        let mut context = self.store.load_aggregate(&id.to_string()).await?;
        let model = context.aggregate().clone();
        Ok(model.owner().is_some().then_some(model))
    }

    pub async fn update_metadata(
        &self,
        ctx: &CommandContext,
        id: ModelId,
        actor: ModelActor,
        name: Option<String>,
        description: Option<String>,
        status: Option<ModelStatus>,
    ) -> Result<Receipt<ModelId>, AppError<ModelError>> {
        let command = ModelCommand::UpdateMetadata {
            actor: actor.user_id,
            is_admin: actor.is_admin,
            name,
            description,
            status,
            at: self.clock.now(),
        };
        self.execute(ctx, id, command).await
    }

    pub async fn delete(
        &self,
        ctx: &CommandContext,
        id: ModelId,
        actor: ModelActor,
    ) -> Result<Receipt<ModelId>, AppError<ModelError>> {
        let command = ModelCommand::Delete {
            actor: actor.user_id,
            is_admin: actor.is_admin,
            at: self.clock.now(),
        };
        self.execute(ctx, id, command).await
    }

    /// Checks the request against the model and the target first, so nothing is recorded
    /// for a deployment that cannot serve; records it, then has the target start its engine.
    pub async fn deploy(
        &self,
        ctx: &CommandContext,
        id: ModelId,
        actor: ModelActor,
        request: DeployRequest,
    ) -> Result<(Receipt<ModelId>, DeploymentTicket), AppError<ModelError>> {
        let now = self.clock.now();
        let model = self
            .load(id)
            .await?
            .ok_or(AppError::Rejected(ModelError::NotFound))?;
        let ticket = DeploymentTicket {
            deployment_id: format!("dep_{}", uuid::Uuid::now_v7().simple()),
            endpoint_url: self.deployer.endpoint_url(),
            estimated_ready_at: now
                + chrono::Duration::from_std(self.deployer.expected_start()).unwrap_or_default(),
        };
        let command = ModelCommand::RequestDeployment {
            actor: actor.user_id,
            is_admin: actor.is_admin,
            request,
            ticket: ticket.clone(),
            at: now,
        };
        // What the model would record, checked against the target before it is recorded.
        let mut planned = model.clone();
        for event in model.decide(command.clone()).map_err(AppError::Rejected)? {
            cqrs_es::Aggregate::apply(&mut planned, event);
        }
        let deployment = planned
            .deployment()
            .ok_or_else(|| AppError::Internal("the deployment was not planned".into()))?;
        self.deployer
            .check(&deployment)
            .map_err(|reason| AppError::Rejected(ModelError::NotServable(reason)))?;
        let receipt = self.execute(ctx, id, command).await?;
        // Start the engine now; should this fail, the deployment watcher starts it.
        if let Err(err) = self.deployer.health(&deployment).await {
            tracing::warn!(error = %format!("{err:#}"), deployment = %deployment.deployment_id,
                "the engine did not start yet; the deployment watcher retries");
        }
        Ok((receipt, ticket))
    }

    /// Asks the target how the model's deployment is, and records it serving or failed.
    /// Answers the model's deployment state after the check (`None`: nothing deployed).
    pub async fn check_deployment(
        &self,
        ctx: &CommandContext,
        id: ModelId,
    ) -> Result<Option<EngineHealth>, AppError<ModelError>> {
        let Some(deployment) = self.load(id).await?.and_then(|m| m.deployment()) else {
            return Ok(None);
        };
        let health = self
            .deployer
            .health(&deployment)
            .await
            .map_err(|e| AppError::Internal(format!("the deployment target failed: {e:#}")))?;
        let now = self.clock.now();
        let command = match &health {
            EngineHealth::Serving if !deployment.serving => ModelCommand::CompleteDeployment {
                deployment_id: deployment.deployment_id.clone(),
                at: now,
            },
            EngineHealth::Failed(reason) => ModelCommand::FailDeployment {
                deployment_id: deployment.deployment_id.clone(),
                reason: reason.clone(),
                at: now,
            },
            _ => return Ok(Some(health)),
        };
        self.execute(ctx, id, command).await?;
        if matches!(health, EngineHealth::Failed(_)) {
            self.stop_engine(&deployment.deployment_id).await;
        }
        Ok(Some(health))
    }

    /// Stops the engines of deployments that are no longer their model's (undeployed,
    /// failed, or left by a process that stopped before it could stop them). Answers how
    /// many it stopped.
    pub async fn sweep_engines(&self) -> Result<usize, AppError<ModelError>> {
        let running = self
            .deployer
            .running()
            .await
            .map_err(|e| AppError::Internal(format!("the deployment target failed: {e:#}")))?;
        let mut stopped = 0;
        for (model_id, deployment_id) in running {
            let current = self.load(model_id).await?.and_then(|m| m.deployment());
            if current.is_none_or(|d| d.deployment_id != deployment_id) {
                self.stop_engine(&deployment_id).await;
                stopped += 1;
            }
        }
        Ok(stopped)
    }

    /// Stops the model's deployment: recorded first, then its engine is stopped (the
    /// watcher's sweep stops it should this process stop in between). Answers the id of the
    /// deployment stopped.
    pub async fn undeploy(
        &self,
        ctx: &CommandContext,
        id: ModelId,
        actor: ModelActor,
    ) -> Result<(Receipt<ModelId>, String), AppError<ModelError>> {
        let deployment = self.load(id).await?.and_then(|m| m.deployment());
        let command = ModelCommand::Undeploy {
            actor: actor.user_id,
            is_admin: actor.is_admin,
            at: self.clock.now(),
        };
        let receipt = self.execute(ctx, id, command).await?;
        // Recorded, so there was a deployment to stop.
        let deployment_id = deployment.map(|d| d.deployment_id).unwrap_or_default();
        self.stop_engine(&deployment_id).await;
        Ok((receipt, deployment_id))
    }

    /// Where the caller's chat completions for the model go: an engine of its serving
    /// deployment (for `Target::Base`, the one of its base model). Refused for anyone but
    /// the owner, and while nothing serves.
    pub async fn chat_route(
        &self,
        id: ModelId,
        actor: UserId,
        target: Target,
    ) -> Result<(Deployment, Route), AppError<ModelError>> {
        let model = self
            .load(id)
            .await?
            .ok_or(AppError::Rejected(ModelError::NotFound))?;
        let deployment = model
            .serving_deployment(actor)
            .map_err(AppError::Rejected)?;
        let route = self
            .deployer
            .route(&deployment.deployment_id, target)
            .await
            .ok_or(AppError::Rejected(ModelError::NotServing))?;
        Ok((deployment, route))
    }

    /// Bills a chat completion's tokens to the model's owner.
    pub async fn bill_usage(
        &self,
        ctx: &CommandContext,
        id: ModelId,
        actor: UserId,
        deployment_id: &str,
        (prompt_tokens, completion_tokens): (u64, u64),
        rate: Decimal,
    ) -> Result<Receipt<ModelId>, AppError<ModelError>> {
        let command = ModelCommand::BillUsage {
            actor,
            deployment_id: deployment_id.to_string(),
            entry_key: format!("usage:{}", uuid::Uuid::now_v7()),
            prompt_tokens,
            completion_tokens,
            rate,
            at: self.clock.now(),
        };
        self.execute(ctx, id, command).await
    }

    async fn stop_engine(&self, deployment_id: &str) {
        if let Err(err) = self.deployer.stop(deployment_id).await {
            tracing::warn!(error = %format!("{err:#}"), deployment = %deployment_id,
                "the engine did not stop; the deployment watcher's sweep retries");
        }
    }

    pub async fn record_archive(
        &self,
        ctx: &CommandContext,
        id: ModelId,
        archive: ModelArtifact,
    ) -> Result<Receipt<ModelId>, AppError<ModelError>> {
        let command = ModelCommand::RecordArchive {
            archive,
            at: self.clock.now(),
        };
        self.execute(ctx, id, command).await
    }

    /// Records the data transfer of a download URL just issued for `file_name`.
    #[allow(clippy::too_many_arguments)]
    pub async fn bill_download(
        &self,
        ctx: &CommandContext,
        id: ModelId,
        actor: ModelActor,
        file_name: &str,
        bytes: u64,
        rate: Decimal,
    ) -> Result<Receipt<ModelId>, AppError<ModelError>> {
        let command = ModelCommand::BillDownload {
            actor: actor.user_id,
            is_admin: actor.is_admin,
            entry_key: format!("download:{}", uuid::Uuid::now_v7()),
            file_name: file_name.to_string(),
            bytes,
            rate,
            at: self.clock.now(),
        };
        self.execute(ctx, id, command).await
    }

    async fn execute(
        &self,
        ctx: &CommandContext,
        id: ModelId,
        command: ModelCommand,
    ) -> Result<Receipt<ModelId>, AppError<ModelError>> {
        let repeatable = command.is_repeatable();
        crate::execute(&self.cqrs, &*self.positions, ctx, id, command, repeatable).await
    }
}
