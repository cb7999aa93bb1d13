//! Throughput of the event-sourced spine, each figure beside a raw baseline measured in the
//! same run on the same servers:
//!
//! - commands appended per second (RegisterDataset through cqrs-es and postgres-es, distinct
//!   aggregates, 16 concurrent writers) vs a plain single-row INSERT loop (16 writers);
//! - relay events per second into JetStream vs a plain JetStream publish loop (with
//!   Nats-Msg-Id, acks awaited in batches of 256);
//! - projection catch-up events per second vs the same INSERT baseline.
//!
//! Run: `cargo bench -p api --bench spine` (env BENCH_EVENTS, default 4000).
//! It uses a database and stream of its own and removes them at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::Roles;
use application::datasets::NewDataset;
use application::CommandContext;
use async_nats::jetstream::{self, message::PublishMessage};
use domain::dataset::DatasetFormat;
use domain::ids::UserId;
use infrastructure::relay::Relay;
use infrastructure::subscription::{RunnerOptions, Subscriber};
use infrastructure::Config;
use projections::Projection;
use sqlx::PgPool;
use uuid::Uuid;

const WRITERS: usize = 16;

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

async fn raw_inserts(pool: &PgPool, n: usize) -> f64 {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, payload jsonb NOT NULL)",
    )
    .execute(pool)
    .await
    .expect("bench table");
    let payload = serde_json::json!({"DatasetRegistered": {"name": "x".repeat(200), "fileSize": 1234, "format": "brightrun-lora-v4"}});
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let pool = pool.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                for _ in 0..n / WRITERS {
                    sqlx::query("INSERT INTO bench_raw (payload) VALUES ($1)")
                        .bind(&payload)
                        .execute(&pool)
                        .await
                        .expect("insert");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    rate(n / WRITERS * WRITERS, started.elapsed())
}

async fn commands(service: &api::Service, n: usize) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let datasets = service.state.datasets.clone();
            tokio::spawn(async move {
                let ctx = CommandContext {
                    user_id: UserId::new_v7(),
                    request_id: format!("bench-{w}"),
                    correlation_id: format!("bench-{w}"),
                    causation_id: None,
                };
                for i in 0..n / WRITERS {
                    let new = NewDataset {
                        name: format!("bench {w}-{i}"),
                        description: "benchmark".into(),
                        format: DatasetFormat::BrightrunLoraV4,
                        file_size: 1234,
                        file_name: "bench.jsonl".into(),
                    };
                    datasets.register(&ctx, new).await.expect("register");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    rate(n / WRITERS * WRITERS, started.elapsed())
}

async fn raw_publishes(client: async_nats::Client, stream: &str, n: usize) -> f64 {
    let js = jetstream::new(client);
    js.get_or_create_stream(jetstream::stream::Config {
        name: stream.to_string(),
        subjects: vec![format!("{}.>", stream.to_lowercase())],
        ..Default::default()
    })
    .await
    .expect("stream");
    let body = bytes_of_envelope();
    let started = Instant::now();
    let mut sent = 0;
    while sent < n {
        let mut acks = Vec::with_capacity(256);
        for _ in 0..256.min(n - sent) {
            let msg = PublishMessage::build()
                .message_id(Uuid::now_v7().to_string())
                .payload(body.clone().into());
            acks.push(
                js.send_publish(format!("{}.raw", stream.to_lowercase()), msg)
                    .await
                    .expect("publish"),
            );
            sent += 1;
        }
        for ack in acks {
            ack.await.expect("ack");
        }
    }
    let r = rate(n, started.elapsed());
    let _ = js.delete_stream(stream).await;
    r
}

fn bytes_of_envelope() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "eventId": Uuid::now_v7(), "globalPosition": 1, "aggregateType": "dataset", "aggregateId": Uuid::now_v7(),
        "sequence": 1, "eventType": "DatasetRegistered", "eventVersion": "1", "occurredAt": "2026-11-23T12:00:00Z",
        "metadata": {"userId": Uuid::now_v7(), "requestId": "r"}, "payload": {"name": "x".repeat(120)}
    }))
    .unwrap_or_default()
}

async fn drain(pool: &PgPool, subscriber: &dyn Subscriber) -> (usize, f64) {
    let started = Instant::now();
    let mut total = 0;
    loop {
        let n = subscriber.run_batch(pool).await.expect("batch");
        if n == 0 {
            break;
        }
        total += n;
    }
    (total, rate(total, started.elapsed()))
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let tag = Uuid::now_v7().simple().to_string()[20..].to_string();
    let database = format!("brightrun_bench_{tag}");
    let stream = format!("BENCH_{}", tag.to_uppercase());
    let vars = [
        (
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:5432/{database}"),
        ),
        ("DATABASE_MAX_CONNECTIONS", "24".to_string()),
        ("NATS_STREAM", stream.clone()),
        ("NATS_SUBJECT_PREFIX", format!("bench_{tag}")),
    ];
    let config = Config::from_lookup(|k| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    })
    .expect("config");
    // API role only: the relay and the projection are driven by hand below, to time them.
    let service = api::start(
        config.clone(),
        Roles {
            api: true,
            relay: false,
            projections: false,
            workers: false,
            saga: false,
        },
        RunnerOptions::default(),
    )
    .await
    .expect("service");
    let pool = service.state.pool.clone();

    println!("spine benchmark, {n} events, {WRITERS} concurrent writers (debug or release: see cargo's profile line)");
    let insert_baseline = raw_inserts(&pool, n).await;
    println!("baseline  plain single-row INSERT, 16 writers   {insert_baseline:>10.0} rows/s");
    let appended = commands(&service, n).await;
    println!("commands  RegisterDataset appended, 16 writers  {appended:>10.0} cmd/s   ({:.2}x baseline)", appended / insert_baseline);

    let publish_baseline =
        raw_publishes(service.state.nats.clone(), &format!("{stream}_RAW"), n).await;
    println!("baseline  plain JetStream publish (Msg-Id)      {publish_baseline:>10.0} msg/s");
    let relay = Relay::new(
        service.state.nats.clone(),
        &config.nats_stream,
        &config.nats_subject_prefix,
    );
    let (published, relay_rate) = drain(&pool, &relay).await;
    println!("relay     events into JetStream ({published})       {relay_rate:>10.0} ev/s    ({:.2}x baseline)", relay_rate / publish_baseline);

    let projection = Projection::new(Arc::new(projections::datasets::DatasetsProjector));
    let (projected, projection_rate) = drain(&pool, &projection).await;
    println!(
        "project   datasets catch-up ({projected})          {projection_rate:>10.0} ev/s    ({:.2}x INSERT baseline)",
        projection_rate / insert_baseline
    );

    if let Ok(client) = async_nats::connect(&config.nats_url).await {
        let _ = jetstream::new(client)
            .delete_stream(&config.nats_stream)
            .await;
    }
    service.stop().await;
    if let Ok(admin) = PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres").await {
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .execute(&admin)
        .await;
    }
}
