//! Lists at scale: `GET /api/jobs` and `GET /api/jobs/{id}` for a user with
//! LIST_BIG_JOBS (100,000) jobs next to a user with LIST_SMALL_JOBS (100), under
//! LIST_CONNECTIONS (100) concurrent clients for LIST_SECONDS (20), against the `brightrun`
//! binary. The jobs are copies of one real job (recorded through `brightrun demo`) written
//! into the jobs read model with fresh ids and times: a list and a detail read nothing else.
//! Every client alternates between the two users, so both are measured under the same load.
//! Prints p50 / p99 per route and user, and the big user's p99 as a ratio to the small one's
//! (target <= 1.5x).
//!
//! Run: `cargo bench -p api --bench lists`. It uses a database, stream and data folder of its
//! own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

mod support;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Writes `n` copies of job `template` for `owner`, a second apart, newest now; answers
/// their ids.
async fn copy_jobs(pool: &PgPool, template: Uuid, owner: Uuid, n: u64) -> Vec<Uuid> {
    const CHUNK: u64 = 10_000;
    let mut done = 0;
    while done < n {
        let take = CHUNK.min(n - done);
        sqlx::query(
            // LATERAL: `(f(row)).*` in a select list would call f once per column.
            "INSERT INTO rm_jobs \
             SELECT r.* FROM rm_jobs j, generate_series(1, $4::bigint) g, \
               LATERAL jsonb_populate_record(NULL::rm_jobs, to_jsonb(j) || jsonb_build_object( \
                 'id', gen_random_uuid(), 'user_id', $2::uuid, \
                 'created_at', now() - (($3 + g) * interval '1 second'), \
                 'updated_at', now() - (($3 + g) * interval '1 second'))) r \
             WHERE j.id = $1",
        )
        .bind(template)
        .bind(owner)
        .bind(done as i64)
        .bind(take as i64)
        .execute(pool)
        .await
        .expect("copies");
        done += take;
    }
    sqlx::query_scalar("SELECT id FROM rm_jobs WHERE user_id = $1")
        .bind(owner)
        .fetch_all(pool)
        .await
        .expect("ids")
}

#[tokio::main]
async fn main() {
    let big_jobs = env("LIST_BIG_JOBS", 100_000);
    let small_jobs = env("LIST_SMALL_JOBS", 100);
    let connections = env("LIST_CONNECTIONS", 100) as usize;
    let seconds = env("LIST_SECONDS", 20);
    let tag = Uuid::now_v7().simple().to_string()[20..].to_string();
    let database = format!("brightrun_lists_{tag}");
    let url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    let data_dir = std::env::temp_dir().join(format!("brightrun-lists-{tag}"));
    let server = support::Binary::start(
        "all",
        &[
            ("DATABASE_URL", url.clone()),
            ("NATS_STREAM", format!("LISTS_{}", tag.to_uppercase())),
            ("NATS_SUBJECT_PREFIX", format!("lists_{tag}")),
            ("BRIGHTRUN_DATA_DIR", data_dir.display().to_string()),
            ("CLUSTER_SIM_SPEED", "30".to_string()),
        ],
    )
    .await;
    support::record_journey(&server.base, &data_dir);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let pool = infrastructure::db::connect(&url, 4).await.expect("pool");
    let template: Uuid = sqlx::query_scalar("SELECT id FROM rm_jobs LIMIT 1")
        .fetch_one(&pool)
        .await
        .expect("the journey's job");
    let mut users = Vec::new();
    let started = Instant::now();
    for (name, n) in [("big", big_jobs), ("small", small_jobs)] {
        let (token, id) = support::sign_up(&http, &server.base).await;
        let jobs = copy_jobs(&pool, template, id, n).await;
        users.push((name, token, Arc::new(jobs)));
    }
    sqlx::query("ANALYZE rm_jobs")
        .execute(&pool)
        .await
        .expect("analyze");
    println!(
        "lists: {big_jobs} and {small_jobs} jobs written in {:.1} s; {connections} clients for {seconds} s against {}",
        started.elapsed().as_secs_f64(),
        server.base
    );

    let book: Arc<Mutex<BTreeMap<String, Vec<f64>>>> = Arc::default();
    let failures = Arc::new(Mutex::new(0u64));
    let warm_until = Instant::now() + Duration::from_secs(2);
    let deadline = warm_until + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for client in 0..connections {
        let (http, base, users, book, failures) = (
            http.clone(),
            server.base.clone(),
            users.clone(),
            book.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = client as u64;
            while Instant::now() < deadline {
                for (name, token, jobs) in &users {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let job = jobs[((n >> 33) as usize) % jobs.len()];
                    for (route, path) in [
                        ("GET /api/jobs", "/api/jobs".to_string()),
                        ("GET /api/jobs/{id}", format!("/api/jobs/{job}")),
                    ] {
                        let started = Instant::now();
                        let ok = match http
                            .get(format!("{base}{path}"))
                            .bearer_auth(token)
                            .send()
                            .await
                        {
                            Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
                            Err(_) => false,
                        };
                        let ms = started.elapsed().as_secs_f64() * 1000.0;
                        if !ok {
                            *failures.lock().expect("failures") += 1;
                        }
                        if Instant::now() > warm_until {
                            book.lock()
                                .expect("book")
                                .entry(format!("{route} ({name})"))
                                .or_default()
                                .push(ms);
                        }
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }

    let book = book.lock().expect("book");
    let p99 = |key: &str| {
        let mut v = book.get(key).cloned().unwrap_or_default();
        v.sort_by(f64::total_cmp);
        (v.len(), percentile(&v, 0.5), percentile(&v, 0.99))
    };
    println!(
        "\n{:<32} {:>9} {:>9} {:>9}",
        "route (user)", "requests", "p50 ms", "p99 ms"
    );
    for key in book.keys() {
        let (n, p50, p99) = p99(key);
        println!("{key:<32} {n:>9} {p50:>9.1} {p99:>9.1}");
    }
    for route in ["GET /api/jobs", "GET /api/jobs/{id}"] {
        let big = p99(&format!("{route} (big)")).2;
        let small = p99(&format!("{route} (small)")).2;
        println!(
            "{route}: p99 with {big_jobs} jobs {big:.1} ms = {:.2}x the p99 with {small_jobs} (target <= 1.5x)",
            big / small.max(0.001)
        );
    }
    println!(
        "answers that were not a success: {}",
        failures.lock().expect("failures")
    );
    server.stop();
    let _ = std::fs::remove_dir_all(&data_dir);
}
