//! Background work on datasets.
//!
//! - `ValidationWorker`: a durable subscription reacting to `DatasetUploadConfirmed`. Several
//!   validations of a batch run at once; the checkpoint moves past an event only when it and
//!   every earlier one are done, so a crash re-runs at most the unfinished ones (recording a
//!   result is idempotent in the aggregate, and a dataset already settled is skipped).
//! - `run_purger`: a periodic pass over deleted datasets whose retention has passed: it removes
//!   the object, then records `DatasetObjectPurged` (removing twice is harmless).

use std::sync::Arc;
use std::time::Duration;

use application::cluster::GpuCluster;
use application::datasets::DatasetCommands;
use application::validation::DatasetValidation;
use application::{AppError, CommandContext, ObjectStore};
use async_trait::async_trait;
use domain::dataset::{Dataset, DatasetError, DatasetEvent};
use domain::ids::{DatasetId, UserId};
use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::event_log::{read_after, StoredEvent};
use crate::event_store::EventStore;
use crate::parking::{is_transient, Parking};
use crate::subscription::{load_checkpoint, save_checkpoint, Subscriber};

pub const VALIDATION_SUBSCRIPTION: &str = "worker.dataset-validation";

/// The command context of work caused by `event`: same correlation, caused by the event.
pub fn caused_by(event: &StoredEvent, user_id: UserId) -> CommandContext {
    let correlation = event
        .metadata
        .get("correlationId")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| event.event_id.to_string());
    CommandContext {
        user_id,
        request_id: event.event_id.to_string(),
        correlation_id: correlation,
        causation_id: Some(event.event_id.to_string()),
    }
}

pub struct ValidationWorker {
    validation: Arc<DatasetValidation<EventStore<Dataset>>>,
    pool: PgPool,
    concurrency: usize,
    batch_size: i64,
    parking: Parking,
}

impl ValidationWorker {
    pub fn new(
        validation: Arc<DatasetValidation<EventStore<Dataset>>>,
        pool: PgPool,
        concurrency: usize,
        park_after: u32,
    ) -> ValidationWorker {
        ValidationWorker {
            validation,
            pool,
            concurrency: concurrency.max(1),
            batch_size: 64,
            parking: Parking::new(VALIDATION_SUBSCRIPTION, park_after),
        }
    }

    /// Handles `event`; a failure while Postgres and the object store both answer counts as
    /// an attempt, and the last attempt parks the event (then it counts as handled, so the
    /// checkpoint moves past it).
    async fn handle_or_park(&self, event: &StoredEvent) -> anyhow::Result<bool> {
        let err = match self.handle(event).await {
            Ok(handled) => return Ok(handled),
            Err(err) => err,
        };
        if is_transient(&err) || !self.dependencies_answer().await {
            return Err(err);
        }
        if self.parking.failed(&self.pool, event, &err).await? {
            self.parking.park(&self.pool, event).await?;
            return Ok(true);
        }
        Err(err)
    }

    /// Whether what a validation needs is up: then a failure is the event's own.
    async fn dependencies_answer(&self) -> bool {
        crate::db::ping(&self.pool).await
            && self
                .validation
                .objects()
                .size_of("health/validation-probe")
                .await
                .is_ok()
    }

    /// Answers whether the event asked for work (a confirm), done now or earlier.
    async fn handle(&self, event: &StoredEvent) -> anyhow::Result<bool> {
        if event.aggregate_type != <Dataset as cqrs_es::Aggregate>::TYPE
            || event.event_type != "DatasetUploadConfirmed"
        {
            return Ok(false);
        }
        let DatasetEvent::DatasetUploadConfirmed(confirmed) = event.decode::<DatasetEvent>()?
        else {
            return Ok(false);
        };
        if self.settled(event).await? {
            return Ok(true);
        }
        let ctx = caused_by(event, confirmed.user_id);
        match self.validation.run(&ctx, &confirmed).await {
            Ok(()) => Ok(true),
            // The aggregate refused (it is gone): nothing to retry.
            Err(AppError::Rejected(err)) => {
                tracing::warn!(dataset_id = %confirmed.dataset_id, error = %err, "validation result refused");
                Ok(true)
            }
            Err(err) => Err(anyhow::anyhow!(
                "validating dataset {}: {err}",
                confirmed.dataset_id
            )),
        }
    }

