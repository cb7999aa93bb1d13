//! The cqrs-es event store over Postgres: the `events` table of postgres-es (its columns,
//! its primary key as the optimistic lock), written by a repository of our own so that a
//! command costs two round trips (one when it creates its aggregate), not five.
//!
//! postgres-es appends in an explicit transaction, one INSERT per event (BEGIN, INSERT...,
//! COMMIT), and a command then had to ask where its events landed. Here the events of a
//! command go in one multi-row INSERT, atomic on its own, that answers their log positions;
//! the position reaches the command through `application::appended`. Plain event-sourced
//! mode only: snapshots are refused (cqrs-es's snapshot and aggregate modes apply events
//! twice).

use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use cqrs_es::{Aggregate, CqrsFramework};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use application::LogPosition;

pub type EventStore<A> = PersistedEventStore<EventRepository, A>;

/// A framework with no in-process queries: read models are fed from the global log by
/// durable subscriptions, never by cqrs-es `Query` dispatch (lost on a crash).
pub fn framework<A: Aggregate>(
    pool: PgPool,
    wakeup: &Wakeup,
    services: A::Services,
) -> CqrsFramework<A, EventStore<A>> {
    CqrsFramework::new(store(pool, wakeup), vec![], services)
}

/// The event store alone, to load aggregates outside a command.
pub fn store<A: Aggregate>(pool: PgPool, wakeup: &Wakeup) -> EventStore<A> {
    PersistedEventStore::new_event_store(EventRepository {
        pool,
        wakeup: wakeup.clone(),
    })
    .with_upcasters(vec![Box::new(domain::upcast::ChainUpcaster)])
}

/// Wakes the log's subscribers (`LISTEN brightrun_events`, in every instance) after appends
/// commit. A NOTIFY inside the appending transaction would hold Postgres's notify lock
/// through that commit's WAL flush, so concurrent commands could never share a flush (the
/// 16-writer spine bench ran at a third of plain INSERTs). Here it goes out on its own once
/// the append has committed, and the appends made while one is on its way share the next.
/// Subscribers also poll, so a wake-up lost with a crash only delays them.
#[derive(Clone)]
pub struct Wakeup {
    due: tokio::sync::mpsc::Sender<()>,
}

impl Wakeup {
    /// Sends the wake-ups on `pool` until every handle is dropped.
    pub fn start(pool: PgPool) -> Wakeup {
        let (due, mut next) = tokio::sync::mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while next.recv().await.is_some() {
                if let Err(err) = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(crate::subscription::EVENTS_CHANNEL)
                    .execute(&pool)
                    .await
                {
                    tracing::debug!(error = %err, "cannot wake the log's subscribers; they poll");
                }
            }
        });
        Wakeup { due }
    }

    /// After an append has committed. Never waits: a wake-up already due is sent after
    /// this commit, so it covers it.
    pub fn appended(&self) {
        let _ = self.due.try_send(());
    }
}

pub struct EventRepository {
    pool: PgPool,
    wakeup: Wakeup,
}

const SELECT: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, \
    payload, metadata FROM events WHERE aggregate_type = $1 AND aggregate_id = $2";

/// One statement for every event of a command: all of them or none, and their positions.
/// Payload and metadata go as JSON text into the `json` columns (checked, stored as sent):
/// sent as `jsonb`, Postgres built each document and wrote it back out as text.
/// Event ids are made here (UUID v7, as the column's default makes them): the default is a
/// PL/pgSQL function, called once a row, a sizeable share of an append's time in Postgres.
const APPEND: &str = "INSERT INTO events \
      (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id) \
    SELECT t, i, s, e, v, p::json, m::json, id FROM unnest($1::text[], $2::text[], $3::bigint[], \
      $4::text[], $5::text[], $6::text[], $7::text[], $8::uuid[]) AS u(t, i, s, e, v, p, m, id) \
    RETURNING transaction_id::text::bigint, global_position";

/// The JSON text of an event's document, refused (as `jsonb` did) when it holds a NUL
/// character, which no text column downstream could take.
pub(crate) fn json_text(value: &impl serde::Serialize) -> Result<String, PersistenceError> {
    let text =
        serde_json::to_string(value).map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
    if escapes_nul(&text) {
        return Err(PersistenceError::UnknownError(
            "an event may not hold a NUL character (\\u0000)".into(),
        ));
    }
    Ok(text)
}

