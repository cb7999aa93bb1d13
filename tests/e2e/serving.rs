//! A trained adapter served for real: a smollm2-135m model (trained on the simulator, whose
//! adapters have the model's real shapes) is deployed on the CPU engine (llama.cpp through
//! llama-cpp-python), answers its owner's chat completions through `/v1` and `/api`, whole
//! and streamed, bills the tokens as `api_calls`, refuses everyone else, and stops on
//! undeploy. Its replicas take chat in turn (one killed is skipped, then replaced) and the
//! base model answers beside it. A model no engine serves is refused before anything is
//! recorded.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{eventually, BinaryService, Isolation, TestApp};
use crate::inference::environment;
use crate::saga::{until, FAST};

/// The settings of a service whose deployments run on this machine's CPU engine.
fn engine_vars() -> Vec<(String, String)> {
    let engine = environment("inference-env.sh");
    let trainer = environment("trainer-env.sh").join("bin").join("python");
    let src = format!("{}/../trainer/src", env!("CARGO_MANIFEST_DIR"));
    let mut vars: Vec<(String, String)> = FAST
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.extend([
        ("INFERENCE_VENV".into(), engine.display().to_string()),
        ("TRAINER_PYTHON".into(), trainer.display().to_string()),
        ("TRAINER_SRC".into(), src),
        ("RATE_API_1K_TOKENS".into(), "0.5".into()),
        ("PUBLIC_URL".into(), "https://brightrun.example/".into()),
    ]);
    vars
}

fn borrowed(vars: &[(String, String)]) -> Vec<(&str, &str)> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn serving_app_on(iso: Isolation) -> TestApp {
    let vars = engine_vars();
    TestApp::start_with(iso, api::Roles::ALL, &borrowed(&vars)).await
}

async fn serving_app() -> TestApp {
    serving_app_on(Isolation::new()).await
}

/// A completed model on `base_model`: its id.
async fn trained(app: &TestApp, token: &str, base_model: &str) -> String {
    let dataset = app
        .validated_dataset(token, "support-chats-v4.jsonl", "brightrun-lora-v4")
        .await;
    let job = app.create_job(token, &dataset, base_model).await;
    let job = until(app, token, &job, "completion", |j| {
        j["status"] == "completed"
    })
    .await;
    job["artifactId"].as_str().expect("artifactId").to_string()
}

/// Deploys the model `id` with `request` and waits until its engines serve.
async fn deployed(app: &TestApp, token: &str, id: &str, request: Value) {
    let (status, body) = app
        .post(&format!("/api/models/{id}/deploy"), Some(token), request)
        .await;
    assert_eq!(status, 202, "{body}");
    eventually("the engines serve", Duration::from_secs(180), || async {
        model(app, token, id).await["deployment"]["status"] == "deployed"
    })
    .await;
}

async fn model(app: &TestApp, token: &str, id: &str) -> Value {
    app.get(&format!("/api/models/{id}"), Some(token)).await.1["data"]["model"].clone()
}

