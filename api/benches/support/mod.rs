//! What the benchmarks against the `brightrun` binary share: start it as a process of its
//! own on a free port, wait until it answers, sign a user up; stop it afterwards.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

pub struct Binary {
    child: std::process::Child,
    #[allow(dead_code)]
    pub pid: u32,
    pub base: String,
}

impl Binary {
    /// `brightrun serve --roles <roles>` with `vars` (database, stream, data folder...),
    /// answering on `base` once this returns.
    pub async fn start(roles: &str, vars: &[(&str, String)]) -> Binary {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_brightrun"));
        command
            .args(["serve", "--roles", roles])
            .env("BRIGHTRUN_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null());
        // Benchmarks measure the service, not its rate limits (a bench may set its own).
        for limit in [
            "RATE_LIMIT_WRITES_PER_CALLER",
            "RATE_LIMIT_WRITES_PER_ADDRESS",
            "RATE_LIMIT_EXPENSIVE_PER_CALLER",
            "RATE_LIMIT_EXPENSIVE_PER_ADDRESS",
        ] {
            command.env(limit, "0");
        }
        for (name, value) in vars {
            command.env(name, value);
        }
        let child = command.spawn().expect("brightrun binary");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Binary {
            pid: child.id(),
            child,
            base,
        }
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records one real journey against `base` with `brightrun demo` (sign up, upload, train on
/// the simulator, download the adapter), run in `data_dir`, where it keeps what it downloads.
#[allow(dead_code)]
pub fn record_journey(base: &str, data_dir: &std::path::Path) {
    std::fs::create_dir_all(data_dir).expect("data folder");
    let recorded = std::process::Command::new(env!("CARGO_BIN_EXE_brightrun"))
        .args(["demo", "--url", base])
        .current_dir(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("demo");
    assert!(recorded.success(), "the recorded journey failed");
}

/// Signs up a fresh user: (token, user id).
#[allow(dead_code)]
pub async fn sign_up(http: &reqwest::Client, base: &str) -> (String, Uuid) {
    let signup: Value = http
        .post(format!("{base}/api/auth/signup"))
        .json(&json!({"email": format!("bench-{}@example.com", Uuid::now_v7().simple()), "password": "correct horse", "name": "Bench"}))
        .send()
        .await
        .expect("signup")
        .json()
        .await
        .expect("json");
    let token = signup["data"]["token"].as_str().expect("token").to_string();
    let user = Uuid::parse_str(signup["data"]["user"]["id"].as_str().expect("id")).expect("uuid");
    (token, user)
}

/// The resident memory of process `pid`, in KiB (0 if it cannot be read). Not every bench
/// that includes this module reads it.
#[allow(dead_code)]
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The server's heap as its allocator reports it in `/metrics`, one scrape: (allocated,
/// resident) bytes, 0 for a figure it does not report.
#[allow(dead_code)]
pub async fn heap_bytes(http: &reqwest::Client, base: &str) -> (u64, u64) {
    let text = match http.get(format!("{base}/metrics")).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let figure = |name: &str| {
        let prefix = format!("brightrun_heap_{name}_bytes ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    (figure("allocated"), figure("resident"))
}

/// The most resident memory process `pid` has had so far, in KiB (0 if it cannot be read).
#[allow(dead_code)]
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

#[allow(dead_code)]
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
