//! The GPU cluster simulator over HTTP, through the HTTP client: idempotent submission with a
//! presigned dataset URL, incremental status by cursor, artifacts that match their checksums,
//! injected faults, and the client's handling of 4xx, 404 and 5xx.

use std::sync::Arc;
use std::time::Duration;

use application::cluster::{ClusterCallError, ClusterStatus, GpuCluster, SubmitRequest};
use domain::dataset::DatasetFormat;
use domain::job::config::{GpuConfig, GpuType, Preset};
use domain::job::estimate::Rates;
use infrastructure::cluster_client::{ClientOptions, HttpCluster};
use infrastructure::cluster_sim::artifacts::sha256_hex;
use infrastructure::cluster_sim::model::Faults;
use infrastructure::cluster_sim::server::{ClusterSim, SimSettings};
use infrastructure::tokenizer::O200k;

use crate::common::TestApp;

async fn sim(app: &TestApp, speed: f64) -> ClusterSim {
    ClusterSim::start(
        SimSettings {
            data_dir: app.iso.data_dir().join("cluster"),
            speed,
            api_key: Some("sim-key".into()),
            seed: 42,
            rates: Rates::default(),
            webhook_secret: None,
        },
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(O200k::load().unwrap()),
    )
    .await
    .expect("simulator")
}

