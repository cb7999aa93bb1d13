//! The spine over a large history: one real journey is recorded through the
//! `brightrun` binary (sign up, upload, train on the simulator, download the adapter), then
//! written again with fresh ids until the store holds HISTORY_EVENTS events (1,000,000) over
//! thousands of jobs. On that store, each figure beside a baseline from the same run:
//!
//! - the generator's events/s;
//! - each projection catching up on the whole history (events/s), next to a multi-row INSERT
//!   of the same number of rows (500 a statement, one writer);
//! - `brightrun replay all` (every projection rebuilt blue/green) as a process: seconds;
//! - `brightrun audit costs` as a process: seconds and peak RSS, over the store as generated
//!   and again once it holds AUDIT_ENTRIES (1,000,000) ledger entries: memory is bounded when
//!   the second peak is about the first.
//!
//! Run: `cargo bench -p api --bench history`. It uses a database, stream and data folder of
//! its own and removes them at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infrastructure::event_log::StoredEvent;
use infrastructure::subscription::Subscriber;
use projections::{Projection, Projector};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

#[path = "support/history.rs"]
mod history;
mod support;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

const LEDGER_EVENTS: &[&str] = &["JobCostAccrued", "ModelDownloadBilled", "ModelUsageBilled"];

/// A projector folding one event at a time (what every projector did before set-based
/// batches), under a name of its own so it keeps its own checkpoint.
struct OneAtATime(Arc<dyn Projector>, &'static str);

#[async_trait::async_trait]
impl Projector for OneAtATime {
    fn name(&self) -> &'static str {
        self.1
    }

    fn tables(&self) -> &'static [&'static str] {
        self.0.tables()
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        self.0.apply(conn, event).await
    }
}

async fn drain(pool: &PgPool, subscriber: &dyn Subscriber) -> (u64, Duration) {
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let n = subscriber.run_batch(pool).await.expect("batch");
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    (total, started.elapsed())
}

