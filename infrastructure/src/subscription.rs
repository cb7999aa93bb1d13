//! Durable subscriptions to the global log: checkpoints in Postgres, one active instance per
//! subscription (a session advisory lock), woken by LISTEN/NOTIFY with polling as fallback.
//!
//! A `Subscriber` processes one batch after its checkpoint and moves the checkpoint itself:
//! a projection in the same transaction as its rows, the relay only after NATS acknowledged.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use application::LogPosition;
use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgListener;
use sqlx::{PgExecutor, PgPool, Postgres};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::event_log::{read_by_id, StoredEvent};
use crate::parking;

/// The channel the events table notifies on every commit (see migrations).
pub const EVENTS_CHANNEL: &str = "brightrun_events";

#[async_trait]
pub trait Subscriber: Send + Sync + 'static {
    fn name(&self) -> &str;

    /// Handles the next events after the checkpoint and advances it. Answers how many events
    /// it handled: zero means caught up.
    async fn run_batch(&self, pool: &PgPool) -> anyhow::Result<usize>;

    /// Handles a parked event again, out of order, and marks it resolved (see `parking`):
    /// what `brightrun parked retry` asks the subscription's leader to do.
    async fn retry(&self, _pool: &PgPool, _event: &StoredEvent) -> anyhow::Result<()> {
        anyhow::bail!("{} does not park events", self.name())
    }
}

pub async fn ensure_checkpoint<'e>(executor: impl PgExecutor<'e>, name: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO subscription_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(executor)
        .await?;
    Ok(())
}

/// Reads a checkpoint; with `lock`, also locks its row until the transaction ends (a
/// projection batch and a replay swap exclude each other this way).
pub async fn load_checkpoint<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
    lock: bool,
) -> sqlx::Result<LogPosition> {
    let sql = if lock {
        "SELECT transaction_id::text::bigint, global_position FROM subscription_checkpoints WHERE name = $1 FOR UPDATE"
    } else {
        "SELECT transaction_id::text::bigint, global_position FROM subscription_checkpoints WHERE name = $1"
    };
    let row: Option<(i64, i64)> = sqlx::query_as(sql)
        .bind(name)
        .fetch_optional(executor)
        .await?;
    Ok(row
        .map(|(t, g)| LogPosition {
            transaction_id: t as u64,
            global_position: g,
        })
        .unwrap_or(LogPosition::START))
}

pub async fn save_checkpoint<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
    position: LogPosition,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO subscription_checkpoints (name, transaction_id, global_position, updated_at) \
         VALUES ($1, ($2::text)::xid8, $3, now()) \
         ON CONFLICT (name) DO UPDATE SET transaction_id = EXCLUDED.transaction_id, \
           global_position = EXCLUDED.global_position, updated_at = now()",
    )
    .bind(name)
    .bind(position.transaction_id.to_string())
    .bind(position.global_position)
    .execute(executor)
    .await?;
    Ok(())
}

/// Waits (bounded) until subscription `name` has processed `position`. Answers whether it
/// did: read-your-writes for the API, and synchronisation for tests.
pub async fn wait_for(pool: &PgPool, name: &str, position: LogPosition, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(2);
    loop {
        match load_checkpoint(pool, name, false).await {
            Ok(reached) if reached >= position => return true,
            Ok(_) => {}
            Err(err) => tracing::warn!(subscription = name, error = %err, "cannot read checkpoint"),
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// Which subscriptions this process currently leads (exported as a metric).
#[derive(Clone, Default)]
pub struct Leadership(Arc<Mutex<BTreeMap<String, bool>>>);

impl Leadership {
    fn set(&self, name: &str, leading: bool) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(name.to_string(), leading);
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, bool> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn is_leading(&self, name: &str) -> bool {
        self.snapshot().get(name).copied().unwrap_or(false)
    }
}

#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Poll this often even without a notification (the fallback when NOTIFY is missed).
    pub poll_interval: Duration,
    /// How often a follower retries to take the lead, and a leader checks it still holds it.
    pub lease_check: Duration,
    /// Pause after a failed batch before the next try.
    pub retry_backoff: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            lease_check: Duration::from_secs(2),
            retry_backoff: Duration::from_millis(500),
        }
    }
}

/// Runs `subscriber` until `shutdown`: waits to lead it, then processes batches.
pub fn spawn(
    pool: PgPool,
    subscriber: Arc<dyn Subscriber>,
    options: RunnerOptions,
    leadership: Leadership,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let name = subscriber.name().to_string();
        while !shutdown.is_cancelled() {
            match lead(&pool, &name, &options, &shutdown).await {
                Some(lock) => {
                    leadership.set(&name, true);
                    tracing::info!(subscription = %name, "leading subscription");
                    run_while_leading(&pool, &*subscriber, lock, &options, &shutdown).await;
                    leadership.set(&name, false);
                    tracing::info!(subscription = %name, "stopped leading subscription");
                }
                None => break,
            }
        }
    })
}

