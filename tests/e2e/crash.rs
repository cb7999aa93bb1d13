//! kill -9 of `serve` between commit and publication loses nothing.

use std::collections::HashSet;
use std::time::Duration;

use infrastructure::db;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{eventually, stream_messages, BinaryService, Isolation};

async fn signup(http: &reqwest::Client, base: &str) -> String {
    let body: Value = http
        .post(format!("{base}/api/auth/signup"))
        .json(&json!({"email": format!("crash-{}@example.com", Uuid::now_v7().simple()), "password": "correct horse", "name": "Crash"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"]["token"].as_str().expect("token").to_string()
}

fn register(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    i: usize,
) -> impl std::future::Future<Output = Option<u16>> {
    let req = http
        .post(format!("{base}/api/datasets"))
        .bearer_auth(token)
        .json(&json!({"name": format!("crash {i}"), "format": "brightrun-lora-v4", "fileSize": 10, "fileName": "a.jsonl"}));
    async move { req.send().await.ok().map(|r| r.status().as_u16()) }
}

#[tokio::test]
async fn kill_9_between_commit_and_publication_loses_nothing() {
    let iso = Isolation::new();
    let http = reqwest::Client::new();

    // 1. Commit with no relay running, then kill -9: the event is stored, unpublished.
    let mut first = BinaryService::spawn(&iso, "api,projections", &[]).await;
    let token = signup(&http, &first.base).await;
    assert_eq!(register(&http, &first.base, &token, 0).await, Some(201));
    first.kill_9();

    // 2. Kill -9 in the middle of a burst, with every role running.
    let mut second = BinaryService::spawn(&iso, "all", &[]).await;
    let burst: Vec<_> = (1..=30)
        .map(|i| tokio::spawn(register(&http, &second.base, &token, i)))
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    second.kill_9();
    let answered = futures::future::join_all(burst)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(Some(201))))
        .count();

    // 3. Restart: everything committed reaches NATS (once) and the read model.
    let third = BinaryService::spawn(&iso, "all", &[]).await;
    let pool = db::connect(&iso.database_url(), 2).await.unwrap();
    let committed: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        committed.len() > answered,
        "every answered command is committed ({answered} answered, {} stored)",
        committed.len()
    );
    eventually(
        "the read model has every dataset",
        Duration::from_secs(30),
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_datasets")
                .fetch_one(&pool)
                .await
                .unwrap();
            n as usize == committed.len()
        },
    )
    .await;
    let messages = stream_messages(
        &iso.nats_url,
        &iso.stream,
        committed.len(),
        Duration::from_secs(30),
    )
    .await;
    let published: Vec<Uuid> = messages
        .iter()
        .filter_map(|(_, id, _)| Uuid::parse_str(id).ok())
        .collect();
    let unique: HashSet<Uuid> = published.iter().copied().collect();
    assert_eq!(
        published.len(),
        unique.len(),
        "an event was published twice"
    );
    assert_eq!(unique, committed.iter().copied().collect::<HashSet<_>>());
    eprintln!(
        "{} events committed, {answered} commands answered before the kill",
        committed.len()
    );
    drop(third);
    pool.close().await;
    iso.cleanup().await;
}

