//! Two job figures, each beside a baseline measured in the same run:
//!
//! 1. Command latency as a job's metric history grows: `record_telemetry` (loads the job,
//!    appends a point) and `AccrueCost` (a job command) on jobs holding 10, 1,000 and 100,000
//!    metric points; ratios to the 10-point job.
//! 2. SSE fan-out on one job, with the `brightrun` binary as a separate process: delivery
//!    latency from a committed metric point to each client (p50/p99) with 1,000 concurrent
//!    streams, against 1 stream; the server's resident memory per open stream.
//!
//! Run: `cargo bench -p api --bench jobs` (env BENCH_STREAMS, default 1000; BENCH_PART=2 for
//! the fan-out alone). It uses a
//! database and stream of its own and removes them at the end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::Roles;
use application::CommandContext;
use chrono::Utc;
use domain::ids::{JobId, UserId};
use domain::job::telemetry::{MetricPoint, TelemetryEvent};
use domain::job::{CostType, JobCommand, JobStage};
use infrastructure::subscription::RunnerOptions;
use infrastructure::Config;
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

mod support;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64) * p).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn summary(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

async fn ready_dataset(pool: &PgPool, user: Uuid) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO rm_datasets (id, user_id, name, description, format, status, training_ready, \
           total_training_pairs, total_validation_pairs, total_tokens, file_size, file_name, s3_key, \
           s3_bucket, created_at, updated_at, version) \
         VALUES ($1, $2, 'bench', '', 'brightrun-lora-v4', 'ready', true, 5000, 500, 2000000, 10000000, \
           'bench.jsonl', 'k', 'b', now(), now(), 1)",
    )
    .bind(id)
    .bind(user)
    .execute(pool)
    .await
    .expect("dataset row");
    id
}

fn ctx(user: Uuid) -> CommandContext {
    CommandContext {
        user_id: UserId(user),
        request_id: Uuid::now_v7().to_string(),
        correlation_id: "bench".into(),
        causation_id: None,
    }
}

fn point(job_id: JobId, step: u64) -> TelemetryEvent {
    TelemetryEvent::MetricPointRecorded(MetricPoint {
        job_id,
        step,
        epoch: 1,
        training_loss: 1.0 / (1.0 + step as f64 / 1000.0),
        validation_loss: None,
        learning_rate: 2e-4,
        gradient_norm: None,
        throughput: Some(2400.0),
        gpu_utilization: Some(90.0),
        recorded_at: Utc::now(),
    })
}

/// A running job with `history` metric points already stored.
async fn running_job(service: &api::Service, user: Uuid, dataset: Uuid, history: u64) -> JobId {
    let jobs = &service.state.jobs;
    let c = ctx(user);
    let receipt = jobs
        .create(
            &c,
            application::jobs::NewJob {
                dataset_id: domain::ids::DatasetId(dataset),
                request: domain::job::config::JobRequest {
                    preset: domain::job::config::Preset::Balanced,
                    overrides: Default::default(),
                    gpu_config: domain::job::config::GpuConfig {
                        instance_type: domain::job::config::GpuType::A100_80gb,
                        num_gpus: 1,
                    },
                    base_model: Some("mistral-7b".into()),
                    early_stopping_patience: None,
                    early_stopping_min_delta: None,
                    validation_split_ratio: None,
                    checkpoint_interval: None,
                    seed: None,
                },
                parent_model_id: None,
                from_checkpoint: None,
                name: None,
                labels: Default::default(),
            },
        )
        .await
        .expect("create");
    let job_id = receipt.id;
    let now = Utc::now();
    for command in [
        JobCommand::StartSubmission {
            attempt: 1,
            idempotency_key: "k".into(),
            at: now,
        },
        JobCommand::ChangeStage {
            stage: JobStage::Training,
            message: "bench".into(),
            at: now,
        },
    ] {
        jobs.execute(&c, job_id, command).await.expect("command");
    }
    // The history, written in bulk in the same shape `record_telemetry` writes.
    let template = serde_json::to_value(point(job_id, 0)).expect("json");
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'job_metrics', $1, s, 'MetricPointRecorded', '1', \
           json_build_object('MetricPointRecorded', (($2::jsonb -> 'MetricPointRecorded') || jsonb_build_object('step', s))), '{}' \
         FROM generate_series(1, $3::bigint) AS s",
    )
    .bind(job_id.to_string())
    .bind(&template)
    .bind(history as i64)
    .execute(&service.state.pool)
    .await
    .expect("history");
    job_id
}

