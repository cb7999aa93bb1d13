//! Validating an uploaded dataset: the object is streamed from storage into the domain's
//! validator on a blocking thread (tokenizing is CPU work), through a small bounded channel,
//! so memory stays bounded whatever the file size. The result becomes a Dataset command.

use std::sync::Arc;

use cqrs_es::EventStore;
use domain::dataset::validator::{Tokenizer, ValidationReport, Validator, ValidatorOptions};
use domain::dataset::{Dataset, DatasetError, DatasetFormat, DatasetUploadConfirmed};
use tokio::io::AsyncReadExt;

use crate::datasets::DatasetCommands;
use crate::{AppError, CommandContext, ObjectStore};

/// Bytes read from storage per chunk handed to the validator.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks in flight between the reader and the validator (memory: `CHUNK_BYTES` × this).
const CHUNKS_IN_FLIGHT: usize = 4;

/// A tokenizer the validation thread can own.
pub type SharedTokenizer = Arc<dyn Tokenizer + Send + Sync>;

/// Validates the object at `key` as it streams in. `None` when there is no such object.
pub async fn validate_object(
    objects: &dyn ObjectStore,
    key: &str,
    format: DatasetFormat,
    tokenizer: SharedTokenizer,
    options: ValidatorOptions,
) -> anyhow::Result<Option<ValidationReport>> {
    let Some(mut reader) = objects.read(key).await? else {
        return Ok(None);
    };
    let (chunks, mut inbox) = tokio::sync::mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let validation = tokio::task::spawn_blocking(move || {
        let mut validator = Validator::new(format, &*tokenizer, options);
        while let Some(chunk) = inbox.blocking_recv() {
            validator.feed(&chunk);
        }
        validator.finish()
    });
    let read = async {
        loop {
            let mut chunk = vec![0u8; CHUNK_BYTES];
            let n = reader.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<_, anyhow::Error>(());
            }
            chunk.truncate(n);
            if chunks.send(chunk).await.is_err() {
                anyhow::bail!("the validation thread stopped");
            }
        }
    };
    let read_result = read.await;
    drop(chunks);
    let report = validation.await?;
    read_result?;
    Ok(Some(report))
}

/// Reacts to `DatasetUploadConfirmed`: validates the object and records the outcome.
pub struct DatasetValidation<ES: EventStore<Dataset>> {
    commands: Arc<DatasetCommands<ES>>,
    objects: Arc<dyn ObjectStore>,
    tokenizer: SharedTokenizer,
    options: ValidatorOptions,
}

impl<ES: EventStore<Dataset>> DatasetValidation<ES> {
    pub fn new(
        commands: Arc<DatasetCommands<ES>>,
        objects: Arc<dyn ObjectStore>,
        tokenizer: SharedTokenizer,
        options: ValidatorOptions,
    ) -> Self {
        Self {
            commands,
            objects,
            tokenizer,
            options,
        }
    }

    /// The store the files are read from (a worker asks it whether it answers).
    pub fn objects(&self) -> &dyn ObjectStore {
        &*self.objects
    }

    /// Storage errors are returned (the caller retries); a missing object fails the dataset.
    pub async fn run(
        &self,
        ctx: &CommandContext,
        confirmed: &DatasetUploadConfirmed,
    ) -> Result<(), AppError<DatasetError>> {
        let started = std::time::Instant::now();
        let report = validate_object(
            &*self.objects,
            &confirmed.s3_key,
            confirmed.format,
            self.tokenizer.clone(),
            self.options,
        )
        .await
        .map_err(|e| AppError::Internal(format!("{e:#}")))?;
        let dataset_id = confirmed.dataset_id;
        match report {
            Some(report) => {
                tracing::info!(
                    %dataset_id,
                    bytes = confirmed.file_size,
                    errors = report.error_count,
                    pairs = report.statistics.estimated_pairs,
                    seconds = started.elapsed().as_secs_f64(),
                    "dataset validated"
                );
                // A concurrent PATCH may win the race for the next sequence: retry the record
                // (not the validation).
                let mut attempts = 0;
                loop {
                    match self
                        .commands
                        .record_validation(ctx, dataset_id, report.clone())
                        .await
                    {
                        Err(AppError::Conflict) if attempts < 3 => attempts += 1,
                        result => break result.map(|_| ())?,
                    }
                }
            }
            None => {
                tracing::warn!(%dataset_id, key = %confirmed.s3_key, "the confirmed object is gone");
                self.commands
                    .fail_validation(
                        ctx,
                        dataset_id,
                        "OBJECT_MISSING",
                        "the uploaded file is no longer in storage; register the dataset again"
                            .to_string(),
                    )
                    .await?;
            }
        }
        Ok(())
    }
}
