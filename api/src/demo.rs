//! `brightrun demo`: the whole journey through the public API, against a running service or
//! one started here on the embedded defaults: sign up, upload the example dataset through its
//! presigned URL, wait for `ready`, estimate, launch a balanced job, follow it live on the SSE
//! stream, download the adapter and check its sha256, print the cost breakdown.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const EXAMPLE: &[u8] = include_bytes!("../../examples/support-chats-v4.jsonl");

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path} answered {status}: {body}");
        }
        Ok(body["data"].clone())
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

fn bar(progress: f64) -> String {
    let filled = ((progress / 100.0) * 30.0).round().clamp(0.0, 30.0) as usize;
    format!("[{}{}]", "#".repeat(filled), ".".repeat(30 - filled))
}

/// Runs the journey against `base`; answers the path of the verified adapter.
pub async fn journey(base: &str, out_dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let mut client = Client {
        http: reqwest::Client::new(),
        base: base.trim_end_matches('/').to_string(),
        token: None,
    };
    let email = format!("demo-{}@example.com", uuid::Uuid::now_v7().simple());
    let session = client
        .post(
            "/api/auth/signup",
            json!({"email": email, "password": "demo-password-123", "name": "Demo"}),
        )
        .await?;
    client.token = Some(session["token"].as_str().context("no token")?.to_string());
    println!("1. signed up as {email}");

    let registered = client
        .post(
            "/api/datasets",
            json!({"name": "Support chats (example)", "format": "brightrun-lora-v4",
                   "fileSize": EXAMPLE.len(), "fileName": "support-chats-v4.jsonl"}),
        )
        .await?;
    let dataset = registered["datasetId"]
        .as_str()
        .context("no datasetId")?
        .to_string();
    let url = registered["uploadUrl"].as_str().context("no uploadUrl")?;
    let put = client.http.put(url).body(EXAMPLE.to_vec()).send().await?;
    if !put.status().is_success() {
        bail!("the upload answered {}", put.status());
    }
    client
        .post(&format!("/api/datasets/{dataset}/confirm"), json!({}))
        .await?;
    println!(
        "2. uploaded {} bytes through the presigned URL; validating…",
        EXAMPLE.len()
    );
    let detail = loop {
        let detail = client.get(&format!("/api/datasets/{dataset}")).await?;
        match detail["dataset"]["status"].as_str() {
            Some("ready") => break detail,
            Some("error") => bail!("validation failed: {}", detail["dataset"]["errorMessage"]),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let d = &detail["dataset"];
    println!(
        "   ready: {} conversations, {} training / {} validation pairs, {} tokens ({})",
        d["totalConversations"],
        d["totalTrainingPairs"],
        d["totalValidationPairs"],
        d["totalTokens"],
        d["tokenizer"]
    );

    let job_body = json!({"datasetId": dataset, "presetId": "balanced", "baseModel": "llama-3-8b",
                          "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1}});
    let estimate = client.post("/api/jobs/estimate", job_body.clone()).await?;
    println!(
        "3. estimate: ${:.2} ({} steps, {}-{} s on 1 x a100-40gb at {} tokens/s)",
        estimate["cost"]["total"].as_f64().unwrap_or(0.0),
        estimate["totalSteps"],
        estimate["duration"]["min"],
        estimate["duration"]["max"],
        estimate["tokensPerSecond"]
    );
    let created = client.post("/api/jobs", job_body).await?;
    let job = created["jobId"].as_str().context("no jobId")?.to_string();
    println!("4. launched job {job} (balanced preset); following it live:");

    let mut stream = client
        .http
        .get(format!("{}/api/jobs/{job}/stream", client.base))
        .bearer_auth(client.token.as_deref().unwrap_or_default())
        .send()
        .await?;
    let (mut buffer, mut loss, mut progress) = (String::new(), f64::NAN, 0.0);
    let mut model = None;
    'stream: while let Some(chunk) = stream.chunk().await? {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(str::trim);
            let data: Value = block
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .and_then(|d| serde_json::from_str(d.trim()).ok())
                .unwrap_or(Value::Null);
            match name {
                Some("progress") => progress = data["progress"].as_f64().unwrap_or(progress),
                Some("metrics") => loss = data["trainingLoss"].as_f64().unwrap_or(loss),
                Some("stage") => println!(
                    "\r   stage: {:<60}",
                    data["message"].as_str().unwrap_or_default()
                ),
                Some("complete") => {
                    model = data["artifactId"].as_str().map(str::to_string);
                    println!(
                        "\r   {} 100.0%  loss {loss:.4}  done                ",
                        bar(100.0)
                    );
                    break 'stream;
                }
                Some("error") if data["canRetry"] == false => bail!("the job failed: {data}"),
                Some("error") => println!("\r   retrying after: {}", data["error"]),
                Some("cancelled") => bail!("the job was cancelled"),
                _ => {}
            }
            let shown = if loss.is_nan() {
                "-     ".to_string()
            } else {
                format!("{loss:.4}")
            };
            print!("\r   {} {progress:5.1}%  loss {shown}   ", bar(progress));
            let _ = std::io::stdout().flush();
        }
    }

    let model = model.context("the stream ended without the job's model")?;
    // The stream is fed by NATS; the read models may be a moment behind it.
    let mut waited = 0;
    let (detail, download) = loop {
        let detail = client.get(&format!("/api/jobs/{job}")).await?;
        let download = client
            .get(&format!(
                "/api/models/{model}/download?artifact=adapter-model"
            ))
            .await;
        match download {
            Ok(download) if detail["job"]["status"] == "completed" => break (detail, download),
            Err(err) if waited >= 100 => return Err(err),
            _ if waited >= 100 => bail!("the job's read model did not show it completed"),
            _ => {
                waited += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let job_view = &detail["job"];
    let bytes = client
        .http
        .get(download["downloadUrl"].as_str().context("no downloadUrl")?)
        .send()
        .await?
        .bytes()
        .await?;
    let sha = hex::encode(Sha256::digest(&bytes));
    if sha != download["sha256"].as_str().unwrap_or_default() {
        bail!(
            "the adapter's sha256 {sha} does not match {}",
            download["sha256"]
        );
    }
    tokio::fs::create_dir_all(out_dir).await?;
    let path = out_dir.join("adapter_model.safetensors");
    tokio::fs::write(&path, &bytes).await?;
    println!(
        "5. model {model}: downloaded {} ({} bytes), sha256 {sha} verified",
        path.display(),
        bytes.len()
    );
    let c = &job_view["costBreakdown"];
    let usd = |v: &Value| format!("${:.2}", v.as_f64().unwrap_or(0.0));
    println!(
        "6. cost: compute {}, storage {}, data transfer {}; total {} (estimated {})",
        usd(&c["compute"]),
        usd(&c["storage"]),
        usd(&c["dataTransfer"]),
        usd(&job_view["finalCost"]),
        usd(&job_view["estimatedTotalCost"])
    );
    Ok(path)
}
