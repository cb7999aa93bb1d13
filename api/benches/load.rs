//! The seeds' load scenario: LOAD_USERS users (100) mixing lists, details,
//! uploads, estimates and job creation, a second of thought between requests, while
//! LOAD_STREAMS (1,000) SSE streams stay open on a running job, for LOAD_SECONDS (600) against
//! the `brightrun` binary (all roles, in-process simulator at real time, so jobs keep running).
//! Prints p50/p95/p99 per route next to `/healthz` measured in the same run, every answer that
//! was not a success, and `serve`'s memory: after the warm-up (the first fifth of the run)
//! it must grow less than 10 %.
//!
//! Run: `cargo bench -p api --bench load` (LOAD_SECONDS=60 for a short look). It uses a
//! database, stream and data folder of its own.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

mod support;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latencies (ms) per route, and the answers that were not successes.
#[derive(Default)]
struct Book {
    latencies: BTreeMap<&'static str, Vec<f64>>,
    failures: BTreeMap<String, u64>,
}

type Shared = Arc<Mutex<Book>>;

async fn timed(
    book: &Shared,
    route: &'static str,
    request: reqwest::RequestBuilder,
) -> Option<Value> {
    let started = Instant::now();
    let outcome = request.send().await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, body) = match outcome {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
        Err(err) => (0, json!({"transport": err.to_string()})),
    };
    let mut book = book.lock().expect("book");
    book.latencies.entry(route).or_default().push(ms);
    if !(200..300).contains(&status) {
        let code = body["error"]["code"].as_str().unwrap_or("-").to_string();
        *book
            .failures
            .entry(format!("{route} {status} {code}"))
            .or_default() += 1;
        return None;
    }
    Some(body)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

const EXAMPLE: &[u8] = include_bytes!("../../examples/support-chats-v4.jsonl");

struct User {
    http: reqwest::Client,
    base: String,
    token: String,
    dataset: String,
    jobs: Vec<String>,
    created_job: bool,
}

impl User {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    fn post(&self, path: &str, body: Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
    }

