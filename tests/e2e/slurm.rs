//! Training for real: the binary over HTTP with `CLUSTER_BACKEND=slurm` on the machine's
//! single-node Slurm (`scripts/slurm-local.sh start`, run by the test when needed), the
//! reference trainer on `smollm2-135m` on the CPU, real losses on the SSE stream, and an
//! adapter that PEFT loads and that lowers the loss on its own training conversations.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::Digest;

use crate::common::{eventually, BinaryService, Isolation};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// What `scripts/slurm-local.sh start` prints, as variables (it brings Slurm up if needed).
pub(crate) fn slurm_env() -> HashMap<String, String> {
    slurm_local("start", &[])
}

/// Runs `scripts/slurm-local.sh <verb>` with `vars` (a private cluster's folder and ports).
fn slurm_local(verb: &str, vars: &[(&str, String)]) -> HashMap<String, String> {
    let out = Command::new("bash")
        .arg(format!("{ROOT}/scripts/slurm-local.sh"))
        .arg(verb)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("scripts/slurm-local.sh runs");
    assert!(
        out.status.success(),
        "scripts/slurm-local.sh {verb} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

struct Cluster {
    env: HashMap<String, String>,
    runs: PathBuf,
}

impl Cluster {
    /// Slurm's variables, with run folders of this test's own.
    fn new(iso: &Isolation) -> Cluster {
        Self::with_env(iso, slurm_env())
    }

    fn with_env(iso: &Isolation, mut env: HashMap<String, String>) -> Cluster {
        let runs = iso.data_dir().join("slurm-runs");
        std::fs::create_dir_all(&runs).expect("runs folder");
        env.insert("SLURM_RUNS_DIR".into(), runs.display().to_string());
        env.insert("SAGA_POLL_INTERVAL_MS".into(), "500".into());
        env.insert("SAGA_RETRY_BACKOFF_MS".into(), "500".into());
        env.insert("SAGA_LEASE_SECONDS".into(), "5".into());
        Cluster { env, runs }
    }

    fn vars(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    async fn slurm(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!(
                "{}/slurm/v0.0.38/{path}",
                self.env["SLURM_REST_URL"]
            ))
            .header("X-SLURM-USER-NAME", &self.env["SLURM_USER"])
            .header("X-SLURM-USER-TOKEN", &self.env["SLURM_JWT"])
            .send()
            .await
            .expect("slurmrestd")
            .json()
            .await
            .expect("slurmrestd JSON")
    }

    /// Slurm's jobs named after this BrightRun job.
    async fn jobs_of(&self, job: &str) -> Vec<Value> {
        let prefix = format!("brightrun-{job}-");
        self.slurm("jobs").await["jobs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|j| j["name"].as_str().is_some_and(|n| n.starts_with(&prefix)))
            .collect()
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn signup(base: &str) -> Client {
        let http = reqwest::Client::new();
        let email = format!("{}@slurm.example", uuid::Uuid::now_v7().simple());
        let body: Value = http
            .post(format!("{base}/api/auth/signup"))
            .json(&json!({"email": email, "password": "correct horse", "name": "Ada"}))
            .send()
            .await
            .expect("signup")
            .json()
            .await
            .expect("signup JSON");
        Client {
            http,
            base: base.to_string(),
            token: body["data"]["token"].as_str().expect("token").to_string(),
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("GET JSON")
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn ready_dataset(&self) -> String {
        let file = std::fs::read(format!("{ROOT}/examples/support-chats-v4.jsonl")).unwrap();
        let (status, registered) = self
            .post(
                "/api/datasets",
                json!({"name": "support", "format": "brightrun-lora-v4", "fileSize": file.len(), "fileName": "support.jsonl"}),
            )
            .await;
        assert_eq!(status, 201, "{registered}");
        let id = registered["data"]["datasetId"]
            .as_str()
            .unwrap()
            .to_string();
        let put = self
            .http
            .put(registered["data"]["uploadUrl"].as_str().unwrap())
            .body(file)
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
        let (status, _) = self
            .post(&format!("/api/datasets/{id}/confirm"), json!({}))
            .await;
        assert_eq!(status, 200);
        for _ in 0..300 {
            let d = self.get(&format!("/api/datasets/{id}")).await;
            if d["data"]["dataset"]["status"] == "ready" {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the dataset did not become ready");
    }

    /// A job on smollm2-135m with nothing but the defaults: the balanced preset as the
    /// service resolves it for the model.
    async fn create_default_job(&self, dataset: &str) -> String {
        let (status, created) = self
            .post(
                "/api/jobs",
                json!({"datasetId": dataset, "presetId": "balanced", "baseModel": "smollm2-135m",
                       "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1}}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["data"]["jobId"].as_str().unwrap().to_string()
    }

    /// A job on smollm2-135m that learns visibly in a few CPU steps.
    async fn create_job(&self, dataset: &str, epochs: u32) -> String {
        let (status, created) = self
            .post(
                "/api/jobs",
                json!({"datasetId": dataset, "presetId": "custom", "baseModel": "smollm2-135m",
                       "hyperparameters": {"learningRate": 0.002, "batchSize": 4, "numEpochs": epochs,
                                           "warmupSteps": 0, "loraRank": 16, "loraAlpha": 32,
                                           "loraDropout": 0.05, "targetModules": ["q_proj", "v_proj"]},
                       "checkpointInterval": 2,
                       "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1}}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["data"]["jobId"].as_str().unwrap().to_string()
    }

    async fn job(&self, id: &str) -> Value {
        self.get(&format!("/api/jobs/{id}")).await["data"]["job"].clone()
    }

    async fn wait_for_status(&self, id: &str, statuses: &[&str], within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let job = self.job(id).await;
            if statuses.iter().any(|s| job["status"] == *s) {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job still {} (wanted {statuses:?}): {job}",
                job["status"]
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn wait_until_training(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
        loop {
            let job = self.job(id).await;
            assert_ne!(job["status"], "failed", "{job}");
            if job["status"] == "running" && job["progress"].as_f64().unwrap_or(0.0) > 0.0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not training: {job}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// `serve` on the cluster, a signed-up client, and the example dataset ready to train.
async fn start(iso: &Isolation, cluster: &Cluster) -> (BinaryService, Client, String) {
    let service = BinaryService::spawn(iso, "all", &cluster.vars()).await;
    let client = Client::signup(&service.base).await;
    let dataset = client.ready_dataset().await;
    (service, client, dataset)
}

/// The job's loss curve has every step of its plan, each once.
fn assert_each_step_once(job: &Value) {
    let steps: Vec<u64> = job["lossCurve"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let total = job["totalSteps"].as_u64().unwrap();
    assert_eq!(steps, (1..=total).collect::<Vec<_>>(), "each step once");
}

/// Reads the job's SSE stream until it ends: the names and data of its events.
async fn stream_events(client: &Client, job: &str, within: Duration) -> Vec<(String, Value)> {
    let mut response = client
        .http
        .get(format!("{}/api/jobs/{job}/stream", client.base))
        .bearer_auth(&client.token)
        .send()
        .await
        .expect("stream");
    let deadline = tokio::time::Instant::now() + within;
    let mut buffer = String::new();
    let mut events = Vec::new();
    loop {
        let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            _ => return events,
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if let Some(name) = name {
                events.push((name, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
        }
    }
}

/// `GET /api/models/<path>`, then the file its presigned `downloadUrl` names.
async fn download(client: &Client, path: &str) -> (Value, bytes::Bytes) {
    let d = client.get(&format!("/api/models/{path}")).await;
    let url = d["data"]["downloadUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("{d}"));
    let bytes = client
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    (d, bytes)
}

async fn download_adapter(client: &Client, job: &str, into: &Path) {
    let model = application::saga::model_id_of(domain::ids::JobId(job.parse().unwrap()));
    std::fs::create_dir_all(into).unwrap();
    for (artifact, file) in [
        ("adapter-model", "adapter_model.safetensors"),
        ("adapter-config", "adapter_config.json"),
        ("tokenizer", "tokenizer.json"),
    ] {
        let (d, bytes) = download(client, &format!("{model}/download?artifact={artifact}")).await;
        assert_eq!(bytes.len() as u64, d["data"]["fileSize"].as_u64().unwrap());
        std::fs::write(into.join(file), bytes).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_on_the_defaults_trains_smollm2_on_slurm_and_its_adapter_lowers_the_loss_by_a_fifth()
{
    let iso = Isolation::new();
    let cluster = Cluster::new(&iso);
    let (_service, client, dataset) = start(&iso, &cluster).await;
    let job = client.create_default_job(&dataset).await;
    // The run's folder and its spec (a presigned URL of the dataset) are its owner's only.
    let run = cluster.runs.join(format!("{job}-1"));
    eventually("the run folder", Duration::from_secs(60), || async {
        run.join("spec.json").exists()
    })
    .await;
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    assert_eq!(mode(&run), 0o700, "{}", run.display());
    assert_eq!(mode(&run.join("spec.json")), 0o600);

    let events = stream_events(&client, &job, Duration::from_secs(400)).await;
    let final_job = client
        .wait_for_status(&job, &["completed", "failed"], Duration::from_secs(30))
        .await;
    assert_eq!(final_job["status"], "completed", "{final_job}");
    // Copied into our bucket, the run's files (the dataset's copy among them) are removed.
    eventually(
        "the completed run's folder is removed",
        Duration::from_secs(60),
        || async { !run.exists() },
    )
    .await;

    // Real losses, live: every step's metrics came over SSE, falling from the first.
    let losses: Vec<(u64, f64)> = events
        .iter()
        .filter(|(name, _)| name == "metrics")
        .map(|(_, d)| {
            (
                d["step"].as_u64().unwrap(),
                d["trainingLoss"].as_f64().unwrap(),
            )
        })
        .collect();
    let total = final_job["totalSteps"].as_u64().unwrap();
    assert_eq!(
        losses.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "{events:?}"
    );
    assert!(losses.last().unwrap().1 < losses[0].1, "{losses:?}");
    assert!(events.iter().any(|(name, _)| name == "complete"));

    // The cluster job is Slurm's, asked for the configured gres, and it completed there.
    let slurm_jobs = cluster.jobs_of(&job).await;
    assert_eq!(slurm_jobs.len(), 1, "one Slurm job");
    let slurm_job = &slurm_jobs[0];
    assert_eq!(slurm_job["job_state"], "COMPLETED", "{slurm_job}");
    assert_eq!(slurm_job["name"], format!("brightrun-{job}-1"));
    assert_eq!(slurm_job["tres_per_node"], "gres:gpu:a100_40gb:1");
    assert!(slurm_job["time_limit"].as_u64().unwrap_or(0) >= 15);
    // GPU time from Slurm's run time: billed as compute.
    let compute = final_job["costBreakdown"]["compute"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(compute > 0.0, "{}", final_job["costBreakdown"]);

    // The adapters the trainer saved at its checkpoints were copied while it ran: the model
    // lists them and each downloads with the checksum the trainer computed.
    let model = application::saga::model_id_of(domain::ids::JobId(job.parse().unwrap()));
    let detail = client.get(&format!("/api/models/{model}")).await;
    let checkpoints = detail["data"]["model"]["artifacts"]["checkpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!checkpoints.is_empty(), "{detail}");
    // Base model against adapter on the held-out pairs, measured by the trainer: no made-up
    // scores on a real run.
    let quality = &detail["data"]["model"]["qualityMetrics"];
    assert_eq!(quality["validationScores"], Value::Null, "{quality}");
    let comparison = &quality["comparison"];
    assert!(
        comparison["validationPairs"].as_u64().unwrap_or(0) > 0,
        "{quality}"
    );
    for side in ["base", "adapter"] {
        for figure in ["loss", "perplexity", "bleu", "rougeL"] {
            assert!(
                comparison[side][figure].is_number(),
                "{side}.{figure}: {quality}"
            );
        }
    }
    assert!(
        comparison["adapter"]["loss"].as_f64() < comparison["base"]["loss"].as_f64(),
        "{quality}"
    );
    assert_eq!(quality["bleuScore"], comparison["adapter"]["bleu"]);
    let last = checkpoints.last().unwrap();
    let (_, bytes) = download(
        &client,
        &format!(
            "{model}/download?artifact=checkpoint&checkpointId={}",
            last["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        last["checksum"].as_str().unwrap()
    );

    // The downloaded adapter loads with PEFT and lowers the loss on its training pairs.
    let adapter = iso.data_dir().join("downloaded-adapter");
    download_adapter(&client, &job, &adapter).await;
    let out = Command::new(&cluster.env["TRAINER_PYTHON"])
        .args([
            "-m",
            "brightrun_trainer.evaluate",
            "--base-model",
            "smollm2-135m",
        ])
        .arg("--adapter")
        .arg(&adapter)
        .arg("--dataset")
        .arg(format!("{ROOT}/examples/support-chats-v4.jsonl"))
        .env("PYTHONPATH", &cluster.env["TRAINER_SRC"])
        .env("TRAINER_MODELS_DIR", &cluster.env["TRAINER_MODELS_DIR"])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the evaluation runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Value = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .expect("a JSON line"),
    )
    .unwrap();
    // On the defaults, the adapter learns its training conversations: at most 0.8x the
    // base model's loss on them.
    assert!(
        figures["adapterLoss"].as_f64().unwrap() <= 0.8 * figures["baseLoss"].as_f64().unwrap(),
        "{figures}"
    );
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_cancels_its_slurm_job() {
    let iso = Isolation::new();
    let cluster = Cluster::new(&iso);
    let (service, client, dataset) = start(&iso, &cluster).await;
    let job = client.create_job(&dataset, 20).await;
    client.wait_until_training(&job).await;
    let (status, cancelled) = client
        .post(&format!("/api/jobs/{job}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["data"]["status"], "cancelled");
    let slurm_id = cluster.jobs_of(&job).await[0]["job_id"].clone();
    let mut state = Value::Null;
    for _ in 0..240 {
        state = cluster.slurm(&format!("job/{slurm_id}")).await["jobs"][0]["job_state"].clone();
        if state == "CANCELLED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(state, "CANCELLED");
    // The trainer stopped short of the plan, and no adapter was made.
    let cancelled = client.job(&job).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert!(
        cancelled["currentStep"].as_u64().unwrap_or(0)
            < cancelled["totalSteps"].as_u64().unwrap_or(0),
        "{cancelled}"
    );
    assert!(cancelled["artifactId"].is_null(), "{cancelled}");
    // Its run folder (the dataset's copy, the presigned URL) goes once Slurm has stopped it:
    // at the release, or at the next submission's sweep.
    let run = cluster.runs.join(format!("{job}-1"));
    if run.exists() {
        let next = client.create_job(&dataset, 1).await;
        eventually(
            "the cancelled run's folder is removed",
            Duration::from_secs(60),
            || async { !run.exists() },
        )
        .await;
        let _ = client
            .post(&format!("/api/jobs/{next}/cancel"), json!({}))
            .await;
    }
    drop(service);
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_serve_mid_run_on_slurm_loses_and_doubles_nothing() {
    let iso = Isolation::new();
    let cluster = Cluster::new(&iso);
    let (mut first, client, dataset) = start(&iso, &cluster).await;
    let job = client.create_job(&dataset, 2).await;
    client.wait_until_training(&job).await;
    first.kill_9();

    let second = BinaryService::spawn(&iso, "all", &cluster.vars()).await;
    let client = Client {
        base: second.base.clone(),
        ..client
    };
    let done = client
        .wait_for_status(&job, &["completed", "failed"], Duration::from_secs(400))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(cluster.jobs_of(&job).await.len(), 1, "one Slurm job");

    let pool = infrastructure::db::connect(&iso.database_url(), 2)
        .await
        .unwrap();
    let submitted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'JobSubmitted'",
    )
    .bind(&job)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(submitted, 1);
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT payload->'JobCostAccrued'->>'entryKey' FROM events \
         WHERE aggregate_id = $1 AND event_type = 'JobCostAccrued'",
    )
    .bind(&job)
    .fetch_all(&pool)
    .await
    .unwrap();
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "{keys:?}");
    assert_each_step_once(&done);
    eventually("the model is registered", Duration::from_secs(30), || {
        let model = application::saga::model_id_of(domain::ids::JobId(job.parse().unwrap()));
        let client = &client;
        async move { client.get(&format!("/api/models/{model}")).await["success"] == true }
    })
    .await;
    drop(second);
    iso.cleanup().await;
}

/// `scontrol` against the test's Slurm.
fn scontrol(cluster: &Cluster, args: &[&str]) {
    let out = Command::new("scontrol")
        .args(args)
        .env("SLURM_CONF", &cluster.env["SLURM_CONF"])
        .output()
        .expect("scontrol runs");
    assert!(
        out.status.success(),
        "scontrol {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preempted_slurm_job_resumes_from_its_last_checkpoint() {
    let iso = Isolation::new();
    let cluster = Cluster::new(&iso);
    let (service, client, dataset) = start(&iso, &cluster).await;
    let job = client.create_job(&dataset, 2).await;
    let run = cluster.runs.join(format!("{job}-1"));
    until_on_disk(
        "the first checkpoint is on disk",
        Duration::from_secs(300),
        || run.join("checkpoints/checkpoint-2/optimizer.pt").exists(),
    )
    .await;
    // Preempted: Slurm stops the job and queues it again; it starts again once its old
    // credential expired (11 s with the local cluster's `cred_expire=10`).
    let slurm_id = cluster.jobs_of(&job).await[0]["job_id"].to_string();
    scontrol(&cluster, &["requeue", &slurm_id]);

    let done = client
        .wait_for_status(&job, &["completed", "failed"], Duration::from_secs(400))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let slurm_jobs = cluster.jobs_of(&job).await;
    assert_eq!(slurm_jobs.len(), 1, "the same Slurm job, requeued");
    assert_eq!(slurm_jobs[0]["restart_cnt"], 1);
    // What the trainer logged (its run folder is gone once the job completed): a second
    // start, resumed from a checkpoint rather than from step 0.
    let logs: Vec<&str> = done["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert_eq!(
        logs.iter().filter(|m| **m == "starting the run").count(),
        1,
        "{logs:?}"
    );
    assert_eq!(
        logs.iter().filter(|m| **m == "resuming the run").count(),
        1,
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|m| m.starts_with("resuming from checkpoint-")),
        "the second start resumed from a checkpoint, not from step 0: {logs:?}"
    );
    until_on_disk(
        "the completed run's folder is removed",
        Duration::from_secs(60),
        || !run.exists(),
    )
    .await;
    assert_each_step_once(&done);
    drop(service);
    iso.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_model_the_cluster_lacks_fails_the_job_once_with_its_code() {
    let iso = Isolation::new();
    let cluster = Cluster::new(&iso);
    let (service, client, dataset) = start(&iso, &cluster).await;
    // In the catalogue, but its weights are not on this machine (nothing is downloaded).
    let (status, created) = client
        .post(
            "/api/jobs",
            json!({"datasetId": dataset, "presetId": "balanced", "baseModel": "llama-3-8b",
                   "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let job = created["data"]["jobId"].as_str().unwrap().to_string();
    let failed = client
        .wait_for_status(&job, &["failed", "completed"], Duration::from_secs(240))
        .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["errorCode"], "BASE_MODEL_UNAVAILABLE", "{failed}");
    assert!(failed["errorMessage"]
        .as_str()
        .is_some_and(|m| m.contains("Meta-Llama-3-8B")));
    // Not retryable: one attempt, one Slurm job, and nothing billed twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(client.job(&job).await["retryCount"], 0);
    assert_eq!(cluster.jobs_of(&job).await.len(), 1);
    drop(service);
    iso.cleanup().await;
}

/// A Slurm of the test's own (munge, slurmctld, slurmd, slurmrestd on free ports and in the
/// test's folder), for faults that must not touch the machine's shared cluster.
struct PrivateSlurm {
    vars: Vec<(&'static str, String)>,
}

impl PrivateSlurm {
    fn start(iso: &Isolation) -> (PrivateSlurm, HashMap<String, String>) {
        let vars = vec![
            (
                "SLURM_LOCAL_DIR",
                iso.data_dir().join("slurm").display().to_string(),
            ),
            (
                "SLURM_LOCAL_CTLD_PORT",
                crate::common::free_port().to_string(),
            ),
            (
                "SLURM_LOCAL_SLURMD_PORT",
                crate::common::free_port().to_string(),
            ),
            (
                "SLURM_LOCAL_REST_PORT",
                crate::common::free_port().to_string(),
            ),
        ];
        let env = slurm_local("start", &vars);
        (PrivateSlurm { vars }, env)
    }

    fn pid(&self, daemon: &str) -> String {
        let dir = &self.vars[0].1;
        std::fs::read_to_string(format!("{dir}/run/{daemon}.pid"))
            .expect("pid file")
            .trim()
            .to_string()
    }
}

impl Drop for PrivateSlurm {
    /// Stops the private daemons whatever happened (no assertion: this may run in a panic).
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(format!("{ROOT}/scripts/slurm-local.sh"))
            .arg("stop")
            .envs(self.vars.iter().map(|(k, v)| (*k, v.as_str())))
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_slurmd_mid_run_loses_and_doubles_nothing() {
    let iso = Isolation::new();
    let (slurm, env) = PrivateSlurm::start(&iso);
    let cluster = Cluster::with_env(&iso, env);
    let (service, client, dataset) = start(&iso, &cluster).await;
    let job = client.create_job(&dataset, 2).await;
    client.wait_until_training(&job).await;

    // The node daemon dies mid-run; the job's step keeps running; the daemon comes back.
    let killed = Command::new("kill")
        .args(["-9", &slurm.pid("slurmd")])
        .status()
        .expect("kill");
    assert!(killed.success());
    tokio::time::sleep(Duration::from_secs(3)).await;
    slurm_local("start", &slurm.vars);

    let done = client
        .wait_for_status(&job, &["completed", "failed"], Duration::from_secs(400))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let slurm_jobs = cluster.jobs_of(&job).await;
    assert_eq!(slurm_jobs.len(), 1, "one Slurm job");
    assert_eq!(slurm_jobs[0]["restart_cnt"], 0, "it ran through, not again");
    assert_each_step_once(&done);
    drop(service);
    drop(slurm);
    iso.cleanup().await;
}

/// A purged dataset leaves no copy in a run folder: a run that was never released (as runs
/// from before releases were) holding the dataset and a presigned URL of it is removed by the
/// purge once Slurm no longer runs its job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_dataset_leaves_no_copy_in_a_run_folder() {
    let iso = Isolation::new();
    let mut cluster = Cluster::new(&iso);
    cluster
        .env
        .insert("DATASET_PURGE_AFTER_SECONDS".into(), "0".into());
    cluster
        .env
        .insert("DATASET_PURGE_INTERVAL_SECONDS".into(), "1".into());
    let (service, client, dataset) = start(&iso, &cluster).await;
    let key = client.get(&format!("/api/datasets/{dataset}")).await["data"]["dataset"]["s3Key"]
        .as_str()
        .expect("s3Key")
        .to_string();
    // A run of long ago, on this dataset, whose Slurm job is long forgotten.
    let old = cluster.runs.join("0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a10-1");
    std::fs::create_dir_all(&old).unwrap();
    let url = format!("http://127.0.0.1:9/brightrun/{key}?X-Amz-Signature=old");
    let spec = crate::cluster_sim::request("0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a10-1", &url);
    std::fs::write(old.join("spec.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
    std::fs::write(old.join("dataset.jsonl"), b"{\"messages\": []}\n").unwrap();
    std::fs::write(old.join("slurm_job_id"), b"999999").unwrap();
    // A run of another dataset stays.
    let other = cluster.runs.join("0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a11-1");
    std::fs::create_dir_all(&other).unwrap();
    let elsewhere = crate::cluster_sim::request(
        "0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a11-1",
        "http://127.0.0.1:9/brightrun/datasets/u/other/dataset.jsonl?X-Amz-Signature=x",
    );
    std::fs::write(
        other.join("spec.json"),
        serde_json::to_vec(&elsewhere).unwrap(),
    )
    .unwrap();

    let deleted = client
        .http
        .delete(format!("{}/api/datasets/{dataset}", client.base))
        .bearer_auth(&client.token)
        .send()
        .await
        .expect("DELETE");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    until_on_disk(
        "the purge removes the old run",
        Duration::from_secs(60),
        || !old.exists(),
    )
    .await;
    assert!(
        other.join("spec.json").exists(),
        "another dataset's run was removed"
    );
    drop(service);
    iso.cleanup().await;
}

/// Waits until `check` of the run folders holds (a file written, a folder removed).
async fn until_on_disk(what: &str, within: Duration, check: impl Fn() -> bool) {
    eventually(what, within, || {
        let now = check();
        async move { now }
    })
    .await;
}

/// The trainer processes of the run folder `run` (by their command line).
fn trainer_pids(run: &Path) -> Vec<String> {
    let needle = run.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().into_owned();
            pid.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains("brightrun_trainer") && cmdline.contains(&needle)).then_some(pid)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trainer_killed_mid_run_is_retried_from_its_newest_checkpoint() {
    let iso = Isolation::new();
    let cluster = Cluster::new(&iso);
    let (service, client, dataset) = start(&iso, &cluster).await;
    let job = client.create_job(&dataset, 2).await;
    let first = cluster.runs.join(format!("{job}-1"));
    until_on_disk(
        "the first checkpoint is on disk",
        Duration::from_secs(300),
        || {
            first
                .join("checkpoints/checkpoint-2/trainer_state.json")
                .exists()
        },
    )
    .await;
    // kill -9 of the trainer: its Slurm job fails (TRAINER_CRASHED, retryable).
    let pids = trainer_pids(&first);
    assert!(!pids.is_empty(), "the trainer of {}", first.display());
    let failed = cluster.jobs_of(&job).await[0]["job_id"].to_string();
    for pid in &pids {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    // The retry's submission names the Slurm job it resumes from.
    let second = cluster.runs.join(format!("{job}-2"));
    until_on_disk("the retry is submitted", Duration::from_secs(120), || {
        second.join("spec.json").exists()
    })
    .await;
    let spec: Value =
        serde_json::from_slice(&std::fs::read(second.join("spec.json")).unwrap()).unwrap();
    assert_eq!(spec["resumeFrom"], failed.as_str(), "{spec}");

    let done = client
        .wait_for_status(&job, &["completed", "failed"], Duration::from_secs(400))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["retryCount"], 1, "{done}");
    assert_eq!(
        cluster.jobs_of(&job).await.len(),
        2,
        "a Slurm job per attempt"
    );
    let logs: Vec<&str> = done["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(
        logs.contains(&format!("retrying the failed run {job}-1").as_str()),
        "{logs:?}"
    );
    let resumed: u64 = logs
        .iter()
        .find_map(|m| m.strip_prefix("resuming from checkpoint-"))
        .and_then(|m| m.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the retry resumed from a checkpoint: {logs:?}"));
    assert!(resumed >= 2, "{logs:?}");
    // No checkpoint step trained twice: the retry went on from the checkpoint, not step 0.
    let saved: Vec<u64> = logs
        .iter()
        .filter_map(|m| m.strip_prefix("checkpoint at step "))
        .filter_map(|m| m.split(' ').next()?.parse().ok())
        .collect();
    let unique: HashSet<&u64> = saved.iter().collect();
    assert_eq!(unique.len(), saved.len(), "each checkpoint once: {saved:?}");
    assert!(saved.contains(&resumed), "{saved:?}");
    assert_each_step_once(&done);
    // Without early stopping the model's adapter is the last step's.
    let model = application::saga::model_id_of(domain::ids::JobId(job.parse().unwrap()));
    eventually("the model is registered", Duration::from_secs(30), || {
        let client = &client;
        async move { client.get(&format!("/api/models/{model}")).await["success"] == true }
    })
    .await;
    let registered = client.get(&format!("/api/models/{model}")).await;
    assert_eq!(
        registered["data"]["model"]["qualityMetrics"]["adapterStep"], done["totalSteps"],
        "{registered}"
    );
    // Both attempts' folders go: the first once the second was submitted, the second
    // once the job completed.
    until_on_disk(
        "both run folders are removed",
        Duration::from_secs(60),
        || !first.exists() && !second.exists(),
    )
    .await;
    drop(service);
    iso.cleanup().await;
}

/// The job's log messages.
fn messages(job: &Value) -> Vec<String> {
    job["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(|l| l["message"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_continues_a_model_starts_from_its_adapter_s_weights() {
    let iso = Isolation::new();
    let cluster = Cluster::new(&iso);
    let (service, client, dataset) = start(&iso, &cluster).await;
    let parent_job = client.create_job(&dataset, 1).await;
    let parent_done = client
        .wait_for_status(
            &parent_job,
            &["completed", "failed"],
            Duration::from_secs(400),
        )
        .await;
    assert_eq!(parent_done["status"], "completed", "{parent_done}");
    let parent = application::saga::model_id_of(domain::ids::JobId(parent_job.parse().unwrap()));
    eventually("the parent is registered", Duration::from_secs(30), || {
        let client = &client;
        async move { client.get(&format!("/api/models/{parent}")).await["success"] == true }
    })
    .await;
    // "done: validation loss <before> -> <after>, ..."
    let parent_final = messages(&parent_done)
        .iter()
        .find_map(|m| {
            let losses = m.strip_prefix("done: validation loss ")?;
            losses
                .split(" -> ")
                .nth(1)?
                .split(',')
                .next()
                .map(str::to_string)
        })
        .expect("the parent's final validation loss");

    let continued = |rank: u32| {
        json!({"datasetId": dataset, "presetId": "custom", "baseModel": "smollm2-135m",
               "parentModelId": parent.0.to_string(),
               "hyperparameters": {"learningRate": 0.002, "batchSize": 4, "numEpochs": 1,
                                   "warmupSteps": 0, "loraRank": rank, "loraAlpha": 32,
                                   "loraDropout": 0.05, "targetModules": ["v_proj", "q_proj"]},
               "checkpointInterval": 2,
               "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1}})
    };
    // An adapter of another shape cannot be continued: refused, nothing created.
    let (status, body) = client.post("/api/jobs", continued(8)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "hyperparameters.loraRank", "{body}");

    let (status, created) = client.post("/api/jobs", continued(16)).await;
    assert_eq!(status, 201, "{created}");
    let child = created["data"]["jobId"].as_str().unwrap().to_string();
    let done = client
        .wait_for_status(&child, &["completed", "failed"], Duration::from_secs(400))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let logs = messages(&done);
    assert!(
        logs.iter()
            .any(|m| m == "starting from the weights of the adapter it continues"),
        "{logs:?}"
    );
    // Before its first step the child scores what its parent ended with.
    let before = logs
        .iter()
        .find_map(|m| m.strip_prefix("validation loss before training: "))
        .expect("the child's validation loss before training");
    assert_eq!(before, parent_final, "{logs:?}");

    // From a checkpoint of the parent's job instead: its stored adapter, its loss.
    let checkpoint = parent_done["checkpoints"]
        .as_array()
        .and_then(|c| c.first())
        .cloned()
        .expect("the parent job's first checkpoint");
    let mut from_checkpoint = continued(16);
    from_checkpoint
        .as_object_mut()
        .unwrap()
        .remove("parentModelId");
    from_checkpoint["fromCheckpoint"] =
        json!({"jobId": parent_job, "checkpointId": checkpoint["id"]});
    let (status, created) = client.post("/api/jobs", from_checkpoint).await;
    assert_eq!(status, 201, "{created}");
    let grandchild = created["data"]["jobId"].as_str().unwrap().to_string();
    let done = client
        .wait_for_status(
            &grandchild,
            &["completed", "failed"],
            Duration::from_secs(400),
        )
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let logs = messages(&done);
    assert!(
        logs.iter()
            .any(|m| m == "starting from the weights of the adapter it continues"),
        "{logs:?}"
    );
    let before: f64 = logs
        .iter()
        .find_map(|m| m.strip_prefix("validation loss before training: "))
        .and_then(|l| l.parse().ok())
        .expect("the validation loss before training");
    let at_checkpoint = checkpoint["loss"].as_f64().unwrap();
    assert!(
        (before - at_checkpoint).abs() < 1e-3,
        "{before} vs the checkpoint's {at_checkpoint}: {checkpoint}"
    );
    // An unknown checkpoint is refused by its field.
    let mut unknown = continued(16);
    unknown.as_object_mut().unwrap().remove("parentModelId");
    unknown["fromCheckpoint"] = json!({"jobId": parent_job, "checkpointId": "ckpt-9999"});
    let (status, body) = client.post("/api/jobs", unknown).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "fromCheckpoint", "{body}");
    drop(service);
    iso.cleanup().await;
}
