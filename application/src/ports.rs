use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A place in the global event log: the writing transaction's id, then the global position.
/// Ordered as a pair; a reader that has passed a position has seen everything before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct LogPosition {
    pub transaction_id: u64,
    pub global_position: i64,
}

impl LogPosition {
    pub const START: LogPosition = LogPosition {
        transaction_id: 0,
        global_position: 0,
    };
}

/// Where the last event of an aggregate landed in the global log.
#[async_trait]
pub trait LogPositions: Send + Sync {
    async fn last_position(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> anyhow::Result<Option<LogPosition>>;
}

/// The clock, read by services and passed into commands (never read in `domain`).
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A request the client sends itself, straight to object storage (no bytes pass through us).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    pub url: String,
    pub method: String,
    /// Headers the client must send as they are (they are part of the signature).
    pub headers: Vec<(String, String)>,
    pub expires_at: DateTime<Utc>,
}

/// Object storage (S3 protocol). Keys are relative to the configured bucket.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// A presigned PUT for exactly `content_length` bytes at `key`, valid for `valid_for`.
    async fn presign_put(
        &self,
        key: &str,
        content_length: u64,
        valid_for: std::time::Duration,
        now: DateTime<Utc>,
    ) -> anyhow::Result<PresignedRequest>;

    /// A presigned GET of `key`, valid for `valid_for` (for the GPU cluster: no credentials leave).
    async fn presign_get(
        &self,
        key: &str,
        valid_for: std::time::Duration,
        now: DateTime<Utc>,
    ) -> anyhow::Result<PresignedRequest>;

    /// The stored size of `key`, or `None` when there is no such object.
    async fn size_of(&self, key: &str) -> anyhow::Result<Option<u64>>;

    /// The object's bytes as a stream (never held whole), or `None` when there is no such object.
    async fn read(&self, key: &str) -> anyhow::Result<Option<ObjectReader>>;

    /// Stores `bytes` at `key` (small objects: model artifacts are at most tens of MB).
    async fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()>;

    /// Removes `key`; removing an object that is not there is not an error.
    async fn delete(&self, key: &str) -> anyhow::Result<()>;

    /// Streams `body` to `key` without holding it whole (multipart for large bodies). The
    /// object appears only when the body ended with exactly `expected` bytes: a body that
    /// passes `expected` stops at once (`TooLarge`), a shorter one is `SizeMismatch`, and
    /// neither leaves anything behind.
    async fn put_stream(
        &self,
        key: &str,
        body: ByteChunks<'_>,
        expected: u64,
    ) -> Result<u64, PutStreamError>;
}

/// A request body as it arrives.
pub type ByteChunks<'a> = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'a>,
>;

#[derive(Debug, thiserror::Error)]
pub enum PutStreamError {
    #[error("the body passed {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the body had {received} bytes, {expected} were declared")]
    SizeMismatch { expected: u64, received: u64 },
    /// The client's body broke off.
    #[error("the upload broke off: {0}")]
    Body(std::io::Error),
    #[error(transparent)]
    Store(anyhow::Error),
}

/// A stored object's bytes, read as they arrive.
pub type ObjectReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
