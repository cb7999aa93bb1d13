//! Test harness: each test gets its own database, JetStream stream and subject prefix, and a
//! real service (Postgres, NATS, HTTP) started in-process or as the `brightrun` binary.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use api::{Roles, Service};
use infrastructure::subscription::RunnerOptions;
use infrastructure::Config;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// Names that isolate one test from every other (and from a previous run of itself).
#[derive(Clone, Debug)]
pub struct Isolation {
    pub database: String,
    pub stream: String,
    pub prefix: String,
    pub nats_url: String,
}

impl Isolation {
    pub fn new() -> Isolation {
        let tag = Uuid::now_v7().simple().to_string();
        let tag = &tag[tag.len() - 12..];
        Isolation {
            database: format!("brightrun_test_{tag}"),
            stream: format!("BRT_{}", tag.to_uppercase()),
            prefix: format!("brt_{tag}"),
            nats_url: std::env::var("TEST_NATS_URL")
                .unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
        }
    }

    pub fn database_url(&self) -> String {
        format!("{PG_SERVER}/{}", self.database)
    }

    pub fn vars(&self) -> HashMap<String, String> {
        HashMap::from([
            ("DATABASE_URL".to_string(), self.database_url()),
            ("DATABASE_MAX_CONNECTIONS".to_string(), "24".to_string()),
            ("NATS_URL".to_string(), self.nats_url.clone()),
            ("NATS_STREAM".to_string(), self.stream.clone()),
            ("NATS_SUBJECT_PREFIX".to_string(), self.prefix.clone()),
            ("BRIGHTRUN_ADDR".to_string(), "127.0.0.1:0".to_string()),
            (
                "BRIGHTRUN_DATA_DIR".to_string(),
                self.data_dir().display().to_string(),
            ),
        ])
    }

    pub fn config(&self, extra: &[(&str, &str)]) -> Config {
        let mut vars = self.vars();
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        Config::from_lookup(|k| vars.get(k).cloned()).expect("test configuration")
    }

    /// The test's own data folder (embedded object store).
    pub fn data_dir(&self) -> PathBuf {
        std::env::temp_dir().join(&self.database)
    }

    /// Best-effort removal of what the test created.
    pub async fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(self.data_dir());
        if let Ok(client) = async_nats::connect(&self.nats_url).await {
            let _ = async_nats::jetstream::new(client)
                .delete_stream(&self.stream)
                .await;
        }
        if let Ok(pool) = PgPool::connect(&format!("{PG_SERVER}/postgres")).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.database
            ))
            .execute(&pool)
            .await;
        }
    }
}

pub fn fast_runner() -> RunnerOptions {
    RunnerOptions {
        poll_interval: Duration::from_millis(100),
        lease_check: Duration::from_millis(200),
        retry_backoff: Duration::from_millis(100),
    }
}

