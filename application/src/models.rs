//! Model command service: registration (from the training saga).

use cqrs_es::{CqrsFramework, EventStore};
use domain::ids::ModelId;
use domain::model::{Model, ModelCommand, ModelError, ModelRegistered};

use crate::{AppError, CommandContext};

pub struct ModelCommands<ES: EventStore<Model>> {
    cqrs: CqrsFramework<Model, ES>,
}

impl<ES: EventStore<Model>> ModelCommands<ES> {
    pub fn new(cqrs: CqrsFramework<Model, ES>) -> Self {
        Self { cqrs }
    }

    /// Registers the model; registering the same id again records nothing.
    pub async fn register(
        &self,
        ctx: &CommandContext,
        registered: ModelRegistered,
    ) -> Result<ModelId, AppError<ModelError>> {
        let id = registered.model_id;
        self.cqrs
            .execute_with_metadata(
                &id.to_string(),
                ModelCommand::Register(Box::new(registered)),
                ctx.metadata(),
            )
            .await?;
        Ok(id)
    }
}
