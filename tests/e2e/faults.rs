//! The fault campaign. Each case runs twenty jobs on two `serve` processes against
//! private instances it starts itself: a Postgres from `initdb` on a free port, a
//! `nats-server`, the object store (`brightrun object-store`) and the GPU cluster simulator
//! (`brightrun cluster-sim`) as processes. It breaks one of them while the jobs run, then
//! checks the books: every job ended once, JetStream holds each event once, `brightrun audit
//! costs` finds no drift, `brightrun replay all` changes nothing, and no request answered 500
//! (nor any 5xx but `/readyz`, unless Postgres itself was down).
//!
//! Outages last `FAULT_OUTAGE_SECONDS` (60 unless set). The cases run one at a time (the
//! `faults` test group, .config/nextest.toml): each is a small cluster of its own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{free_port, Isolation, OwnNats};

const JOBS: usize = 20;
const SIM_KEY: &str = "faults-cluster-key";
/// The object store's keys, given to it and to each `serve` (a store of its own otherwise
/// makes keys nobody else knows).
const STORE_KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "faults-store"),
    ("AWS_SECRET_ACCESS_KEY", "faults-store-secret"),
];

fn outage() -> Duration {
    let secs = std::env::var("FAULT_OUTAGE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

fn as_postgres(program: &str) -> Command {
    // initdb and postgres refuse to run as root.
    let root = std::env::var("USER").is_ok_and(|u| u == "root")
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let bin = postgres_bin().join(program);
    if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(bin);
        cmd
    } else {
        Command::new(bin)
    }
}

fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("an initdb")
}

/// A Postgres of the test's own: `initdb` into a fresh folder, on a free port.
struct OwnPostgres {
    dir: PathBuf,
    port: u16,
}

