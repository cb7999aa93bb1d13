//! The NATS relay: publishes every committed event to JetStream, in log order.
//!
//! Each message has `Nats-Msg-Id` = event id, so a batch re-sent after a crash or a lost ack
//! is dropped by the stream's duplicate window; the checkpoint moves only after every ack of
//! a batch arrived. NATS down: batches fail and are retried; nothing is skipped.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::context::{Context as JetStream, PublishAckFuture};
use async_nats::jetstream::{self, message::PublishMessage, stream};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, OnceCell};
use uuid::Uuid;

use application::LogPosition;
use cqrs_es::persist::EventUpcaster;
use domain::upcast::{upcast_payload, ChainUpcaster};

use crate::event_log::{data_of, read_raw_after, RawEvent, StoredEvent};
use crate::subscription::{load_checkpoint, save_checkpoint, Subscriber};

pub const SUBSCRIPTION: &str = "relay";

/// Long enough to cover a relay restart after a crash between publish and checkpoint.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 60 * 60);

/// The JSON published for every event (docs/events.md lists the events and their payloads).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub event_id: Uuid,
    pub global_position: i64,
    /// With `globalPosition`, the event's place in the log: ordered by (transactionId,
    /// globalPosition), which is the order of publication.
    #[serde(default)]
    pub transaction_id: u64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub metadata: Value,
    pub payload: Value,
}

/// `Envelope`'s fields borrowed from the event: what the relay serialises (the payload and
/// metadata are written from where they are, never copied first).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeOf<'e, V: Serialize + ?Sized> {
    event_id: Uuid,
    global_position: i64,
    transaction_id: u64,
    aggregate_type: &'e str,
    aggregate_id: &'e str,
    sequence: i64,
    event_type: &'e str,
    event_version: &'e str,
    occurred_at: chrono::DateTime<chrono::Utc>,
    metadata: &'e V,
    payload: &'e V,
}

/// The envelope of `event`, with the metadata and payload written as given.
fn envelope<'e, D, V: Serialize + ?Sized>(
    event: &'e StoredEvent<D>,
    metadata: &'e V,
    payload: &'e V,
) -> EnvelopeOf<'e, V> {
    EnvelopeOf {
        event_id: event.event_id,
        global_position: event.position.global_position,
        transaction_id: event.position.transaction_id,
        aggregate_type: &event.aggregate_type,
        aggregate_id: &event.aggregate_id,
        sequence: event.sequence,
        event_type: &event.event_type,
        event_version: &event.event_version,
        occurred_at: event.recorded_at,
        metadata,
        payload,
    }
}

impl Envelope {
    /// The JSON of the envelope of `event`, as published: the payload and metadata are
    /// spliced in as they are (checked to be JSON, not decoded), unless the event is of a
    /// version an upcaster rewrites, which goes the decoded way.
    pub fn json_of(event: &RawEvent) -> anyhow::Result<Vec<u8>> {
        if ChainUpcaster.can_upcast(&event.event_type, &event.event_version) {
            let (event_version, payload) = upcast_payload(
                &event.event_type,
                &event.event_version,
                serde_json::from_str(&event.payload)?,
            );
            let metadata: Value = serde_json::from_str(&event.metadata)?;
            let mut upcast = envelope(event, &metadata, data_of(&payload, &event.event_type));
            upcast.event_version = &event_version;
            return Ok(serde_json::to_vec(&upcast)?);
        }
        let payload = untagged(&event.payload, &event.event_type)?;
        let metadata: &RawValue = serde_json::from_str(&event.metadata)?;
        Ok(serde_json::to_vec(&envelope(event, metadata, payload))?)
    }
}

/// As `StoredEvent::data`: the fields inside `{"<eventType>": {...}}`, or the payload as it
/// is when it is not tagged so; an error when it is not JSON.
fn untagged<'p>(payload: &'p str, event_type: &str) -> serde_json::Result<&'p RawValue> {
    if let Ok(map) = serde_json::from_str::<BTreeMap<Cow<'p, str>, &'p RawValue>>(payload) {
        if let (1, Some(inner)) = (map.len(), map.get(event_type)) {
            return Ok(*inner);
        }
    }
    serde_json::from_str(payload)
}

