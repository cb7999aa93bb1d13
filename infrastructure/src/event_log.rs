//! The global event log: every committed event, in an order that later commits never jump.
//!
//! Positions come from an identity column, taken at insert time but visible only at commit,
//! so a transaction can commit a smaller position after a reader has passed it. Readers
//! therefore page by `(transaction_id, global_position)` and read only events whose writing
//! transaction is older than the snapshot's xmin: every transaction below it has ended, so no
//! event can later appear behind the cursor.

use application::{LogPosition, LogPositions};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::{PgExecutor, PgPool, Row, ValueRef};
use uuid::Uuid;

/// An event read from the log; its payload and metadata decoded (`Value`, the default) or
/// as the JSON text the log holds (`RawEvent`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent<D = Value> {
    pub event_id: Uuid,
    pub position: LogPosition,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// As stored by cqrs-es (externally tagged: `{"<eventType>": {...}}`); decoded, upcast
    /// to current.
    pub payload: D,
    pub metadata: D,
    pub recorded_at: DateTime<Utc>,
}

/// The fields inside a payload tagged with its type (`{"<eventType>": {...}}`), or the
/// payload as it is when it is not tagged so.
pub fn data_of<'p>(payload: &'p Value, event_type: &str) -> &'p Value {
    match payload {
        Value::Object(map) if map.len() == 1 && map.contains_key(event_type) => &map[event_type],
        other => other,
    }
}

/// An event as the relay publishes it: payload and metadata are the JSON text the log holds
/// (`json` columns, so exactly as written), never decoded into values nor upcast.
pub type RawEvent = StoredEvent<String>;

impl StoredEvent {
    /// The event's own fields, without the type tag.
    pub fn data(&self) -> &Value {
        data_of(&self.payload, &self.event_type)
    }

    /// Decodes the payload as an aggregate's event enum.
    pub fn decode<E: DeserializeOwned>(&self) -> anyhow::Result<E> {
        serde_json::from_value(self.payload.clone()).map_err(|e| {
            anyhow::anyhow!(
                "cannot decode {} v{} (event {}): {e}",
                self.event_type,
                self.event_version,
                self.event_id
            )
        })
    }
}

/// What a read selects. Its `transaction_id` is a bigint alias of the xid8 column, so an
/// ORDER BY must name `events.transaction_id`: the bare name sorts by the alias, which no
/// index has, and every read then sorted the whole rest of the log (a second a batch at 1M).
const COLUMNS: &str = "event_id, transaction_id::text::bigint AS transaction_id, global_position, \
    aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at";

/// Up to `limit` events after `after`, in log order, never one whose transaction may still
/// be running or that could yet be overtaken.
pub async fn read_after<'e>(
    executor: impl PgExecutor<'e>,
    after: LogPosition,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    Ok(
        read_page(executor, after, None, limit, Interest::EVERYTHING)
            .await?
            .events,
    )
}

/// `read_after`, with the payload and metadata left as text.
pub async fn read_raw_after<'e>(
    executor: impl PgExecutor<'e>,
    after: LogPosition,
    limit: i64,
) -> sqlx::Result<Vec<RawEvent>> {
    let rows = sqlx::query(
        "SELECT event_id, transaction_id::text::bigint AS transaction_id, global_position, \
           aggregate_type, aggregate_id, sequence, event_type, event_version, \
           payload::text AS payload, metadata::text AS metadata, recorded_at \
         FROM events \
         WHERE (transaction_id, global_position) > (($1::text)::xid8, $2) \
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY events.transaction_id, events.global_position \
         LIMIT $3",
    )
    .bind(after.transaction_id.to_string())
    .bind(after.global_position)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            let (event_type, version) = (row.try_get("event_type")?, row.try_get("event_version")?);
            event_of(
                row,
                event_type,
                version,
                row.try_get("payload")?,
                row.try_get("metadata")?,
            )
        })
        .collect()
}

/// Which events a reader folds. The rest of the log is passed over: read for its position
/// (so a checkpoint still moves past it), never sent in full nor decoded; a projection of API
/// keys need not parse a million metric points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    /// None: every aggregate type.
    pub aggregate_types: Option<&'static [&'static str]>,
    /// None: every event type (of those aggregates).
    pub event_types: Option<&'static [&'static str]>,
}

impl Interest {
    pub const EVERYTHING: Interest = Interest {
        aggregate_types: None,
        event_types: None,
    };

    /// Every event of these aggregate types.
    pub const fn aggregates(types: &'static [&'static str]) -> Interest {
        Interest {
            aggregate_types: Some(types),
            event_types: None,
        }
    }

    /// The events of these types, of these aggregate types.
    pub const fn events(
        aggregate_types: &'static [&'static str],
        event_types: &'static [&'static str],
    ) -> Interest {
        Interest {
            aggregate_types: Some(aggregate_types),
            event_types: Some(event_types),
        }
    }

    /// The rule `read_page` applies in SQL, for a fold's own check.
    pub fn wants(&self, aggregate_type: &str, event_type: &str) -> bool {
        self.aggregate_types
            .is_none_or(|types| types.contains(&aggregate_type))
            && self
                .event_types
                .is_none_or(|types| types.contains(&event_type))
    }
}