impl OwnPostgres {
    fn start() -> OwnPostgres {
        let dir = std::env::temp_dir().join(format!("brightrun-pg-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("pg folder");
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
        let pg = OwnPostgres {
            dir,
            port: free_port(),
        };
        let ok = as_postgres("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(pg.dir.join("data"))
            .stdout(Stdio::null())
            .status()
            .expect("initdb")
            .success();
        assert!(ok, "initdb");
        pg.ctl("start");
        pg
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/brightrun", self.port)
    }

    fn ctl(&self, action: &str) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let mut cmd = as_postgres("pg_ctl");
        cmd.args(["-D"])
            .arg(self.dir.join("data"))
            .args(["-w", "-m", "fast", "-o", &options]);
        cmd.arg("-l").arg(self.dir.join("log"));
        let ok = cmd
            .arg(action)
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl")
            .success();
        assert!(ok, "pg_ctl {action}");
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .args(["-D"])
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `brightrun` subcommand as a process of its own (object store, simulator, serve).
struct Process {
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    port: u16,
}

impl Process {
    fn new(args: &[&str], env: Vec<(String, String)>, port: u16) -> Process {
        Process {
            args: args.iter().map(|a| a.to_string()).collect(),
            env,
            child: None,
            port,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
        // What it logs goes to a file beside the test's data (kept when a case fails).
        let log = std::env::temp_dir().join(format!("brightrun-faults-{}.log", self.port));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let child = Command::new(env!("CARGO_BIN_EXE_brightrun"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("brightrun");
        self.child = Some(child);
        for _ in 0..600 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{:?} did not listen on {}", self.args, self.port);
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP/SIGCONT: the process keeps its state but answers nothing (unreachable).
    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill_9();
    }
}

/// Requests made while the faults happen, by route class and status.
#[derive(Default)]
struct Probe {
    answers: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Probe {
    fn saw(&self, route: &str, status: u16) -> bool {
        self.answers
            .lock()
            .is_ok_and(|a| a.contains_key(&(route.to_string(), status)))
    }

    fn record(&self, route: &str, status: u16) {
        if let Ok(mut a) = self.answers.lock() {
            *a.entry((route.to_string(), status)).or_default() += 1;
        }
    }

    fn server_errors(&self, allow_503: bool) -> Vec<String> {
        let answers = self.answers.lock().map(|a| a.clone()).unwrap_or_default();
        answers
            .iter()
            .filter(|((route, status), _)| {
                *status >= 500 && route != "/readyz" && !(allow_503 && *status == 503)
            })
            .map(|((route, status), n)| format!("{route} {status} x{n}"))
            .collect()
    }
}

/// The private world of one case.
struct World {
    iso: Isolation,
    pg: OwnPostgres,
    nats: OwnNats,
    store: Process,
    sim: Process,
    serves: Vec<Process>,
    http: reqwest::Client,
    token: String,
    jobs: Vec<String>,
    probe: Arc<Probe>,
}

impl World {
    async fn start() -> World {
        let iso = Isolation::new();
        let pg = OwnPostgres::start();
        let mut nats = OwnNats::new();
        nats.start().await;
        let data = iso.data_dir();
        let store_port = free_port();
        let mut store = Process::new(
            &["object-store", "--addr", &format!("127.0.0.1:{store_port}")],
            [(
                "BRIGHTRUN_DATA_DIR".into(),
                data.join("store").display().to_string(),
            )]
            .into_iter()
            .chain(STORE_KEYS.map(|(k, v)| (k.into(), v.into())))
            .collect(),
            store_port,
        );
        store.start().await;
        // Each job lasts about an outage and a half at this speed.
        let speed = (900 / (outage().as_secs() + 30)).max(2).to_string();
        let sim_port = free_port();
        let mut sim = Process::new(
            &["cluster-sim", "--addr", &format!("127.0.0.1:{sim_port}")],
            vec![
                (
                    "BRIGHTRUN_DATA_DIR".into(),
                    data.join("sim").display().to_string(),
                ),
                ("CLUSTER_SIM_SPEED".into(), speed),
                ("CLUSTER_API_KEY".into(), SIM_KEY.into()),
            ],
            sim_port,
        );
        sim.start().await;
        let mut serves = Vec::new();
        for i in 0..2 {
            let port = free_port();
            let env = vec![
                ("DATABASE_URL".into(), pg.url()),
                ("NATS_URL".into(), nats.url()),
                ("NATS_STREAM".into(), iso.stream.clone()),
                ("NATS_SUBJECT_PREFIX".into(), iso.prefix.clone()),
                ("BRIGHTRUN_ADDR".into(), format!("127.0.0.1:{port}")),
                (
                    "BRIGHTRUN_DATA_DIR".into(),
                    data.join(format!("serve-{i}")).display().to_string(),
                ),
                ("S3_ENDPOINT".into(), store.base()),
                (STORE_KEYS[0].0.into(), STORE_KEYS[0].1.into()),
                (STORE_KEYS[1].0.into(), STORE_KEYS[1].1.into()),
                ("CLUSTER_URL".into(), sim.base()),
                ("CLUSTER_API_KEY".into(), SIM_KEY.into()),
                ("SAGA_POLL_INTERVAL_MS".into(), "500".into()),
                ("SAGA_LEASE_SECONDS".into(), "3".into()),
            ];
            let mut serve = Process::new(&["serve"], env, port);
            serve.start().await;
            serves.push(serve);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http");
        let mut world = World {
            iso,
            pg,
            nats,
            store,
            sim,
            serves,
            http,
            token: String::new(),
            jobs: Vec::new(),
            probe: Arc::new(Probe::default()),
        };
        world.token = world.sign_up().await;
        world
    }

    fn base(&self, i: usize) -> String {
        self.serves[i % self.serves.len()].base()
    }

    async fn sign_up(&self) -> String {
        let body: Value = self
            .http
            .post(format!("{}/api/auth/signup", self.base(0)))
            .json(
                &json!({"email": format!("faults-{}@example.com", Uuid::now_v7().simple()),
                          "password": "fault-password-1", "name": "Faults"}),
            )
            .send()
            .await
            .expect("signup")
            .json()
            .await
            .expect("signup body");
        body["data"]["token"].as_str().expect("token").to_string()
    }

    /// A ready dataset, then `JOBS` balanced jobs on it, created through both instances.
    async fn launch(&mut self) {
        let file = std::fs::read(format!(
            "{}/../examples/support-chats-v4.jsonl",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("example");
        let registered: Value = self
            .http
            .post(format!("{}/api/datasets", self.base(0)))
            .bearer_auth(&self.token)
            .json(&json!({"name": "faults", "format": "brightrun-lora-v4", "fileSize": file.len(), "fileName": "a.jsonl"}))
            .send()
            .await
            .expect("register")
            .json()
            .await
            .expect("register body");
        let dataset = registered["data"]["datasetId"]
            .as_str()
            .expect("dataset")
            .to_string();
        let url = registered["data"]["uploadUrl"].as_str().expect("url");
        assert!(self
            .http
            .put(url)
            .body(file)
            .send()
            .await
            .expect("PUT")
            .status()
            .is_success());
        self.http
            .post(format!("{}/api/datasets/{dataset}/confirm", self.base(1)))
            .bearer_auth(&self.token)
            .json(&json!({}))
            .send()
            .await
            .expect("confirm");
        self.until("the dataset is ready", Duration::from_secs(60), |w| {
            let dataset = dataset.clone();
            async move {
                w.get(&format!("/api/datasets/{dataset}")).await["data"]["dataset"]["status"]
                    == "ready"
            }
        })
        .await;
        for i in 0..JOBS {
            let created: Value = self
                .http
                .post(format!("{}/api/jobs", self.base(i)))
                .bearer_auth(&self.token)
                .json(&json!({"datasetId": dataset, "presetId": "balanced", "baseModel": "smollm2-135m",
                              "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1}}))
                .send()
                .await
                .expect("create job")
                .json()
                .await
                .expect("job body");
            let id = created["data"]["jobId"]
                .as_str()
                .unwrap_or_else(|| panic!("{created}"));
            self.jobs.push(id.to_string());
        }
        self.until("every job runs", Duration::from_secs(120), |w| async move {
            w.statuses()
                .await
                .iter()
                .all(|s| s == "running" || s == "completed")
        })
        .await;
    }

    async fn get(&self, path: &str) -> Value {
        for i in 0..self.serves.len() {
            if let Ok(resp) = self
                .http
                .get(format!("{}{path}", self.base(i)))
                .bearer_auth(&self.token)
                .send()
                .await
            {
                if resp.status().is_success() {
                    return resp.json().await.unwrap_or(Value::Null);
                }
            }
        }
        Value::Null
    }

    async fn statuses(&self) -> Vec<String> {
        let mut out = Vec::new();
        for id in &self.jobs {
            let job = self.get(&format!("/api/jobs/{id}")).await;
            out.push(
                job["data"]["job"]["status"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_string(),
            );
        }
        out
    }

    async fn until<'a, F, Fut>(&'a self, what: &str, within: Duration, check: F)
    where
        F: Fn(&'a World) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + within;
        while !check(self).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Requests every 250 ms through both instances, recorded by route and status, until the
    /// answer's handle is aborted. Each route on each instance is probed on its own, so a
    /// route that waits out the pool's acquire timeout in an outage does not stop the others
    /// from being asked (`/readyz` in particular).
    fn probe(&self) -> tokio::task::JoinHandle<()> {
        let job = self.jobs.first().cloned().unwrap_or_default();
        let routes = [
            ("/healthz".to_string(), "/healthz"),
            ("/readyz".to_string(), "/readyz"),
            ("/api/jobs".to_string(), "/api/jobs"),
            (format!("/api/jobs/{job}"), "/api/jobs/{id}"),
            ("/api/dashboard/stats".to_string(), "/api/dashboard/stats"),
        ];
        let mut probes = tokio::task::JoinSet::new();
        for base in (0..self.serves.len()).map(|i| self.base(i)) {
            for (route, class) in &routes {
                let (http, token, probe) =
                    (self.http.clone(), self.token.clone(), self.probe.clone());
                let (url, class) = (format!("{base}{route}"), *class);
                probes.spawn(async move {
                    loop {
                        if let Ok(resp) = http.get(&url).bearer_auth(&token).send().await {
                            probe.record(class, resp.status().as_u16());
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                });
            }
        }
        // Aborting this task drops the set, which aborts every probe in it.
        tokio::spawn(async move { while probes.join_next().await.is_some() {} })
    }

    async fn brightrun(&self, args: &[&str]) -> (bool, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_brightrun"))
            .args(args)
            .env("DATABASE_URL", self.pg.url())
            .env("RUST_LOG", "error")
            .output()
            .await
            .expect("brightrun");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Every job ends, completed, once; JetStream holds each event once; the audit finds no
    /// drift; a replay changes nothing; and no request answered a server error.
    async fn check_the_books(&self, allow_503: bool) {
        self.until("every job ends", Duration::from_secs(600), |w| async move {
            w.statuses()
                .await
                .iter()
                .all(|s| matches!(s.as_str(), "completed" | "failed" | "cancelled"))
        })
        .await;
        assert_eq!(self.statuses().await, vec!["completed".to_string(); JOBS]);
        let pool = sqlx::PgPool::connect(&self.pg.url()).await.expect("pool");
        let endings: Vec<(String, i64)> = sqlx::query_as(
            "SELECT aggregate_id, count(*) FROM events WHERE aggregate_type = 'job' \
             AND event_type IN ('JobCompleted', 'JobFailed', 'JobCancelled') GROUP BY aggregate_id",
        )
        .fetch_all(&pool)
        .await
        .expect("endings");
        assert_eq!(endings.len(), JOBS, "{endings:?}");
        assert!(endings.iter().all(|(_, n)| *n == 1), "{endings:?}");
        let points: Vec<(uuid::Uuid, i64, i64)> = sqlx::query_as(
            "SELECT j.id, j.total_steps, max(m.step) FROM rm_jobs j JOIN rm_job_metrics m ON m.job_id = j.id GROUP BY j.id, j.total_steps",
        )
        .fetch_all(&pool)
        .await
        .expect("metric points");
        assert_eq!(points.len(), JOBS, "every job has its metric points");
        for (job, total, last) in &points {
            assert_eq!(total, last, "job {job}: the last point is at its last step");
        }
        // JetStream: one message per event (duplicates would add to the count).
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await
            .expect("events");
        let client = async_nats::connect(self.nats.url()).await.expect("nats");
        let js = async_nats::jetstream::new(client);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let messages = match js.get_stream(&self.iso.stream).await {
                Ok(mut s) => s.info().await.map(|i| i.state.messages as i64).unwrap_or(0),
                Err(_) => 0,
            };
            if messages == events {
                break;
            }
            assert!(
                messages < events,
                "JetStream holds {messages} messages for {events} events"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "JetStream holds {messages} of {events} events"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (clean, report) = self.brightrun(&["audit", "costs"]).await;
        assert!(clean, "{report}");
        let (ok, report) = self.brightrun(&["replay", "all"]).await;
        assert!(
            ok && report.matches("; 0 rows differed").count() == projections::all().len(),
            "{report}"
        );
        // What the clients saw meanwhile (printed for the campaign's table).
        if let Ok(answers) = self.probe.answers.lock() {
            for ((route, status), n) in answers.iter() {
                eprintln!("probe: {route} {status} x{n}");
            }
        }
        let errors = self.probe.server_errors(allow_503);
        assert!(errors.is_empty(), "server errors: {errors:?}");
        let answered: u64 = self
            .probe
            .answers
            .lock()
            .map(|a| a.values().sum())
            .unwrap_or(0);
        assert!(answered > 0, "the probe made requests");
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.iso.data_dir());
    }
}

#[tokio::test]
async fn faults_postgres_restarted_then_stopped_for_half_an_outage() {
    let mut world = World::start().await;
    world.launch().await;
    let probe = world.probe();
    world.pg.ctl("restart");
    tokio::time::sleep(Duration::from_secs(5)).await;
    world.pg.ctl("stop");
    tokio::time::sleep(outage() / 2).await;
    world.pg.ctl("start");
    world.check_the_books(true).await;
    assert!(
        world.probe.saw("/readyz", 503),
        "the outage showed on /readyz"
    );
    probe.abort();
}

#[tokio::test]
async fn faults_nats_stopped_for_an_outage() {
    let mut world = World::start().await;
    world.launch().await;
    let probe = world.probe();
    world.nats.stop();
    tokio::time::sleep(outage()).await;
    world.nats.start().await;
    world.check_the_books(false).await;
    assert!(
        world.probe.saw("/readyz", 503),
        "the outage showed on /readyz"
    );
    probe.abort();
}

#[tokio::test]
async fn faults_object_store_stopped_for_an_outage() {
    let mut world = World::start().await;
    world.launch().await;
    let probe = world.probe();
    world.store.kill_9();
    tokio::time::sleep(outage()).await;
    world.store.start().await;
    world.check_the_books(false).await;
    probe.abort();
}

#[tokio::test]
async fn faults_cluster_answering_500s_then_unreachable() {
    let mut world = World::start().await;
    // Every job's status reads answer 500 for about an outage (reads every 500 ms).
    let reads = (outage().as_millis() / 500) as u32;
    let resp = world
        .http
        .put(format!("{}/v1/sim/faults/0", world.sim.base()))
        .bearer_auth(SIM_KEY)
        .json(&json!({"http500s": reads}))
        .send()
        .await
        .expect("faults");
    assert!(resp.status().is_success());
    world.launch().await;
    let probe = world.probe();
    world.sim.signal("-STOP");
    tokio::time::sleep(outage()).await;
    world.sim.signal("-CONT");
    world.check_the_books(false).await;
    probe.abort();
}

#[tokio::test]
async fn faults_kill_9_of_a_random_serve_twenty_times() {
    let mut world = World::start().await;
    world.launch().await;
    let probe = world.probe();
    let pause = (outage() / 20).max(Duration::from_millis(500));
    for round in 0..20u64 {
        // A random instance at a random moment (seeded by the round, so a failure replays).
        let victim = (Uuid::now_v7().as_u128() as usize + round as usize) % world.serves.len();
        tokio::time::sleep(pause.mul_f64(0.5 + (round % 5) as f64 / 5.0)).await;
        world.serves[victim].kill_9();
        world.serves[victim].start().await;
    }
    world.check_the_books(false).await;
    probe.abort();
}
