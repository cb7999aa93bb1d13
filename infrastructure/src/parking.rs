//! Poison events: an event a subscription cannot handle, while everything it needs answers,
//! is counted in `event_failures`; after `park_after` attempts it is parked (the subscription
//! moves past it, with a metric and an error log line) so one bad event never stops the
//! others. `brightrun parked list` shows them; `brightrun parked retry` asks the leader of the
//! subscription to handle them again, out of order, once the cause is fixed.
//!
//! What is not parked: failures that say a dependency is down (a lost connection, a
//! serialization failure, a shutdown: [`is_transient`]); those are retried until it is back,
//! however long that takes.

use std::sync::Mutex;

use application::LogPosition;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::event_log::{read_page, Interest, StoredEvent};
use crate::subscription::{load_checkpoint, save_checkpoint};

/// Attempts at an event before it is parked, unless configured (`SUBSCRIPTION_PARK_AFTER`).
pub const DEFAULT_PARK_AFTER: u32 = 5;

/// Whether `err` says a dependency is unreachable or busy rather than that the event is bad:
/// then the attempt does not count towards parking.
pub fn is_transient(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if let Some(err) = cause.downcast_ref::<sqlx::Error>() {
            return is_transient_sqlx(err);
        }
        cause.downcast_ref::<std::io::Error>().is_some()
    })
}

/// Whether a database error says the database is unreachable or busy (not that the
/// statement or its data is wrong).
pub fn is_transient_sqlx(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Connection exceptions, transaction rollbacks (serialization, deadlock),
            // insufficient resources, lock not available, operator intervention (shutdown),
            // system errors.
            ["08", "40", "53", "55", "57", "58"]
                .iter()
                .any(|class| code.starts_with(class))
        }),
        _ => false,
    }
}

/// A subscription's parking: how many attempts it gives an event, and which event it last
/// saw fail (so a success after it clears the count without a query per batch).
pub struct Parking {
    subscription: String,
    park_after: u32,
    failing: Mutex<Option<Uuid>>,
}

impl Parking {
    pub fn new(subscription: impl Into<String>, park_after: u32) -> Parking {
        Parking {
            subscription: subscription.into(),
            park_after: park_after.max(1),
            failing: Mutex::new(None),
        }
    }

    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// Counts a failed attempt at `event`; answers whether it is now to be parked.
    pub async fn failed(
        &self,
        pool: &PgPool,
        event: &StoredEvent,
        err: &anyhow::Error,
    ) -> sqlx::Result<bool> {
        let error = format!("{err:#}");
        let attempts: i32 = sqlx::query_scalar(
            "INSERT INTO event_failures \
               (subscription, event_id, global_position, aggregate_type, aggregate_id, event_type, last_error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (subscription, event_id) DO UPDATE SET \
               attempts = event_failures.attempts + 1, last_error = EXCLUDED.last_error, last_failed_at = now() \
             RETURNING attempts",
        )
        .bind(&self.subscription)
        .bind(event.event_id)
        .bind(event.position.global_position)
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(&event.event_type)
        .bind(&error)
        .fetch_one(pool)
        .await?;
        if let Ok(mut failing) = self.failing.lock() {
            *failing = Some(event.event_id);
        }
        tracing::warn!(
            subscription = %self.subscription, event_id = %event.event_id, event_type = %event.event_type,
            attempts, park_after = self.park_after, error = %error, "event failed"
        );
        Ok(attempts as u32 >= self.park_after)
    }

    /// Parks `event`: call inside the transaction (if any) that moves the checkpoint past it.
    pub async fn park<'e>(
        &self,
        executor: impl PgExecutor<'e>,
        event: &StoredEvent,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE event_failures SET parked_at = now() WHERE subscription = $1 AND event_id = $2",
        )
        .bind(&self.subscription)
        .bind(event.event_id)
        .execute(executor)
        .await?;
        self.forget_failing(event.event_id);
        metrics::counter!("brightrun_events_parked_total", "subscription" => self.subscription.clone())
            .increment(1);
        tracing::error!(
            subscription = %self.subscription, event_id = %event.event_id, event_type = %event.event_type,
            aggregate_id = %event.aggregate_id, global_position = event.position.global_position,
            "event parked; the subscription goes on without it (brightrun parked list|retry)"
        );
        Ok(())
    }

    /// After `handled` succeeded: an event among them that failed before was passing trouble,
    /// so its count goes.
    pub async fn succeeded(&self, pool: &PgPool, handled: &[StoredEvent]) -> sqlx::Result<()> {
        let failing = self.failing.lock().ok().and_then(|f| *f);
        let Some(id) = failing.filter(|id| handled.iter().any(|e| e.event_id == *id)) else {
            return Ok(());
        };
        sqlx::query(
            "DELETE FROM event_failures WHERE subscription = $1 AND event_id = $2 AND parked_at IS NULL",
        )
        .bind(&self.subscription)
        .bind(id)
        .execute(pool)
        .await?;
        self.forget_failing(id);
        Ok(())
    }

    fn forget_failing(&self, id: Uuid) {
        if let Ok(mut failing) = self.failing.lock() {
            if *failing == Some(id) {
                *failing = None;
            }
        }
    }

    /// Marks a parked event handled by a retry: inside the retry's transaction, if any.
    pub async fn resolve<'e>(
        &self,
        executor: impl PgExecutor<'e>,
        event_id: Uuid,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE event_failures SET resolved_at = now(), retry_requested_at = NULL \
             WHERE subscription = $1 AND event_id = $2",
        )
        .bind(&self.subscription)
        .bind(event_id)
        .execute(executor)
        .await?;
        Ok(())
    }
}