/// `<prefix>.<aggregate>.<aggregateId>.<eventType>`
pub fn subject<D>(prefix: &str, event: &StoredEvent<D>) -> String {
    format!(
        "{prefix}.{}.{}.{}",
        event.aggregate_type, event.aggregate_id, event.event_type
    )
}

/// Connects without waiting for the server: the client keeps reconnecting in the background,
/// so `serve` starts (and buffers nothing in memory) while NATS is down.
pub async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .with_context(|| format!("invalid NATS_URL {url}"))
}

pub struct Relay {
    jetstream: JetStream,
    stream_name: String,
    prefix: String,
    batch_size: i64,
    stream_ready: OnceCell<()>,
}

impl Relay {
    pub fn new(client: async_nats::Client, stream_name: &str, prefix: &str) -> Relay {
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(Duration::from_secs(5));
        Relay {
            jetstream,
            stream_name: stream_name.to_string(),
            prefix: prefix.to_string(),
            batch_size: 1024,
            stream_ready: OnceCell::new(),
        }
    }

    async fn ensure_stream(&self) -> anyhow::Result<()> {
        self.stream_ready
            .get_or_try_init(|| async {
                self.jetstream
                    .get_or_create_stream(stream::Config {
                        name: self.stream_name.clone(),
                        subjects: vec![format!("{}.>", self.prefix)],
                        storage: stream::StorageType::File,
                        duplicate_window: DUPLICATE_WINDOW,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                    .with_context(|| format!("cannot create JetStream stream {}", self.stream_name))
            })
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Subscriber for Relay {
    fn name(&self) -> &str {
        SUBSCRIPTION
    }

    /// Up to `ROUNDS` batches through three stages that run at once: the log is read a
    /// batch ahead, each batch is sent while JetStream still acknowledges the ones before,
    /// and a batch is settled (the checkpoint moved past it) once it and every batch before
    /// it are all acknowledged. A crash at any point republishes (deduplicated by event id)
    /// and skips nothing; a failing stage stops the others, and what was settled stays.
    async fn run_batch(&self, pool: &PgPool) -> anyhow::Result<usize> {
        let from = load_checkpoint(pool, SUBSCRIPTION, false).await?;
        let first = read_raw_after(pool, from, self.batch_size).await?;
        if first.is_empty() {
            return Ok(0);
        }
        self.ensure_stream().await?;
        let (batches, mut to_publish) = mpsc::channel::<Vec<RawEvent>>(1);
        let (sent, mut to_settle) = mpsc::channel::<Sent>(1);
        let batch_size = self.batch_size;
        let read_ahead = async move {
            let mut next = first;
            for round in 1..=ROUNDS {
                let Some(last) = next.last().map(|e| e.position) else {
                    break;
                };
                let full = next.len() as i64 == batch_size;
                if batches.send(next).await.is_err() || !full || round == ROUNDS {
                    break;
                }
                next = read_raw_after(pool, last, batch_size).await?;
            }
            Ok::<_, anyhow::Error>(())
        };
        let publish = async move {
            while let Some(events) = to_publish.recv().await {
                let Some(last) = events.last().map(|e| e.position) else {
                    continue;
                };
                let acks = self.publish(&events).await?;
                let batch = Sent { acks, last };
                if sent.send(batch).await.is_err() {
                    break;
                }
            }
            Ok::<_, anyhow::Error>(())
        };
        let settle_in_order = async move {
            let mut settled = 0;
            while let Some(batch) = to_settle.recv().await {
                settled += settle(pool, batch).await?;
            }
            Ok::<_, anyhow::Error>(settled)
        };
        let (read, published, settled) = tokio::join!(read_ahead, publish, settle_in_order);
        let settled = settled?;
        published?;
        read?;
        Ok(settled)
    }
}

/// A batch sent to JetStream whose acknowledgements may still be on their way.
struct Sent {
    /// One per event of the batch.
    acks: Vec<PublishAckFuture>,
    last: LogPosition,
}

/// Waits for every acknowledgement of `batch`, then moves the checkpoint past it; answers
/// how many events it settled.
async fn settle(pool: &PgPool, batch: Sent) -> anyhow::Result<usize> {
    let count = batch.acks.len();
    acknowledged(batch.acks).await?;
    save_checkpoint(pool, SUBSCRIPTION, batch.last).await?;
    metrics::counter!("brightrun_relay_published_total").increment(count as u64);
    Ok(count)
}

/// Batches one `run_batch` publishes at most before it returns to the runner.
const ROUNDS: usize = 16;

impl Relay {
    /// Sends every event of `events`, in order, answering the acknowledgements to await.
    async fn publish(&self, events: &[RawEvent]) -> anyhow::Result<Vec<PublishAckFuture>> {
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let body = Envelope::json_of(event)?;
            let message = PublishMessage::build()
                .message_id(event.event_id.to_string())
                .payload(body.into());
            let ack = self
                .jetstream
                .send_publish(subject(&self.prefix, event), message)
                .await
                .with_context(|| format!("cannot publish event {}", event.event_id))?;
            acks.push(ack);
        }
        Ok(acks)
    }
}

async fn acknowledged(acks: Vec<PublishAckFuture>) -> anyhow::Result<()> {
    for ack in
        futures::future::join_all(acks.into_iter().map(std::future::IntoFuture::into_future)).await
    {
        ack.context("JetStream did not acknowledge a publication")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: &str, metadata: &str) -> RawEvent {
        RawEvent {
            event_id: Uuid::now_v7(),
            position: LogPosition {
                transaction_id: 7,
                global_position: 42,
            },
            aggregate_type: "dataset".into(),
            aggregate_id: Uuid::now_v7().to_string(),
            sequence: 3,
            event_type: "DatasetRegistered".into(),
            event_version: "1".into(),
            payload: payload.into(),
            metadata: metadata.into(),
            recorded_at: chrono::Utc::now(),
        }
    }

    /// The envelope written from decoded values: what the text's must equal.
    fn json_from_values(event: &StoredEvent) -> Vec<u8> {
        serde_json::to_vec(&envelope(event, &event.metadata, event.data())).unwrap()
    }

    fn decoded(raw: &RawEvent) -> StoredEvent {
        StoredEvent {
            event_id: raw.event_id,
            position: raw.position,
            aggregate_type: raw.aggregate_type.clone(),
            aggregate_id: raw.aggregate_id.clone(),
            sequence: raw.sequence,
            event_type: raw.event_type.clone(),
            event_version: raw.event_version.clone(),
            payload: serde_json::from_str(&raw.payload).unwrap(),
            metadata: serde_json::from_str(&raw.metadata).unwrap(),
            recorded_at: raw.recorded_at,
        }
    }

    #[test]
    fn the_envelope_from_text_is_the_envelope_from_values() {
        for (payload, metadata) in [
            (
                r#"{"DatasetRegistered":{"name":"a \"quoted\" name \u00e9 ✓","size":12,"ratio":0.25,"tags":["x",null,true],"nested":{"k":[]}}}"#,
                r#"{"userId":"u1","requestId":"r"}"#,
            ),
            // Not tagged with its type: published as it is.
            (r#"{"Other":{"a":1}}"#, "{}"),
            (r#"{"DatasetRegistered":{"a":1},"extra":2}"#, "{}"),
            (r#""DatasetRegistered""#, "{}"),
            (
                r#"{ "DatasetRegistered" : { "spaced" : [ 1 , 2 ] } }"#,
                r#"{ "a" : 1 }"#,
            ),
            (r#"{"Dataset\u0052egistered":{"escaped key":1}}"#, "{}"),
        ] {
            let raw = event(payload, metadata);
            let from_text: Value =
                serde_json::from_slice(&Envelope::json_of(&raw).unwrap()).unwrap();
            let from_values: Value =
                serde_json::from_slice(&json_from_values(&decoded(&raw))).unwrap();
            assert_eq!(from_text, from_values, "{payload}");
            let envelope: Envelope = serde_json::from_value(from_text).unwrap();
            assert_eq!(envelope.global_position, 42);
        }
    }

    #[test]
    fn text_that_is_not_json_is_an_error_not_a_publication() {
        assert!(Envelope::json_of(&event("{\"DatasetRegistered\":", "{}")).is_err());
        assert!(Envelope::json_of(&event("{}", "nope")).is_err());
    }
}
