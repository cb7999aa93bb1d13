//! The Dataset aggregate: a user's conversation file, from registration to training-ready.
//!
//! `decide` is the pure decision (state + command → events); the cqrs-es `handle` only
//! forwards its result, and `apply` folds events into state.

mod commands;
mod events;
pub mod validator;

pub use commands::{Actor, DatasetCommand, DeleteDataset, RegisterDataset, UpdateDatasetDetails};
pub use events::{DatasetDeleted, DatasetDetailsUpdated, DatasetEvent, DatasetRegistered};

use crate::ids::{DatasetId, UserId};
use crate::validation::{text_length, FieldError};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

/// Seed 002: "fileSize: Must be > 0, max 10GB (10737418240 bytes)". The limit is
/// configurable (DOMAIN.md); this is its default.
pub const DEFAULT_UPLOAD_LIMIT_BYTES: u64 = 10 * 1024 * 1024 * 1024;
pub const MAX_NAME_LENGTH: usize = 200;
pub const MAX_DESCRIPTION_LENGTH: usize = 2000;
pub const MAX_FILE_NAME_LENGTH: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatasetFormat {
    #[serde(rename = "brightrun-lora-v4")]
    BrightrunLoraV4,
    #[serde(rename = "brightrun-lora-v3")]
    BrightrunLoraV3,
}

impl DatasetFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetFormat::BrightrunLoraV4 => "brightrun-lora-v4",
            DatasetFormat::BrightrunLoraV3 => "brightrun-lora-v3",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetStatus {
    /// Not registered yet (the state of an empty aggregate).
    #[default]
    New,
    Uploading,
    Validating,
    Ready,
    Error,
}

impl DatasetStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetStatus::New => "new",
            DatasetStatus::Uploading => "uploading",
            DatasetStatus::Validating => "validating",
            DatasetStatus::Ready => "ready",
            DatasetStatus::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("dataset {0} is already registered")]
    AlreadyRegistered(DatasetId),
    /// Never registered, deleted, or not the actor's.
    #[error("dataset not found")]
    NotFound,
}

/// The storage key of a dataset's object (seed 001).
pub fn object_key(user: UserId, dataset: DatasetId) -> String {
    format!("datasets/{user}/{dataset}/dataset.jsonl")
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    id: Option<DatasetId>,
    owner: Option<UserId>,
    status: DatasetStatus,
    name: String,
    description: String,
    deleted: bool,
}

impl Dataset {
    pub fn status(&self) -> DatasetStatus {
        self.status
    }

    pub fn owner(&self) -> Option<UserId> {
        self.owner
    }

    /// The decision: which events a command produces from this state, or why it is refused.
    pub fn decide(&self, command: DatasetCommand) -> Result<Vec<DatasetEvent>, DatasetError> {
        match command {
            DatasetCommand::Register(cmd) => self.register(cmd),
            DatasetCommand::UpdateDetails(cmd) => self.update_details(cmd),
            DatasetCommand::Delete(cmd) => self.delete(cmd),
        }
    }

    /// The dataset's id when `actor` may see and change it.
    fn visible_to(&self, actor: Actor) -> Result<DatasetId, DatasetError> {
        match (self.id, self.owner) {
            (Some(id), Some(owner))
                if !self.deleted && (owner == actor.user_id || actor.is_admin) =>
            {
                Ok(id)
            }
            _ => Err(DatasetError::NotFound),
        }
    }

    fn update_details(&self, cmd: UpdateDatasetDetails) -> Result<Vec<DatasetEvent>, DatasetError> {
        let dataset_id = self.visible_to(cmd.actor)?;
        if cmd.name.is_none() && cmd.description.is_none() {
            return Err(FieldError::new("name", "send name and/or description to change").into());
        }
        if let Some(name) = &cmd.name {
            text_length("name", name, 1, MAX_NAME_LENGTH)?;
        }
        if let Some(description) = &cmd.description {
            text_length("description", description, 0, MAX_DESCRIPTION_LENGTH)?;
        }
        let name = cmd
            .name
            .map(|n| n.trim().to_string())
            .filter(|n| *n != self.name);
        let description = cmd
            .description
            .map(|d| d.trim().to_string())
            .filter(|d| *d != self.description);
        if name.is_none() && description.is_none() {
            return Ok(vec![]);
        }
        Ok(vec![DatasetEvent::DatasetDetailsUpdated(
            DatasetDetailsUpdated {
                dataset_id,
                name,
                description,
                updated_by: cmd.actor.user_id,
                updated_at: cmd.updated_at,
            },
        )])
    }

    fn delete(&self, cmd: DeleteDataset) -> Result<Vec<DatasetEvent>, DatasetError> {
        let dataset_id = self.visible_to(cmd.actor)?;
        Ok(vec![DatasetEvent::DatasetDeleted(DatasetDeleted {
            dataset_id,
            deleted_by: cmd.actor.user_id,
            deleted_at: cmd.deleted_at,
        })])
    }

    fn register(&self, cmd: RegisterDataset) -> Result<Vec<DatasetEvent>, DatasetError> {
        if let Some(id) = self.id {
            return Err(DatasetError::AlreadyRegistered(id));
        }
        text_length("name", &cmd.name, 1, MAX_NAME_LENGTH)?;
        text_length("description", &cmd.description, 0, MAX_DESCRIPTION_LENGTH)?;
        text_length("fileName", &cmd.file_name, 1, MAX_FILE_NAME_LENGTH)?;
        if cmd.file_name.contains(['/', '\\']) {
            return Err(FieldError::new("fileName", "fileName must not contain a path").into());
        }
        if cmd.file_size == 0 {
            return Err(FieldError::new("fileSize", "fileSize must be greater than 0").into());
        }
        if cmd.file_size > cmd.upload_limit {
            return Err(FieldError::new(
                "fileSize",
                format!(
                    "fileSize must be at most {} bytes (the upload limit)",
                    cmd.upload_limit
                ),
            )
            .into());
        }
        Ok(vec![DatasetEvent::DatasetRegistered(DatasetRegistered {
            dataset_id: cmd.dataset_id,
            user_id: cmd.user_id,
            name: cmd.name.trim().to_string(),
            description: cmd.description.trim().to_string(),
            format: cmd.format,
            file_size: cmd.file_size,
            file_name: cmd.file_name.trim().to_string(),
            s3_bucket: cmd.s3_bucket,
            s3_key: object_key(cmd.user_id, cmd.dataset_id),
            registered_at: cmd.registered_at,
        })])
    }
}

impl Aggregate for Dataset {
    const TYPE: &'static str = "dataset";
    type Command = DatasetCommand;
    type Event = DatasetEvent;
    type Error = DatasetError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            DatasetEvent::DatasetRegistered(e) => {
                self.id = Some(e.dataset_id);
                self.owner = Some(e.user_id);
                self.status = DatasetStatus::Uploading;
                self.name = e.name;
                self.description = e.description;
            }
            DatasetEvent::DatasetDetailsUpdated(e) => {
                if let Some(name) = e.name {
                    self.name = name;
                }
                if let Some(description) = e.description {
                    self.description = description;
                }
            }
            DatasetEvent::DatasetDeleted(_) => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests;
