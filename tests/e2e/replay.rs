//! `replay` rebuilds read models from position 0 and the result equals the live tables.

use std::sync::Arc;

use serde_json::Value;

use crate::common::TestApp;

async fn snapshot(pool: &sqlx::PgPool) -> Value {
    sqlx::query_scalar(
        "SELECT COALESCE(jsonb_agg(to_jsonb(t) ORDER BY t.id), '[]') FROM rm_datasets t",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Logs in as the owner of `dataset` (test users share one password).
async fn owner_token(app: &TestApp, dataset: uuid::Uuid) -> String {
    let email: String = sqlx::query_scalar(
        "SELECT u.email FROM users u JOIN rm_datasets d ON d.user_id = u.id WHERE d.id = $1",
    )
    .bind(dataset)
    .fetch_one(app.pool())
    .await
    .unwrap();
    let (_, session) = app
        .post(
            "/api/auth/login",
            None,
            serde_json::json!({"email": email, "password": "correct horse"}),
        )
        .await;
    session["data"]["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn replay_reproduces_the_live_read_models_row_by_row() {
    let app = TestApp::start().await;
    for user in ["ada", "grace"] {
        let (_, token) = app.user(user).await;
        for i in 0..7 {
            app.register_dataset(&token, &format!("{user} {i}"), 100 + i)
                .await;
        }
    }
    // Every event type: rename one dataset, delete another.
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM rm_datasets ORDER BY id LIMIT 2")
        .fetch_all(app.pool())
        .await
        .unwrap();
    let token = owner_token(&app, ids[0]).await;
    let renamed = app
        .http
        .patch(app.url(&format!("/api/datasets/{}", ids[0])))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "renamed", "description": "new words"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    let other = owner_token(&app, ids[1]).await;
    let deleted = app
        .http
        .delete(app.url(&format!("/api/datasets/{}", ids[1])))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);

    let live = snapshot(app.pool()).await;
    assert_eq!(
        live.as_array().unwrap().len(),
        14,
        "the deleted row stays, marked"
    );

    let report = projections::replay::replay(
        app.pool(),
        Arc::new(projections::datasets::DatasetsProjector),
    )
    .await
    .unwrap();
    assert_eq!(report.events, 16);
    assert_eq!(report.differences, 0);
    assert_eq!(snapshot(app.pool()).await, live);

    // The comparison is real: a damaged live row is reported and repaired.
    sqlx::query("UPDATE rm_datasets SET name = 'damaged' WHERE id = (SELECT id FROM rm_datasets ORDER BY id LIMIT 1)")
        .execute(app.pool())
        .await
        .unwrap();
    let report = projections::replay::replay(
        app.pool(),
        Arc::new(projections::datasets::DatasetsProjector),
    )
    .await
    .unwrap();
    assert_eq!(
        report.differences, 2,
        "one row only in live, one only in the rebuild"
    );
    assert_eq!(snapshot(app.pool()).await, live);

    // The live projection goes on after the swap.
    let (_, token) = app.user("late").await;
    let id = app.register_dataset(&token, "after replay", 1).await;
    let (status, _) = app.get(&format!("/api/datasets/{id}"), Some(&token)).await;
    assert_eq!(status, 200);
    app.finish().await;
}

#[tokio::test]
async fn the_replay_command_leaves_the_read_models_unchanged() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    for i in 0..3 {
        app.register_dataset(&token, &format!("set {i}"), 10).await;
    }
    let before = snapshot(app.pool()).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_brightrun"))
        .args(["replay", "all"])
        .env("DATABASE_URL", app.iso.database_url())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("datasets: replayed 3 events") && stdout.contains("0 rows differed"),
        "{stdout}"
    );
    assert_eq!(snapshot(app.pool()).await, before);
    app.finish().await;
}

