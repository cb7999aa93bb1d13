//! Model command service: registration (from the training saga), the user's metadata edits,
//! soft delete, deployment through the `Deployer` port, the stored archive and billed
//! downloads.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::{AggregateContext, CqrsFramework, EventStore};
use domain::ids::{ModelId, UserId};
use domain::model::{
    DeployEnvironment, DeployRequest, DeploymentTicket, Model, ModelArtifact, ModelCommand,
    ModelError, ModelEvent, ModelRegistered, ModelStatus,
};
use rust_decimal::Decimal;

use crate::datasets::Receipt;
use crate::{AppError, Clock, CommandContext, LogPositions};

/// Where models are deployed (a simulated inference target for now).
#[async_trait]
pub trait Deployer: Send + Sync {
    /// Starts a deployment; answers its id, endpoint and when it should be ready.
    async fn deploy(
        &self,
        model: ModelId,
        environment: DeployEnvironment,
        endpoint_name: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<DeploymentTicket>;

    /// Whether the deployment is serving.
    async fn is_ready(
        &self,
        deployment_id: &str,
        estimated_ready_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool>;
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

    /// Checks the request against the model first, so the target is only asked for a
    /// deployment the model can take; then records what the target answered.
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
        let command = |ticket: DeploymentTicket| ModelCommand::RequestDeployment {
            actor: actor.user_id,
            is_admin: actor.is_admin,
            request: request.clone(),
            ticket,
            at: now,
        };
        let probe = DeploymentTicket {
            deployment_id: String::new(),
            endpoint_url: String::new(),
            estimated_ready_at: now,
        };
        // What the model would record tells the target the endpoint's name.
        let endpoint_name = match model
            .decide(command(probe))
            .map_err(AppError::Rejected)?
            .first()
        {
            Some(ModelEvent::ModelDeploymentRequested(e)) => e.endpoint_name.clone(),
            _ => return Err(AppError::Internal("the deployment was not planned".into())),
        };
        let ticket = self
            .deployer
            .deploy(id, request.environment, &endpoint_name, now)
            .await
            .map_err(|e| AppError::Internal(format!("the deployment target failed: {e:#}")))?;
        let receipt = self.execute(ctx, id, command(ticket.clone())).await?;
        Ok((receipt, ticket))
    }

    /// Asks the target about a pending deployment and records it deployed when it serves.
    pub async fn check_deployment(
        &self,
        ctx: &CommandContext,
        id: ModelId,
        deployment_id: &str,
        estimated_ready_at: DateTime<Utc>,
    ) -> Result<bool, AppError<ModelError>> {
        let now = self.clock.now();
        let ready = self
            .deployer
            .is_ready(deployment_id, estimated_ready_at, now)
            .await
            .map_err(|e| AppError::Internal(format!("the deployment target failed: {e:#}")))?;
        if ready {
            let command = ModelCommand::CompleteDeployment {
                deployment_id: deployment_id.to_string(),
                at: now,
            };
            self.execute(ctx, id, command).await?;
        }
        Ok(ready)
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
