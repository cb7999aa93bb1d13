//! The training saga end to end: a job on a ready dataset runs on the (simulated) GPU cluster
//! to completion, with a registered model whose artifacts are in our bucket; failures are
//! retried then fail; a cancel stops the cluster job and closes the cost.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::common::{Isolation, TestApp};

pub(crate) const FAST: [(&str, &str); 5] = [
    ("CLUSTER_SIM_SPEED", "3000"),
    ("CLUSTER_API_KEY", "test-cluster-key"),
    ("SAGA_POLL_INTERVAL_MS", "100"),
    ("SAGA_RETRY_BACKOFF_MS", "100"),
    ("SAGA_LEASE_SECONDS", "5"),
];

pub(crate) async fn start(extra: &[(&str, &str)]) -> TestApp {
    let mut vars: Vec<(&str, &str)> = FAST.to_vec();
    vars.extend_from_slice(extra);
    TestApp::start_with(Isolation::new(), api::Roles::ALL, &vars).await
}

pub(crate) async fn launch(app: &TestApp, token: &str) -> String {
    launch_with(app, token, json!({"loraRank": 4})).await
}

/// A balanced llama-3-8b job on the example dataset, with these hyperparameters.
pub(crate) async fn launch_with(app: &TestApp, token: &str, hyperparameters: Value) -> String {
    let dataset = app
        .validated_dataset(token, "support-chats-v4.jsonl", "brightrun-lora-v4")
        .await;
    let (status, created) = app
        .post(
            "/api/jobs",
            Some(token),
            json!({"datasetId": dataset, "presetId": "balanced", "baseModel": "llama-3-8b",
                   "hyperparameters": hyperparameters,
                   "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    created["data"]["jobId"].as_str().unwrap().to_string()
}

/// Polls the job until `done(job)` holds.
pub(crate) async fn until(
    app: &TestApp,
    token: &str,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = app.get(&format!("/api/jobs/{id}"), Some(token)).await;
        let job = body["data"]["job"].clone();
        if done(&job) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Injects `faults` into every job of this test's simulator (job ids are UUID v7, so every
/// idempotency key starts with 0) and answers the simulator's URL.
/// The job once it has ended, completed or failed.
async fn the_end(app: &TestApp, token: &str, id: &str) -> Value {
    until(app, token, id, "the end", |j| {
        j["status"] == "failed" || j["status"] == "completed"
    })
    .await
}

async fn inject_faults(app: &TestApp, faults: Value) -> String {
    let sim = app
        .service
        .as_ref()
        .unwrap()
        .cluster_sim
        .as_ref()
        .unwrap()
        .url
        .clone();
    let injected = app
        .http
        .put(format!("{sim}/v1/sim/faults/0"))
        .bearer_auth("test-cluster-key")
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(injected.status(), 204);
    sim
}

async fn ledger(app: &TestApp, id: &str) -> Vec<Value> {
    sqlx::query_scalar::<_, sqlx::types::Json<Value>>(
        "SELECT payload FROM events WHERE aggregate_type = 'job' AND aggregate_id = $1 \
         AND event_type = 'JobCostAccrued' ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(app.pool())
    .await
    .unwrap()
    .into_iter()
    .map(|j| j.0["JobCostAccrued"].clone())
    .collect()
}

#[tokio::test]
async fn a_job_runs_to_completion_with_a_registered_model_and_its_artifacts_in_our_bucket() {
    let app = start(&[]).await;
    let (_, token) = app.user("ada").await;
    let id = launch(&app, &token).await;
    let job = until(&app, &token, &id, "completion", |j| {
        j["status"] == "completed" || j["status"] == "failed"
    })
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["progress"], 100.0);
    let model_id = job["artifactId"].as_str().expect("artifactId").to_string();

    // Metrics, checkpoints and logs arrived once each.
    let steps: Vec<i64> = job["lossCurve"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_i64().unwrap())
        .collect();
    assert!(!steps.is_empty());
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "no duplicate metric point"
    );
    assert_eq!(steps.last().copied(), job["totalSteps"].as_i64());
    assert!(!job["checkpoints"].as_array().unwrap().is_empty());
    assert!(job["logs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["message"] == "adapter saved"));

    // The ledger: compute, the dataset fetch, the artifact copy and storage, each once; its
    // sum is the final cost.
    let entries = ledger(&app, &id).await;
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["costType"].as_str().unwrap())
        .collect();
    for kind in ["compute", "data_transfer", "storage"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let keys: std::collections::HashSet<&str> = entries
        .iter()
        .map(|e| e["entryKey"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), entries.len(), "no duplicate ledger entry");
    let sum: Decimal = entries
        .iter()
        .map(|e| e["amount"].as_str().unwrap().parse::<Decimal>().unwrap())
        .sum();
    let final_cost = Decimal::try_from(job["finalCost"].as_f64().unwrap()).unwrap();
    assert_eq!(domain::job::estimate::cents(sum), final_cost.round_dp(2));

    // The model, registered once, with its artifacts copied into our bucket.
    let registered: Vec<sqlx::types::Json<Value>> = sqlx::query_scalar(
        "SELECT payload FROM events WHERE aggregate_type = 'model' AND aggregate_id = $1",
    )
    .bind(&model_id)
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(registered.len(), 1);
    let model = &registered[0].0["ModelRegistered"];
    assert_eq!(model["name"], "Model from support-chats-v4.jsonl");
    assert_eq!(model["version"], "1.0.0");
    assert!(model["quality"]["perplexity"].as_f64().unwrap() > 1.0);
    let objects = app.service.as_ref().unwrap().state.objects.clone();
    let artifacts = model["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 3);
    for a in artifacts {
        let key = a["s3Key"].as_str().unwrap();
        assert!(key.starts_with(&format!("models/{model_id}/")), "{key}");
        let mut reader = objects.read(key).await.unwrap().expect("stored");
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).await.unwrap();
        assert_eq!(bytes.len() as u64, a["sizeBytes"].as_u64().unwrap());
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            a["sha256"].as_str().unwrap()
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn out_of_memory_is_retried_three_times_then_the_job_fails() {
    let app = start(&[]).await;
    let (_, token) = app.user("ada").await;
    // Every job of this test's simulator (job ids are UUID v7: they start with 0).
    inject_faults(&app, json!({"oomAtStep": 3})).await;
    let id = launch(&app, &token).await;
    let job = the_end(&app, &token, &id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["errorCode"], "OUT_OF_MEMORY");
    assert_eq!(job["retryCount"], 3);
    let attempts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'JobSubmitted'",
    )
    .bind(&id)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(attempts, 4, "one cluster job per attempt");
    let entries = ledger(&app, &id).await;
    let keys: std::collections::HashSet<&str> = entries
        .iter()
        .map(|e| e["entryKey"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), entries.len(), "no duplicate ledger entry");
    app.finish().await;
}

#[tokio::test]
async fn a_cluster_printing_nul_and_escape_codes_still_ends_the_job_with_its_words() {
    // NUL is valid in a JSON string but in no Postgres text or jsonb value: stored as it
    // came, a log line or failure message holding one failed every status read, and the job
    // never ended.
    let app = start(&[]).await;
    let (_, token) = app.user("ada").await;
    inject_faults(&app, json!({"oomAtStep": 3, "controlCharacters": true})).await;
    let id = launch(&app, &token).await;
    let job = the_end(&app, &token, &id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["errorCode"], "OUT_OF_MEMORY");
    assert_eq!(
        job["errorMessage"], "CUDA out of memory at step 3\u{FFFD}\u{1b}[0m\u{7}",
        "the cluster's words, NUL aside"
    );
    let logs = job["logs"].as_array().expect("logs");
    assert!(!logs.is_empty(), "{job}");
    for line in logs {
        let message = line["message"].as_str().expect("message");
        assert!(message.ends_with("\u{FFFD}\u{1b}[0m\u{7}"), "{message:?}");
    }
    app.finish().await;
}

#[tokio::test]
async fn a_cluster_naming_an_artifact_as_a_path_fails_the_job_and_writes_nothing_there() {
    // The names a cluster gives its files go into our object keys, and the embedded store
    // resolves `..` inside its root: without the check this job completed and wrote its
    // files over another model's (`models/someone-else/...`).
    let app = start(&[]).await;
    let (_, token) = app.user("ada").await;
    let target = "../someone-else/adapter_model.safetensors";
    inject_faults(&app, json!({"artifactName": target})).await;
    let id = launch(&app, &token).await;
    let job = the_end(&app, &token, &id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["errorCode"], "CLUSTER_INVALID_REPORT");
    let message = job["errorMessage"].as_str().expect("errorMessage");
    assert!(message.contains("artifacts[0].name"), "{message}");
    assert!(job["artifactId"].is_null(), "no model registered: {job}");
    let objects = app.service.as_ref().unwrap().state.objects.clone();
    let written = objects
        .size_of("models/someone-else/adapter_model.safetensors")
        .await
        .expect("the store answers");
    assert_eq!(written, None, "nothing written where the path pointed");
    app.finish().await;
}

#[tokio::test]
async fn a_cancel_mid_run_stops_the_cluster_job_and_closes_the_cost() {
    // A long job, so the cancel always finds it running: 100 epochs of one pair per step are
    // about 1,600 s of training, 20 s at 80x, where the cancel reaches the cluster within a
    // second or two even on a loaded 2-core CI machine. (The default job trains for a few
    // steps: at 80x it once finished first there, the saga still copying a report's
    // checkpoint adapters when the cancel came.)
    let app = start(&[("CLUSTER_SIM_SPEED", "80")]).await;
    let (_, token) = app.user("ada").await;
    let id = launch_with(
        &app,
        &token,
        json!({"loraRank": 4, "numEpochs": 100, "batchSize": 1, "gradientAccumulationSteps": 1}),
    )
    .await;
    until(&app, &token, &id, "running", |j| j["status"] == "running").await;
    let (status, cancelled) = app
        .post(&format!("/api/jobs/{id}/cancel"), Some(&token), json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let pool = app.pool().clone();
    crate::common::eventually("the saga closes the job", Duration::from_secs(20), || {
        let pool = pool.clone();
        let id = uuid::Uuid::parse_str(&id).unwrap();
        async move {
            sqlx::query_scalar::<_, String>("SELECT phase FROM saga_jobs WHERE job_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
                == "done"
        }
    })
    .await;
    let cluster_job: String = sqlx::query_scalar(
        "SELECT payload->'JobSubmitted'->>'clusterJobId' FROM events \
         WHERE aggregate_id = $1 AND event_type = 'JobSubmitted'",
    )
    .bind(&id)
    .fetch_one(app.pool())
    .await
    .unwrap();
    let sim = app
        .service
        .as_ref()
        .unwrap()
        .cluster_sim
        .as_ref()
        .unwrap()
        .url
        .clone();
    let report: Value = app
        .http
        .get(format!("{sim}/v1/jobs/{cluster_job}"))
        .bearer_auth("test-cluster-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["status"], "cancelled", "{report}");
    let job = until(&app, &token, &id, "cancelled", |j| {
        j["status"] == "cancelled"
    })
    .await;
    assert_eq!(job["status"], "cancelled");
    app.finish().await;
}

/// `brightrun demo`'s journey against a service: it ends with a verified adapter on disk.
#[tokio::test]
async fn the_demo_journey_ends_with_a_verified_adapter() {
    let app = start(&[]).await;
    let out = app.iso.data_dir().join("demo-out");
    let path = api::demo::journey(&app.base, &out).await.expect("journey");
    let bytes = std::fs::read(&path).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("a safetensors file");
    assert!(tensors
        .names()
        .iter()
        .all(|n| n.starts_with("base_model.model.model.layers.")));

    // The download endpoint: owner only, a clear error for an unknown artifact.
    let (_, token) = app.user("stranger").await;
    let model: uuid::Uuid = sqlx::query_scalar("SELECT id FROM rm_models LIMIT 1")
        .fetch_one(app.pool())
        .await
        .unwrap();
    let (status, body) = app
        .get(&format!("/api/models/{model}/download"), Some(&token))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "MODEL_NOT_FOUND");
    app.finish().await;
}

/// Two `serve` instances on one database and one cluster: every job is driven to completion
/// once (one cluster job each, no ledger entry twice), whichever instance takes it.
#[tokio::test]
async fn two_instances_share_the_jobs_and_drive_each_once() {
    let iso = Isolation::new();
    let sim = infrastructure::cluster_sim::server::ClusterSim::start(
        infrastructure::cluster_sim::server::SimSettings {
            data_dir: iso.data_dir().join("shared-cluster"),
            speed: 3000.0,
            api_key: Some("shared-key".into()),
            seed: 1,
            rates: domain::job::estimate::Rates::default(),
            webhook_secret: None,
        },
        "127.0.0.1:0".parse().unwrap(),
        std::sync::Arc::new(infrastructure::tokenizer::O200k::load().unwrap()),
    )
    .await
    .unwrap();
    let mut vars: Vec<(&str, &str)> = FAST.to_vec();
    vars.push(("CLUSTER_URL", &sim.url));
    vars.push(("CLUSTER_API_KEY", "shared-key"));
    let one = TestApp::start_with(iso.clone(), api::Roles::ALL, &vars).await;
    let two = TestApp::start_with(iso.clone(), api::Roles::ALL, &vars).await;
    let (_, token) = one.user("ada").await;
    let mut jobs = Vec::new();
    for _ in 0..4 {
        jobs.push(launch(&one, &token).await);
    }
    for id in &jobs {
        let job = until(&two, &token, id, "completion", |j| {
            j["status"] == "completed" || j["status"] == "failed"
        })
        .await;
        assert_eq!(job["status"], "completed", "{job}");
        let submitted: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'JobSubmitted'",
        )
        .bind(id)
        .fetch_one(one.pool())
        .await
        .unwrap();
        assert_eq!(submitted, 1, "one cluster job for {id}");
        let entries = ledger(&one, id).await;
        let keys: std::collections::HashSet<&str> = entries
            .iter()
            .map(|e| e["entryKey"].as_str().unwrap())
            .collect();
        assert_eq!(keys.len(), entries.len(), "no duplicate ledger entry");
    }
    let cluster_jobs = std::fs::read_dir(iso.data_dir().join("shared-cluster/jobs"))
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .is_ok_and(|f| f.path().extension().is_some_and(|e| e == "json"))
        })
        .count();
    assert_eq!(cluster_jobs, jobs.len(), "one cluster job per job");
    let mut two = two;
    two.stop().await;
    one.finish().await;
}

/// HTTP 500 bursts and slow answers from the cluster are absorbed: the job still completes.
#[tokio::test]
async fn cluster_errors_and_slow_answers_are_absorbed() {
    let app = start(&[]).await;
    let (_, token) = app.user("ada").await;
    inject_faults(&app, json!({"http500s": 3, "slowMs": 150})).await;
    let id = launch(&app, &token).await;
    let job = the_end(&app, &token, &id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["retryCount"], 0, "no resubmission was needed");
    app.finish().await;
}

/// The ledger of a completed job through `GET /api/costs`: grouped, filtered, owner-only,
/// readable by a billing admin, and equal to the job's final cost.
#[tokio::test]
async fn the_cost_ledger_groups_filters_and_matches_the_final_cost() {
    let app = start(&[]).await;
    let (user_id, token) = app.user("ada").await;
    let id = launch(&app, &token).await;
    let job = until(&app, &token, &id, "completion", |j| {
        j["status"] == "completed"
    })
    .await;
    let final_cost = job["finalCost"].as_f64().unwrap();
    let projection = projections::subscription_name("costs");
    let head = infrastructure::event_log::head(app.pool()).await.unwrap();
    assert!(
        infrastructure::subscription::wait_for(
            app.pool(),
            &projection,
            head,
            Duration::from_secs(10)
        )
        .await
    );

    let (status, by_day) = app.get("/api/costs?groupBy=day", Some(&token)).await;
    assert_eq!(status, 200, "{by_day}");
    let today = chrono::Utc::now().date_naive().to_string();
    let periods = by_day["data"]["costs"].as_array().unwrap();
    assert_eq!(periods.len(), 1, "{by_day}");
    assert_eq!(periods[0]["date"], today.as_str());
    assert!(periods[0]["compute"].as_f64().unwrap() > 0.0);
    let summary = &by_day["data"]["summary"];
    assert_eq!(summary["totalSpend"].as_f64().unwrap(), final_cost);
    assert_eq!(summary["averageJobCost"].as_f64().unwrap(), final_cost);
    assert_eq!(summary["mostExpensiveJob"]["id"], id.as_str());
    assert_eq!(
        summary["mostExpensiveJob"]["name"],
        "Training on support-chats-v4.jsonl"
    );

    let (_, by_week) = app.get("/api/costs?groupBy=week", Some(&token)).await;
    let week = &by_week["data"]["costs"][0];
    assert!(week["period"].as_str().unwrap().contains("-W"), "{by_week}");
    let (_, other_job) = app
        .get(
            &format!("/api/costs?jobId={}", uuid::Uuid::now_v7()),
            Some(&token),
        )
        .await;
    assert_eq!(other_job["data"]["costs"], json!([]));
    assert_eq!(other_job["data"]["summary"]["totalSpend"], 0.0);
    let (status, bad) = app.get("/api/costs?groupBy=year", Some(&token)).await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["field"], "groupBy");

    // Another user may not read them; a billing admin may.
    let (other_id, other) = app.user("other").await;
    let (status, denied) = app
        .get(&format!("/api/costs?userId={user_id}"), Some(&other))
        .await;
    assert_eq!(status, 404, "{denied}");
    infrastructure::users::Users(app.pool().clone())
        .set_role(
            domain::ids::UserId(uuid::Uuid::parse_str(&other_id).unwrap()),
            domain::identity::Role::BillingAdmin,
        )
        .await
        .unwrap();
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(uuid::Uuid::parse_str(&other_id).unwrap())
        .fetch_one(app.pool())
        .await
        .unwrap();
    let (_, session) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": email, "password": "correct horse"}),
        )
        .await;
    let billing = session["data"]["token"].as_str().unwrap();
    let (status, allowed) = app
        .get(&format!("/api/costs?userId={user_id}"), Some(billing))
        .await;
    assert_eq!(status, 200, "{allowed}");
    assert_eq!(
        allowed["data"]["summary"]["totalSpend"].as_f64().unwrap(),
        final_cost
    );

    // The month against a budget: none yet, then one the job has passed.
    let (_, summary) = app.get("/api/costs/summary", Some(&token)).await;
    let month = &summary["data"]["currentMonth"];
    assert_eq!(month["spent"].as_f64().unwrap(), final_cost);
    assert_eq!(month["budget"], Value::Null);
    assert_eq!(summary["data"]["alerts"], json!([]));
    let patch = |budget: Value| {
        app.http
            .patch(app.url("/api/auth/me"))
            .bearer_auth(&token)
            .json(&json!({"monthlyBudget": budget}))
            .send()
    };
    let refused = patch(json!(0)).await.unwrap();
    assert_eq!(refused.status(), 400);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["field"], "monthlyBudget");
    assert_eq!(patch(json!(0.01)).await.unwrap().status(), 200);
    let (_, summary) = app.get("/api/costs/summary", Some(&token)).await;
    let month = &summary["data"]["currentMonth"];
    assert_eq!(month["budget"], 0.01);
    assert_eq!(month["remaining"], 0.0);
    let kinds: Vec<&str> = summary["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["warning", "critical"]);

    let report = projections::replay::replay(app.pool(), projections::by_name("costs").unwrap())
        .await
        .unwrap();
    assert_eq!(report.differences, 0);
    app.finish().await;
}

/// A dataset made ready and a job completed notify their owner; read marks survive a replay;
/// the dashboard counts them.
#[tokio::test]
async fn notifications_and_dashboard_follow_the_journey() {
    let app = start(&[]).await;
    let (_, token) = app.user("ada").await;
    let (_, stranger) = app.user("stranger").await;
    let id = launch(&app, &token).await;
    until(&app, &token, &id, "completion", |j| {
        j["status"] == "completed"
    })
    .await;
    let head = infrastructure::event_log::head(app.pool()).await.unwrap();
    for name in ["notifications", "costs", "models"] {
        let subscription = projections::subscription_name(name);
        assert!(
            infrastructure::subscription::wait_for(
                app.pool(),
                &subscription,
                head,
                Duration::from_secs(10)
            )
            .await
        );
    }

    let (status, list) = app.get("/api/notifications", Some(&token)).await;
    assert_eq!(status, 200, "{list}");
    let items = list["data"]["notifications"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|n| n["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["job_complete", "dataset_ready"], "newest first");
    assert_eq!(items[0]["priority"], "high");
    assert_eq!(items[0]["title"], "Training Completed!");
    let model = application::saga::model_id_of(domain::ids::JobId(id.parse().unwrap()));
    assert_eq!(items[0]["actionUrl"], format!("/models/{model}"));
    assert_eq!(items[1]["priority"], "medium");
    assert_eq!(list["meta"]["unreadCount"], 2);

    let first = items[0]["id"].as_str().unwrap().to_string();
    let mark = |who: &str, which: &str| {
        app.http
            .patch(app.url(&format!("/api/notifications/{which}/read")))
            .bearer_auth(who)
            .send()
    };
    assert_eq!(mark(&stranger, &first).await.unwrap().status(), 404);
    assert_eq!(mark(&token, &first).await.unwrap().status(), 200);
    let (_, unread) = app
        .get("/api/notifications?unreadOnly=true", Some(&token))
        .await;
    assert_eq!(unread["meta"]["unreadCount"], 1);
    assert_eq!(unread["data"]["notifications"][0]["type"], "dataset_ready");

    // Read marks are the user's, not the projection's: a replay keeps them.
    let report =
        projections::replay::replay(app.pool(), projections::by_name("notifications").unwrap())
            .await
            .unwrap();
    assert_eq!(report.differences, 0);
    let (_, after) = app.get("/api/notifications", Some(&token)).await;
    assert_eq!(after["meta"]["unreadCount"], 1);
    let (status, all) = app
        .post("/api/notifications/read-all", Some(&token), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(all["data"]["marked"], 1);
    let (_, none) = app
        .get("/api/notifications?unreadOnly=true", Some(&token))
        .await;
    assert_eq!(none["meta"]["unreadCount"], 0);
    let (_, theirs) = app.get("/api/notifications", Some(&stranger)).await;
    assert_eq!(theirs["meta"]["pagination"]["total"], 0);

    // The model list (shape, this service's fields).
    let (status, models) = app
        .get("/api/models?sortBy=quality-desc", Some(&token))
        .await;
    assert_eq!(status, 200, "{models}");
    let model = &models["data"]["models"][0];
    assert_eq!(models["meta"]["pagination"]["total"], 1);
    assert_eq!(model["jobId"], id.as_str());
    assert_eq!(model["status"], "stored");
    assert_eq!(model["version"], "1.0.0");
    let quality = model["qualityMetrics"]["convergenceQuality"]
        .as_str()
        .unwrap();
    assert!(
        ["excellent", "good", "acceptable", "poor"].contains(&quality),
        "{quality}"
    );
    for file in ["adapterModel", "adapterConfig", "tokenizer"] {
        assert!(model["artifacts"][file]["checksum"].is_string(), "{model}");
    }
    let (_, archived) = app.get("/api/models?status=archived", Some(&token)).await;
    assert_eq!(archived["meta"]["pagination"]["total"], 0);
    let (_, theirs) = app.get("/api/models", Some(&stranger)).await;
    assert_eq!(theirs["meta"]["pagination"]["total"], 0);
    let (status, bad) = app.get("/api/models?sortBy=newest", Some(&token)).await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["field"], "sortBy");

    let (status, stats) = app.get("/api/dashboard/stats", Some(&token)).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["data"]["totalDatasets"], 1);
    assert_eq!(stats["data"]["activeJobs"], 0);
    assert_eq!(stats["data"]["completedModels"], 1);
    assert!(stats["data"]["totalCost"].as_f64().unwrap() > 0.0);
    app.finish().await;
}

/// A job the cluster forgets is noticed (404 on status) and resubmitted; forgotten every time,
/// it fails after three retries with `CLUSTER_LOST_JOB`.
#[tokio::test]
async fn a_job_the_cluster_loses_is_resubmitted() {
    // Slow enough for the saga to read the status while the job runs.
    let app = start(&[("CLUSTER_SIM_SPEED", "150")]).await;
    let (_, token) = app.user("ada").await;
    inject_faults(&app, json!({"disappearAtStep": 2})).await;
    let id = launch(&app, &token).await;
    let job = the_end(&app, &token, &id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["errorCode"], "CLUSTER_LOST_JOB");
    assert_eq!(job["retryCount"], 3);
    let submitted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'JobSubmitted'",
    )
    .bind(&id)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(submitted, 4);
    app.finish().await;
}

/// A cluster that answers 404 for a job it still runs (the first read of each job here):
/// our side retries, then fails the job as lost; the reconciliation pass finds the last cluster
/// job alive, recovers the job and it completes with its model. The earlier attempts were
/// cancelled on the cluster when they were given up, so none keeps burning GPUs.
#[tokio::test]
async fn a_job_failed_on_our_side_that_the_cluster_still_runs_is_reconciled() {
    let app = start(&[
        ("CLUSTER_SIM_SPEED", "600"),
        ("SAGA_RECONCILE_INTERVAL_MS", "200"),
    ])
    .await;
    let (_, token) = app.user("ada").await;
    let sim = inject_faults(&app, json!({"false404Reads": 1})).await;
    let id = launch(&app, &token).await;
    let job = until(&app, &token, &id, "completion after recovery", |j| {
        j["status"] == "completed"
    })
    .await;
    assert!(job["artifactId"].is_string(), "{job}");
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_type = 'job' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&id)
    .fetch_all(app.pool())
    .await
    .unwrap();
    let at = |t: &str| {
        types
            .iter()
            .position(|x| x == t)
            .unwrap_or_else(|| panic!("{t} in {types:?}"))
    };
    assert!(at("JobFailed") < at("JobRecoveredFromCluster"));
    assert!(at("JobRecoveredFromCluster") < at("JobCompleted"));
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "JobRecoveredFromCluster")
            .count(),
        1
    );

    // Attempts 1-3 were given up and cancelled on the cluster; attempt 4 completed.
    let clusters: Vec<sqlx::types::Json<Value>> = sqlx::query_scalar(
        "SELECT payload FROM events WHERE aggregate_id = $1 AND event_type = 'JobSubmitted' ORDER BY sequence",
    )
    .bind(&id)
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(clusters.len(), 4);
    for (i, submitted) in clusters.iter().enumerate() {
        let cluster_job = submitted.0["JobSubmitted"]["clusterJobId"]
            .as_str()
            .unwrap();
        let status: Value = app
            .http
            .get(format!("{sim}/v1/jobs/{cluster_job}"))
            .bearer_auth("test-cluster-key")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let expected = if i < 3 { "cancelled" } else { "completed" };
        assert_eq!(status["status"], expected, "attempt {}: {status}", i + 1);
    }

    // The books still balance, and the owner was told both ways.
    let head = infrastructure::event_log::head(app.pool()).await.unwrap();
    for name in ["costs", "jobs", "notifications"] {
        let subscription = projections::subscription_name(name);
        assert!(
            infrastructure::subscription::wait_for(
                app.pool(),
                &subscription,
                head,
                Duration::from_secs(10)
            )
            .await
        );
    }
    let report = infrastructure::audit::audit_costs(app.pool(), &Default::default())
        .await
        .unwrap();
    assert!(report.clean(), "{:?}", report.drifts);
    let (_, list) = app.get("/api/notifications", Some(&token)).await;
    let kinds: Vec<&str> = list["data"]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["job_complete", "system", "job_failed", "dataset_ready"],
        "newest first"
    );
    app.finish().await;
}

