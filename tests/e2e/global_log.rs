//! The global log reader never skips an event that commits late, and never repeats one.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use application::LogPosition;
use infrastructure::db;
use infrastructure::event_log::{head, read_after, read_page, Interest};
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

#[tokio::test]
async fn a_page_passes_over_the_events_of_no_interest_yet_reads_as_far() {
    let (iso, pool) = database().await;
    let kinds = [
        ("probe", "Kept"),
        ("other", "Kept"),
        ("probe", "Dropped"),
        ("probe", "Kept"),
        ("other", "Dropped"),
        ("probe", "Kept"),
        ("other", "Kept"),
    ];
    let mut tx = pool.begin().await.unwrap();
    for (i, (aggregate_type, event_type)) in kinds.iter().enumerate() {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ($1, 'page', $2, $3, '1', '{\"n\": 1}', '{}')",
        )
        .bind(aggregate_type)
        .bind(i as i64 + 1)
        .bind(event_type)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let mut all = Vec::new();
    for _ in 0..500 {
        all = read_after(&pool, LogPosition::START, 100).await.unwrap();
        if all.len() == kinds.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(all.len(), kinds.len());

    const PROBES: Interest = Interest::aggregates(&["probe"]);
    const KEPT_PROBES: Interest = Interest::events(&["probe"], &["Kept"]);
    for interest in [Interest::EVERYTHING, PROBES, KEPT_PROBES] {
        let expected: Vec<Uuid> = all
            .iter()
            .filter(|e| interest.wants(&e.aggregate_type, &e.event_type))
            .map(|e| e.event_id)
            .collect();
        // Whole, and two at a time: every page ends where the plain read's would.
        let page = read_page(&pool, LogPosition::START, None, 100, interest)
            .await
            .unwrap();
        assert_eq!(page.read, kinds.len());
        assert_eq!(page.last, all.last().map(|e| e.position), "{interest:?}");
        let ids: Vec<Uuid> = page.events.iter().map(|e| e.event_id).collect();
        assert_eq!(ids, expected, "{interest:?}");
        assert!(page.events.iter().all(|e| e.payload["n"] == 1));

        let (mut cursor, mut paged) = (LogPosition::START, Vec::new());
        loop {
            let page = read_page(&pool, cursor, None, 2, interest).await.unwrap();
            let Some(last) = page.last else { break };
            let plain = read_after(&pool, cursor, 2).await.unwrap();
            assert_eq!(Some(last), plain.last().map(|e| e.position));
            paged.extend(page.events.into_iter().map(|e| e.event_id));
            cursor = last;
        }
        assert_eq!(paged, expected, "{interest:?}");
    }
    assert_eq!(KEPT_PROBES.event_types, Some(&["Kept"][..]));

    // Up to a position, inclusive.
    let until = all[2].position;
    let page = read_page(
        &pool,
        LogPosition::START,
        Some(until),
        100,
        Interest::EVERYTHING,
    )
    .await
    .unwrap();
    assert_eq!((page.read, page.last), (3, Some(until)));
    let page = read_page(&pool, until, Some(until), 100, Interest::EVERYTHING)
        .await
        .unwrap();
    assert_eq!((page.read, page.last), (0, None));
    pool.close().await;
    iso.cleanup().await;
}