/// A subscription that folds each event into tables inside one transaction with its
/// checkpoint (the projections, the saga's feeder, the budget watcher).
#[async_trait]
pub trait Fold: Send + Sync {
    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()>;

    /// The events `apply` may change something for; the others are passed over unread.
    fn interest(&self) -> Interest {
        Interest::EVERYTHING
    }

    /// Folds `events` in log order, leaving the tables as `apply` on each in turn would
    /// (a fold may write runs of them set-based). On an error nothing of it is kept: the
    /// batch is folded again one event at a time to find the event at fault.
    async fn apply_all(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> anyhow::Result<()> {
        for event in events {
            self.apply(conn, event).await?;
        }
        Ok(())
    }
}

/// Folds the next `limit` events after the checkpoint in one transaction. On an event that
/// fails for a reason of its own, the batch is rolled back and the attempt counted; at the
/// last attempt the events before it are folded again and the checkpoint moves past it, in
/// one transaction with its parking.
pub async fn fold_batch(
    pool: &PgPool,
    fold: &dyn Fold,
    parking: &Parking,
    limit: i64,
) -> anyhow::Result<usize> {
    let name = parking.subscription();
    let mut tx = pool.begin().await?;
    // The row lock keeps a replay from swapping tables under this batch.
    let from = load_checkpoint(&mut *tx, name, true).await?;
    let page = read_page(&mut *tx, from, None, limit, fold.interest()).await?;
    let Some(last) = page.last else {
        tx.rollback().await?;
        return Ok(0);
    };
    let events = page.events;
    match fold.apply_all(&mut tx, &events).await {
        Ok(()) => {
            save_checkpoint(&mut *tx, name, last).await?;
            tx.commit().await?;
            parking.succeeded(pool, &events).await?;
            return Ok(page.read);
        }
        Err(err) if is_transient(&err) => {
            tx.rollback().await?;
            return Err(err);
        }
        Err(_) => tx.rollback().await?,
    }
    // One event at a time, to find the one at fault.
    let mut tx = pool.begin().await?;
    if load_checkpoint(&mut *tx, name, true).await? != from {
        tx.rollback().await?;
        return Ok(0);
    }
    for (i, event) in events.iter().enumerate() {
        if let Err(err) = fold.apply(&mut tx, event).await {
            tx.rollback().await?;
            return park_or_fail(pool, fold, parking, from, &events[..i], event, err).await;
        }
    }
    tracing::warn!(subscription = %name, events = events.len(), "a batch failed as a whole but not event by event");
    save_checkpoint(&mut *tx, name, last).await?;
    tx.commit().await?;
    parking.succeeded(pool, &events).await?;
    Ok(page.read)
}

async fn park_or_fail(
    pool: &PgPool,
    fold: &dyn Fold,
    parking: &Parking,
    from: LogPosition,
    before: &[StoredEvent],
    event: &StoredEvent,
    err: anyhow::Error,
) -> anyhow::Result<usize> {
    if is_transient(&err) || !parking.failed(pool, event, &err).await? {
        return Err(err);
    }
    let name = parking.subscription();
    let mut tx = pool.begin().await?;
    if load_checkpoint(&mut *tx, name, true).await? != from {
        // Moved meanwhile (a replay's swap): start again from where it is now.
        tx.rollback().await?;
        return Ok(0);
    }
    for e in before {
        fold.apply(&mut tx, e).await?;
    }
    parking.park(&mut *tx, event).await?;
    save_checkpoint(&mut *tx, name, event.position).await?;
    tx.commit().await?;
    Ok(before.len() + 1)
}

/// Handles a parked event again, out of order, and marks it resolved in the same transaction.
pub async fn fold_retry(
    pool: &PgPool,
    fold: &dyn Fold,
    parking: &Parking,
    event: &StoredEvent,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    // Live batches and a replay's swap wait while it is applied.
    load_checkpoint(&mut *tx, parking.subscription(), true).await?;
    fold.apply(&mut tx, event).await?;
    parking.resolve(&mut *tx, event.event_id).await?;
    tx.commit().await?;
    Ok(())
}

/// A parked event, as `brightrun parked list` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ParkedEvent {
    pub subscription: String,
    pub event_id: Uuid,
    pub global_position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub attempts: i32,
    pub last_error: String,
    pub first_failed_at: DateTime<Utc>,
    pub parked_at: Option<DateTime<Utc>>,
    pub retry_requested_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
}

