//! The Dataset aggregate: a user's conversation file, from registration to training-ready.
//!
//! `decide` is the pure decision (state + command → events); the cqrs-es `handle` only
//! forwards its result, and `apply` folds events into state.

mod commands;
mod events;
pub mod validator;

pub use commands::{DatasetCommand, RegisterDataset};
pub use events::{DatasetEvent, DatasetRegistered};

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
        }
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
            }
        }
    }
}

#[cfg(test)]
mod tests;
