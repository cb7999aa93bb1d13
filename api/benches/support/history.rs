//! A history generator for the benchmarks at scale: a real journey's events (recorded once
//! through the service, so every payload is one the projectors and the audit really read)
//! written again and again with fresh ids, by COPY, into the same event store.
//!
//! Every UUID in a recorded event (aggregate ids, ids inside payloads and metadata, object
//! keys that carry them) is a slot; each copy fills the slots with new ids, except the
//! owner's, which the caller chooses per copy (one user with many jobs, or many users).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::{PgPool, Row};
use uuid::Uuid;

/// A piece of a recorded text: literal (already escaped for COPY's text format) or a slot.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Slot(usize),
}

#[derive(Debug, Clone)]
struct Recorded {
    aggregate_type: String,
    aggregate_id: Vec<Piece>,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Vec<Piece>,
    metadata: Vec<Piece>,
}

pub struct Template {
    rows: Vec<Recorded>,
    slots: usize,
    owner: Option<usize>,
}

/// COPY text format: backslash, tab, newline and carriage return are escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// `text` cut at every UUID (8-4-4-4-12 hex), each one numbered by `slots`.
fn pieces(text: &str, slots: &mut HashMap<Uuid, usize>) -> Vec<Piece> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i + 36 <= bytes.len() {
        let candidate = &bytes[i..i + 36];
        let shaped = candidate.iter().enumerate().all(|(k, b)| match k {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
        if shaped {
            // All ASCII, so `i` and `i + 36` are character boundaries.
            if let Ok(id) = Uuid::parse_str(&text[i..i + 36]) {
                if start < i {
                    out.push(Piece::Text(escape(&text[start..i])));
                }
                let next = slots.len();
                out.push(Piece::Slot(*slots.entry(id).or_insert(next)));
                i += 36;
                start = i;
                continue;
            }
        }
        i += 1;
        while i < bytes.len() && !text.is_char_boundary(i) {
            i += 1;
        }
    }
    if start < text.len() {
        out.push(Piece::Text(escape(&text[start..])));
    }
    out
}

impl Template {
    /// The events of `pool`'s store that `keep` (aggregate type, event type) selects, in log
    /// order; `owner` is the user whose id each copy replaces with the one it is given.
    pub async fn read(pool: &PgPool, owner: Uuid, keep: impl Fn(&str, &str) -> bool) -> Template {
        let rows = sqlx::query(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, \
               payload::text AS payload, metadata::text AS metadata \
             FROM events ORDER BY transaction_id, global_position",
        )
        .fetch_all(pool)
        .await
        .expect("template events");
        let mut slots = HashMap::new();
        let mut recorded = Vec::new();
        for row in rows {
            let aggregate_type: String = row.get("aggregate_type");
            let event_type: String = row.get("event_type");
            if !keep(&aggregate_type, &event_type) {
                continue;
            }
            recorded.push(Recorded {
                aggregate_id: pieces(row.get("aggregate_id"), &mut slots),
                sequence: row.get("sequence"),
                event_version: row.get("event_version"),
                payload: pieces(row.get("payload"), &mut slots),
                metadata: pieces(row.get("metadata"), &mut slots),
                aggregate_type: escape(&aggregate_type),
                event_type: escape(&event_type),
            });
        }
        Template {
            owner: slots.get(&owner).copied(),
            slots: slots.len(),
            rows: recorded,
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// How many of the template's events are of one of `types`.
    pub fn count(&self, types: &[&str]) -> usize {
        self.rows
            .iter()
            .filter(|r| types.contains(&r.event_type.as_str()))
            .count()
    }

    /// Appends `copies` copies of the template, copy `k` owned by `owner(k)`, in COPY
    /// statements of about 50,000 events (each its own transaction). Answers the events
    /// written and the time it took.
    pub async fn write(
        &self,
        pool: &PgPool,
        copies: usize,
        owner: impl Fn(usize) -> Uuid,
    ) -> (u64, Duration) {
        let started = Instant::now();
        let per_statement = (50_000 / self.rows.len().max(1)).max(1);
        let mut written = 0u64;
        let mut k = 0;
        while k < copies {
            let upto = (k + per_statement).min(copies);
            let mut buf = String::with_capacity(self.rows.len() * (upto - k) * 400);
            for copy in k..upto {
                let mut ids: Vec<String> = (0..self.slots)
                    .map(|_| Uuid::new_v4().to_string())
                    .collect();
                if let Some(slot) = self.owner {
                    ids[slot] = owner(copy).to_string();
                }
                for row in &self.rows {
                    buf.push_str(&Uuid::now_v7().to_string());
                    buf.push('\t');
                    buf.push_str(&row.aggregate_type);
                    buf.push('\t');
                    push(&mut buf, &row.aggregate_id, &ids);
                    buf.push('\t');
                    buf.push_str(&row.sequence.to_string());
                    buf.push('\t');
                    buf.push_str(&row.event_type);
                    buf.push('\t');
                    buf.push_str(&row.event_version);
                    buf.push('\t');
                    push(&mut buf, &row.payload, &ids);
                    buf.push('\t');
                    push(&mut buf, &row.metadata, &ids);
                    buf.push('\n');
                }
            }
            let mut conn = pool.acquire().await.expect("connection");
            let mut copy = conn
                .copy_in_raw(
                    "COPY events (event_id, aggregate_type, aggregate_id, sequence, event_type, \
                       event_version, payload, metadata) FROM STDIN",
                )
                .await
                .expect("COPY");
            copy.send(buf.into_bytes()).await.expect("COPY data");
            written += copy.finish().await.expect("COPY end");
            k = upto;
        }
        (written, started.elapsed())
    }
}

fn push(buf: &mut String, pieces: &[Piece], ids: &[String]) {
    for piece in pieces {
        match piece {
            Piece::Text(t) => buf.push_str(t),
            Piece::Slot(s) => buf.push_str(&ids[*s]),
        }
    }
}
