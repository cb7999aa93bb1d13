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
