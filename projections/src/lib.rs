//! Read models. Each projector is a fold from events to rows; the `Projection` subscriber
//! applies a batch of events and moves its checkpoint in one transaction, so a redelivered
//! event changes nothing and a crash loses nothing. Beside each projector, its `queries`
//! module holds the reads of the tables it writes: its rows, its SQL (checked against the
//! schema at compile time from `.sqlx/`), the only place a handler reads them from.

pub mod api_keys;
pub mod costs;
pub mod dashboard;
pub mod datasets;
pub mod jobs;
pub mod models;
pub mod notifications;
pub mod replay;

use std::sync::Arc;

use async_trait::async_trait;
use infrastructure::event_log::{Interest, StoredEvent};
use infrastructure::parking::{fold_batch, fold_retry, Fold, Parking, DEFAULT_PARK_AFTER};
use infrastructure::subscription::Subscriber;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Who reads: a user sees their own rows; an admin sees everyone's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    pub user_id: Uuid,
    pub sees_all: bool,
}

impl Viewer {
    pub fn may_see(&self, owner: Uuid) -> bool {
        self.sees_all || self.user_id == owner
    }
}

/// A page of a list: at most `limit` rows after skipping `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

/// `rows` in the order of `ids` (a list reads its page of ids, then the rows by id).
fn in_order<R>(ids: &[Uuid], rows: Vec<R>, id: impl Fn(&R) -> Uuid) -> Vec<R> {
    let mut by_id: std::collections::HashMap<Uuid, R> =
        rows.into_iter().map(|r| (id(&r), r)).collect();
    ids.iter().filter_map(|i| by_id.remove(i)).collect()
}

#[async_trait]
pub trait Projector: Send + Sync + 'static {
    /// Short name, used in `brightrun replay <name>` and the subscription's name.
    fn name(&self) -> &'static str;

    /// The tables this projector owns (rebuilt together by a replay).
    fn tables(&self) -> &'static [&'static str];

    /// The events `apply` may change a row for: a read passes over the rest of the log
    /// without decoding it (live and in a replay alike, so the two cannot differ by it).
    fn interest(&self) -> Interest {
        Interest::EVERYTHING
    }

    /// Folds one event into the tables. Runs inside the batch's transaction; table names
    /// must be unqualified, so a replay can point them at its own schema.
    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()>;

    /// Folds a batch in log order. The tables must end as `apply` on each event in turn
    /// leaves them, whatever the batch's bounds (a replay's batches are not the live ones).
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

/// Every projector of the service.
pub fn all() -> Vec<Arc<dyn Projector>> {
    vec![
        Arc::new(datasets::DatasetsProjector),
        Arc::new(jobs::JobsProjector),
        Arc::new(models::ModelsProjector),
        Arc::new(costs::CostsProjector),
        Arc::new(notifications::NotificationsProjector),
        Arc::new(api_keys::ApiKeysProjector),
    ]
}

pub fn by_name(name: &str) -> Option<Arc<dyn Projector>> {
    all().into_iter().find(|p| p.name() == name)
}

/// The subscription name of a projector (its checkpoint row).
pub fn subscription_name(projector: &str) -> String {
    format!("projection.{projector}")
}

pub struct Projection {
    projector: Arc<dyn Projector>,
    name: String,
    batch_size: i64,
    parking: Parking,
}

impl Projection {
    pub fn new(projector: Arc<dyn Projector>) -> Projection {
        Projection::with_parking(projector, DEFAULT_PARK_AFTER)
    }

    /// A projection that parks an event after `park_after` failed attempts.
    pub fn with_parking(projector: Arc<dyn Projector>, park_after: u32) -> Projection {
        let name = subscription_name(projector.name());
        Projection {
            parking: Parking::new(name.clone(), park_after),
            name,
            projector,
            // As a replay's: fewer, larger set-based folds (a catch-up's speed).
            batch_size: 1000,
        }
    }
}

/// A projector folds an event the way any transactional subscription does.
struct Folding<'a>(&'a dyn Projector);

#[async_trait]
impl Fold for Folding<'_> {
    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        self.0.apply(conn, event).await
    }

    fn interest(&self) -> Interest {
        self.0.interest()
    }

    async fn apply_all(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> anyhow::Result<()> {
        self.0.apply_all(conn, events).await
    }
}

#[async_trait]
impl Subscriber for Projection {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run_batch(&self, pool: &PgPool) -> anyhow::Result<usize> {
        fold_batch(
            pool,
            &Folding(&*self.projector),
            &self.parking,
            self.batch_size,
        )
        .await
    }

    async fn retry(&self, pool: &PgPool, event: &StoredEvent) -> anyhow::Result<()> {
        fold_retry(pool, &Folding(&*self.projector), &self.parking, event).await
    }
}