/// The server-sent events of a streamed answer: each `data:` payload, `[DONE]` included.
async fn events(response: reqwest::Response) -> Vec<String> {
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = response.text().await.expect("stream");
    text.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data:").map(|d| d.trim().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_adapter_answers_its_owner_bills_the_tokens_and_stops_on_undeploy() {
    let app = serving_app().await;
    let (_, token) = app.user("ada").await;
    let (_, stranger) = app.user("mallory").await;

    // A model no engine here serves is refused with its reason; nothing recorded.
    let big = trained(&app, &token, "llama-3-8b").await;
    let (status, body) = app
        .post(
            &format!("/api/models/{big}/deploy"),
            Some(&token),
            json!({"environment": "staging"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "ADAPTER_NOT_SERVABLE");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("llama-3-8b"),
        "{body}"
    );
    assert_eq!(model(&app, &token, &big).await["deployment"], Value::Null);

    let id = trained(&app, &token, "smollm2-135m").await;
    let base = format!("/api/models/{id}");
    let (status, body) = app
        .post(
            &format!("{base}/deploy"),
            Some(&token),
            json!({"environment": "staging", "minReplicas": 2, "maxReplicas": 2}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["status"], "deploying");
    assert_eq!(body["data"]["endpointUrl"], "https://brightrun.example/v1");
    // Chat waits for the engine.
    let (status, body) = app
        .post(
            &format!("{base}/chat"),
            Some(&token),
            json!({"messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert!(
        status == 409 && body["error"]["code"] == "MODEL_NOT_SERVING" || status == 200,
        "{status} {body}"
    );
    eventually("the engine serves", Duration::from_secs(180), || async {
        model(&app, &token, &id).await["deployment"]["status"] == "deployed"
    })
    .await;
    let served = model(&app, &token, &id).await;
    assert_eq!(served["status"], "deployed");
    assert!(served["deployedAt"].is_string(), "{served}");

    // /v1 by the model's OpenAI name, as the openai SDK sends it.
    let (_, models) = app.get("/v1/models", Some(&token)).await;
    let name = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .find(|n| n.ends_with(&id))
        .expect("the model's ft: name")
        .to_string();
    let ask = |stream: bool| {
        json!({"model": name, "max_tokens": 8, "temperature": 0, "stream": stream,
               "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "How do I reset my password?"}]})
    };
    let (status, answer) = app
        .post("/v1/chat/completions", Some(&token), ask(false))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], name.as_str());
    assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
    let prompt = answer["usage"]["prompt_tokens"].as_u64().unwrap();
    let completion = answer["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(prompt > 0 && completion > 0, "{answer}");

    // Streamed: chunks under the model's name, a usage chunk, then [DONE].
    let streamed = events(
        app.http
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&token)
            .json(&ask(true))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        streamed.last().map(String::as_str),
        Some("[DONE]"),
        "{streamed:?}"
    );
    let chunks: Vec<Value> = streamed[..streamed.len() - 1]
        .iter()
        .map(|c| serde_json::from_str(c).expect("a JSON chunk"))
        .collect();
    assert!(
        chunks.iter().all(|c| c["model"] == name.as_str()),
        "{chunks:?}"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!text.is_empty(), "{chunks:?} (whole: {answer})");
    let usage = &chunks.last().unwrap()["usage"];
    let streamed_tokens = usage["total_tokens"].as_u64().unwrap_or(0);
    assert!(
        usage["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "{usage}"
    );
    // Counted by BrightRun for a stream, as the engine counts the same prompt whole.
    assert_eq!(usage["prompt_tokens"].as_u64(), Some(prompt), "{usage}");

    // /api, in the envelope.
    let (status, body) = app
        .post(
            &format!("{base}/chat"),
            Some(&token),
            json!({"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["object"], "chat.completion");
    let api_tokens = body["data"]["usage"]["total_tokens"].as_u64().unwrap();
    let mut extra_tokens = 0;

    // The base model beside it, for the same request: its own engine, its own name.
    let (status, body) = app
        .post(
            &format!("{base}/chat/base"),
            Some(&token),
            json!({"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["model"], "smollm2-135m");
    let base_tokens = body["data"]["usage"]["total_tokens"].as_u64().unwrap();
    assert!(base_tokens > 0, "{body}");

    // Two replicas and the base model's engine serve; chat takes the replicas in turn, and
    // one killed is skipped while it is replaced.
    let pids = engine_pids(&app.iso);
    assert_eq!(pids.len(), 3, "{pids:?}");
    let written = engines_written(&app.iso);
    assert_eq!(
        written["replicas"].as_array().map(Vec::len),
        Some(2),
        "{written}"
    );
    assert!(written["base"]["baseUrl"].is_string(), "{written}");
    let replica = written["replicas"][0]["baseUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let victim = pids
        .iter()
        .find(|pid| {
            let port = replica.rsplit(':').next().unwrap().trim_end_matches("/v1");
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&format!("--port\0{port}")))
        })
        .expect("the first replica's process")
        .clone();
    let _ = std::process::Command::new("kill")
        .args(["-9", &victim])
        .status();
    for _ in 0..2 {
        let (status, body) = app
            .post(
                &format!("{base}/chat"),
                Some(&token),
                json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}),
            )
            .await;
        assert_eq!(status, 200, "with one replica killed: {body}");
        extra_tokens += body["data"]["usage"]["total_tokens"].as_u64().unwrap();
    }
    eventually(
        "the killed replica is replaced",
        Duration::from_secs(120),
        || async {
            let pids = engine_pids(&app.iso);
            pids.len() == 3 && !pids.contains(&victim)
        },
    )
    .await;
    assert_eq!(
        model(&app, &token, &id).await["deployment"]["status"],
        "deployed"
    );

    // Bad input is refused naming the field; nobody else reaches the model.
    for (request, field) in [
        (json!({"messages": []}), "messages"),
        (
            json!({"messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
            "max_tokens",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": 3}),
            "temperature",
        ),
    ] {
        let (status, body) = app
            .post(&format!("{base}/chat"), Some(&token), request)
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    let (status, body) = app
        .post("/v1/chat/completions", Some(&stranger), ask(false))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found", "{body}");
    let (status, _) = app
        .post(
            &format!("{base}/chat"),
            Some(&stranger),
            json!({"messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = app
        .post(
            "/v1/chat/completions",
            Some(&token),
            json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(status, 404, "{body}");

    // Six completions billed to the owner, at 0.5 per 1,000 tokens (a stream's bill is
    // recorded once the caller has its end; the ledger is a projection).
    let ledger = || async {
        let rows: Vec<(String, rust_decimal::Decimal, rust_decimal::Decimal)> = sqlx::query_as(
            "SELECT cost_type, quantity, amount FROM rm_cost_ledger WHERE model_id = $1::uuid AND cost_type = 'api_calls' ORDER BY accrued_at",
        )
        .bind(&id)
        .fetch_all(app.pool())
        .await
        .unwrap();
        rows
    };
    eventually("six ledger entries", Duration::from_secs(10), || async {
        ledger().await.len() == 6
    })
    .await;
    let rows = ledger().await;
    let tokens: rust_decimal::Decimal = rows.iter().map(|r| r.1).sum();
    assert_eq!(
        tokens * rust_decimal::Decimal::from(1000),
        rust_decimal::Decimal::from(
            prompt + completion + streamed_tokens + api_tokens + base_tokens + extra_tokens
        )
    );
    assert!(rows
        .iter()
        .all(|r| r.2 == r.1 * rust_decimal::Decimal::new(5, 1)));
    let (_, costs) = app.get("/api/costs?groupBy=month", Some(&token)).await;
    assert!(
        costs["data"]["costs"][0]["apiCalls"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0,
        "{costs}"
    );

    // Undeployed: stopped, its engine gone, chat refused, the model stored again.
    let folders = app.iso.data_dir().join("deployments");
    assert_eq!(std::fs::read_dir(&folders).unwrap().count(), 1);
    let (status, body) = app
        .post(&format!("{base}/undeploy"), Some(&token), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "stopped");
    let stopped = model(&app, &token, &id).await;
    assert_eq!(stopped["status"], "stored");
    assert_eq!(stopped["deployment"]["status"], "stopped");
    assert_eq!(std::fs::read_dir(&folders).unwrap().count(), 0);
    let (status, body) = app
        .post("/v1/chat/completions", Some(&token), ask(false))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "model_not_deployed");
    app.finish().await;
}

/// The (one) deployment's folder.
fn deployment_folder(iso: &Isolation) -> Option<std::path::PathBuf> {
    let folders = std::fs::read_dir(iso.data_dir().join("deployments")).ok()?;
    Some(folders.filter_map(Result::ok).next()?.path())
}

/// The engine processes serving the deployment, by the pid file in its folder.
fn engine_pids(iso: &Isolation) -> Vec<String> {
    deployment_folder(iso)
        .and_then(|folder| std::fs::read_to_string(folder.join("engine.pid")).ok())
        .map(|pids| pids.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Where the deployment's engines answer, as its folder lists them for other processes.
fn engines_written(iso: &Isolation) -> Value {
    deployment_folder(iso)
        .and_then(|folder| std::fs::read(folder.join("engine.json")).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

fn is_alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split(' ').nth(2).is_none_or(|state| state != "Z"))
}

async fn chat(http: &reqwest::Client, base: &str, token: &str, id: &str) -> (u16, Value) {
    crate::common::send(
        http.post(format!("{base}/api/models/{id}/chat"))
            .bearer_auth(token)
            .json(&json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_serve_leaves_no_engine_behind_and_the_next_one_serves_the_deployment_again() {
    let iso = Isolation::new();
    // Trained and deployed by one service, stopped as it should be (its engine with it).
    let app = serving_app_on(iso.clone()).await;
    let (_, token) = app.user("ada").await;
    let id = trained(&app, &token, "smollm2-135m").await;
    deployed(&app, &token, &id, json!({"environment": "production"})).await;
    let mut app = app;
    app.stop().await;

    // The next service (the binary) starts the deployment's engine again by itself.
    let vars = engine_vars();
    let http = reqwest::Client::new();
    let mut first = BinaryService::spawn(&iso, "all", &borrowed(&vars)).await;
    eventually(
        "the engine serves again",
        Duration::from_secs(180),
        || async { chat(&http, &first.base, &token, &id).await.0 == 200 },
    )
    .await;
    // The replica and the base model's engine.
    let orphans = engine_pids(&iso);
    assert_eq!(orphans.len(), 2, "{orphans:?}");
    assert!(orphans.iter().all(|pid| is_alive(pid)));

    // kill -9: the engines outlive it, until the next service finds and replaces them.
    first.kill_9();
    assert!(
        orphans.iter().all(|pid| is_alive(pid)),
        "engines outlive a kill -9 of their service"
    );
    let second = BinaryService::spawn(&iso, "all", &borrowed(&vars)).await;
    eventually("a new engine serves", Duration::from_secs(180), || async {
        chat(&http, &second.base, &token, &id).await.0 == 200
    })
    .await;
    assert!(
        orphans.iter().all(|pid| !is_alive(pid)),
        "the orphaned engines {orphans:?} were stopped"
    );
    let current = engine_pids(&iso);
    assert_eq!(current.len(), 2, "{current:?}");
    assert!(current.iter().all(|pid| !orphans.contains(pid)));
    // Still one deployment, recorded serving throughout: nothing failed, nothing doubled.
    let (status, body) = crate::common::send(
        http.get(format!("{}/api/models/{id}", second.base))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["model"]["deployment"]["status"], "deployed");
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type IN ('ModelDeploymentFailed', 'ModelDeployed')",
    )
    .bind(&id)
    .fetch_one(&infrastructure::db::connect(&iso.database_url(), 1).await.unwrap())
    .await
    .unwrap();
    assert_eq!(failed, 1, "one ModelDeployed, no failure");
    // The last service is killed too: its engines are stopped by hand, as no service follows.
    drop(second);
    for pid in &current {
        let _ = std::process::Command::new("kill")
            .args(["-9", pid])
            .status();
    }
    iso.cleanup().await;
}

/// Slurm's engine jobs of the deployment `id` (`brightrun-serve-<id>...`) still queued or
/// running: (job id, name).
async fn engine_jobs(
    slurm: &std::collections::HashMap<String, String>,
    id: &str,
) -> Vec<(u64, String)> {
    let jobs: Value = reqwest::Client::new()
        .get(format!("{}/slurm/v0.0.38/jobs", slurm["SLURM_REST_URL"]))
        .header("X-SLURM-USER-NAME", &slurm["SLURM_USER"])
        .header("X-SLURM-USER-TOKEN", &slurm["SLURM_JWT"])
        .send()
        .await
        .expect("slurmrestd")
        .json()
        .await
        .expect("slurmrestd JSON");
    let prefix = format!("brightrun-serve-{id}");
    let mut found: Vec<(u64, String)> = jobs["jobs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|j| j["name"].as_str().is_some_and(|n| n.starts_with(&prefix)))
        .filter(|j| {
            matches!(
                j["job_state"].as_str(),
                Some("PENDING" | "RUNNING" | "CONFIGURING")
            )
        })
        .map(|j| {
            (
                j["job_id"].as_u64().unwrap_or(0),
                j["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_slurm_each_engine_is_a_slurm_job_replaced_when_it_ends_and_cancelled_on_undeploy() {
    let iso = Isolation::new();
    let slurm = crate::slurm::slurm_env();
    let runs = iso.data_dir().join("slurm-runs");
    let mut vars = engine_vars();
    // Slurm's connection, but training stays on the simulator.
    vars.extend(
        slurm
            .iter()
            .filter(|(k, _)| *k != "CLUSTER_BACKEND")
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    vars.extend([
        ("INFERENCE_HOST".to_string(), "slurm".to_string()),
        ("SLURM_RUNS_DIR".to_string(), runs.display().to_string()),
    ]);
    let app = TestApp::start_with(iso.clone(), api::Roles::ALL, &borrowed(&vars)).await;
    let (_, token) = app.user("ada").await;
    // Trained on the simulator, served on Slurm.
    let id = trained(&app, &token, "smollm2-135m").await;
    let base = format!("/api/models/{id}");
    deployed(&app, &token, &id, json!({"environment": "staging"})).await;

    // The deployment's folder is under the runs folder the nodes share; its engines are two
    // running Slurm jobs, the replica and the base model's, each named by the deployment.
    let folder = std::fs::read_dir(runs.join("deployments"))
        .expect("deployments under the runs folder")
        .filter_map(Result::ok)
        .next()
        .expect("the deployment's folder")
        .path();
    let deployment = folder.file_name().unwrap().to_string_lossy().into_owned();
    let jobs = engine_jobs(&slurm, &deployment).await;
    let names: Vec<&str> = jobs.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("brightrun-serve-{deployment}"),
            format!("brightrun-serve-{deployment}-base")
        ],
        "{jobs:?}"
    );
    let handles = std::fs::read_to_string(folder.join("engine.pid")).unwrap();
    for (job, _) in &jobs {
        assert!(
            handles.lines().any(|h| h == format!("slurm:{job}")),
            "{handles}"
        );
    }

    let ask = json!({"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4});
    for path in [format!("{base}/chat"), format!("{base}/chat/base")] {
        let (status, body) = app.post(&path, Some(&token), ask.clone()).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body["data"]["usage"]["total_tokens"].as_u64().unwrap() > 0);
    }

    // The replica's job ends (scancel): a new job replaces it and chat answers again.
    let (replica, _) = jobs[0].clone();
    let cancelled = std::process::Command::new("scancel")
        .arg(replica.to_string())
        .env("SLURM_CONF", &slurm["SLURM_CONF"])
        .status()
        .expect("scancel");
    assert!(cancelled.success());
    eventually(
        "a new job replaces the ended one",
        Duration::from_secs(120),
        || async {
            let now = engine_jobs(&slurm, &deployment).await;
            now.len() == 2 && now.iter().all(|(job, _)| *job != replica)
        },
    )
    .await;
    eventually("chat answers again", Duration::from_secs(120), || async {
        app.post(&format!("{base}/chat"), Some(&token), ask.clone())
            .await
            .0
            == 200
    })
    .await;
    assert_eq!(
        model(&app, &token, &id).await["deployment"]["status"],
        "deployed"
    );

    // Undeployed: every engine job cancelled, the folder gone.
    let (status, body) = app
        .post(&format!("{base}/undeploy"), Some(&token), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("no engine job is left", Duration::from_secs(30), || async {
        engine_jobs(&slurm, &deployment).await.is_empty()
    })
    .await;
    assert!(!folder.exists());
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_a_deployment_adds_replicas_up_to_its_maximum_and_stops_them_when_calm() {
    let mut vars = engine_vars();
    vars.push(("INFERENCE_SCALE_DOWN_SECONDS".into(), "2".into()));
    let app = TestApp::start_with(Isolation::new(), api::Roles::ALL, &borrowed(&vars)).await;
    let (_, token) = app.user("ada").await;
    let id = trained(&app, &token, "smollm2-135m").await;
    deployed(
        &app,
        &token,
        &id,
        json!({"environment": "staging", "minReplicas": 1, "maxReplicas": 2}),
    )
    .await;
    let replicas = || {
        engines_written(&app.iso)["replicas"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(replicas(), 1);

    // Three callers at once keep the one replica's queue long: a second one starts.
    let calm = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let (http, base, token, id, calm) = (
                app.http.clone(),
                app.url(""),
                token.clone(),
                id.clone(),
                calm.clone(),
            );
            tokio::spawn(async move {
                let mut answered = 0;
                while !calm.load(std::sync::atomic::Ordering::Relaxed) {
                    let (status, body) = chat(&http, base.trim_end_matches('/'), &token, &id).await;
                    assert_eq!(status, 200, "under load: {body}");
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    eventually(
        "a second replica serves",
        Duration::from_secs(120),
        || async { replicas() == 2 },
    )
    .await;
    // It takes its share of the requests.
    let second = deployment_folder(&app.iso).unwrap().join("engine-1.log");
    eventually(
        "the second replica answers",
        Duration::from_secs(60),
        || async {
            std::fs::read_to_string(&second)
                .is_ok_and(|log| log.contains("POST /v1/chat/completions"))
        },
    )
    .await;
    calm.store(true, std::sync::atomic::Ordering::Relaxed);
    for caller in callers {
        assert!(caller.await.expect("a caller") > 0);
    }

    // Calm for longer than INFERENCE_SCALE_DOWN_SECONDS: back to minReplicas, the extra
    // engine stopped, the deployment serving throughout.
    eventually("back to one replica", Duration::from_secs(60), || async {
        replicas() == 1 && engine_pids(&app.iso).len() == 2
    })
    .await;
    assert_eq!(
        model(&app, &token, &id).await["deployment"]["status"],
        "deployed"
    );
    let (status, body) = chat(&app.http, app.url("").trim_end_matches('/'), &token, &id).await;
    assert_eq!(status, 200, "{body}");
    app.finish().await;
}
