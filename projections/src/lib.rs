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
use infrastructure::event_log::{read_after, StoredEvent};
use infrastructure::subscription::{load_checkpoint, save_checkpoint, Subscriber};
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

    /// Folds one event into the tables. Runs inside the batch's transaction; table names
    /// must be unqualified, so a replay can point them at its own schema.
    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()>;
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
}

impl Projection {
    pub fn new(projector: Arc<dyn Projector>) -> Projection {
        Projection {
            name: subscription_name(projector.name()),
            projector,
            batch_size: 500,
        }
    }
}

#[async_trait]
impl Subscriber for Projection {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run_batch(&self, pool: &PgPool) -> anyhow::Result<usize> {
        let mut tx = pool.begin().await?;
        // The row lock keeps a replay from swapping tables under this batch.
        let from = load_checkpoint(&mut *tx, &self.name, true).await?;
        let events = read_after(&mut *tx, from, self.batch_size).await?;
        let Some(last) = events.last() else {
            tx.rollback().await?;
            return Ok(0);
        };
        for event in &events {
            self.projector.apply(&mut tx, event).await?;
        }
        save_checkpoint(&mut *tx, &self.name, last.position).await?;
        tx.commit().await?;
        Ok(events.len())
    }
}