    fn job_body(&self) -> Value {
        json!({"datasetId": self.dataset, "presetId": "balanced", "baseModel": "smollm2-135m",
               "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1}})
    }

    /// One request of the mix, chosen by `roll` (0..100).
    async fn act(&mut self, book: &Shared, roll: u64, may_create: bool) {
        match roll {
            0..=17 => {
                timed(book, "GET /api/datasets", self.get("/api/datasets")).await;
            }
            18..=35 => {
                timed(book, "GET /api/jobs", self.get("/api/jobs")).await;
            }
            36..=47 => {
                let path = match self.jobs.first() {
                    Some(job) => format!("/api/jobs/{job}"),
                    None => format!("/api/datasets/{}", self.dataset),
                };
                timed(book, "GET /api/jobs/{id}", self.get(&path)).await;
            }
            48..=57 => {
                let path = format!("/api/datasets/{}", self.dataset);
                timed(book, "GET /api/datasets/{id}", self.get(&path)).await;
            }
            58..=67 => {
                timed(
                    book,
                    "GET /api/dashboard/stats",
                    self.get("/api/dashboard/stats"),
                )
                .await;
            }
            68..=87 => {
                let body = self.job_body();
                timed(
                    book,
                    "POST /api/jobs/estimate",
                    self.post("/api/jobs/estimate", body),
                )
                .await;
            }
            88..=91 => {
                timed(
                    book,
                    "GET /api/costs/summary",
                    self.get("/api/costs/summary"),
                )
                .await;
            }
            _ if may_create && !self.created_job => {
                self.created_job = true;
                let body = self.job_body();
                if let Some(created) =
                    timed(book, "POST /api/jobs", self.post("/api/jobs", body)).await
                {
                    if let Some(id) = created["data"]["jobId"].as_str() {
                        self.jobs.push(id.to_string());
                    }
                }
            }
            _ => self.upload(book).await,
        }
    }

    /// Register, PUT to the presigned URL, confirm: the upload as the console does it.
    async fn upload(&mut self, book: &Shared) {
        let body = json!({"name": "load", "format": "brightrun-lora-v4", "fileSize": EXAMPLE.len(), "fileName": "load.jsonl"});
        let Some(registered) =
            timed(book, "POST /api/datasets", self.post("/api/datasets", body)).await
        else {
            return;
        };
        let (Some(id), Some(url)) = (
            registered["data"]["datasetId"].as_str(),
            registered["data"]["uploadUrl"].as_str(),
        ) else {
            return;
        };
        let started = Instant::now();
        let put = self.http.put(url).body(EXAMPLE.to_vec()).send().await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        {
            let mut b = book.lock().expect("book");
            b.latencies.entry("PUT presigned").or_default().push(ms);
            if !put.as_ref().is_ok_and(|r| r.status().is_success()) {
                *b.failures.entry("PUT presigned".into()).or_default() += 1;
            }
        }
        let path = format!("/api/datasets/{id}/confirm");
        timed(
            book,
            "POST /api/datasets/{id}/confirm",
            self.post(&path, json!({})),
        )
        .await;
    }
}

#[tokio::main]
async fn main() {
    let users = env("LOAD_USERS", 100) as usize;
    let streams = env("LOAD_STREAMS", 1000) as usize;
    let seconds = env("LOAD_SECONDS", 600);
    let tag = Uuid::now_v7().simple().to_string()[20..].to_string();
    let database = format!("brightrun_load_{tag}");
    let data_dir = std::env::temp_dir().join(format!("brightrun-load-{tag}"));
    let server = support::Binary::start(
        "all",
        &[
            (
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:5432/{database}"),
            ),
            ("NATS_STREAM", format!("LOAD_{}", tag.to_uppercase())),
            ("NATS_SUBJECT_PREFIX", format!("load_{tag}")),
            ("BRIGHTRUN_DATA_DIR", data_dir.display().to_string()),
            // Real time: a job of the example lasts minutes, so the streams stay open.
            ("CLUSTER_SIM_SPEED", "1".to_string()),
            ("SAGA_CONCURRENCY", "128".to_string()),
        ],
    )
    .await;
    let (pid, base) = (server.pid, server.base.clone());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    println!("load: {users} users, {streams} SSE streams, {seconds} s against {base} (pid {pid})");

    // Each user: an account and a ready dataset.
    let book: Shared = Arc::default();
    let mut people = Vec::new();
    for _ in 0..users {
        let (token, _) = support::sign_up(&http, &base).await;
        let mut user = User {
            http: http.clone(),
            base: base.clone(),
            token,
            dataset: String::new(),
            jobs: Vec::new(),
            created_job: false,
        };
        let body = json!({"name": "load", "format": "brightrun-lora-v4", "fileSize": EXAMPLE.len(), "fileName": "load.jsonl"});
        let registered = timed(&book, "setup", user.post("/api/datasets", body))
            .await
            .expect("register");
        user.dataset = registered["data"]["datasetId"]
            .as_str()
            .expect("id")
            .to_string();
        let url = registered["data"]["uploadUrl"].as_str().expect("url");
        http.put(url)
            .body(EXAMPLE.to_vec())
            .send()
            .await
            .expect("PUT");
        let path = format!("/api/datasets/{}/confirm", user.dataset);
        timed(&book, "setup", user.post(&path, json!({}))).await;
        people.push(user);
    }
    for user in &people {
        loop {
            let path = format!("/api/datasets/{}", user.dataset);
            let detail = timed(&book, "setup", user.get(&path))
                .await
                .unwrap_or_default();
            if detail["data"]["dataset"]["status"] == "ready" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The watched job: it must outlive the run (ten epochs of the example last about 450 s
    // at real time; a hundred, the most a job may have, over an hour).
    let first = &mut people[0];
    let mut body = first.job_body();
    body["hyperparameters"] = json!({"numEpochs": 100});
    let created = timed(&book, "setup", first.post("/api/jobs", body))
        .await
        .expect("job");
    let watched = created["data"]["jobId"].as_str().expect("job").to_string();
    first.jobs.push(watched.clone());
    let token = first.token.clone();

    // The baseline of the streams' opening: as many connections asking /healthz at once, each
    // new, from a client of its own (what the streams' opening costs beyond the burst of
    // connections itself).
    let burst_client = reqwest::Client::builder().build().expect("client");
    let burst: Vec<_> = (0..streams)
        .map(|_| {
            let (client, url, book) = (
                burst_client.clone(),
                format!("{base}/healthz"),
                book.clone(),
            );
            tokio::spawn(async move {
                let started = Instant::now();
                if let Ok(resp) = client.get(&url).send().await {
                    if resp.status().is_success() && resp.bytes().await.is_ok() {
                        book.lock()
                            .expect("book")
                            .latencies
                            .entry("GET /healthz (burst baseline)")
                            .or_default()
                            .push(started.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            })
        })
        .collect();
    for task in burst {
        let _ = task.await;
    }
    drop(burst_client);

    // The streams, reopened if one drops (counted as a failure).
    let open = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let stream_client = reqwest::Client::builder().build().expect("client");
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (client, url, token, open, book) = (
            stream_client.clone(),
            format!("{base}/api/jobs/{watched}/stream"),
            token.clone(),
            open.clone(),
            book.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let started = Instant::now();
                let mut resp = match client.get(&url).bearer_auth(&token).send().await {
                    Ok(resp) if resp.status().is_success() => resp,
                    outcome => {
                        let what = match outcome {
                            Ok(resp) => format!("SSE connect {}", resp.status().as_u16()),
                            Err(_) => "SSE connect (transport)".to_string(),
                        };
                        *book.lock().expect("book").failures.entry(what).or_default() += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                book.lock()
                    .expect("book")
                    .latencies
                    .entry("GET /api/jobs/{id}/stream (open)")
                    .or_default()
                    .push(started.elapsed().as_secs_f64() * 1000.0);
                open.fetch_add(1, Ordering::SeqCst);
                while Instant::now() < deadline {
                    match tokio::time::timeout(Duration::from_secs(1), resp.chunk()).await {
                        Ok(Ok(Some(_))) | Err(_) => {}
                        _ => break,
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
                if Instant::now() < deadline {
                    // A stream that ends before the run does is a failure; reconnecting at
                    // once would turn one into a loop that loads the server instead.
                    *book
                        .lock()
                        .expect("book")
                        .failures
                        .entry("SSE dropped".into())
                        .or_default() += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }

    // The users: a request, a second of thought, until the deadline; one job each, created
    // at a moment spread over the run.
    for (i, mut user) in people.into_iter().enumerate() {
        let book = book.clone();
        let create_after = Duration::from_secs(seconds * (i as u64 + 1) / (users as u64 + 1));
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut n = i as u64;
            while Instant::now() < deadline {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let roll = (n >> 33) % 100;
                user.act(&book, roll, started.elapsed() >= create_after)
                    .await;
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
        }));
    }
    // The baseline, in the same run: /healthz, a few times a second.
    {
        let (http, base, book) = (http.clone(), base.clone(), book.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                timed(
                    &book,
                    "GET /healthz (baseline)",
                    http.get(format!("{base}/healthz")),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }));
    }
    // Memory, every 10 s: RSS, and what the allocator says is allocated and resident (RSS
    // counts what the allocator keeps; allocated is what the program holds).
    let mut rss = Vec::new();
    let run_started = Instant::now();
    let metrics_client = reqwest::Client::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (t, kib, o) = (
            run_started.elapsed().as_secs(),
            support::rss_kib(pid),
            open.load(Ordering::SeqCst),
        );
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        let (allocated, resident) = support::heap_bytes(&metrics_client, &base).await;
        rss.push((t, kib, o, allocated / 1024));
        println!(
            "  t={t:>4} s  serve RSS {:>7.1} MiB  heap allocated {:>7.1} MiB, resident {:>7.1} MiB  open streams {o}",
            kib as f64 / 1024.0,
            mib(allocated),
            mib(resident),
        );
    }
    for task in tasks {
        let _ = task.await;
    }

    let book = book.lock().expect("book");
    let baseline = {
        let mut v = book
            .latencies
            .get("GET /healthz (baseline)")
            .cloned()
            .unwrap_or_default();
        v.sort_by(f64::total_cmp);
        (percentile(&v, 0.95), percentile(&v, 0.99))
    };
    println!(
        "\n{:<40} {:>8} {:>9} {:>9} {:>9} {:>12}",
        "route", "requests", "p50 ms", "p95 ms", "p99 ms", "p95 vs base"
    );
    for (route, latencies) in &book.latencies {
        if *route == "setup" {
            continue;
        }
        let mut v = latencies.clone();
        v.sort_by(f64::total_cmp);
        let p95 = percentile(&v, 0.95);
        println!(
            "{route:<40} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>11.1}x",
            v.len(),
            percentile(&v, 0.5),
            p95,
            percentile(&v, 0.99),
            p95 / baseline.0.max(0.001)
        );
    }
    let p95_of = |route: &str| {
        let mut v = book.latencies.get(route).cloned().unwrap_or_default();
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.95)
    };
    let (opening, burst) = (
        p95_of("GET /api/jobs/{id}/stream (open)"),
        p95_of("GET /healthz (burst baseline)"),
    );
    println!(
        "{streams} streams opened at once: p95 {opening:.1} ms, {:.2}x the same burst of /healthz ({burst:.1} ms)",
        opening / burst.max(0.001)
    );
    let failures: u64 = book.failures.values().sum();
    println!("\nanswers that were not a success: {failures}");
    for (what, n) in &book.failures {
        println!("  {what}: {n}");
    }
    // After warm-up (the first fifth of the run) up to the last sample with the streams
    // still open: a sample taken after the clients hung up measures a server with nothing
    // to hold.
    let span: Vec<_> = rss
        .iter()
        .filter(|(t, _, open, _)| *t >= seconds / 5 && *open > 0)
        .copied()
        .collect();
    let of = |pick: fn(&(u64, u64, usize, u64)) -> u64, samples: &[(u64, u64, usize, u64)]| {
        samples.iter().map(pick).collect::<Vec<_>>()
    };
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0) as f64 / 1024.0
    };
    let growth = |from: f64, to: f64| (to / from.max(0.001) - 1.0) * 100.0;
    let (first, last) = (
        span.first().copied().unwrap_or_default(),
        span.last().copied().unwrap_or_default(),
    );
    println!(
        "serve RSS after warm-up {:.1} MiB, at the end {:.1} MiB: {:+.1} % (budget < 10 %)",
        first.1 as f64 / 1024.0,
        last.1 as f64 / 1024.0,
        growth(first.1 as f64, last.1 as f64)
    );
    // One sample can land on a moment when the allocator has not yet handed back what a
    // file copy just freed; a minute's median cannot.
    let minute = (60 / 10).min(span.len());
    let (early, late) = (&span[..minute], &span[span.len() - minute..]);
    let (rss_early, rss_late) = (median(of(|s| s.1, early)), median(of(|s| s.1, late)));
    let (heap_early, heap_late) = (median(of(|s| s.3, early)), median(of(|s| s.3, late)));
    println!(
        "serve RSS, median of a minute: {rss_early:.1} MiB after warm-up, {rss_late:.1} MiB at the end: {:+.1} % (samples {:.1}-{:.1} MiB over the last {} s)",
        growth(rss_early, rss_late),
        of(|s| s.1, &span).into_iter().min().unwrap_or(0) as f64 / 1024.0,
        of(|s| s.1, &span).into_iter().max().unwrap_or(0) as f64 / 1024.0,
        last.0.saturating_sub(first.0),
    );
    println!(
        "heap allocated, median of a minute: {heap_early:.1} MiB after warm-up, {heap_late:.1} MiB at the end: {:+.1} %",
        growth(heap_early, heap_late)
    );
    server.stop();
    let _ = std::fs::remove_dir_all(&data_dir);
}