/// With webhooks configured, the cluster's signed status changes wake the saga: a job
/// completes in seconds although the saga would only poll every 30 s. Unsigned, forged and
/// replayed calls are refused.
#[tokio::test]
async fn signed_webhooks_wake_the_saga_and_forgeries_are_refused() {
    let mut vars: Vec<(&str, &str)> = FAST.to_vec();
    vars.retain(|(k, _)| *k != "SAGA_POLL_INTERVAL_MS");
    vars.push(("SAGA_POLL_INTERVAL_MS", "30000"));
    let app = TestApp::start_with_webhooks(Isolation::new(), &vars).await;
    let (_, token) = app.user("ada").await;
    let started = std::time::Instant::now();
    let id = launch(&app, &token).await;
    until(&app, &token, &id, "completion woken by webhooks", |j| {
        j["status"] == "completed"
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "completed by webhooks, not by the 30 s poll"
    );

    let body = serde_json::to_vec(&json!({"clusterJobId": "cj-x", "idempotencyKey": "k", "status": "completed", "at": "2026-11-23T10:00:00Z"})).unwrap();
    let post = |signature: Option<String>| {
        let mut req = app
            .http
            .post(app.url("/api/cluster/webhook"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(s) = signature {
            req = req.header("x-cluster-signature", s);
        }
        req.send()
    };
    let unsigned = post(None).await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let unsigned: Value = unsigned.json().await.unwrap();
    assert_eq!(unsigned["error"]["code"], "INVALID_SIGNATURE");
    let now = chrono::Utc::now().timestamp();
    let forged = application::cluster::sign_webhook("not-the-secret", now, &body);
    assert_eq!(post(Some(forged)).await.unwrap().status(), 401);
    let secret = app
        .service
        .as_ref()
        .unwrap()
        .state
        .config
        .cluster_webhook_secret
        .clone()
        .unwrap();
    let replayed = application::cluster::sign_webhook(&secret, now - 3600, &body);
    assert_eq!(post(Some(replayed)).await.unwrap().status(), 401);
    let genuine = application::cluster::sign_webhook(&secret, now, &body);
    assert_eq!(post(Some(genuine.clone())).await.unwrap().status(), 204);
    // The same delivery again, within its five minutes: a replay, refused.
    let again = post(Some(genuine)).await.unwrap();
    assert_eq!(again.status(), 409);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["error"]["code"], "CONFLICT", "{again}");
    app.finish().await;
}