/// What one read of the log brought: the events of interest, and where it stopped (the last
/// event read, of interest or not: a checkpoint may move there).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    pub read: usize,
    pub last: Option<LogPosition>,
}

/// The next `limit` events after `after` (up to `until` when given), gated like
/// `read_after`; those `interest` does not name come back as a position only.
pub async fn read_page<'e>(
    executor: impl PgExecutor<'e>,
    after: LogPosition,
    until: Option<LogPosition>,
    limit: i64,
    interest: Interest,
) -> sqlx::Result<Page> {
    // Only what a passed-over event needs is its position; its payload stays in Postgres.
    let wanted = "($4::text[] IS NULL OR aggregate_type = ANY($4)) \
                  AND ($5::text[] IS NULL OR event_type = ANY($5))";
    let upto = if until.is_some() {
        "AND (transaction_id, global_position) <= (($6::text)::xid8, $7)"
    } else {
        "AND $6::text IS NULL AND $7::bigint IS NULL"
    };
    let sql = format!(
        "SELECT event_id, transaction_id::text::bigint AS transaction_id, global_position, \
           aggregate_type, aggregate_id, sequence, event_type, event_version, \
           CASE WHEN {wanted} THEN payload END AS payload, \
           CASE WHEN {wanted} THEN metadata END AS metadata, recorded_at \
         FROM events \
         WHERE (transaction_id, global_position) > (($1::text)::xid8, $2) \
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) {upto} \
         ORDER BY events.transaction_id, events.global_position \
         LIMIT $3"
    );
    let owned =
        |types: Option<&[&str]>| types.map(|t| t.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let rows = sqlx::query(&sql)
        .bind(after.transaction_id.to_string())
        .bind(after.global_position)
        .bind(limit)
        .bind(owned(interest.aggregate_types))
        .bind(owned(interest.event_types))
        .bind(until.map(|u| u.transaction_id.to_string()))
        .bind(until.map(|u| u.global_position))
        .fetch_all(executor)
        .await?;
    let mut page = Page {
        events: Vec::with_capacity(rows.len()),
        read: rows.len(),
        last: None,
    };
    for row in &rows {
        if !row.try_get_raw("payload")?.is_null() {
            page.events.push(decode_row(row)?);
        }
        page.last = Some(position_of(row)?);
    }
    Ok(page)
}

/// The events of aggregates with id `aggregate_id` (of any of `types`) after `after`, in log
/// order, gated like `read_after` (a job's own and telemetry streams share its id).
pub async fn read_aggregate_after<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_id: &str,
    types: &[&str],
    after: LogPosition,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events \
         WHERE aggregate_id = $1 AND aggregate_type = ANY($2) \
           AND (transaction_id, global_position) > (($3::text)::xid8, $4) \
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY events.transaction_id, events.global_position \
         LIMIT $5"
    );
    let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    let rows = sqlx::query(&sql)
        .bind(aggregate_id)
        .bind(types)
        .bind(after.transaction_id.to_string())
        .bind(after.global_position)
        .bind(limit)
        .fetch_all(executor)
        .await?;
    rows.iter().map(decode_row).collect()
}

/// One aggregate's own stream, newest first, from before its event `before` (a cursor) when
/// one is named: its history a page at a time, as a client reads it.
pub async fn read_aggregate_newest_first<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 \
           AND ($3::uuid IS NULL OR sequence < \
                (SELECT b.sequence FROM events b \
                 WHERE b.aggregate_type = $1 AND b.aggregate_id = $2 AND b.event_id = $3)) \
         ORDER BY sequence DESC \
         LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(before)
        .bind(limit)
        .fetch_all(executor)
        .await?;
    rows.iter().map(decode_row).collect()
}

/// One event by its id (a parked event, handled again by `brightrun parked retry`).
pub async fn read_by_id<'e>(
    executor: impl PgExecutor<'e>,
    event_id: Uuid,
) -> sqlx::Result<Option<StoredEvent>> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE event_id = $1");
    let row = sqlx::query(&sql)
        .bind(event_id)
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(decode_row).transpose()
}

/// Every event of the given types, grouped by the job it concerns (its aggregate id; a
/// download bill names its job in its payload), in log order within a job: the cost audit
/// reads the history one job at a time, as a stream, so nothing but a job's events is held.
pub fn stream_of_types_by_job<'e>(
    executor: impl PgExecutor<'e> + 'e,
    event_types: &'e [String],
) -> impl futures::Stream<Item = sqlx::Result<(Uuid, StoredEvent)>> + 'e {
    use futures::StreamExt;
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {COLUMNS}, \
               (CASE event_type WHEN 'ModelDownloadBilled' THEN payload->'ModelDownloadBilled'->>'jobId' \
                  WHEN 'ModelUsageBilled' THEN payload->'ModelUsageBilled'->>'jobId' \
                  ELSE aggregate_id END)::uuid AS job_id \
             FROM events WHERE event_type = ANY($1) \
             ORDER BY job_id, events.transaction_id, events.global_position"
        )
    });
    sqlx::query(&SQL)
        .bind(event_types)
        .fetch(executor)
        .map(|row| {
            let row = row?;
            Ok((row.try_get("job_id")?, decode_row(&row)?))
        })
}

