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
        }
    }

    fn event_version(&self) -> String {
        match self {
            DatasetEvent::DatasetRegistered(_)
            | DatasetEvent::DatasetDetailsUpdated(_)
            | DatasetEvent::DatasetDeleted(_) => "1".to_string(),
        }
    }
}