/// The example dataset in the object store, and a presigned GET of it.
async fn dataset_url(app: &TestApp) -> (String, u64) {
    let bytes = std::fs::read(format!(
        "{}/../examples/support-chats-v4.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let objects = app.service.as_ref().unwrap().state.objects.clone();
    let key = format!("tests/{}.jsonl", uuid::Uuid::now_v7());
    let put = objects
        .presign_put(
            &key,
            bytes.len() as u64,
            Duration::from_secs(60),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let len = bytes.len() as u64;
    assert!(app
        .http
        .put(&put.url)
        .body(bytes)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    let get = objects
        .presign_get(&key, Duration::from_secs(600), chrono::Utc::now())
        .await
        .unwrap();
    (get.url, len)
}

pub(crate) fn request(key: &str, url: &str) -> SubmitRequest {
    let mut h = Preset::Balanced.hyperparameters();
    h.lora_rank = 2;
    SubmitRequest {
        idempotency_key: key.to_string(),
        dataset_url: url.to_string(),
        base_model: "llama-3-8b".into(),
        dataset_format: Some(DatasetFormat::BrightrunLoraV4),
        hyperparameters: h,
        gpu_config: GpuConfig {
            instance_type: GpuType::A100_40gb,
            num_gpus: 1,
        },
        total_steps: 40,
        checkpoint_interval: 10,
        validation_split_ratio: 0.1,
        early_stopping_patience: None,
        early_stopping_min_delta: None,
        seed: None,
        time_limit_seconds: None,
        webhook_url: None,
        resume_from: None,
        initial_adapter_url: None,
    }
}

fn client(sim: &ClusterSim) -> HttpCluster {
    HttpCluster::new(
        &sim.url,
        Some("sim-key".into()),
        ClientOptions {
            timeout: Duration::from_secs(5),
            attempts: 4,
            first_backoff: Duration::from_millis(20),
        },
    )
}

#[tokio::test]
async fn a_submitted_run_reports_incrementally_and_ends_with_verifiable_artifacts() {
    let app = TestApp::start().await;
    let sim = sim(&app, 2000.0).await;
    let cluster = client(&sim);
    let (url, size) = dataset_url(&app).await;

    let first = cluster.submit(&request("job-a-1", &url)).await.unwrap();
    assert!(first.created);
    let again = cluster.submit(&request("job-a-1", &url)).await.unwrap();
    assert_eq!(again.cluster_job_id, first.cluster_job_id);
    assert!(!again.created, "the same key answers the same job");

    let mut cursor: Option<String> = None;
    let mut steps = Vec::new();
    let mut checkpoints = Vec::new();
    let mut logs = Vec::new();
    let report = loop {
        let report = cluster
            .status(&first.cluster_job_id, cursor.as_deref())
            .await
            .unwrap();
        steps.extend(report.metrics.iter().map(|p| p.step));
        checkpoints.extend(report.checkpoints.iter().map(|c| c.id.clone()));
        logs.extend(report.logs.iter().map(|l| l.index));
        cursor = Some(report.cursor.clone());
        if report.status.is_terminal() {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report.status, ClusterStatus::Completed);
    assert_eq!(report.dataset_bytes, size, "the cluster read the real file");
    assert_eq!(
        steps,
        (1..=40).collect::<Vec<_>>(),
        "every step once, in order"
    );
    assert_eq!(
        checkpoints,
        vec!["ckpt-001", "ckpt-002", "ckpt-003", "ckpt-004"]
    );
    assert_eq!(
        logs,
        (0..logs.len() as u64).collect::<Vec<_>>(),
        "log lines once each"
    );
    assert!(report.gpu_seconds > 0.0);
    assert!(report.billed_cost.parse::<f64>().unwrap() > 0.0);
    let evaluation = report.evaluation.clone().unwrap();
    assert!((evaluation.perplexity - evaluation.final_validation_loss.exp()).abs() < 1e-9);

    let names: Vec<_> = report.artifacts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "adapter_model.safetensors",
            "adapter_config.json",
            "tokenizer.json"
        ]
    );
    for artifact in &report.artifacts {
        let bytes = app
            .http
            .get(&artifact.url)
            .bearer_auth("sim-key")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(bytes.len() as u64, artifact.size_bytes, "{}", artifact.name);
        assert_eq!(sha256_hex(&bytes), artifact.sha256, "{}", artifact.name);
        if artifact.name == "adapter_model.safetensors" {
            let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            assert_eq!(tensors.len(), 32 * 2 * 2);
        }
        // The client reads a file to the size its report declared, and no further.
        let fetched = cluster
            .download(&artifact.url, artifact.size_bytes)
            .await
            .unwrap();
        assert_eq!(fetched, bytes.to_vec(), "{}", artifact.name);
        let short = cluster
            .download(&artifact.url, artifact.size_bytes - 1)
            .await;
        assert!(
            matches!(&short, Err(ClusterCallError::Rejected { message, .. }) if message.contains("longer than")),
            "{short:?}"
        );
    }
    app.finish().await;
}

/// A server that answers every request with `body` and counts what it was sent (and with
/// which `Authorization`): a host that is not the cluster, or a cluster that talks too much.
async fn recording_server(body: Vec<u8>) -> (String, Arc<std::sync::Mutex<Vec<Option<String>>>>) {
    let seen: Arc<std::sync::Mutex<Vec<Option<String>>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let record = record.clone();
        let body = body.clone();
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            record.lock().expect("lock").push(auth);
            ([("content-type", "application/json")], body)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// The cluster's API key goes to the cluster's own origin only: a report naming a file on
/// any other host (or another port of it) is refused before anything is sent there. And the
/// client reads a status report to a cap, not whatever length the cluster sends.
#[tokio::test]
async fn the_cluster_s_key_goes_only_to_the_cluster_and_its_answers_are_capped() {
    let (stranger, seen) = recording_server(b"stolen".to_vec()).await;
    let (cluster_url, _) = recording_server(b"{}".to_vec()).await;
    let cluster = HttpCluster::new(
        &cluster_url,
        Some("sim-key".into()),
        ClientOptions::default(),
    );
    for url in [
        format!("{stranger}/v1/jobs/cj-1/artifacts/adapter_config.json"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!(
            "{}/v1/jobs/cj-1/artifacts/adapter_config.json",
            cluster_url.replace("http:", "https:")
        ),
        "not a url".to_string(),
    ] {
        let answer = cluster.download(&url, 6).await;
        assert!(
            matches!(&answer, Err(ClusterCallError::Rejected { status: 400, .. })),
            "{url}: {answer:?}"
        );
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "the stranger was sent {:?}",
        seen.lock().unwrap()
    );

    let huge = format!(
        "{{\"logs\": \"{}\"}}",
        "x".repeat(infrastructure::cluster_client::MAX_ANSWER_BYTES)
    );
    let (talkative, _) = recording_server(huge.into_bytes()).await;
    let cluster = HttpCluster::new(&talkative, Some("sim-key".into()), ClientOptions::default());
    let answer = cluster.status("cj-1", None).await;
    assert!(
        matches!(&answer, Err(ClusterCallError::Rejected { message, .. }) if message.contains("longer than")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn faults_and_errors_reach_the_client_as_the_contract_says() {
    let app = TestApp::start().await;
    let sim = sim(&app, 2000.0).await;
    let cluster = client(&sim);
    let (url, _) = dataset_url(&app).await;
    let http = reqwest::Client::new();
    let inject = |prefix: &str, faults: Faults| {
        http.put(format!("{}/v1/sim/faults/{prefix}", sim.url))
            .bearer_auth("sim-key")
            .json(&faults)
            .send()
    };
    inject(
        "flaky-",
        Faults {
            http_500s: 2,
            slow_ms: 20,
            ..Faults::default()
        },
    )
    .await
    .unwrap();
    inject(
        "oom-",
        Faults {
            oom_at_step: Some(25),
            ..Faults::default()
        },
    )
    .await
    .unwrap();

    // Two 500s and slow answers are absorbed by the client's retries.
    let flaky = cluster.submit(&request("flaky-1", &url)).await.unwrap();
    let report = cluster.status(&flaky.cluster_job_id, None).await.unwrap();
    assert_eq!(report.cluster_job_id, flaky.cluster_job_id);

    // Out of memory at step 25: failed, retryable, and the metrics stop there.
    let oom = cluster.submit(&request("oom-1", &url)).await.unwrap();
    let report = loop {
        let report = cluster.status(&oom.cluster_job_id, None).await.unwrap();
        if report.status.is_terminal() {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report.status, ClusterStatus::Failed);
    let error = report.error.unwrap();
    assert_eq!(
        (error.code.as_str(), error.retryable),
        ("OUT_OF_MEMORY", true)
    );
    assert_eq!(report.metrics.last().unwrap().step, 25);
    assert!(report.artifacts.is_empty());

    // A bad request is refused at once; an unknown job is named; a wrong key is a 401.
    let mut bad = request("bad-1", &url);
    bad.total_steps = 0;
    assert!(matches!(
        cluster.submit(&bad).await,
        Err(ClusterCallError::Rejected { status: 400, .. })
    ));
    // The cluster reads the file as the submission names it: a v4 file is no ShareGPT file.
    let mut misread = request("misread-1", &url);
    misread.dataset_format = Some(DatasetFormat::Sharegpt);
    match cluster.submit(&misread).await {
        Err(ClusterCallError::Rejected {
            status: 422,
            message,
        }) => assert!(
            message.contains("no conversation in the sharegpt format")
                && message.contains("line 1"),
            "{message}"
        ),
        other => panic!("expected a 422, got {other:?}"),
    }
    assert!(matches!(
        cluster.status("cj-nope", None).await,
        Err(ClusterCallError::UnknownJob(_))
    ));
    let stranger = HttpCluster::new(&sim.url, Some("wrong".into()), ClientOptions::default());
    assert!(matches!(
        stranger.status(&flaky.cluster_job_id, None).await,
        Err(ClusterCallError::Rejected { status: 401, .. })
    ));

    // Cancel stops the GPU clock.
    let run = cluster.submit(&request("cancel-1", &url)).await.unwrap();
    cluster.cancel(&run.cluster_job_id).await.unwrap();
    let first = cluster.status(&run.cluster_job_id, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let later = cluster.status(&run.cluster_job_id, None).await.unwrap();
    assert_eq!(later.status, ClusterStatus::Cancelled);
    assert_eq!(first.gpu_seconds, later.gpu_seconds);

    // A dead cluster is Unavailable after the retries.
    let gone = client(&sim);
    drop(sim);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(
        gone.status(&run.cluster_job_id, None).await,
        Err(ClusterCallError::Unavailable(_))
    ));
    app.finish().await;
}