/// The events `ledger_entry` makes an entry of.
pub const LEDGER_EVENTS: Interest = Interest::events(
    &[
        <domain::job::Job as cqrs_es::Aggregate>::TYPE,
        <domain::model::Model as cqrs_es::Aggregate>::TYPE,
    ],
    &["JobCostAccrued", "ModelDownloadBilled", "ModelUsageBilled"],
);

/// The ledger entry an event carries (`JobCostAccrued`, `ModelDownloadBilled`), if any.
pub fn ledger_entry(event: &StoredEvent) -> anyhow::Result<Option<domain::audit::EventEntry>> {
    use cqrs_es::Aggregate;
    use domain::audit::EventEntry;
    use domain::job::{Job, JobEvent};
    use domain::model::{Model, ModelEvent};
    Ok(
        match (event.aggregate_type.as_str(), event.event_type.as_str()) {
            (t, "JobCostAccrued") if t == <Job as Aggregate>::TYPE => match event.decode()? {
                JobEvent::JobCostAccrued(e) => Some(EventEntry::from_job(&e)),
                _ => None,
            },
            (t, "ModelDownloadBilled") if t == <Model as Aggregate>::TYPE => {
                match event.decode()? {
                    ModelEvent::ModelDownloadBilled(e) => Some(EventEntry::from_download(&e)),
                    _ => None,
                }
            }
            (t, "ModelUsageBilled") if t == <Model as Aggregate>::TYPE => match event.decode()? {
                ModelEvent::ModelUsageBilled(e) => Some(EventEntry::from_usage(&e)),
                _ => None,
            },
            _ => None,
        },
    )
}

/// A row's place in the log (its `transaction_id` selected as a bigint).
fn position_of(row: &sqlx::postgres::PgRow) -> sqlx::Result<LogPosition> {
    let transaction_id: i64 = row.try_get("transaction_id")?;
    Ok(LogPosition {
        transaction_id: transaction_id as u64,
        global_position: row.try_get("global_position")?,
    })
}

fn decode_row(row: &sqlx::postgres::PgRow) -> sqlx::Result<StoredEvent> {
    let event_type: String = row.try_get("event_type")?;
    let version: String = row.try_get("event_version")?;
    let (event_version, payload) =
        domain::upcast::upcast_payload(&event_type, &version, row.try_get("payload")?);
    event_of(
        row,
        event_type,
        event_version,
        payload,
        row.try_get("metadata")?,
    )
}

/// A row's event, with the type, version, payload and metadata its reader made of them.
fn event_of<D>(
    row: &sqlx::postgres::PgRow,
    event_type: String,
    event_version: String,
    payload: D,
    metadata: D,
) -> sqlx::Result<StoredEvent<D>> {
    Ok(StoredEvent {
        event_id: row.try_get("event_id")?,
        position: position_of(row)?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type,
        event_version,
        payload,
        metadata,
        recorded_at: row.try_get("recorded_at")?,
    })
}

/// The position of the newest committed event (what a caught-up reader has reached).
pub async fn head<'e>(executor: impl PgExecutor<'e>) -> sqlx::Result<LogPosition> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM events \
         ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(to_position).unwrap_or(LogPosition::START))
}

fn to_position((transaction_id, global_position): (i64, i64)) -> LogPosition {
    LogPosition {
        transaction_id: transaction_id as u64,
        global_position,
    }
}

/// `LogPositions` over the events table.
#[derive(Clone)]
pub struct PgLogPositions(pub PgPool);

#[async_trait]
impl LogPositions for PgLogPositions {
    async fn last_position(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> anyhow::Result<Option<LogPosition>> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id::text::bigint, global_position FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.0)
        .await?;
        Ok(row.map(to_position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interest_names_aggregates_then_event_types_and_none_means_every() {
        assert!(Interest::EVERYTHING.wants("job", "JobCreated"));
        let jobs = Interest::aggregates(&["job", "job_metrics"]);
        assert!(jobs.wants("job_metrics", "MetricRecorded"));
        assert!(!jobs.wants("dataset", "DatasetReady"));
        assert!(LEDGER_EVENTS.wants("job", "JobCostAccrued"));
        assert!(LEDGER_EVENTS.wants("model", "ModelDownloadBilled"));
        assert!(!LEDGER_EVENTS.wants("job", "JobCreated"));
        assert!(!LEDGER_EVENTS.wants("dataset", "JobCostAccrued"));
    }
}