/// Whether JSON text holds `\u0000` as an escape (an odd run of backslashes before `u0000`),
/// not as the text of an escaped backslash.
fn escapes_nul(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices("\\u0000").any(|(at, _)| {
        let backslashes = bytes[..=at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        backslashes % 2 == 1
    })
}

fn failure(err: sqlx::Error) -> PersistenceError {
    match &err {
        // The primary key (aggregate, sequence): another command appended first.
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => {
            PersistenceError::ConnectionError(Box::new(err))
        }
        _ => PersistenceError::UnknownError(Box::new(err)),
    }
}

fn serialized(row: &PgRow) -> Result<SerializedEvent, PersistenceError> {
    let get = || -> sqlx::Result<SerializedEvent> {
        let sequence: i64 = row.try_get("sequence")?;
        Ok(SerializedEvent::new(
            row.try_get("aggregate_id")?,
            usize::try_from(sequence).unwrap_or_default(),
            row.try_get("aggregate_type")?,
            row.try_get("event_type")?,
            row.try_get("event_version")?,
            row.try_get::<Value, _>("payload")?,
            row.try_get::<Value, _>("metadata")?,
        ))
    };
    get().map_err(failure)
}

impl EventRepository {
    async fn select<A: Aggregate>(
        &self,
        aggregate_id: &str,
        after_sequence: i64,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let sql = format!("{SELECT} AND sequence > $3 ORDER BY sequence");
        let rows = sqlx::query(&sql)
            .bind(A::TYPE)
            .bind(aggregate_id)
            .bind(after_sequence)
            .fetch_all(&self.pool)
            .await
            .map_err(failure)?;
        rows.iter().map(serialized).collect()
    }

    /// Appends `events` in one statement and answers the position of the last.
    pub async fn append(
        &self,
        events: &[SerializedEvent],
    ) -> Result<Option<LogPosition>, PersistenceError> {
        if events.is_empty() {
            return Ok(None);
        }
        let column = |f: fn(&SerializedEvent) -> String| events.iter().map(f).collect::<Vec<_>>();
        let sequences = events
            .iter()
            .map(|e| i64::try_from(e.sequence))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
        let payloads = events
            .iter()
            .map(|e| json_text(&e.payload))
            .collect::<Result<Vec<_>, _>>()?;
        let metadata = events
            .iter()
            .map(|e| json_text(&e.metadata))
            .collect::<Result<Vec<_>, _>>()?;
        let rows: Vec<(i64, i64)> = sqlx::query_as(APPEND)
            .bind(column(|e| e.aggregate_type.clone()))
            .bind(column(|e| e.aggregate_id.clone()))
            .bind(sequences)
            .bind(column(|e| e.event_type.clone()))
            .bind(column(|e| e.event_version.clone()))
            .bind(payloads)
            .bind(metadata)
            .bind(events.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
            .fetch_all(&self.pool)
            .await
            .map_err(failure)?;
        Ok(rows
            .into_iter()
            .map(|(transaction_id, global_position)| LogPosition {
                transaction_id: transaction_id as u64,
                global_position,
            })
            .max())
    }
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        // A command creating an aggregate with a fresh id: no history to read (should one
        // exist, the append of sequence 1 collides with it and the command conflicts).
        if application::appended::is_fresh(aggregate_id) {
            return Ok(Vec::new());
        }
        self.select::<A>(aggregate_id, -1).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let after = i64::try_from(last_sequence).unwrap_or(i64::MAX);
        self.select::<A>(aggregate_id, after).await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if snapshot_update.is_some() {
            return Err(PersistenceError::UnknownError(
                "snapshots are not used: the store is plain event-sourced".into(),
            ));
        }
        if let Some(position) = self.append(events).await? {
            self.wakeup.appended();
            application::appended::record(position);
        }
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let events = self.select::<A>(aggregate_id, -1).await?;
        replay_stream(events).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let sql = "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, \
            payload, metadata FROM events WHERE aggregate_type = $1 ORDER BY sequence";
        let rows = sqlx::query(sql)
            .bind(A::TYPE)
            .fetch_all(&self.pool)
            .await
            .map_err(failure)?;
        let events = rows.iter().map(serialized).collect::<Result<Vec<_>, _>>()?;
        replay_stream(events).await
    }
}

/// cqrs-es's replay of stored events (not used by the service: read models are fed from the
/// global log), for the trait's sake.
async fn replay_stream(events: Vec<SerializedEvent>) -> Result<ReplayStream, PersistenceError> {
    let (mut feed, stream) = ReplayStream::new(events.len().max(1));
    for event in events {
        feed.push(Ok(event)).await?;
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_document_with_a_nul_character_is_refused_and_its_text_is_not() {
        assert!(json_text(&json!({"a": "x\u{0}y"})).is_err());
        assert!(json_text(&json!({"a\u{0}": 1})).is_err());
        assert!(json_text(&json!({"a": "\\\u{0}"})).is_err());
        // A backslash followed by the letters u0000 is text, not a NUL.
        let text = json_text(&json!({"a": "\\u0000"})).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["a"],
            "\\u0000"
        );
        assert!(json_text(&json!({"a": "plain", "b": [1, 2.5, null]})).is_ok());
    }
}