/// Takes the subscription's advisory lock on a connection of its own (released when that
/// session ends, so a crashed leader frees it). `None` on shutdown.
async fn lead(
    pool: &PgPool,
    name: &str,
    options: &RunnerOptions,
    shutdown: &CancellationToken,
) -> Option<PoolConnection<Postgres>> {
    loop {
        let attempt = async {
            let mut conn = pool.acquire().await?;
            ensure_checkpoint(&mut *conn, name).await?;
            let locked: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('subscription:' || $1))")
                    .bind(name)
                    .fetch_one(&mut *conn)
                    .await?;
            Ok::<_, sqlx::Error>(locked.then_some(conn))
        };
        match attempt.await {
            Ok(Some(conn)) => return Some(conn),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(subscription = name, error = %err, "cannot try the subscription lock")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(options.lease_check) => {}
        }
    }
}

async fn run_while_leading(
    pool: &PgPool,
    subscriber: &dyn Subscriber,
    mut lock: PoolConnection<Postgres>,
    options: &RunnerOptions,
    shutdown: &CancellationToken,
) {
    let name = subscriber.name().to_string();
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(mut l) => match l.listen(EVENTS_CHANNEL).await {
            Ok(()) => Some(l),
            Err(err) => {
                tracing::warn!(subscription = %name, error = %err, "LISTEN failed; polling only");
                None
            }
        },
        Err(err) => {
            tracing::warn!(subscription = %name, error = %err, "no listener connection; polling only");
            None
        }
    };
    let mut last_check = tokio::time::Instant::now();
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        if last_check.elapsed() >= options.lease_check {
            last_check = tokio::time::Instant::now();
            if sqlx::query("SELECT 1").execute(&mut *lock).await.is_err() {
                tracing::warn!(subscription = %name, "lost the lock connection; giving up the lead");
                // The session is gone with its lock; don't return a broken connection to the pool.
                lock.close_on_drop();
                return;
            }
            retry_parked(pool, subscriber).await;
        }
        match subscriber.run_batch(pool).await {
            Ok(0) => {
                // Caught up: sleep until a commit is notified, the poll interval, or shutdown.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(options.poll_interval) => {}
                    notified = async {
                        match listener.as_mut() {
                            Some(l) => l.recv().await.map(|_| ()),
                            None => std::future::pending().await,
                        }
                    } => {
                        if let Err(err) = notified {
                            tracing::warn!(subscription = %name, error = %err, "listener failed; polling only");
                            listener = None;
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(subscription = %name, error = %format!("{err:#}"), "batch failed; will retry");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(options.retry_backoff) => {}
                }
            }
        }
    }
    let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext('subscription:' || $1))")
        .bind(&name)
        .execute(&mut *lock)
        .await;
}

/// Handles the parked events whose retry was asked for (`brightrun parked retry`), each once:
/// resolved, or parked still with the new error.
async fn retry_parked(pool: &PgPool, subscriber: &dyn Subscriber) {
    let name = subscriber.name();
    let due = match parking::retries_due(pool, name).await {
        Ok(due) => due,
        Err(err) => {
            tracing::warn!(subscription = name, error = %err, "cannot read the retries asked for");
            return;
        }
    };
    for event_id in due {
        let outcome = match read_by_id(pool, event_id).await {
            Ok(Some(event)) => subscriber.retry(pool, &event).await,
            Ok(None) => Err(anyhow::anyhow!("event {event_id} is not in the log")),
            Err(err) => Err(err.into()),
        };
        let recorded = match &outcome {
            Ok(()) => {
                tracing::info!(subscription = name, %event_id, "parked event handled on retry");
                Ok(())
            }
            Err(err) => {
                let error = format!("{err:#}");
                tracing::warn!(subscription = name, %event_id, error = %error, "parked event failed again");
                parking::retry_failed(pool, name, event_id, &error).await
            }
        };
        if let Err(err) = recorded {
            tracing::warn!(subscription = name, %event_id, error = %err, "cannot record the retry");
        }
    }
}

/// How far a subscription is behind the log.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionLag {
    pub name: String,
    /// Events committed but not yet processed.
    pub events: i64,
    /// Age of the oldest of them.
    pub seconds: f64,
}

/// The lag of every subscription, read now (so any instance reports the truth).
pub async fn lags(pool: &PgPool) -> sqlx::Result<Vec<SubscriptionLag>> {
    let rows: Vec<(String, i64, f64)> = sqlx::query_as(
        "SELECT c.name, \
                (SELECT count(*) FROM events e WHERE (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position)), \
                COALESCE(EXTRACT(EPOCH FROM (SELECT now() - min(e.recorded_at) FROM events e \
                    WHERE (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position)))::float8, 0) \
         FROM subscription_checkpoints c",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, events, seconds)| SubscriptionLag {
            name,
            events,
            seconds,
        })
        .collect())
}
