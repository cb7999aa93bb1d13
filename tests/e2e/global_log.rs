//! The global log reader never skips an event that commits late, and never repeats one.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use application::LogPosition;
use infrastructure::db;
use infrastructure::event_log::{head, read_after};
use rand::Rng;
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::Isolation;

async fn append(tx: &mut sqlx::PgConnection, aggregate: &str, sequence: i64) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('probe', $1, $2, 'Probed', '1', '{}', '{}') RETURNING event_id",
    )
    .bind(aggregate)
    .bind(sequence)
    .fetch_one(tx)
    .await
    .expect("insert event")
}

async fn database() -> (Isolation, PgPool) {
    let iso = Isolation::new();
    let pool = db::prepare(&iso.database_url(), 24)
        .await
        .expect("database");
    (iso, pool)
}

#[tokio::test]
async fn an_event_that_commits_late_with_a_smaller_position_is_not_skipped() {
    let (iso, pool) = database().await;
    // A takes position 1 and stays open; B takes position 2 and commits first.
    let mut a = pool.begin().await.unwrap();
    let first = append(&mut a, "a", 1).await;
    let mut b = pool.begin().await.unwrap();
    let second = append(&mut b, "b", 1).await;
    b.commit().await.unwrap();

    // A naive "position > cursor" reader would return B now and never see A.
    let seen = read_after(&pool, LogPosition::START, 100).await.unwrap();
    assert!(
        seen.is_empty(),
        "nothing may be read while an older writer is open: {seen:?}"
    );

    a.commit().await.unwrap();
    // Other tests' open transactions may hold the (cluster-wide) xmin back for a moment.
    let mut seen = Vec::new();
    for _ in 0..500 {
        seen = read_after(&pool, LogPosition::START, 100).await.unwrap();
        if seen.len() == 2 {
            break;
        }
        assert!(
            seen.is_empty() || seen[0].event_id == first,
            "the later position came first: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ids: Vec<Uuid> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, vec![first, second]);
    let after = read_after(&pool, seen[1].position, 100).await.unwrap();
    assert!(after.is_empty());
    pool.close().await;
    iso.cleanup().await;
}

#[tokio::test]
async fn a_tailing_reader_sees_every_committed_event_once_under_concurrent_writers() {
    let (iso, pool) = database().await;
    const WRITERS: usize = 16;
    const TRANSACTIONS: usize = 25;
    let done = Arc::new(AtomicBool::new(false));

    // Tails the log until the writers are done and it has reached the head. An empty batch
    // does not mean caught up: the xmin gate is cluster-wide, so another test's open
    // transaction can hold the reader back for a moment.
    let reader = {
        let pool = pool.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut cursor = LogPosition::START;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let batch = read_after(&pool, cursor, 37).await.expect("read");
                if let Some(last) = batch.last() {
                    assert!(last.position > cursor);
                    cursor = last.position;
                }
                let empty = batch.is_empty();
                seen.extend(batch);
                if finished && empty && cursor >= head(&pool).await.expect("head") {
                    return seen;
                }
                if empty {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }
        })
    };

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            let mut committed = Vec::new();
            let aggregate = format!("writer-{w}");
            let mut sequence = 0i64;
            for _ in 0..TRANSACTIONS {
                let (count, delay_ms, rollback) = {
                    let mut rng = rand::rng();
                    (
                        rng.random_range(1..=3),
                        rng.random_range(0..15u64),
                        rng.random_bool(0.2),
                    )
                };
                let mut tx = pool.begin().await.expect("begin");
                let mut ids = Vec::new();
                for _ in 0..count {
                    sequence += 1;
                    ids.push(append(&mut tx, &aggregate, sequence).await);
                }
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                if rollback {
                    tx.rollback().await.expect("rollback");
                    sequence -= count;
                } else {
                    tx.commit().await.expect("commit");
                    committed.extend(ids);
                }
            }
            committed
        }));
    }
    let mut committed = HashSet::new();
    for w in writers {
        committed.extend(w.await.expect("writer"));
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.expect("reader");

    let seen_ids: Vec<Uuid> = seen.iter().map(|e| e.event_id).collect();
    let unique: HashSet<Uuid> = seen_ids.iter().copied().collect();
    assert_eq!(unique.len(), seen_ids.len(), "an event was read twice");
    assert_eq!(unique, committed, "read set differs from the committed set");
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "log order is not consistent"
    );
    // Every aggregate's events arrive in its own sequence order.
    for w in 0..WRITERS {
        let seqs: Vec<i64> = seen
            .iter()
            .filter(|e| e.aggregate_id == format!("writer-{w}"))
            .map(|e| e.sequence)
            .collect();
        assert!(
            seqs.windows(2).all(|p| p[0] < p[1]),
            "writer-{w} out of order: {seqs:?}"
        );
    }
    // The hazard was really exercised: positions were committed out of order.
    let out_of_position_order = seen
        .windows(2)
        .filter(|w| w[1].position.global_position < w[0].position.global_position)
        .count();
    eprintln!(
        "{} events, {} read out of global_position order",
        seen.len(),
        out_of_position_order
    );
    pool.close().await;
    iso.cleanup().await;
}
