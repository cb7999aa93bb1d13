//! Budget alerts (one `cost_alert` per user, month and threshold, none new on redelivery or
//! replay) and the cost audit (zero drift on a clean history; a tampered ledger row makes
//! `brightrun audit costs` exit non-zero and name the entry).

use std::time::Duration;

use application::CommandContext;
use chrono::Utc;
use domain::ids::{JobId, UserId};
use domain::job::{CostType, JobCommand};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{eventually, TestApp};
use crate::saga::{launch, start, until};

async fn subscription_caught_up(app: &TestApp, name: &str) {
    let head = infrastructure::event_log::head(app.pool()).await.unwrap();
    assert!(
        infrastructure::subscription::wait_for(app.pool(), name, head, Duration::from_secs(10))
            .await,
        "{name} caught up"
    );
}

async fn crossed(app: &TestApp, user: &str) -> Vec<(i64, Value)> {
    sqlx::query_as::<_, (i64, sqlx::types::Json<Value>)>(
        "SELECT sequence, payload::jsonb FROM events WHERE aggregate_type = 'budget' \
         AND aggregate_id LIKE $1 || ':%' ORDER BY sequence",
    )
    .bind(user)
    .fetch_all(app.pool())
    .await
    .unwrap()
    .into_iter()
    .map(|(s, p)| (s, p.0["BudgetThresholdCrossed"].clone()))
    .collect()
}