/// A confirm is durable work: the process that accepted it dies before validating, and the
/// next one to run the workers validates it from the log.
#[tokio::test]
async fn a_confirmed_upload_is_validated_after_kill_9() {
    let iso = Isolation::new();
    let http = reqwest::Client::new();
    let file = std::fs::read(format!(
        "{}/../examples/support-chats-v4.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();

    let mut first = BinaryService::spawn(&iso, "api,projections", &[]).await;
    let token = signup(&http, &first.base).await;
    let registered: Value = http
        .post(format!("{}/api/datasets", first.base))
        .bearer_auth(&token)
        .json(&json!({"name": "durable", "format": "brightrun-lora-v4", "fileSize": file.len(), "fileName": "a.jsonl"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = registered["data"]["datasetId"]
        .as_str()
        .unwrap()
        .to_string();
    let url = registered["data"]["uploadUrl"].as_str().unwrap();
    let put = http.put(url).body(file).send().await.unwrap();
    assert!(put.status().is_success());
    let confirmed: Value = http
        .post(format!("{}/api/datasets/{id}/confirm", first.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(confirmed["data"]["status"], "validating", "{confirmed}");
    first.kill_9();

    let second = BinaryService::spawn(&iso, "all", &[]).await;
    let detail = || {
        let req = http
            .get(format!("{}/api/datasets/{id}", second.base))
            .bearer_auth(&token);
        async move {
            let body: Value = req.send().await.unwrap().json().await.unwrap();
            body["data"]["dataset"]["status"] == "ready"
        }
    };
    eventually("the dataset is validated", Duration::from_secs(30), detail).await;
    drop(second);
    iso.cleanup().await;
}

const SAGA_FAST: [(&str, &str); 4] = [
    ("CLUSTER_SIM_SPEED", "120"),
    ("CLUSTER_API_KEY", "crash-cluster-key"),
    ("SAGA_POLL_INTERVAL_MS", "100"),
    ("SAGA_LEASE_SECONDS", "2"),
];

async fn get_json(http: &reqwest::Client, url: String, token: &str) -> Value {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null)
}

/// kill -9 of `serve` right after a job is created (during its submission) and again while it
/// runs: after each restart the job goes on, and in the end it completed with one cluster job,
/// each metric point once and each ledger entry once.
#[tokio::test]
async fn kill_9_during_submission_and_during_a_run_loses_and_duplicates_nothing() {
    let iso = Isolation::new();
    let http = reqwest::Client::new();
    let file = std::fs::read(format!(
        "{}/../examples/support-chats-v4.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();

    let mut first = BinaryService::spawn(&iso, "all", &SAGA_FAST).await;
    let token = signup(&http, &first.base).await;
    let registered: Value = http
        .post(format!("{}/api/datasets", first.base))
        .bearer_auth(&token)
        .json(&json!({"name": "durable", "format": "brightrun-lora-v4", "fileSize": file.len(), "fileName": "a.jsonl"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dataset = registered["data"]["datasetId"]
        .as_str()
        .unwrap()
        .to_string();
    let url = registered["data"]["uploadUrl"].as_str().unwrap();
    assert!(http
        .put(url)
        .body(file)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    http.post(format!("{}/api/datasets/{dataset}/confirm", first.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let base = first.base.clone();
    eventually("the dataset is ready", Duration::from_secs(30), || {
        let (http, token, base, dataset) =
            (http.clone(), token.clone(), base.clone(), dataset.clone());
        async move {
            get_json(&http, format!("{base}/api/datasets/{dataset}"), &token).await["data"]
                ["dataset"]["status"]
                == "ready"
        }
    })
    .await;
    let created: Value = http
        .post(format!("{}/api/jobs", first.base))
        .bearer_auth(&token)
        .json(
            &json!({"datasetId": dataset, "presetId": "balanced", "baseModel": "llama-3-8b",
                      "hyperparameters": {"loraRank": 2},
                      "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["data"]["jobId"].as_str().expect("job").to_string();
    first.kill_9();

    // Restart; let it run, and kill it again mid-run.
    let mut second = BinaryService::spawn(&iso, "all", &SAGA_FAST).await;
    let base = second.base.clone();
    eventually("the job runs", Duration::from_secs(30), || {
        let (http, token, base, id) = (http.clone(), token.clone(), base.clone(), id.clone());
        async move {
            let job = get_json(&http, format!("{base}/api/jobs/{id}"), &token).await;
            job["data"]["job"]["status"] == "running"
                && job["data"]["job"]["progress"].as_f64().unwrap_or(0.0) > 0.0
        }
    })
    .await;
    second.kill_9();

    let third = BinaryService::spawn(&iso, "all", &SAGA_FAST).await;
    let base = third.base.clone();
    eventually("the job completes", Duration::from_secs(60), || {
        let (http, token, base, id) = (http.clone(), token.clone(), base.clone(), id.clone());
        async move {
            let job = get_json(&http, format!("{base}/api/jobs/{id}"), &token).await;
            matches!(
                job["data"]["job"]["status"].as_str(),
                Some("completed" | "failed")
            )
        }
    })
    .await;
    let job = get_json(&http, format!("{base}/api/jobs/{id}"), &token).await["data"]["job"].clone();
    assert_eq!(job["status"], "completed", "{job}");

    let pool = db::connect(&iso.database_url(), 2).await.unwrap();
    let submissions: Vec<String> = sqlx::query_scalar(
        "SELECT payload->'JobSubmitted'->>'clusterJobId' FROM events \
         WHERE aggregate_id = $1 AND event_type = 'JobSubmitted'",
    )
    .bind(&id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(submissions.len(), 1, "one attempt, recorded once");
    let cluster_jobs = std::fs::read_dir(iso.data_dir().join("cluster-sim/jobs"))
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .is_ok_and(|f| f.path().extension().is_some_and(|e| e == "json"))
        })
        .count();
    assert_eq!(cluster_jobs, 1, "exactly one cluster job");
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT payload->'JobCostAccrued'->>'entryKey' FROM events \
         WHERE aggregate_id = $1 AND event_type = 'JobCostAccrued'",
    )
    .bind(&id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(
        unique.len(),
        keys.len(),
        "no duplicate cost entry: {keys:?}"
    );
    let steps: Vec<i64> = job["lossCurve"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_i64().unwrap())
        .collect();
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "no duplicate metric point"
    );
    assert_eq!(
        steps.last().copied(),
        job["totalSteps"].as_i64(),
        "no lost metric point at the end"
    );
    drop(third);
    pool.close().await;
    iso.cleanup().await;
}
