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
        }
    }

    fn event_version(&self) -> String {
        match self {
            DatasetEvent::DatasetRegistered(_) => "1".to_string(),
        }
    }
}
