use super::DatasetFormat;
use crate::ids::{DatasetId, UserId};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub enum DatasetCommand {
    Register(RegisterDataset),
}

/// Seed 001 `POST /api/datasets`. Ids, clock, bucket and limit are supplied by the caller.
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
