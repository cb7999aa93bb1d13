use super::validator::{FullStatistics, Issue, SampleConversation, Statistics};
use super::DatasetFormat;
use crate::ids::{DatasetId, UserId};
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// Dataset events. Stored externally tagged (`{"DatasetRegistered": {...}}`); every type
/// carries a version, and older payloads are upcast in `crate::upcast`, never rewritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DatasetEvent {
    DatasetRegistered(DatasetRegistered),
    DatasetDetailsUpdated(DatasetDetailsUpdated),
    DatasetDeleted(DatasetDeleted),
    DatasetUploadConfirmed(DatasetUploadConfirmed),
    DatasetReady(DatasetReady),
    DatasetValidationFailed(DatasetValidationFailed),
    DatasetObjectPurged(DatasetObjectPurged),
}

/// The object is in storage with the declared size; validation starts (status `validating`).
/// Carries what the validation worker needs, so it reads nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetUploadConfirmed {
    pub dataset_id: DatasetId,
    pub user_id: UserId,
    pub format: DatasetFormat,
    pub s3_bucket: String,
    pub s3_key: String,
    pub file_size: u64,
    pub confirmed_at: DateTime<Utc>,
}

/// Validation found no errors (status `ready`). Also the source of the `dataset_ready`
/// notification: it names the owner and the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetReady {
    pub dataset_id: DatasetId,
    pub user_id: UserId,
    pub name: String,
    pub training_ready: bool,
    pub statistics: Statistics,
    pub full_statistics: FullStatistics,
    pub warnings: Vec<Issue>,
    pub warning_count: u64,
    pub sample_conversations: Vec<SampleConversation>,
    pub validated_at: DateTime<Utc>,
}

/// Validation found errors, or could not read the file (status `error`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetValidationFailed {
    pub dataset_id: DatasetId,
    pub user_id: UserId,
    pub name: String,
    /// One line for `errorMessage`.
    pub message: String,
    pub errors: Vec<Issue>,
    pub error_count: u64,
    pub warnings: Vec<Issue>,
    pub warning_count: u64,
    /// What could be counted before or despite the errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Statistics>,
    pub failed_at: DateTime<Utc>,
}

/// The object of a deleted dataset is gone from storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetObjectPurged {
    pub dataset_id: DatasetId,
    pub s3_bucket: String,
    pub s3_key: String,
    pub purged_at: DateTime<Utc>,
}

/// Only the fields that changed are present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetDetailsUpdated {
    pub dataset_id: DatasetId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub updated_by: UserId,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetDeleted {
    pub dataset_id: DatasetId,
    pub deleted_by: UserId,
    pub deleted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetRegistered {
    pub dataset_id: DatasetId,
    pub user_id: UserId,
    pub name: String,
    pub description: String,
    pub format: DatasetFormat,
    pub file_size: u64,
    pub file_name: String,
    pub s3_bucket: String,
    pub s3_key: String,
    pub registered_at: DateTime<Utc>,
}

impl DomainEvent for DatasetEvent {
    fn event_type(&self) -> String {
        match self {
            DatasetEvent::DatasetRegistered(_) => "DatasetRegistered".to_string(),
            DatasetEvent::DatasetDetailsUpdated(_) => "DatasetDetailsUpdated".to_string(),
            DatasetEvent::DatasetDeleted(_) => "DatasetDeleted".to_string(),
            DatasetEvent::DatasetUploadConfirmed(_) => "DatasetUploadConfirmed".to_string(),
            DatasetEvent::DatasetReady(_) => "DatasetReady".to_string(),
            DatasetEvent::DatasetValidationFailed(_) => "DatasetValidationFailed".to_string(),
            DatasetEvent::DatasetObjectPurged(_) => "DatasetObjectPurged".to_string(),
        }
    }

    fn event_version(&self) -> String {
        match self {
            DatasetEvent::DatasetRegistered(_)
            | DatasetEvent::DatasetDetailsUpdated(_)
            | DatasetEvent::DatasetDeleted(_)
            | DatasetEvent::DatasetUploadConfirmed(_)
            | DatasetEvent::DatasetReady(_)
            | DatasetEvent::DatasetValidationFailed(_)
            | DatasetEvent::DatasetObjectPurged(_) => "1".to_string(),
        }
    }
}