#[tokio::test]
async fn budget_thresholds_alert_once_each_and_never_again_on_redelivery_or_replay() {
    let app = TestApp::start_without_saga().await;
    let (user, token) = app.user("ada").await;
    let budget = app
        .http
        .patch(app.url("/api/auth/me"))
        .bearer_auth(&token)
        .json(&json!({"monthlyBudget": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(budget.status(), 200);
    let dataset = app
        .validated_dataset(&token, "support-chats-v4.jsonl", "brightrun-lora-v4")
        .await;
    let job = JobId(
        Uuid::parse_str(&app.create_job(&token, &dataset, "llama-3-8b").await).expect("job id"),
    );
    let jobs = app.service.as_ref().unwrap().state.jobs.clone();
    let ctx = CommandContext {
        user_id: UserId(Uuid::parse_str(&user).unwrap()),
        request_id: Uuid::now_v7().to_string(),
        correlation_id: "test-budget".into(),
        causation_id: None,
    };
    let run = |command: JobCommand| {
        let (jobs, ctx) = (jobs.clone(), ctx.clone());
        async move { jobs.execute(&ctx, job, command).await.expect("command") }
    };
    run(JobCommand::StartSubmission {
        attempt: 1,
        idempotency_key: format!("{job}-1"),
        at: Utc::now(),
    })
    .await;
    run(JobCommand::RecordSubmission {
        attempt: 1,
        cluster_job_id: "cj-1".into(),
        at: Utc::now(),
    })
    .await;
    // Against a budget of $1: 0.50, 0.85 (80 % crossed), 0.95, 1.05 (100 % crossed).
    let mut expected = 0;
    for (i, cents, crossed_now) in [(1, 50, 0), (2, 35, 1), (3, 10, 0), (4, 10, 1)] {
        run(JobCommand::AccrueCost {
            entry_key: format!("storage:{i}"),
            cost_type: CostType::Storage,
            quantity: Decimal::new(cents, 2),
            rate: Decimal::ONE,
            details: json!({}),
            compute_until: None,
            at: Utc::now(),
        })
        .await;
        subscription_caught_up(&app, infrastructure::budget::BUDGET_SUBSCRIPTION).await;
        expected += crossed_now;
        eventually("the budget check", Duration::from_secs(10), || async {
            crossed(&app, &user).await.len() == expected
        })
        .await;
    }
    let raised = crossed(&app, &user).await;
    assert_eq!(raised[0].1["percent"], 80);
    assert_eq!(raised[0].1["level"], "warning");
    assert_eq!(raised[1].1["percent"], 100);
    assert_eq!(raised[1].1["level"], "critical");

    // The notifications: one each, high then critical, pointing at the costs page.
    subscription_caught_up(&app, &projections::subscription_name("notifications")).await;
    let alerts = |body: &Value| -> Vec<(String, String)> {
        body["data"]["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] == "cost_alert")
            .map(|n| {
                assert_eq!(n["actionUrl"], "/costs");
                (
                    n["priority"].as_str().unwrap().to_string(),
                    n["title"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let (_, list) = app.get("/api/notifications", Some(&token)).await;
    let before = alerts(&list);
    assert_eq!(before.len(), 2, "{list}");
    assert_eq!(before[0].0, "critical", "newest first");
    assert_eq!(before[1].0, "high");

    // Redelivery: the watcher reads the whole log again; nothing is raised twice.
    sqlx::query(
        "UPDATE subscription_checkpoints SET transaction_id = '0'::xid8, global_position = 0 WHERE name = $1",
    )
    .bind(infrastructure::budget::BUDGET_SUBSCRIPTION)
    .execute(app.pool())
    .await
    .unwrap();
    subscription_caught_up(&app, infrastructure::budget::BUDGET_SUBSCRIPTION).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(crossed(&app, &user).await.len(), 2);
    // Replay of the notifications read model: the same two alerts.
    let report =
        projections::replay::replay(app.pool(), projections::by_name("notifications").unwrap())
            .await
            .unwrap();
    assert_eq!(report.differences, 0);
    let (_, list) = app.get("/api/notifications", Some(&token)).await;
    assert_eq!(alerts(&list), before);
    app.finish().await;
}

async fn audit_cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_brightrun"))
        .args(["audit", "costs"])
        .args(args)
        .env("DATABASE_URL", app.iso.database_url())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test]
async fn the_audit_finds_no_drift_in_a_clean_history_and_names_a_tampered_entry() {
    let app = start(&[]).await;
    let (user, token) = app.user("ada").await;
    let id = launch(&app, &token).await;
    let job = until(&app, &token, &id, "completion", |j| {
        j["status"] == "completed"
    })
    .await;
    let model = job["artifactId"].as_str().unwrap().to_string();
    let (status, _) = app
        .get(&format!("/api/models/{model}/download"), Some(&token))
        .await;
    assert_eq!(status, 200);
    for name in ["costs", "jobs"] {
        subscription_caught_up(&app, &projections::subscription_name(name)).await;
    }

    // Clean: zero drift, over the CLI (text and JSON) and for billing admins over HTTP.
    let (ok, out) = audit_cli(&app, &[]).await;
    assert!(ok, "{out}");
    assert!(out.contains("zero drift"), "{out}");
    let (ok, out) = audit_cli(&app, &["--json", "--user", &user]).await;
    assert!(ok, "{out}");
    let report: Value = serde_json::from_str(&out).expect("JSON");
    let total: Decimal = report["total"].as_str().unwrap().parse().unwrap();
    assert!(total > Decimal::ZERO);
    assert_eq!(report["drifts"], json!([]));
    let compute = report["entries"].as_u64().unwrap();
    assert!(compute >= 4, "{report}");
    // As of yesterday the ledger was empty, and the replay says so.
    let yesterday = (Utc::now() - chrono::Duration::days(1))
        .date_naive()
        .to_string();
    let (ok, out) = audit_cli(&app, &["--json", "--to", &yesterday]).await;
    assert!(ok, "{out}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["entries"], 0);

    let (status, body) = app.get("/api/admin/audit/costs", Some(&token)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    let (admin, admin_token) = app.user("bookkeeper").await;
    infrastructure::users::Users(app.pool().clone())
        .set_role(
            UserId(Uuid::parse_str(&admin).unwrap()),
            domain::identity::Role::BillingAdmin,
        )
        .await
        .unwrap();
    let (_, login) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": email_of(&app, &admin).await, "password": "correct horse"}),
        )
        .await;
    let admin_token = login["data"]["token"]
        .as_str()
        .unwrap_or(&admin_token)
        .to_string();
    let (status, body) = app
        .get(
            &format!("/api/admin/audit/costs?userId={user}"),
            Some(&admin_token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["clean"], true);

    // A ledger row changed behind the events' back: named, and the exit code says so.
    let key: String = sqlx::query_scalar(
        "UPDATE rm_cost_ledger SET amount = amount + 0.01 \
         WHERE (job_id, entry_key) = (SELECT job_id, entry_key FROM rm_cost_ledger \
                                      WHERE cost_type = 'compute' ORDER BY entry_key LIMIT 1) \
         RETURNING entry_key",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    let (ok, out) = audit_cli(&app, &[]).await;
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("{id}/{key}")), "{out}");
    assert!(out.contains("ledger amount differs"), "{out}");
    let (status, body) = app.get("/api/admin/audit/costs", Some(&admin_token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["clean"], false);
    app.finish().await;
}

async fn email_of(app: &TestApp, user: &str) -> String {
    sqlx::query_scalar("SELECT email FROM users WHERE id = $1::uuid")
        .bind(user)
        .fetch_one(app.pool())
        .await
        .unwrap()
}
