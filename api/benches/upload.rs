//! Uploading through the API (`POST /api/datasets/{id}/upload`, streamed to S3 in parts)
//! against the baseline of the same bytes PUT straight to the object store with the presigned
//! URL, in the same run, on the `brightrun` binary as its own process (release); and the
//! server's peak resident memory (VmHWM) before and after.
//!
//! Run: `cargo bench -p api --bench upload` (BENCH_UPLOAD_MIB, default 256). It uses a
//! database, stream and data folder of its own and removes the data folder at the end.

use std::time::Instant;

use serde_json::{json, Value};
use uuid::Uuid;

mod support;

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn body(size: u64) -> reqwest::Body {
    let line = b"{\"conversation_id\": \"c\", \"turns\": [{\"role\": \"user\", \"content\": \"How do I reset my password?\"}, {\"role\": \"assistant\", \"content\": \"Open Settings, then Security.\"}]}\n";
    let chunk = bytes::Bytes::from(line.repeat((1 << 20) / line.len()));
    let stream = futures::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= size {
                return None;
            }
            let n = (size - sent).min(chunk.len() as u64) as usize;
            Some((Ok::<_, std::io::Error>(chunk.slice(..n)), sent + n as u64))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

async fn register(http: &reqwest::Client, base: &str, token: &str, size: u64) -> Value {
    http.post(format!("{base}/api/datasets"))
        .bearer_auth(token)
        .json(&json!({"name": "bench", "format": "brightrun-lora-v4", "fileSize": size, "fileName": "bench.jsonl"}))
        .send()
        .await
        .expect("register")
        .json::<Value>()
        .await
        .expect("json")["data"]
        .clone()
}

#[tokio::main]
async fn main() {
    let mib: u64 = std::env::var("BENCH_UPLOAD_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let size = mib << 20;
    let tag = Uuid::now_v7().simple().to_string()[20..].to_string();
    let data_dir = std::env::temp_dir().join(format!("brightrun-bench-{tag}"));
    let database = format!("brightrun_bench_{tag}");
    let server = support::Binary::start(
        "api,projections",
        &[
            (
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:5432/{database}"),
            ),
            ("NATS_STREAM", format!("BENCH_{}", tag.to_uppercase())),
            ("NATS_SUBJECT_PREFIX", format!("bench_{tag}")),
            ("BRIGHTRUN_DATA_DIR", data_dir.display().to_string()),
        ],
    )
    .await;
    let (pid, base) = (server.pid, server.base.clone());
    let http = reqwest::Client::new();
    let (token, _) = support::sign_up(&http, &base).await;
    let rss_start = peak_rss_mib(pid);
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let d = register(&http, &base, &token, size).await;
        let started = Instant::now();
        let put = http
            .put(d["uploadUrl"].as_str().expect("url"))
            .body(body(size))
            .header("content-length", size)
            .send()
            .await
            .expect("PUT");
        assert!(put.status().is_success(), "presigned PUT: {}", put.status());
        direct.push(started.elapsed().as_secs_f64());
        let rss_before_api = peak_rss_mib(pid);
        let d = register(&http, &base, &token, size).await;
        let id = d["datasetId"].as_str().expect("id");
        let started = Instant::now();
        let answer = http
            .post(format!("{base}/api/datasets/{id}/upload"))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .body(body(size))
            .send()
            .await
            .expect("upload");
        assert!(answer.status().is_success(), "upload: {}", answer.status());
        through.push(started.elapsed().as_secs_f64());
        eprintln!(
            "  presigned PUT {:.2} s, through the API {:.2} s; server peak RSS {:.1} -> {:.1} MiB",
            direct.last().unwrap_or(&0.0),
            through.last().unwrap_or(&0.0),
            rss_before_api,
            peak_rss_mib(pid)
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (d, t) = (median(&mut direct), median(&mut through));
    let mb = size as f64 / 1e6;
    println!(
        "upload of {mib} MiB, median of 3: presigned PUT to the object store {:.1} MB/s (baseline); through the API {:.1} MB/s = {:.2}x the baseline's time; server peak RSS {:.1} MiB at start, {:.1} MiB after all uploads",
        mb / d,
        mb / t,
        t / d,
        rss_start,
        peak_rss_mib(pid)
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
}