async fn command_latency(service: &api::Service, user: Uuid, dataset: Uuid) {
    const SAMPLES: u64 = 200;
    println!("1. command latency vs recorded metric points ({SAMPLES} samples each)");
    let mut baseline = None;
    for history in [10u64, 1_000, 100_000] {
        let job_id = running_job(service, user, dataset, history).await;
        let jobs = &service.state.jobs;
        let c = ctx(user);
        let mut telemetry = Vec::new();
        let mut accrue = Vec::new();
        for i in 0..SAMPLES {
            let started = Instant::now();
            let new = jobs
                .record_telemetry(&c, point(job_id, history + 1 + i))
                .await
                .expect("telemetry");
            assert!(new);
            telemetry.push(started.elapsed().as_secs_f64() * 1000.0);
            let started = Instant::now();
            jobs.execute(
                &c,
                job_id,
                JobCommand::AccrueCost {
                    entry_key: format!("bench:{i}"),
                    cost_type: CostType::Compute,
                    quantity: Decimal::new(1, 3),
                    rate: Decimal::new(320, 2),
                    details: json!({}),
                    compute_until: None,
                    at: Utc::now(),
                },
            )
            .await
            .expect("accrue");
            accrue.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let (t50, t99) = summary(telemetry);
        let (a50, a99) = summary(accrue);
        let (b_t, b_a) = *baseline.get_or_insert((t50, a50));
        println!(
            "   {history:>7} points: metric point p50 {t50:6.2} ms p99 {t99:6.2} ms ({:.2}x)   AccrueCost p50 {a50:6.2} ms p99 {a99:6.2} ms ({:.2}x)",
            t50 / b_t,
            a50 / b_a
        );
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `"step":N` of a metrics event's data.
fn step_of(block: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"step\":";
    let at = find(block, KEY)? + KEY.len();
    let digits: Vec<u8> = block[at..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Opens `n` streams of `job`, sends `points` metric points, answers the delivery latencies
/// (ms) and the server's RSS growth per stream (KiB).
struct Target<'a> {
    base: &'a str,
    token: &'a str,
    service: &'a api::Service,
    user: Uuid,
    server_pid: u32,
}

async fn fan_out(t: &Target<'_>, job_id: JobId, n: usize, points: u64) -> (Vec<f64>, f64) {
    let (base, token, service, user, server_pid) =
        (t.base, t.token, t.service, t.user, t.server_pid);
    let first_step = 1;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    // The server's projection must show the job before a stream can open (it first catches
    // up with the metric histories of part 1).
    let waited = Instant::now();
    for _ in 0..3600 {
        let status = http
            .get(format!("{base}/api/jobs/{job_id}"))
            .bearer_auth(token)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if waited.elapsed() > Duration::from_secs(1) {
        println!(
            "   (the server caught up with the log in {:.1} s)",
            waited.elapsed().as_secs_f64()
        );
        // The relay too: let it drain before timing deliveries.
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let received: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let before = support::rss_kib(server_pid);
    let heap_before = support::heap_bytes(&http, base).await.0;
    let mut tasks = Vec::new();
    for _ in 0..n {
        let request = http
            .get(format!("{base}/api/jobs/{job_id}/stream"))
            .bearer_auth(token);
        let received = received.clone();
        let opened = opened.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut response) = request.send().await else {
                return;
            };
            opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Lean on purpose: the client shares the machine's two cores with the server, so
            // it finds each metrics event's step without building a JSON value.
            let mut buffer: Vec<u8> = Vec::new();
            let mut seen = 0;
            while let Ok(Some(chunk)) = response.chunk().await {
                let now = Instant::now();
                buffer.extend_from_slice(&chunk);
                let mut start = 0;
                while let Some(end) = find(&buffer[start..], b"\n\n") {
                    let block = &buffer[start..start + end];
                    start += end + 2;
                    if block.starts_with(b"event: metrics\n") {
                        if let Some(step) = step_of(block) {
                            received.lock().expect("lock").push((step, now));
                            seen += 1;
                        }
                    }
                }
                buffer.drain(..start);
                if seen as u64 >= points {
                    return;
                }
            }
        }));
    }
    while opened.load(std::sync::atomic::Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What the opening burst allocated and freed goes back to the system after the
    // allocator's decay time (jemalloc: 10 s); what stays is what the open streams hold.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = support::rss_kib(server_pid);
    let per_stream = (after.saturating_sub(before)) as f64 / n as f64;
    let heap_after = support::heap_bytes(&http, base).await.0;
    println!(
        "   {n:>5} streams: heap allocated +{:.1} KiB per stream (the allocator's figure; RSS below)",
        heap_after.saturating_sub(heap_before) as f64 / 1024.0 / n as f64
    );

    let jobs = &service.state.jobs;
    let c = ctx(user);
    let mut committed = std::collections::HashMap::new();
    for i in 0..points {
        let step = first_step + i;
        jobs.record_telemetry(&c, point(job_id, step))
            .await
            .expect("point");
        committed.insert(step, Instant::now());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for task in tasks {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, task).await;
    }
    let latencies: Vec<f64> = received
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|(step, at)| {
            committed
                .get(step)
                .map(|c| at.saturating_duration_since(*c).as_secs_f64() * 1000.0)
        })
        .collect();
    let expected = n as u64 * points;
    if (latencies.len() as u64) < expected {
        println!(
            "   warning: {} of {expected} deliveries arrived",
            latencies.len()
        );
    }
    (latencies, per_stream)
}

async fn sse_fan_out(config: &Config, service: &api::Service, data_dir: &std::path::Path) {
    let streams: usize = std::env::var("BENCH_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let server = support::Binary::start(
        "api,relay,projections",
        &[
            ("DATABASE_URL", config.database_url.clone()),
            ("DATABASE_MAX_CONNECTIONS", "24".to_string()),
            ("NATS_STREAM", config.nats_stream.clone()),
            ("NATS_SUBJECT_PREFIX", config.nats_subject_prefix.clone()),
            ("BRIGHTRUN_DATA_DIR", data_dir.display().to_string()),
        ],
    )
    .await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let (token, user) = support::sign_up(&http, &base).await;
    let dataset = ready_dataset(&service.state.pool, user).await;

    println!(
        "2. SSE fan-out, one job, server = the brightrun binary (pid {})",
        server.pid
    );
    let mut baseline = None;
    let target = Target {
        base: &base,
        token: &token,
        service,
        user,
        server_pid: server.pid,
    };
    for n in [1usize, streams] {
        let job_id = running_job(service, user, dataset, 0).await;
        let (latencies, per_stream) = fan_out(&target, job_id, n, 20).await;
        let deliveries = latencies.len();
        let (p50, p99) = summary(latencies);
        let (b50, b99) = *baseline.get_or_insert((p50, p99));
        println!(
            "   {n:>5} streams: {deliveries} deliveries, commit-to-client p50 {p50:6.2} ms ({:.2}x) p99 {p99:6.2} ms ({:.2}x), server RSS +{per_stream:.1} KiB per stream",
            p50 / b50,
            p99 / b99
        );
    }
    server.stop();
}

#[tokio::main]
async fn main() {
    let tag = Uuid::now_v7().simple().to_string()[20..].to_string();
    let database = format!("brightrun_bench_{tag}");
    let vars = [
        (
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:5432/{database}"),
        ),
        ("DATABASE_MAX_CONNECTIONS", "24".to_string()),
        ("NATS_STREAM", format!("BENCH_{}", tag.to_uppercase())),
        ("NATS_SUBJECT_PREFIX", format!("bench_{tag}")),
    ];
    let config = Config::from_lookup(|k| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    })
    .expect("config");
    let service = api::start(
        config.clone(),
        Roles {
            api: false,
            relay: false,
            projections: false,
            workers: false,
            saga: false,
        },
        RunnerOptions::default(),
    )
    .await
    .expect("service");
    let user = Uuid::now_v7();
    let dataset = ready_dataset(&service.state.pool, user).await;
    if std::env::var("BENCH_PART").map_or(true, |part| part == "1") {
        command_latency(&service, user, dataset).await;
    }
    let data_dir = std::env::temp_dir().join(format!("brightrun-bench-{tag}"));
    sse_fan_out(&config, &service, &data_dir).await;

    if let Ok(client) = async_nats::connect(&config.nats_url).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(&config.nats_stream)
            .await;
    }
    service.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    if let Ok(admin) = PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres").await {
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .execute(&admin)
        .await;
    }
}
