//! A poison event does not stop the world: a subscription that keeps failing on one event
//! parks it and goes on; `brightrun parked list|retry` shows it and handles it again.

use std::time::Duration;

use api::Roles;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{eventually, Isolation, TestApp};

const PARK_AFTER: &str = "3";

/// Writes an event straight into the log, as a buggy writer or a bad migration might have.
async fn append_raw(
    app: &TestApp,
    aggregate_type: &str,
    event_type: &str,
    payload: Value,
) -> (String, Uuid) {
    let aggregate_id = Uuid::now_v7().to_string();
    let event_id: Uuid = sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ($1, $2, 1, $3, '1.0', $4, '{}') RETURNING event_id",
    )
    .bind(aggregate_type)
    .bind(&aggregate_id)
    .bind(event_type)
    .bind(payload)
    .fetch_one(app.pool())
    .await
    .expect("raw event");
    (aggregate_id, event_id)
}

async fn brightrun(app: &TestApp, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_brightrun"))
        .args(args)
        .env("DATABASE_URL", app.iso.database_url())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("brightrun runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.success(), format!("{stdout}{stderr}"))
}

async fn parked(app: &TestApp) -> Vec<Value> {
    let (ok, out) = brightrun(app, &["parked", "list", "--json"]).await;
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn subscriptions_of(parked: &[Value], event_id: Uuid) -> Vec<String> {
    let mut names: Vec<String> = parked
        .iter()
        .filter(|p| p["eventId"] == event_id.to_string())
        .map(|p| p["subscription"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_poison_event_is_parked_the_subscriptions_go_on_and_a_retry_handles_it_once_fixed() {
    let roles = Roles {
        saga: false,
        ..Roles::ALL
    };
    let app = TestApp::start_with(
        Isolation::new(),
        roles,
        &[("SUBSCRIPTION_PARK_AFTER", PARK_AFTER)],
    )
    .await;
    let (_, token) = app.user("ops").await;
    let dataset = app
        .validated_dataset(&token, "support-chats-v4.jsonl", "brightrun-lora-v4")
        .await;
    let job_body = json!({
        "datasetId": dataset, "presetId": "balanced", "baseModel": "smollm2-135m",
        "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1},
    });
    let (status, created) = app.post("/api/jobs", Some(&token), job_body.clone()).await;
    assert_eq!(status, 201, "{created}");
    let first_job = created["data"]["jobId"]
        .as_str()
        .expect("jobId")
        .to_string();

    // A JobCreated that no reader can decode (its configuration is missing), written before
    // a real job and a real dataset upload, and a confirm no validation can read.
    let good: Value = sqlx::query_scalar(
        "SELECT payload::jsonb FROM events WHERE aggregate_id = $1 AND event_type = 'JobCreated'",
    )
    .bind(&first_job)
    .fetch_one(app.pool())
    .await
    .expect("JobCreated");
    let poison_job = Uuid::now_v7();
    let mut fixed = good.clone();
    fixed["JobCreated"]["jobId"] = json!(poison_job);
    let mut poison = fixed.clone();
    poison["JobCreated"]
        .as_object_mut()
        .expect("fields")
        .remove("configuration");
    let (job_aggregate, job_event) = {
        let id = poison_job.to_string();
        let event_id: Uuid = sqlx::query_scalar(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT aggregate_type, $2, 1, event_type, event_version, $3, metadata FROM events \
             WHERE aggregate_id = $1 AND event_type = 'JobCreated' RETURNING event_id",
        )
        .bind(&first_job)
        .bind(&id)
        .bind(&poison)
        .fetch_one(app.pool())
        .await
        .expect("poison job event");
        (id, event_id)
    };
    let (_, confirm_event) = append_raw(
        &app,
        "dataset",
        "DatasetUploadConfirmed",
        json!({"DatasetUploadConfirmed": {"datasetId": "not an id"}}),
    )
    .await;

    // The world goes on: a job created and a dataset validated after them are read back.
    let (status, created) = app.post("/api/jobs", Some(&token), job_body).await;
    assert_eq!(status, 201, "{created}");
    let later_job = created["data"]["jobId"]
        .as_str()
        .expect("jobId")
        .to_string();
    let later_dataset = app
        .validated_dataset(&token, "support-chats-v4.jsonl", "brightrun-lora-v4")
        .await;
    let (_, detail) = app
        .get(&format!("/api/datasets/{later_dataset}"), Some(&token))
        .await;
    assert_eq!(detail["data"]["dataset"]["status"], "ready", "{detail}");
    eventually(
        "the later job is projected",
        Duration::from_secs(20),
        || async {
            app.get(&format!("/api/jobs/{later_job}"), Some(&token))
                .await
                .0
                == 200
        },
    )
    .await;

    // Both are parked, by every subscription that read them, after exactly PARK_AFTER tries.
    let list = parked(&app).await;
    let job_parkers = subscriptions_of(&list, job_event);
    assert!(
        job_parkers.contains(&"projection.jobs".to_string()),
        "{list:?}"
    );
    assert!(
        subscriptions_of(&list, confirm_event).contains(&"worker.dataset-validation".to_string()),
        "{list:?}"
    );
    for p in &list {
        assert_eq!(p["attempts"], 3, "{p}");
        assert!(
            p["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("decode")),
            "{p}"
        );
    }
    let (ok, text) = brightrun(&app, &["parked", "list"]).await;
    assert!(
        ok && text.contains(&job_event.to_string()) && text.contains("JobCreated"),
        "{text}"
    );
    let (_, metrics) = {
        let response = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("metrics");
        (response.status(), response.text().await.expect("text"))
    };
    assert!(
        metrics.contains("brightrun_parked_events{subscription=\"projection.jobs\"} 1"),
        "{metrics}"
    );
    // A replay leaves the parked events out, as the live projection did.
    let (ok, out) = brightrun(&app, &["replay", "all"]).await;
    assert!(ok, "{out}");
    assert_eq!(
        out.matches("; 0 rows differed").count(),
        projections::all().len(),
        "{out}"
    );

    // A retry of what is still broken fails again and leaves it parked.
    let (ok, out) = brightrun(
        &app,
        &[
            "parked",
            "retry",
            &confirm_event.to_string(),
            "--wait",
            "20",
        ],
    )
    .await;
    assert!(!ok && out.contains("failed again"), "{out}");
    let list = parked(&app).await;
    let confirm = list
        .iter()
        .find(|p| {
            p["eventId"] == confirm_event.to_string()
                && p["subscription"] == "worker.dataset-validation"
        })
        .expect("still parked");
    assert_eq!(confirm["attempts"], 4, "{confirm}");

    // Once the event is mended, a retry handles it, in every subscription that parked it.
    sqlx::query("UPDATE events SET payload = $2 WHERE event_id = $1")
        .bind(job_event)
        .bind(&fixed)
        .execute(app.pool())
        .await
        .expect("mend");
    let (ok, out) = brightrun(
        &app,
        &["parked", "retry", &job_event.to_string(), "--wait", "20"],
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(out.matches(": handled").count(), job_parkers.len(), "{out}");
    let (status, body) = app
        .get(&format!("/api/jobs/{job_aggregate}"), Some(&token))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        subscriptions_of(&parked(&app).await, job_event),
        Vec::<String>::new()
    );
    app.finish().await;
}
