use std::sync::Arc;

use async_trait::async_trait;
use cqrs_es::{CqrsFramework, EventStore};
use domain::dataset::validator::ValidationReport;
use domain::dataset::{
    Actor, ConfirmUpload, Dataset, DatasetCommand, DatasetError, DatasetFormat, DeleteDataset,
    FailValidation, PurgeObject, RecordValidation, RegisterDataset, UpdateDatasetDetails,
};
use domain::ids::DatasetId;

use crate::{AppError, Clock, CommandContext, LogPosition, LogPositions};

pub struct NewDataset {
    pub name: String,
    pub description: String,
    pub format: DatasetFormat,
    pub file_size: u64,
    pub file_name: String,
}

/// The answer to a command: the aggregate it changed and where its last event landed,
/// so a client (or the API) can wait for the read models to reach it.
#[derive(Debug, Clone, Copy)]
pub struct Receipt<Id> {
    pub id: Id,
    pub position: Option<LogPosition>,
}

/// Whether a job that has not ended trains on a dataset (such a dataset is not deleted).
#[async_trait]
pub trait DatasetUsage: Send + Sync {
    async fn in_use(&self, dataset: DatasetId) -> anyhow::Result<bool>;
}

pub struct DatasetCommands<ES: EventStore<Dataset>> {
    cqrs: CqrsFramework<Dataset, ES>,
    positions: Arc<dyn LogPositions>,
    clock: Arc<dyn Clock>,
    usage: Arc<dyn DatasetUsage>,
    bucket: String,
    upload_limit: u64,
}

impl<ES: EventStore<Dataset>> DatasetCommands<ES> {
    pub fn new(
        cqrs: CqrsFramework<Dataset, ES>,
        positions: Arc<dyn LogPositions>,
        clock: Arc<dyn Clock>,
        usage: Arc<dyn DatasetUsage>,
        bucket: String,
        upload_limit: u64,
    ) -> Self {
        Self {
            cqrs,
            positions,
            clock,
            usage,
            bucket,
            upload_limit,
        }
    }

    pub async fn register(
        &self,
        ctx: &CommandContext,
        new: NewDataset,
    ) -> Result<Receipt<DatasetId>, AppError<DatasetError>> {
        let dataset_id = DatasetId::new_v7();
        let command = DatasetCommand::Register(RegisterDataset {
            dataset_id,
            user_id: ctx.user_id,
            name: new.name,
            description: new.description,
            format: new.format,
            file_size: new.file_size,
            file_name: new.file_name,
            s3_bucket: self.bucket.clone(),
            upload_limit: self.upload_limit,
            registered_at: self.clock.now(),
        });
        crate::appended::on_fresh(dataset_id, self.execute(ctx, dataset_id, command)).await
    }

    /// PATCH: name and/or description. `is_admin` lets an admin act on any dataset.
    pub async fn update_details(
        &self,
        ctx: &CommandContext,
        dataset_id: DatasetId,
        is_admin: bool,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<Receipt<DatasetId>, AppError<DatasetError>> {
        let command = DatasetCommand::UpdateDetails(UpdateDatasetDetails {
            actor: Actor {
                user_id: ctx.user_id,
                is_admin,
            },
            name,
            description,
            updated_at: self.clock.now(),
        });
        self.execute(ctx, dataset_id, command).await
    }

    /// DELETE: soft; the dataset leaves every read at once, its object is purged later.
    pub async fn delete(
        &self,
        ctx: &CommandContext,
        dataset_id: DatasetId,
        is_admin: bool,
    ) -> Result<Receipt<DatasetId>, AppError<DatasetError>> {
        let in_use = self
            .usage
            .in_use(dataset_id)
            .await
            .map_err(|e| AppError::Internal(format!("{e:#}")))?;
        let command = DatasetCommand::Delete(DeleteDataset {
            actor: Actor {
                user_id: ctx.user_id,
                is_admin,
            },
            in_use,
            deleted_at: self.clock.now(),
        });
        self.execute(ctx, dataset_id, command).await
    }

    /// Confirm: `stored_size` is what storage holds at the dataset's key right now.
    pub async fn confirm_upload(
        &self,
        ctx: &CommandContext,
        dataset_id: DatasetId,
        is_admin: bool,
        stored_size: Option<u64>,
    ) -> Result<Receipt<DatasetId>, AppError<DatasetError>> {
        let command = DatasetCommand::ConfirmUpload(ConfirmUpload {
            actor: Actor {
                user_id: ctx.user_id,
                is_admin,
            },
            stored_size,
            confirmed_at: self.clock.now(),
        });
        self.execute(ctx, dataset_id, command).await
    }

    pub async fn record_validation(
        &self,
        ctx: &CommandContext,
        dataset_id: DatasetId,
        report: ValidationReport,
    ) -> Result<Receipt<DatasetId>, AppError<DatasetError>> {
        let command = DatasetCommand::RecordValidation(RecordValidation {
            report: Box::new(report),
            validated_at: self.clock.now(),
        });
        self.execute(ctx, dataset_id, command).await
    }

    pub async fn fail_validation(
        &self,
        ctx: &CommandContext,
        dataset_id: DatasetId,
        code: &str,
        message: String,
    ) -> Result<Receipt<DatasetId>, AppError<DatasetError>> {
        let command = DatasetCommand::FailValidation(FailValidation {
            code: code.to_string(),
            message,
            failed_at: self.clock.now(),
        });
        self.execute(ctx, dataset_id, command).await
    }

    /// Records that the object of a deleted dataset is gone (the caller removed it).
    pub async fn record_purge(
        &self,
        ctx: &CommandContext,
        dataset_id: DatasetId,
        purge_after: std::time::Duration,
    ) -> Result<Receipt<DatasetId>, AppError<DatasetError>> {
        let command = DatasetCommand::PurgeObject(PurgeObject {
            purged_at: self.clock.now(),
            purge_after,
        });
        self.execute(ctx, dataset_id, command).await
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    async fn execute(
        &self,
        ctx: &CommandContext,
        dataset_id: DatasetId,
        command: DatasetCommand,
    ) -> Result<Receipt<DatasetId>, AppError<DatasetError>> {
        let repeatable = command.is_repeatable();
        crate::execute(
            &self.cqrs,
            &*self.positions,
            ctx,
            dataset_id,
            command,
            repeatable,
        )
        .await
    }
}