async fn drain_at_most(pool: &PgPool, subscriber: &dyn Subscriber, most: u64) -> (u64, Duration) {
    let started = Instant::now();
    let mut total = 0u64;
    while total < most {
        let n = subscriber.run_batch(pool).await.expect("batch");
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    (total, started.elapsed())
}

/// Rows of the shape of a read model's (a key, a few columns, a JSON document) inserted 500
/// to a statement: what a set-based projection could at best do.
async fn multi_row_inserts(pool: &PgPool, n: usize) -> f64 {
    sqlx::query(
        "CREATE TABLE bench_multi (job_id uuid, step bigint, loss float8, details jsonb, \
           at timestamptz, PRIMARY KEY (job_id, step))",
    )
    .execute(pool)
    .await
    .expect("bench table");
    let job = Uuid::new_v4();
    let started = Instant::now();
    for chunk in 0..n.div_ceil(500) {
        let steps: Vec<i64> = (chunk * 500..((chunk + 1) * 500).min(n))
            .map(|s| s as i64)
            .collect();
        let losses: Vec<f64> = steps.iter().map(|s| 1.0 / (*s as f64 + 1.0)).collect();
        let details: Vec<serde_json::Value> = steps
            .iter()
            .map(|s| serde_json::json!({"trainingLoss": 1.0 / (*s as f64 + 1.0), "learningRate": 0.0002}))
            .collect();
        sqlx::query(
            "INSERT INTO bench_multi (job_id, step, loss, details, at) \
             SELECT $1, s, l, d, now() FROM unnest($2::bigint[], $3::float8[], $4::jsonb[]) AS u(s, l, d) \
             ON CONFLICT DO NOTHING",
        )
        .bind(job)
        .bind(&steps)
        .bind(&losses)
        .bind(&details)
        .execute(pool)
        .await
        .expect("insert");
    }
    rate(n as u64, started.elapsed())
}

/// Runs `brightrun <args>` against `url` to the end: (success, seconds, peak RSS in KiB,
/// its first line of output).
fn brightrun(url: &str, args: &[&str]) -> (bool, f64, u64, String) {
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_brightrun"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("brightrun");
    let pid = child.id();
    let mut peak = 0;
    let output = std::thread::spawn({
        let mut stdout = child.stdout.take().expect("stdout");
        move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
            text
        }
    });
    let status = loop {
        peak = peak.max(support::peak_rss_kib(pid));
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = output.join().unwrap_or_default();
    (
        status.success(),
        started.elapsed().as_secs_f64(),
        peak,
        text.lines().next().unwrap_or_default().to_string(),
    )
}

#[tokio::main]
async fn main() {
    let target_events = env("HISTORY_EVENTS", 1_000_000);
    let target_entries = env("AUDIT_ENTRIES", 1_000_000);
    // Events the fold one event at a time is timed over (the start of the history).
    let one_at_a_time = env("ONE_AT_A_TIME_EVENTS", 20_000) as u64;
    let tag = Uuid::now_v7().simple().to_string()[20..].to_string();
    let database = format!("brightrun_history_{tag}");
    let url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    let data_dir = std::env::temp_dir().join(format!("brightrun-history-{tag}"));
    let stream = format!("HISTORY_{}", tag.to_uppercase());

    // 1. One real journey, recorded through the service.
    let server = support::Binary::start(
        "all",
        &[
            ("DATABASE_URL", url.clone()),
            ("NATS_STREAM", stream.clone()),
            ("NATS_SUBJECT_PREFIX", format!("history_{tag}")),
            ("BRIGHTRUN_DATA_DIR", data_dir.display().to_string()),
            ("CLUSTER_SIM_SPEED", "30".to_string()),
        ],
    )
    .await;
    support::record_journey(&server.base, &data_dir);
    server.stop();

    let pool = infrastructure::db::connect(&url, 8).await.expect("pool");
    let owner: Uuid = sqlx::query_scalar("SELECT id FROM users LIMIT 1")
        .fetch_one(&pool)
        .await
        .expect("the journey's user");
    let template = history::Template::read(&pool, owner, |_, _| true).await;
    // The books only (a job's own events, its download bills): a journey carries a few
    // ledger entries among dozens of telemetry events, so the million entries are
    // copies of these.
    let books = history::Template::read(&pool, owner, |aggregate, event| {
        aggregate == <domain::job::Job as cqrs_es::Aggregate>::TYPE
            || event == "ModelDownloadBilled"
    })
    .await;
    let per_copy = template.len();
    let ledger_per_copy = template.count(LEDGER_EVENTS);
    println!(
        "history benchmark: one journey = {per_copy} events ({} metric points, {} log lines, {ledger_per_copy} ledger entries)",
        template.count(&["MetricPointRecorded"]),
        template.count(&["LogLineRecorded"]),
    );

    // 2. The store: copies of the journey, ten jobs to a user.
    let copies = target_events.div_ceil(per_copy);
    let users: Vec<Uuid> = (0..copies.div_ceil(10)).map(|_| Uuid::new_v4()).collect();
    let (written, took) = template.write(&pool, copies, |k| users[k / 10]).await;
    println!(
        "generate  {written} events ({copies} jobs, {} users) in {:.1} s = {:.0} events/s (COPY)",
        users.len(),
        took.as_secs_f64(),
        rate(written, took)
    );

    // 3. Catch-up: each projection over the whole history, after the baseline; the two
    //    that fold set-based also one event at a time, into copies of their tables.
    let baseline = multi_row_inserts(&pool, 200_000).await;
    println!("baseline  multi-row INSERT (500 a statement)      {baseline:>10.0} rows/s");
    for name in ["jobs", "costs"] {
        let projector = projections::by_name(name).expect("projector");
        let schema = format!("one_at_a_time_{name}");
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut *tx)
            .await
            .expect("schema");
        projections::replay::copy_tables(&mut tx, projector.tables(), &schema)
            .await
            .expect("tables");
        tx.commit().await.expect("commit");
        let shadow = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with(
                url.parse::<sqlx::postgres::PgConnectOptions>()
                    .expect("url")
                    .options([("search_path", format!("{schema},public"))]),
            )
            .await
            .expect("pool");
        // The name lives as long as the bench (one per projector and run).
        let one = OneAtATime(projector, Box::leak(format!("{name}-one").into_boxed_str()));
        let (n, took) =
            drain_at_most(&shadow, &Projection::new(Arc::new(one)), one_at_a_time).await;
        println!(
            "project   {name:<14} one event at a time over the first {n} events in {:>6.1} s = {:>8.0} ev/s (each event a batch of its own)",
            took.as_secs_f64(),
            rate(n, took)
        );
        shadow.close().await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&pool)
            .await
            .expect("drop");
    }
    let mut slowest = f64::MAX;
    for projector in projections::all() {
        let name = projector.name();
        let (n, took) = drain(&pool, &Projection::new(projector)).await;
        let r = rate(n, took);
        slowest = slowest.min(r);
        println!(
            "project   {name:<14} catch-up over {n} events in {:>6.1} s = {r:>8.0} ev/s ({:.2}x baseline)",
            took.as_secs_f64(),
            r / baseline
        );
    }
    println!(
        "project   slowest projection {slowest:.0} ev/s ({:.2}x baseline; target >= 20,000 and >= 0.15x)",
        slowest / baseline
    );

    // 4. Every read model rebuilt from the log.
    let (ok, seconds, peak, _) = brightrun(&url, &["replay", "all"]);
    println!(
        "replay    brightrun replay all over {} events: {seconds:.1} s, peak RSS {:.1} MiB, {} (target < 120 s)",
        written + per_copy as u64,
        peak as f64 / 1024.0,
        if ok { "no differences" } else { "FAILED" }
    );

    // 5. The audit as generated, then with a million ledger entries.
    let entries = (copies + 1) * ledger_per_copy;
    let (ok, seconds, small_peak, first) = brightrun(&url, &["audit", "costs"]);
    println!(
        "audit     brightrun audit costs over {entries} entries: {seconds:.1} s, peak RSS {:.1} MiB, {} ({first})",
        small_peak as f64 / 1024.0,
        if ok { "zero drift" } else { "DRIFT OR FAILURE" }
    );
    if entries < target_entries && ledger_per_copy > 0 {
        let more = (target_entries - entries).div_ceil(ledger_per_copy);
        let more_users: Vec<Uuid> = (0..more.div_ceil(10)).map(|_| Uuid::new_v4()).collect();
        let (extra, took) = books.write(&pool, more, |k| more_users[k / 10]).await;
        // What the audit compares: the ledger and the jobs' figures.
        let mut caught_up = Duration::ZERO;
        for name in ["costs", "jobs"] {
            let projector = projections::by_name(name).expect("projector");
            caught_up += drain(&pool, &Projection::new(projector)).await.1;
        }
        println!(
            "generate  {extra} more events ({more} jobs, {} events each: the job's own and its bills) in {:.1} s; the ledger and jobs projections caught up in {:.1} s",
            books.len(),
            took.as_secs_f64(),
            caught_up.as_secs_f64()
        );
        let entries = entries + more * ledger_per_copy;
        let (ok, seconds, peak, first) = brightrun(&url, &["audit", "costs"]);
        println!(
            "audit     brightrun audit costs over {entries} entries: {seconds:.1} s, peak RSS {:.1} MiB = {:.2}x the smaller audit's, {} ({first}) (target < 60 s, memory bounded)",
            peak as f64 / 1024.0,
            peak as f64 / small_peak.max(1) as f64,
            if ok { "zero drift" } else { "DRIFT OR FAILURE" }
        );
    }

    pool.close().await;
    if let Ok(client) = async_nats::connect("nats://127.0.0.1:4222").await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(&stream)
            .await;
    }
    if let Ok(admin) = PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres").await {
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .execute(&admin)
        .await;
    }
    let _ = std::fs::remove_dir_all(&data_dir);
}
