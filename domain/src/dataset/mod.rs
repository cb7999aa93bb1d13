//! The Dataset aggregate: a user's conversation file, from registration to training-ready.
//!
//! `decide` is the pure decision (state + command → events); the cqrs-es `handle` only
//! forwards its result, and `apply` folds events into state.

mod commands;
mod events;
pub mod validator;

pub use commands::{
    Actor, ConfirmUpload, DatasetCommand, DeleteDataset, FailValidation, PurgeObject,
    RecordValidation, RegisterDataset, UpdateDatasetDetails,
};
pub use events::{
    DatasetDeleted, DatasetDetailsUpdated, DatasetEvent, DatasetObjectPurged, DatasetReady,
    DatasetRegistered, DatasetUploadConfirmed, DatasetValidationFailed,
};

use crate::ids::{DatasetId, UserId};
use crate::validation::{text_length, FieldError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A file is at most 10 GiB (10737418240 bytes) by default. The limit is
/// configurable; this is its default.
pub const DEFAULT_UPLOAD_LIMIT_BYTES: u64 = 10 * 1024 * 1024 * 1024;
pub const MAX_NAME_LENGTH: usize = 200;
pub const MAX_DESCRIPTION_LENGTH: usize = 2000;
pub const MAX_FILE_NAME_LENGTH: usize = 255;
/// objects of deleted datasets are purged after 30 days (configurable).
pub const DEFAULT_PURGE_AFTER: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// When the object of a dataset deleted at `deleted_at` may be purged.
pub fn purge_due_at(deleted_at: DateTime<Utc>, purge_after: std::time::Duration) -> DateTime<Utc> {
    deleted_at + chrono::Duration::from_std(purge_after).unwrap_or(chrono::Duration::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatasetFormat {
    #[serde(rename = "brightrun-lora-v4")]
    BrightrunLoraV4,
    #[serde(rename = "brightrun-lora-v3")]
    BrightrunLoraV3,
    #[serde(rename = "openai-chat")]
    OpenaiChat,
    #[serde(rename = "sharegpt")]
    Sharegpt,
    #[serde(rename = "alpaca")]
    Alpaca,
}

impl DatasetFormat {
    pub const ALL: [DatasetFormat; 5] = [
        DatasetFormat::BrightrunLoraV4,
        DatasetFormat::BrightrunLoraV3,
        DatasetFormat::OpenaiChat,
        DatasetFormat::Sharegpt,
        DatasetFormat::Alpaca,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DatasetFormat::BrightrunLoraV4 => "brightrun-lora-v4",
            DatasetFormat::BrightrunLoraV3 => "brightrun-lora-v3",
            DatasetFormat::OpenaiChat => "openai-chat",
            DatasetFormat::Sharegpt => "sharegpt",
            DatasetFormat::Alpaca => "alpaca",
        }
    }

    /// The format named as `as_str` names it (a read model's column).
    pub fn parse(name: &str) -> Option<DatasetFormat> {
        DatasetFormat::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// The format a file is in, recognised by the fields of its first non-blank line
    /// (`None`: not JSON, or no format's fields). The validator then reads every line in it.
    pub fn detect(file: &[u8]) -> Option<DatasetFormat> {
        let line = file
            .split(|b| *b == b'\n')
            .find(|l| l.iter().any(|b| !b.is_ascii_whitespace()))?;
        let value: serde_json::Value = serde_json::from_slice(line).ok()?;
        let object = value.as_object()?;
        let has = |key: &str| object.contains_key(key);
        if has("messages") {
            Some(DatasetFormat::OpenaiChat)
        } else if has("conversations") {
            Some(DatasetFormat::Sharegpt)
        } else if has("instruction") {
            Some(DatasetFormat::Alpaca)
        } else if has("conversation_id") {
            Some(DatasetFormat::BrightrunLoraV4)
        } else if has("turns") {
            Some(DatasetFormat::BrightrunLoraV3)
        } else {
            None
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

    /// The status named as `as_str` names it (a read model's column); unknown names are `New`.
    pub fn parse(name: &str) -> DatasetStatus {
        match name {
            "uploading" => DatasetStatus::Uploading,
            "validating" => DatasetStatus::Validating,
            "ready" => DatasetStatus::Ready,
            "error" => DatasetStatus::Error,
            _ => DatasetStatus::New,
        }
    }

    /// Only a dataset still waiting for its file takes one.
    pub fn accepts_file(self) -> bool {
        self == DatasetStatus::Uploading
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
    #[error(
        "no file has been uploaded for this dataset yet: PUT it to the uploadUrl, then confirm"
    )]
    UploadMissing,
    #[error("the uploaded file has {stored} bytes but the dataset declared fileSize {declared}: upload the whole file again, then confirm")]
    SizeMismatch { declared: u64, stored: u64 },
    #[error("a queued or running job trains on this dataset; cancel it or wait for it to end")]
    InUse,
    #[error("the object may be purged only from {due_at}")]
    PurgeNotDue { due_at: DateTime<Utc> },
}

/// The storage key of a dataset's object.
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
    format: Option<DatasetFormat>,
    file_size: u64,
    s3_bucket: String,
    s3_key: String,
    deleted_at: Option<DateTime<Utc>>,
    purged: bool,
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
            DatasetCommand::ConfirmUpload(cmd) => self.confirm_upload(cmd),
            DatasetCommand::RecordValidation(cmd) => self.record_validation(cmd),
            DatasetCommand::FailValidation(cmd) => self.fail_validation(cmd),
            DatasetCommand::PurgeObject(cmd) => self.purge_object(cmd),
        }
    }

    /// The upload is complete when storage holds exactly the declared size. Confirming again
    /// (a client retry) records nothing: validation already started.
    fn confirm_upload(&self, cmd: ConfirmUpload) -> Result<Vec<DatasetEvent>, DatasetError> {
        let dataset_id = self.visible_to(cmd.actor)?;
        if self.status != DatasetStatus::Uploading {
            return Ok(vec![]);
        }
        match cmd.stored_size {
            None => return Err(DatasetError::UploadMissing),
            Some(stored) if stored != self.file_size => {
                return Err(DatasetError::SizeMismatch {
                    declared: self.file_size,
                    stored,
                })
            }
            Some(_) => {}
        }
        let (Some(owner), Some(format)) = (self.owner, self.format) else {
            return Err(DatasetError::NotFound);
        };
        Ok(vec![DatasetEvent::DatasetUploadConfirmed(
            DatasetUploadConfirmed {
                dataset_id,
                user_id: owner,
                format,
                s3_bucket: self.s3_bucket.clone(),
                s3_key: self.s3_key.clone(),
                file_size: self.file_size,
                confirmed_at: cmd.confirmed_at,
            },
        )])
    }

    /// The dataset a validation result is for, while one is awaited. `None`: nothing to record
    /// (a redelivered result, or the dataset was deleted meanwhile).
    fn awaiting_validation(&self) -> Result<Option<(DatasetId, UserId)>, DatasetError> {
        let (Some(id), Some(owner)) = (self.id, self.owner) else {
            return Err(DatasetError::NotFound);
        };
        let awaiting = self.status == DatasetStatus::Validating && self.deleted_at.is_none();
        Ok(awaiting.then_some((id, owner)))
    }

    /// No errors: `ready` (training-ready or not); any error: `error`.
    fn record_validation(&self, cmd: RecordValidation) -> Result<Vec<DatasetEvent>, DatasetError> {
        let Some((dataset_id, user_id)) = self.awaiting_validation()? else {
            return Ok(vec![]);
        };
        let report = *cmd.report;
        if report.error_count == 0 {
            return Ok(vec![DatasetEvent::DatasetReady(DatasetReady {
                dataset_id,
                user_id,
                name: self.name.clone(),
                training_ready: report.training_ready,
                statistics: report.statistics,
                full_statistics: report.full_statistics,
                warnings: report.warnings,
                warning_count: report.warning_count,
                sample_conversations: report.sample_conversations,
                validated_at: cmd.validated_at,
            })]);
        }
        Ok(vec![DatasetEvent::DatasetValidationFailed(
            DatasetValidationFailed {
                dataset_id,
                user_id,
                name: self.name.clone(),
                message: error_summary(&report.errors, report.error_count),
                errors: report.errors,
                error_count: report.error_count,
                warnings: report.warnings,
                warning_count: report.warning_count,
                statistics: Some(report.statistics),
                failed_at: cmd.validated_at,
            },
        )])
    }

    fn fail_validation(&self, cmd: FailValidation) -> Result<Vec<DatasetEvent>, DatasetError> {
        let Some((dataset_id, user_id)) = self.awaiting_validation()? else {
            return Ok(vec![]);
        };
        let issue = validator::Issue {
            line: 0,
            field: None,
            code: cmd.code,
            message: cmd.message.clone(),
        };
        Ok(vec![DatasetEvent::DatasetValidationFailed(
            DatasetValidationFailed {
                dataset_id,
                user_id,
                name: self.name.clone(),
                message: cmd.message,
                errors: vec![issue],
                error_count: 1,
                warnings: vec![],
                warning_count: 0,
                statistics: None,
                failed_at: cmd.failed_at,
            },
        )])
    }

    /// Only a deleted dataset's object is purged, once, and not before it is due.
    fn purge_object(&self, cmd: PurgeObject) -> Result<Vec<DatasetEvent>, DatasetError> {
        let Some(id) = self.id else {
            return Err(DatasetError::NotFound);
        };
        let Some(deleted_at) = self.deleted_at else {
            return Ok(vec![]);
        };
        if self.purged {
            return Ok(vec![]);
        }
        let due_at = purge_due_at(deleted_at, cmd.purge_after);
        if cmd.purged_at < due_at {
            return Err(DatasetError::PurgeNotDue { due_at });
        }
        Ok(vec![DatasetEvent::DatasetObjectPurged(
            DatasetObjectPurged {
                dataset_id: id,
                s3_bucket: self.s3_bucket.clone(),
                s3_key: self.s3_key.clone(),
                purged_at: cmd.purged_at,
            },
        )])
    }

    /// The dataset's id when `actor` may see and change it.
    fn visible_to(&self, actor: Actor) -> Result<DatasetId, DatasetError> {
        match (self.id, self.owner) {
            (Some(id), Some(owner))
                if self.deleted_at.is_none() && (owner == actor.user_id || actor.is_admin) =>
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
        if cmd.in_use {
            return Err(DatasetError::InUse);
        }
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
        crate::validation::one_line("fileName", &cmd.file_name)?;
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

/// `errorMessage`: how many errors, and the first one.
pub fn error_summary(errors: &[validator::Issue], error_count: u64) -> String {
    let Some(first) = errors.first() else {
        return "validation failed".to_string();
    };
    let place = match (first.line, &first.field) {
        (0, None) => String::new(),
        (0, Some(field)) => format!("{field}: "),
        (line, None) => format!("line {line}: "),
        (line, Some(field)) => format!("line {line}, {field}: "),
    };
    let noun = if error_count == 1 { "error" } else { "errors" };
    format!(
        "{error_count} {noun}; first: {place}{} ({})",
        first.message, first.code
    )
}

decided_aggregate!(
    Dataset,
    "dataset",
    DatasetCommand,
    DatasetEvent,
    DatasetError,
    fn apply(&mut self, event: DatasetEvent) {
        match event {
            DatasetEvent::DatasetRegistered(e) => {
                self.id = Some(e.dataset_id);
                self.owner = Some(e.user_id);
                self.status = DatasetStatus::Uploading;
                self.name = e.name;
                self.description = e.description;
                self.format = Some(e.format);
                self.file_size = e.file_size;
                self.s3_bucket = e.s3_bucket;
                self.s3_key = e.s3_key;
            }
            DatasetEvent::DatasetDetailsUpdated(e) => {
                if let Some(name) = e.name {
                    self.name = name;
                }
                if let Some(description) = e.description {
                    self.description = description;
                }
            }
            DatasetEvent::DatasetDeleted(e) => self.deleted_at = Some(e.deleted_at),
            DatasetEvent::DatasetUploadConfirmed(_) => self.status = DatasetStatus::Validating,
            DatasetEvent::DatasetReady(_) => self.status = DatasetStatus::Ready,
            DatasetEvent::DatasetValidationFailed(_) => self.status = DatasetStatus::Error,
            DatasetEvent::DatasetObjectPurged(_) => self.purged = true,
        }
    }
);

#[cfg(test)]
mod tests;