const PARKED_COLUMNS: &str =
    "subscription, event_id, global_position, aggregate_type, aggregate_id, \
    event_type, attempts, last_error, first_failed_at, parked_at, retry_requested_at, resolved_at";

/// Parked events not yet resolved, of one subscription or all, in log order.
pub async fn list(pool: &PgPool, subscription: Option<&str>) -> sqlx::Result<Vec<ParkedEvent>> {
    sqlx::query_as(&format!(
        "SELECT {PARKED_COLUMNS} FROM event_failures \
         WHERE parked_at IS NOT NULL AND resolved_at IS NULL AND ($1::text IS NULL OR subscription = $1) \
         ORDER BY global_position, subscription"
    ))
    .bind(subscription)
    .fetch_all(pool)
    .await
}

/// One parked event of a subscription, whatever its state.
pub async fn get(
    pool: &PgPool,
    subscription: &str,
    event_id: Uuid,
) -> sqlx::Result<Option<ParkedEvent>> {
    sqlx::query_as(&format!(
        "SELECT {PARKED_COLUMNS} FROM event_failures WHERE subscription = $1 AND event_id = $2"
    ))
    .bind(subscription)
    .bind(event_id)
    .fetch_optional(pool)
    .await
}

/// The ids of a subscription's unresolved parked events (a replay leaves them out too).
pub async fn parked_ids<'e>(
    executor: impl PgExecutor<'e>,
    subscription: &str,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT event_id FROM event_failures \
         WHERE subscription = $1 AND parked_at IS NOT NULL AND resolved_at IS NULL",
    )
    .bind(subscription)
    .fetch_all(executor)
    .await
}

/// Asks for parked events to be handled again: those named (all, if none are), of one
/// subscription or all. Answers the (subscription, event id) pairs asked for.
pub async fn request_retry(
    pool: &PgPool,
    subscription: Option<&str>,
    event_ids: &[Uuid],
) -> sqlx::Result<Vec<(String, Uuid)>> {
    sqlx::query_as(
        "UPDATE event_failures SET retry_requested_at = now() \
         WHERE parked_at IS NOT NULL AND resolved_at IS NULL \
           AND ($1::text IS NULL OR subscription = $1) \
           AND (cardinality($2::uuid[]) = 0 OR event_id = ANY($2)) \
         RETURNING subscription, event_id",
    )
    .bind(subscription)
    .bind(event_ids)
    .fetch_all(pool)
    .await
}

/// The parked events of `subscription` whose retry was asked for, oldest first.
pub async fn retries_due(pool: &PgPool, subscription: &str) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT event_id FROM event_failures \
         WHERE subscription = $1 AND retry_requested_at IS NOT NULL AND resolved_at IS NULL \
         ORDER BY global_position",
    )
    .bind(subscription)
    .fetch_all(pool)
    .await
}

/// A retry failed again: the event stays parked with the new error and one more attempt.
pub async fn retry_failed(
    pool: &PgPool,
    subscription: &str,
    event_id: Uuid,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE event_failures SET attempts = attempts + 1, last_error = $3, last_failed_at = now(), \
           retry_requested_at = NULL \
         WHERE subscription = $1 AND event_id = $2",
    )
    .bind(subscription)
    .bind(event_id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Unresolved parked events per subscription (the `brightrun_parked_events` gauge).
pub async fn counts(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT subscription, count(*) FROM event_failures \
         WHERE parked_at IS NOT NULL AND resolved_at IS NULL GROUP BY subscription",
    )
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_that_is_down_is_not_the_event_s_fault() {
        let lost = anyhow::Error::new(sqlx::Error::PoolTimedOut).context("reading the batch");
        assert!(is_transient(&lost));
        let io = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_transient(&io));
    }

    #[test]
    fn an_event_that_cannot_be_read_or_stored_is() {
        let decode = anyhow::anyhow!("cannot decode JobCreated v1 (event x): missing field");
        assert!(!is_transient(&decode));
        let missing = anyhow::Error::new(sqlx::Error::RowNotFound);
        assert!(!is_transient(&missing));
        let column = anyhow::Error::new(sqlx::Error::ColumnNotFound("total".into()));
        assert!(!is_transient(&column));
    }
}