/// Fresh copies of `projector`'s tables in schema `schema`, with every event of `events`
/// folded in: one at a time when `chunks` is empty, else with `apply_all` over batches of
/// the sizes of `chunks`, in turn.
async fn fold_into(
    pool: &sqlx::PgPool,
    projector: &dyn projections::Projector,
    schema: &str,
    events: &[infrastructure::event_log::StoredEvent],
    chunks: &[usize],
) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    projections::replay::copy_tables(&mut tx, projector.tables(), schema)
        .await
        .unwrap();
    sqlx::query(&format!("SET LOCAL search_path TO {schema}, public"))
        .execute(&mut *tx)
        .await
        .unwrap();
    if chunks.is_empty() {
        for event in events {
            projector.apply(&mut tx, event).await.unwrap();
        }
    } else {
        let (mut at, mut turn) = (0, 0);
        while at < events.len() {
            let end = (at + chunks[turn % chunks.len()]).min(events.len());
            projector
                .apply_all(&mut tx, &events[at..end])
                .await
                .unwrap();
            (at, turn) = (end, turn + 1);
        }
    }
    tx.commit().await.unwrap();
}

/// Rows in one schema's copy of `table` and not the other's, both ways.
async fn differences(pool: &sqlx::PgPool, table: &str, a: &str, b: &str) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT (SELECT count(*) FROM (SELECT * FROM {a}.{table} EXCEPT ALL SELECT * FROM {b}.{table}) x) \
              + (SELECT count(*) FROM (SELECT * FROM {b}.{table} EXCEPT ALL SELECT * FROM {a}.{table}) y)"
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The set-based folds (a run of metric points, log lines, progress and cost accruals in one
/// statement per table) leave every table as folding the events one at a time does, whatever
/// the batches' bounds, and as the live projections left them.
#[tokio::test]
async fn folding_in_batches_leaves_the_tables_the_one_event_fold_leaves() {
    use infrastructure::event_log::{head, read_after};
    use infrastructure::subscription::wait_for;

    let app = crate::saga::start(&[]).await;
    let (_, token) = app.user("ada").await;
    let id = crate::saga::launch(&app, &token).await;
    let job = crate::saga::until(&app, &token, &id, "completion", |j| {
        j["status"] == "completed"
    })
    .await;
    let model = job["artifactId"].as_str().unwrap().to_string();
    let (status, _) = app
        .get(&format!("/api/models/{model}/download"), Some(&token))
        .await;
    assert_eq!(status, 200);
    // The history, once every live projection has folded all of it.
    let events = loop {
        let end = head(app.pool()).await.unwrap();
        for projector in projections::all() {
            let name = projections::subscription_name(projector.name());
            assert!(
                wait_for(app.pool(), &name, end, std::time::Duration::from_secs(10)).await,
                "{name} caught up"
            );
        }
        if head(app.pool()).await.unwrap() == end {
            let mut events = Vec::new();
            loop {
                let from = events
                    .last()
                    .map(|e: &infrastructure::event_log::StoredEvent| e.position)
                    .unwrap_or(application::LogPosition::START);
                let page = read_after(app.pool(), from, 1000).await.unwrap();
                if page.is_empty() {
                    break;
                }
                events.extend(page.into_iter().filter(|e| e.position <= end));
            }
            break events;
        }
    };
    let telemetry = events
        .iter()
        .filter(|e| e.event_type == "MetricPointRecorded")
        .count();
    assert!(telemetry >= 10, "a real run: {telemetry} metric points");

    for projector in projections::all() {
        let name = projector.name();
        let (one, chunked) = (format!("one_{name}"), format!("chunked_{name}"));
        fold_into(app.pool(), &*projector, &one, &events, &[]).await;
        fold_into(
            app.pool(),
            &*projector,
            &chunked,
            &events,
            &[1, 7, 2, 50, 3, 500],
        )
        .await;
        for table in projector.tables() {
            let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {one}.{table}"))
                .fetch_one(app.pool())
                .await
                .unwrap();
            assert_eq!(
                differences(app.pool(), table, &one, &chunked).await,
                0,
                "{table}: batches vs one at a time ({rows} rows)"
            );
            assert_eq!(
                differences(app.pool(), table, &one, "public").await,
                0,
                "{table}: one at a time vs live ({rows} rows)"
            );
        }
    }
    app.finish().await;
}
