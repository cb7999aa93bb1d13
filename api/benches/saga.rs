//! How many concurrent simulated jobs one `serve` drives, and what it costs in CPU: the
//! `brightrun` binary (all roles, in-process simulator) runs BENCH_JOBS jobs at once (default
//! 100); its CPU time (utime + stime from /proc) while they run is compared with the same
//! process idle over the same wall time, measured first.
//!
//! Run: `cargo bench -p api --bench saga`. It uses a database, stream and data folder of its
//! own and removes them at the end.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

mod support;

fn cpu_seconds(pid: u32) -> f64 {
    // Fields 14 and 15 of /proc/<pid>/stat: utime and stime in clock ticks (100 per second).
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let mut request = http.request(method, url);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    request
        .send()
        .await
        .expect("request")
        .json()
        .await
        .unwrap_or(Value::Null)
}

#[tokio::main]
async fn main() {
    let jobs: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let tag = Uuid::now_v7().simple().to_string()[20..].to_string();
    let database = format!("brightrun_bench_{tag}");
    let data_dir = std::env::temp_dir().join(format!("brightrun-bench-{tag}"));
    let server = support::Binary::start(
        "all",
        &[
            (
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:5432/{database}"),
            ),
            ("DATABASE_MAX_CONNECTIONS", "32".to_string()),
            ("NATS_STREAM", format!("BENCH_{}", tag.to_uppercase())),
            ("NATS_SUBJECT_PREFIX", format!("bench_{tag}")),
            ("BRIGHTRUN_DATA_DIR", data_dir.display().to_string()),
            // A job of the example dataset lasts about 30 s of wall time at this speed.
            ("CLUSTER_SIM_SPEED", "15".to_string()),
            ("SAGA_POLL_INTERVAL_MS", "1000".to_string()),
            ("SAGA_CONCURRENCY", "64".to_string()),
        ],
    )
    .await;
    let (pid, base) = (server.pid, server.base.clone());
    let http = reqwest::Client::new();
    let (token, _) = support::sign_up(&http, &base).await;
    let example = include_bytes!("../../examples/support-chats-v4.jsonl");
    let registered = call(&http, reqwest::Method::POST, format!("{base}/api/datasets"), Some(&token),
        Some(json!({"name": "bench", "format": "brightrun-lora-v4", "fileSize": example.len(), "fileName": "bench.jsonl"}))).await;
    let dataset = registered["data"]["datasetId"]
        .as_str()
        .expect("dataset")
        .to_string();
    let url = registered["data"]["uploadUrl"].as_str().expect("url");
    http.put(url)
        .body(example.to_vec())
        .send()
        .await
        .expect("upload");
    call(
        &http,
        reqwest::Method::POST,
        format!("{base}/api/datasets/{dataset}/confirm"),
        Some(&token),
        Some(json!({})),
    )
    .await;
    loop {
        let d = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/api/datasets/{dataset}"),
            Some(&token),
            None,
        )
        .await;
        if d["data"]["dataset"]["status"] == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Idle baseline.
    let idle_window = Duration::from_secs(10);
    let before = cpu_seconds(pid);
    tokio::time::sleep(idle_window).await;
    let idle = (cpu_seconds(pid) - before) / idle_window.as_secs_f64();

    let started = Instant::now();
    let cpu_start = cpu_seconds(pid);
    // Rank 4 keeps each adapter at 4 MB (the simulator keeps finished artifacts in memory).
    let body = json!({"datasetId": dataset, "presetId": "balanced", "baseModel": "llama-3-8b", "hyperparameters": {"loraRank": 4},
                      "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1}});
    for _ in 0..jobs {
        let created = call(
            &http,
            reqwest::Method::POST,
            format!("{base}/api/jobs"),
            Some(&token),
            Some(body.clone()),
        )
        .await;
        assert!(created["data"]["jobId"].is_string(), "{created}");
    }
    let mut peak_running = 0;
    loop {
        let running = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/api/jobs?status=running&pageSize=1"),
            Some(&token),
            None,
        )
        .await;
        let done = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/api/jobs?status=completed&pageSize=1"),
            Some(&token),
            None,
        )
        .await;
        peak_running =
            peak_running.max(running["meta"]["pagination"]["total"].as_i64().unwrap_or(0));
        if done["meta"]["pagination"]["total"].as_i64().unwrap_or(0) as usize >= jobs {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            println!("warning: not all jobs completed in 10 minutes");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let busy = (cpu_seconds(pid) - cpu_start) / wall;
    println!("saga benchmark: {jobs} jobs created at once on one `serve` (release build, in-process simulator at 15x)");
    println!("   all completed in {wall:.1} s; at most {peak_running} seen running at once");
    println!(
        "   CPU of the serve process: {:.3} cores while driving ({:.1}% of one core), idle baseline {:.3} cores ({:.1}x idle); {:.3} CPU-seconds per job",
        busy,
        busy * 100.0,
        idle,
        busy / idle.max(1e-6),
        (busy - idle) * wall / jobs as f64
    );

    server.stop();
    let _ = std::fs::remove_dir_all(&data_dir);
    if let Ok(admin) = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres").await {
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .execute(&admin)
        .await;
    }
    if let Ok(client) = async_nats::connect("nats://127.0.0.1:4222").await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(format!("BENCH_{}", tag.to_uppercase()))
            .await;
    }
}