    /// Whether the dataset moved on after this confirm (validated, failed or deleted): then a
    /// redelivery need not read the file again.
    async fn settled(&self, event: &StoredEvent) -> sqlx::Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
               AND sequence > $3 AND event_type IN ('DatasetReady', 'DatasetValidationFailed', 'DatasetDeleted'))",
        )
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(event.sequence)
        .fetch_one(&self.pool)
        .await
    }
}

#[async_trait]
impl Subscriber for ValidationWorker {
    fn name(&self) -> &str {
        VALIDATION_SUBSCRIPTION
    }

    async fn run_batch(&self, pool: &PgPool) -> anyhow::Result<usize> {
        let from = load_checkpoint(pool, VALIDATION_SUBSCRIPTION, false).await?;
        let events = read_after(pool, from, self.batch_size).await?;
        if events.is_empty() {
            return Ok(0);
        }
        // Run up to `concurrency` at once; results come back in log order.
        let handled = events.iter().cloned().map(|event| async move {
            let result = self.handle_or_park(&event).await;
            (event.position, result)
        });
        let mut done = futures::stream::iter(handled).buffered(self.concurrency);
        let mut unsaved = None;
        while let Some((position, result)) = done.next().await {
            if result? {
                // A validation finished: never redo it because a later one failed.
                save_checkpoint(pool, VALIDATION_SUBSCRIPTION, position).await?;
                unsaved = None;
            } else {
                unsaved = Some(position);
            }
        }
        if let Some(position) = unsaved {
            save_checkpoint(pool, VALIDATION_SUBSCRIPTION, position).await?;
        }
        self.parking.succeeded(pool, &events).await?;
        Ok(events.len())
    }

    async fn retry(&self, pool: &PgPool, event: &StoredEvent) -> anyhow::Result<()> {
        self.handle(event).await?;
        self.parking.resolve(pool, event.event_id).await?;
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct PurgeOptions {
    /// How long after deletion an object is kept.
    pub purge_after: Duration,
    /// How often the purger looks for due objects.
    pub interval: Duration,
}

/// Purges due objects until `shutdown`. Safe to run in several processes at once.
pub async fn run_purger(
    pool: PgPool,
    commands: Arc<DatasetCommands<EventStore<Dataset>>>,
    objects: Arc<dyn ObjectStore>,
    cluster: Option<Arc<dyn GpuCluster>>,
    options: PurgeOptions,
    shutdown: CancellationToken,
) {
    loop {
        match purge_due(
            &pool,
            &commands,
            &*objects,
            cluster.as_deref(),
            options.purge_after,
        )
        .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged objects of deleted datasets"),
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "purge pass failed; will retry")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(options.interval) => {}
        }
    }
}

/// One pass: answers how many objects it purged. The `cluster`, when it keeps run files of
/// its own (Slurm), drops its copies of each purged dataset too.
pub async fn purge_due(
    pool: &PgPool,
    commands: &DatasetCommands<EventStore<Dataset>>,
    objects: &dyn ObjectStore,
    cluster: Option<&dyn GpuCluster>,
    purge_after: Duration,
) -> anyhow::Result<usize> {
    let cutoff = commands.clock().now() - chrono::Duration::from_std(purge_after)?;
    let due: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
        "SELECT id, user_id, s3_key FROM rm_datasets \
         WHERE deleted_at IS NOT NULL AND purged_at IS NULL AND deleted_at <= $1 \
         ORDER BY deleted_at LIMIT 100",
    )
    .bind(cutoff)
    .fetch_all(pool)
    .await?;
    let mut purged = 0;
    for (id, user_id, key) in due {
        objects.delete(&key).await?;
        if let Some(cluster) = cluster {
            cluster.forget_dataset(&key).await?;
        }
        let ctx = CommandContext {
            user_id: UserId(user_id),
            request_id: Uuid::now_v7().to_string(),
            correlation_id: format!("purge-{id}"),
            causation_id: None,
        };
        match commands
            .record_purge(&ctx, DatasetId(id), purge_after)
            .await
        {
            Ok(_) => purged += 1,
            // Another process purged it first.
            Err(AppError::Conflict) => {}
            Err(AppError::Rejected(err @ DatasetError::PurgeNotDue { .. })) => {
                tracing::warn!(dataset_id = %id, error = %err, "purge not due yet")
            }
            Err(err) => return Err(anyhow::anyhow!("recording the purge of {id}: {err}")),
        }
    }
    Ok(purged)
}