/// A service started in this process, listening on a free loopback port.
pub struct TestApp {
    pub iso: Isolation,
    pub base: String,
    pub http: reqwest::Client,
    pub service: Option<Service>,
    server: tokio::task::JoinHandle<()>,
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::start_with(Isolation::new(), Roles::ALL, &[]).await
    }

    /// Every role but the training saga: for tests that drive jobs by hand.
    pub async fn start_without_saga() -> TestApp {
        let roles = Roles {
            saga: false,
            ..Roles::ALL
        };
        Self::start_with(Isolation::new(), roles, &[]).await
    }

    pub async fn start_with(iso: Isolation, roles: Roles, extra: &[(&str, &str)]) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::serve_on(listener, iso, roles, extra).await
    }

    /// Like `start_with`, with the cluster's webhooks pointed at this service's own address.
    pub async fn start_with_webhooks(iso: Isolation, extra: &[(&str, &str)]) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/api/cluster/webhook",
            listener.local_addr().expect("addr")
        );
        let mut vars = extra.to_vec();
        vars.push(("CLUSTER_WEBHOOK_URL", &url));
        Self::serve_on(listener, iso, Roles::ALL, &vars).await
    }

    async fn serve_on(
        listener: tokio::net::TcpListener,
        iso: Isolation,
        roles: Roles,
        extra: &[(&str, &str)],
    ) -> TestApp {
        let config = iso.config(extra);
        let service = api::start(config, roles, fast_runner())
            .await
            .expect("service starts");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let serving = service.serve_http(listener, std::future::pending());
        let server = tokio::spawn(async move {
            let _ = serving.await;
        });
        TestApp {
            iso,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            service: Some(service),
            server,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.service.as_ref().expect("running").state.pool
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the HTTP server and background roles (releasing their leadership).
    pub async fn stop(&mut self) {
        self.server.abort();
        if let Some(service) = self.service.take() {
            service.stop().await;
        }
    }

    pub async fn finish(mut self) {
        self.stop().await;
        self.iso.cleanup().await;
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.patch(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.delete(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req).await
    }

    /// Signs up a fresh user and answers (user id, token).
    pub async fn user(&self, name: &str) -> (String, String) {
        let email = format!("{name}-{}@example.com", Uuid::now_v7().simple());
        let (status, body) = self
            .post(
                "/api/auth/signup",
                None,
                json!({"email": email, "password": "correct horse", "name": name}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["data"]["user"]["id"].as_str().expect("id").to_string(),
            body["data"]["token"].as_str().expect("token").to_string(),
        )
    }

    /// Creates a balanced job on one A100 40 GB for `dataset`: answers its id.
    pub async fn create_job(&self, token: &str, dataset: &str, base_model: &str) -> String {
        let (status, created) = self
            .post(
                "/api/jobs",
                Some(token),
                json!({"datasetId": dataset, "presetId": "balanced", "baseModel": base_model,
                       "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1}}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["data"]["jobId"]
            .as_str()
            .expect("jobId")
            .to_string()
    }

    pub async fn register_dataset(&self, token: &str, name: &str, size: u64) -> String {
        let (status, body) = self
            .post(
                "/api/datasets",
                Some(token),
                json!({"name": name, "description": format!("about {name}"), "format": "brightrun-lora-v4",
                       "fileSize": size, "fileName": "data.jsonl"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"]["datasetId"]
            .as_str()
            .expect("datasetId")
            .to_string()
    }
}

impl TestApp {
    /// Uploads `examples/<file>` with the presigned URL, confirms it and waits until its
    /// validation settles: answers the dataset id.
    pub async fn validated_dataset(&self, token: &str, file: &str, format: &str) -> String {
        let bytes = std::fs::read(format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR")))
            .expect("example");
        let (status, body) = self
            .post(
                "/api/datasets",
                Some(token),
                json!({"name": file, "format": format, "fileSize": bytes.len(), "fileName": file}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let id = body["data"]["datasetId"].as_str().expect("id").to_string();
        let url = body["data"]["uploadUrl"].as_str().expect("uploadUrl");
        let put = self.http.put(url).body(bytes).send().await.expect("PUT");
        assert!(put.status().is_success(), "upload: {}", put.status());
        let (status, body) = self
            .post(
                &format!("/api/datasets/{id}/confirm"),
                Some(token),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (_, body) = self.get(&format!("/api/datasets/{id}"), Some(token)).await;
            if body["data"]["dataset"]["status"] != "validating" {
                return id;
            }
            assert!(tokio::time::Instant::now() < deadline, "still validating");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `nats-server` of the test's own (never the machine's shared one), with JetStream.
pub struct OwnNats {
    pub port: u16,
    pub store: PathBuf,
    child: Option<Child>,
}

impl OwnNats {
    pub fn new() -> OwnNats {
        let store =
            std::env::temp_dir().join(format!("brightrun-nats-{}", Uuid::now_v7().simple()));
        OwnNats {
            port: free_port(),
            store,
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub async fn start(&mut self) {
        let binary = if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let child = Command::new(binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on PATH (/usr/sbin)");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// Reads every message of `stream`, keyed by Nats-Msg-Id, answering (id → count, bodies).
pub async fn stream_messages(
    nats_url: &str,
    stream: &str,
    expected: usize,
    within: Duration,
) -> Vec<(String, String, Value)> {
    use futures::StreamExt;
    let client = async_nats::connect(nats_url).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let deadline = tokio::time::Instant::now() + within;
    // Wait for the stream to exist and hold what we expect.
    loop {
        if let Ok(mut s) = js.get_stream(stream).await {
            if let Ok(info) = s.info().await {
                if info.state.messages as usize >= expected {
                    break;
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Ok(s) = js.get_stream(stream).await else {
        return vec![];
    };
    let consumer = s
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut out = Vec::new();
    let mut messages = consumer
        .fetch()
        .max_messages(10_000)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .expect("fetch");
    while let Some(Ok(m)) = messages.next().await {
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
        out.push((m.subject.to_string(), id, body));
    }
    out
}

/// The `brightrun` binary, as a child process on the test's database and stream.
pub struct BinaryService {
    pub child: Child,
    pub base: String,
}

impl BinaryService {
    pub async fn spawn(iso: &Isolation, roles: &str, extra: &[(&str, &str)]) -> BinaryService {
        // A free port can be taken by another test between `free_port` and the child's bind;
        // the child then exits, and a /healthz answer would come from someone else's service.
        // So /healthz must answer with the child's pid, else another port is tried.
        for _ in 0..5 {
            if let Some(service) = Self::try_spawn(iso, roles, extra).await {
                return service;
            }
        }
        panic!("brightrun serve did not answer /healthz");
    }

    async fn try_spawn(
        iso: &Isolation,
        roles: &str,
        extra: &[(&str, &str)],
    ) -> Option<BinaryService> {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_brightrun"));
        cmd.args(["serve", "--roles", roles]);
        for (k, v) in iso.vars() {
            cmd.env(k, v);
        }
        cmd.env("BRIGHTRUN_ADDR", format!("127.0.0.1:{port}"));
        cmd.env("RUST_LOG", "warn");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("brightrun binary");
        // Owned at once, so Drop kills and reaps it whatever happens next.
        let mut service = BinaryService {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if !matches!(service.child.try_wait(), Ok(None)) {
                return None; // it exited (its port was taken): the caller tries another
            }
            if let Ok(r) = http.get(format!("{}/healthz", service.base)).send().await {
                let body: Value = r.json().await.unwrap_or(Value::Null);
                // Our child, not another test's service that took the port.
                if body["data"]["pid"].as_u64() == Some(u64::from(service.child.id())) {
                    return Some(service);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// kill -9: no shutdown, no cleanup.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BinaryService {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// Waits until `check` answers true, or fails the test with `what`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
