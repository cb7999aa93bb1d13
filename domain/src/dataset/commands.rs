use super::validator::ValidationReport;
use super::DatasetFormat;
use crate::ids::{DatasetId, UserId};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub enum DatasetCommand {
    Register(RegisterDataset),
    UpdateDetails(UpdateDatasetDetails),
    Delete(DeleteDataset),
    ConfirmUpload(ConfirmUpload),
    RecordValidation(RecordValidation),
    FailValidation(FailValidation),
    PurgeObject(PurgeObject),
}

/// `POST /api/datasets/{id}/confirm`. `stored_size` is what object storage holds at
/// the dataset's key (`None`: nothing uploaded yet), read by the caller just before.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfirmUpload {
    pub actor: Actor,
    pub stored_size: Option<u64>,
    pub confirmed_at: DateTime<Utc>,
}

/// The validator's report on the stored object (from the validation worker).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordValidation {
    pub report: Box<ValidationReport>,
    pub validated_at: DateTime<Utc>,
}

/// The object could not be validated at all (it vanished from storage after the confirm).
#[derive(Debug, Clone, PartialEq)]
pub struct FailValidation {
    pub code: String,
    pub message: String,
    pub failed_at: DateTime<Utc>,
}

/// The purge worker removed the object of a deleted dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct PurgeObject {
    pub purged_at: DateTime<Utc>,
    /// How long after deletion an object is kept (`DEFAULT_PURGE_AFTER`, configurable).
    pub purge_after: std::time::Duration,
}

/// Who is acting: the owner, or an admin, may change a dataset; anyone else is told it does
/// not exist (no existence leak).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user_id: UserId,
    pub is_admin: bool,
}

/// `PATCH /api/datasets/{id}`: name and/or description.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateDatasetDetails {
    pub actor: Actor,
    pub name: Option<String>,
    pub description: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// `DELETE /api/datasets/{id}`: soft; the object is purged later.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteDataset {
    pub actor: Actor,
    /// Whether a queued or running job trains on the dataset (read by the caller).
    pub in_use: bool,
    pub deleted_at: DateTime<Utc>,
}

/// `POST /api/datasets`. Ids, clock, bucket and limit are supplied by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterDataset {
    pub dataset_id: DatasetId,
    pub user_id: UserId,
    pub name: String,
    pub description: String,
    pub format: DatasetFormat,
    pub file_size: u64,
    pub file_name: String,
    pub s3_bucket: String,
    pub upload_limit: u64,
    pub registered_at: DateTime<Utc>,
}

impl DatasetCommand {
    /// Whether the command may be decided again on the dataset's newer state when another
    /// command changed it first: every command but `Register` (a conflict there means the
    /// dataset already exists).
    pub fn is_repeatable(&self) -> bool {
        !matches!(self, DatasetCommand::Register(_))
    }
}
