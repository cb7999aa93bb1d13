//! The simulator over HTTP (`openapi/cluster.yaml`): `brightrun cluster-sim`, or in-process on
//! loopback when no `CLUSTER_URL` is configured. Jobs are kept as JSON files under its data
//! folder with their submission time, so a restarted simulator goes on where the runs are by
//! now (a run is a function of time), like a real cluster that outlives its clients.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use application::cluster::{
    ClusterArtifact, ClusterStatus, StatusReport, SubmitRequest, SubmitResponse,
};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::dataset::validator::{Line, LineSplitter, Tokenizer, Validator, ValidatorOptions};
use domain::dataset::DatasetFormat;
use domain::job::estimate::{compute_charge, Rates};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::artifacts;
use super::model::{Faults, SimJob};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    job: SimJob,
    submitted_at: DateTime<Utc>,
    /// Cluster seconds after submission at which it was cancelled.
    cancelled_at: Option<f64>,
}

/// A finished run's files as reported: (name, size, sha256). Made once; the bytes are made
/// again when downloaded, so what the simulator keeps per finished run stays small.
type Files = Arc<Vec<(&'static str, u64, String)>>;

#[derive(Default)]
struct Jobs {
    entries: HashMap<String, Entry>,
    by_key: HashMap<String, String>,
    faults: Vec<(String, Faults)>,
    status_reads: HashMap<String, u32>,
    artifacts: HashMap<String, Files>,
    /// Size and sha256 of each checkpoint adapter reported, by (cluster job, checkpoint id);
    /// the bytes are made again when downloaded (a run's checkpoints would not fit in memory).
    checkpoint_files: HashMap<(String, String), (u64, String)>,
}

pub struct SimSettings {
    pub data_dir: PathBuf,
    /// Cluster seconds per real second.
    pub speed: f64,
    pub api_key: Option<String>,
    pub seed: u64,
    pub rates: Rates,
    /// Signs the webhooks sent to a submission's `webhookUrl`; none: no webhooks.
    pub webhook_secret: Option<String>,
}

struct Sim {
    settings: SimSettings,
    base_url: String,
    jobs: Mutex<Jobs>,
    http: reqwest::Client,
    tokenizer: Arc<dyn Tokenizer + Send + Sync>,
}

#[derive(Serialize)]
struct Problem {
    code: String,
    message: String,
}

fn problem(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(Problem {
            code: code.to_string(),
            message: message.into(),
        }),
    )
        .into_response()
}

/// A running simulator: its base URL; stops when dropped.
pub struct ClusterSim {
    pub url: String,
    task: JoinHandle<()>,
}

impl Drop for ClusterSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ClusterSim {
    pub async fn start(
        settings: SimSettings,
        addr: SocketAddr,
        tokenizer: Arc<dyn Tokenizer + Send + Sync>,
    ) -> anyhow::Result<ClusterSim> {
        let dir = settings.data_dir.join("jobs");
        tokio::fs::create_dir_all(&dir)
            .await
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut jobs = Jobs::default();
        let mut listing = tokio::fs::read_dir(&dir).await?;
        while let Some(file) = listing.next_entry().await? {
            let Ok(bytes) = tokio::fs::read(file.path()).await else {
                continue;
            };
            if let Ok(entry) = serde_json::from_slice::<Entry>(&bytes) {
                jobs.by_key.insert(
                    entry.job.request.idempotency_key.clone(),
                    entry.job.cluster_job_id.clone(),
                );
                jobs.entries.insert(entry.job.cluster_job_id.clone(), entry);
            }
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let sim = Arc::new(Sim {
            settings,
            base_url: url.clone(),
            jobs: Mutex::new(jobs),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()?,
            tokenizer,
        });
        let app = Router::new()
            .route("/v1/jobs", post(submit))
            .route("/v1/jobs/{id}", get(status))
            .route("/v1/jobs/{id}/cancel", post(cancel))
            .route("/v1/jobs/{id}/artifacts/{name}", get(artifact))
            .route(
                "/v1/jobs/{id}/checkpoints/{checkpoint}/adapter_model.safetensors",
                get(checkpoint_adapter),
            )
            .route("/v1/sim/faults/{prefix}", put(faults))
            .route_layer(axum::middleware::from_fn_with_state(
                sim.clone(),
                require_key,
            ))
            .with_state(sim);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        tracing::info!(%url, "GPU cluster simulator");
        Ok(ClusterSim { url, task })
    }
}

impl Sim {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(key) = &self.settings.api_key else {
            return true;
        };
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {key}"))
    }

    fn elapsed(&self, entry: &Entry) -> f64 {
        let real = (Utc::now() - entry.submitted_at).num_milliseconds().max(0) as f64 / 1000.0;
        entry.job.cluster_seconds(real, self.settings.speed)
    }

    async fn persist(&self, entry: &Entry) -> anyhow::Result<()> {
        let dir = self.settings.data_dir.join("jobs");
        let path = dir.join(format!("{}.json", entry.job.cluster_job_id));
        let tmp = dir.join(format!("{}.json.tmp", entry.job.cluster_job_id));
        tokio::fs::write(&tmp, serde_json::to_vec(entry)?).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(())
    }

    /// Downloads the dataset through its URL, counting bytes and tokens as it streams: the
    /// tokens of its messages read as `format` says, or without a format every line's tokens.
    async fn fetch_dataset(
        &self,
        url: &str,
        format: Option<DatasetFormat>,
    ) -> anyhow::Result<(u64, u64)> {
        let mut response = self.http.get(url).send().await?.error_for_status()?;
        let (chunks, inbox) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let tokenizer = self.tokenizer.clone();
        let counting = tokio::task::spawn_blocking(move || match format {
            Some(format) => message_tokens(format, tokenizer.as_ref(), inbox),
            None => Ok(line_tokens(tokenizer.as_ref(), inbox)),
        });
        let mut bytes = 0u64;
        while let Some(chunk) = response.chunk().await? {
            bytes += chunk.len() as u64;
            if chunks.send(chunk.to_vec()).await.is_err() {
                break;
            }
        }
        drop(chunks);
        Ok((bytes, counting.await??))
    }
}

/// The tokens of a file's messages, read by the domain's validator in `format`; a file with no
/// conversation in that format is refused, naming its first error.
fn message_tokens(
    format: DatasetFormat,
    tokenizer: &dyn Tokenizer,
    mut inbox: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> anyhow::Result<u64> {
    let options = ValidatorOptions {
        max_reported: 1,
        sample_size: 0,
        ..ValidatorOptions::default()
    };
    let mut validator = Validator::new(format, tokenizer, options);
    while let Some(chunk) = inbox.blocking_recv() {
        validator.feed(&chunk);
    }
    let report = validator.finish();
    if report.statistics.total_conversations == 0 {
        let first = report.errors.first().map_or(String::new(), |e| {
            format!(" (line {}: {})", e.line, e.message)
        });
        anyhow::bail!(
            "the file holds no conversation in the {} format{first}",
            format.as_str()
        );
    }
    Ok(report.statistics.total_tokens)
}

/// The tokens of every line as it stands (a submission that names no format).
fn line_tokens(tokenizer: &dyn Tokenizer, mut inbox: tokio::sync::mpsc::Receiver<Vec<u8>>) -> u64 {
    let mut splitter = LineSplitter::new(4 * 1024 * 1024);
    let mut tokens = 0u64;
    let mut count = |line: Line| {
        if let Line::Complete { bytes, .. } = line {
            tokens += tokenizer.encode(&String::from_utf8_lossy(&bytes)).len() as u64;
        }
    };
    while let Some(chunk) = inbox.blocking_recv() {
        splitter.feed(&chunk, &mut count);
    }
    splitter.finish(&mut count);
    tokens
}

/// The answer for a job the simulator does not know (or no longer does).
fn no_job(id: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "JOB_NOT_FOUND",
        format!("no job {id}"),
    )
}

/// Every route needs the API key, when one is configured.
async fn require_key(
    State(sim): State<Arc<Sim>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !sim.authorized(request.headers()) {
        return problem(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing or wrong API key",
        );
    }
    next.run(request).await
}

/// FNV-1a of the training job's part of the key (`<jobId>-<attempt>` → `<jobId>`), so every
/// attempt of a job replays the same curve.
fn seed_of(key: &str, base: u64) -> (u64, u32) {
    let (stem, attempt) = match key.rsplit_once('-') {
        Some((stem, n)) if n.parse::<u32>().is_ok() => (stem, n.parse().unwrap_or(1)),
        _ => (key, 1),
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ base;
    for b in stem.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash, attempt)
}

async fn submit(State(sim): State<Arc<Sim>>, Json(request): Json<SubmitRequest>) -> Response {
    if request.idempotency_key.trim().is_empty() || request.total_steps == 0 {
        return problem(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "idempotencyKey and totalSteps are required",
        );
    }
    {
        let jobs = sim.jobs.lock().await;
        if let Some(id) = jobs.by_key.get(&request.idempotency_key) {
            let status = jobs.entries.get(id).map_or(ClusterStatus::Running, |e| {
                e.job.snapshot(sim.elapsed(e), e.cancelled_at).status
            });
            return (
                StatusCode::CREATED,
                Json(SubmitResponse {
                    cluster_job_id: id.clone(),
                    status,
                    created: false,
                }),
            )
                .into_response();
        }
    }
    let (dataset_bytes, dataset_tokens) = match sim
        .fetch_dataset(&request.dataset_url, request.dataset_format)
        .await
    {
        Ok(figures) => figures,
        Err(err) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "DATASET_UNREADABLE",
                format!("cannot read the dataset: {err}"),
            )
        }
    };
    let mut jobs = sim.jobs.lock().await;
    // A concurrent submission of the same key may have won while we downloaded.
    if let Some(id) = jobs.by_key.get(&request.idempotency_key) {
        return (
            StatusCode::CREATED,
            Json(SubmitResponse {
                cluster_job_id: id.clone(),
                status: ClusterStatus::Running,
                created: false,
            }),
        )
            .into_response();
    }
    let faults = jobs
        .faults
        .iter()
        .find(|(prefix, _)| request.idempotency_key.starts_with(prefix))
        .map(|(_, f)| f.clone())
        .unwrap_or_default();
    let (seed, attempt) = seed_of(&request.idempotency_key, sim.settings.seed);
    let id = format!("cj-{}", uuid::Uuid::now_v7().simple());
    let entry = Entry {
        job: SimJob {
            cluster_job_id: id.clone(),
            request,
            seed,
            attempt,
            dataset_bytes,
            dataset_tokens,
            faults,
        },
        submitted_at: Utc::now(),
        cancelled_at: None,
    };
    if let Err(err) = sim.persist(&entry).await {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "STORAGE",
            err.to_string(),
        );
    }
    jobs.by_key
        .insert(entry.job.request.idempotency_key.clone(), id.clone());
    if let (Some(url), Some(secret)) = (
        entry.job.request.webhook_url.clone(),
        sim.settings.webhook_secret.clone(),
    ) {
        tokio::spawn(notify_changes(sim.clone(), id.clone(), url, secret));
    }
    jobs.entries.insert(id.clone(), entry);
    (
        StatusCode::CREATED,
        Json(SubmitResponse {
            cluster_job_id: id,
            status: ClusterStatus::Running,
            created: true,
        }),
    )
        .into_response()
}

#[derive(Deserialize)]
struct StatusQuery {
    cursor: Option<String>,
}

/// `m<lastMetricStep>.c<checkpointsSeen>.l<logLinesSeen>`
fn parse_cursor(cursor: Option<&str>) -> (u64, usize, usize) {
    let mut out = (0, 0, 0);
    for part in cursor.unwrap_or_default().split('.') {
        let (tag, value) = part.split_at(part.len().min(1));
        match (tag, value.parse::<u64>()) {
            ("m", Ok(v)) => out.0 = v,
            ("c", Ok(v)) => out.1 = v as usize,
            ("l", Ok(v)) => out.2 = v as usize,
            _ => {}
        }
    }
    out
}

async fn status(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Response {
    let mut jobs = sim.jobs.lock().await;
    let Some(entry) = jobs.entries.get(&id).cloned() else {
        return no_job(&id);
    };
    let faults = entry.job.faults.clone();
    let reads = jobs.status_reads.entry(id.clone()).or_default();
    *reads += 1;
    let failing = *reads <= faults.http_500s;
    let misreported = *reads <= faults.false_404_reads;
    drop(jobs);
    if faults.slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.slow_ms)).await;
    }
    if failing {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "simulated server error",
        );
    }
    let job = &entry.job;
    let snapshot = job.snapshot(sim.elapsed(&entry), entry.cancelled_at);
    if snapshot.gone || misreported {
        return no_job(&id);
    }
    let (after, checkpoints_seen, logs_seen) = parse_cursor(query.cursor.as_deref());
    let metrics = job.metric_points(after, snapshot.step);
    let checkpoints = job.checkpoints(snapshot.step);
    let seen = checkpoints.len();
    let mut new_checkpoints = Vec::new();
    for mut c in checkpoints.into_iter().skip(checkpoints_seen) {
        let (size_bytes, sha256) = checkpoint_file(&sim, job, &c.id, c.step).await;
        c.adapter = Some(ClusterArtifact {
            name: artifacts::ADAPTER_MODEL.to_string(),
            url: format!(
                "{}/v1/jobs/{id}/checkpoints/{}/{}",
                sim.base_url,
                c.id,
                artifacts::ADAPTER_MODEL
            ),
            size_bytes,
            sha256,
        });
        new_checkpoints.push(c);
    }
    let logs = job.logs(&snapshot);
    let last_metric = metrics.last().map_or(after, |p| p.step);
    let cursor = format!("m{last_metric}.c{seen}.l{}", logs.len());
    let rate = sim
        .settings
        .rates
        .gpu_hour(job.request.gpu_config.instance_type);
    let (_, billed) = compute_charge(
        Decimal::from_f64(snapshot.gpu_seconds).unwrap_or_default(),
        rate,
    );
    let completed = snapshot.status == ClusterStatus::Completed;
    let artifacts = if completed {
        let files = cached_artifacts(&sim, job).await;
        files
            .iter()
            .map(|(name, size, sha256)| ClusterArtifact {
                name: faults
                    .artifact_name
                    .clone()
                    .unwrap_or_else(|| name.to_string()),
                url: format!("{}/v1/jobs/{id}/artifacts/{name}", sim.base_url),
                size_bytes: *size,
                sha256: sha256.clone(),
            })
            .collect()
    } else {
        vec![]
    };
    Json(StatusReport {
        cluster_job_id: id.clone(),
        status: snapshot.status,
        stage: snapshot.stage,
        epoch: snapshot.epoch,
        total_epochs: job.epochs(),
        step: snapshot.step,
        total_steps: job.total_steps(),
        progress: snapshot.progress,
        eta_seconds: snapshot.eta_seconds,
        metrics,
        checkpoints: new_checkpoints,
        logs: logs.into_iter().skip(logs_seen).collect(),
        cursor,
        gpu_seconds: snapshot.gpu_seconds,
        billed_cost: billed.to_string(),
        dataset_bytes: job.dataset_bytes,
        error: snapshot.error,
        artifacts,
        evaluation: completed.then(|| job.evaluation()),
    })
    .into_response()
}

async fn cached_artifacts(sim: &Sim, job: &SimJob) -> Files {
    if let Some(files) = sim.jobs.lock().await.artifacts.get(&job.cluster_job_id) {
        return files.clone();
    }
    let owned = job.clone();
    let files = Arc::new(
        tokio::task::spawn_blocking(move || {
            artifacts::NAMES
                .into_iter()
                .filter_map(|name| {
                    let bytes = artifacts::one(&owned, name)?;
                    Some((name, bytes.len() as u64, artifacts::sha256_hex(&bytes)))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default(),
    );
    sim.jobs
        .lock()
        .await
        .artifacts
        .insert(job.cluster_job_id.clone(), files.clone());
    files
}

/// The size and sha256 of the adapter saved at a checkpoint (made once, then remembered).
async fn checkpoint_file(sim: &Sim, job: &SimJob, checkpoint: &str, step: u64) -> (u64, String) {
    let key = (job.cluster_job_id.clone(), checkpoint.to_string());
    if let Some(file) = sim.jobs.lock().await.checkpoint_files.get(&key) {
        return file.clone();
    }
    let owned = job.clone();
    let file = tokio::task::spawn_blocking(move || {
        let bytes = artifacts::checkpoint_adapter(&owned, step);
        (bytes.len() as u64, artifacts::sha256_hex(&bytes))
    })
    .await
    .unwrap_or_default();
    sim.jobs
        .lock()
        .await
        .checkpoint_files
        .insert(key, file.clone());
    file
}

/// The adapter of a checkpoint the run has reached.
async fn checkpoint_adapter(
    State(sim): State<Arc<Sim>>,
    Path((id, checkpoint)): Path<(String, String)>,
) -> Response {
    let Some(entry) = sim.jobs.lock().await.entries.get(&id).cloned() else {
        return no_job(&id);
    };
    let snapshot = entry.job.snapshot(sim.elapsed(&entry), entry.cancelled_at);
    let Some(reached) = entry
        .job
        .checkpoints(snapshot.step)
        .into_iter()
        .find(|c| c.id == checkpoint)
    else {
        return problem(
            StatusCode::NOT_FOUND,
            "NO_SUCH_CHECKPOINT",
            format!("job {id} has no checkpoint {checkpoint}"),
        );
    };
    let job = entry.job.clone();
    let bytes =
        tokio::task::spawn_blocking(move || artifacts::checkpoint_adapter(&job, reached.step))
            .await
            .unwrap_or_default();
    Response::builder()
        .header("content-type", "application/octet-stream")
        .header("content-length", bytes.len())
        .body(Body::from(bytes))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn cancel(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    let mut jobs = sim.jobs.lock().await;
    let Some(entry) = jobs.entries.get_mut(&id) else {
        return no_job(&id);
    };
    let now = sim.elapsed(entry);
    if entry.cancelled_at.is_none() && !entry.job.snapshot(now, None).status.is_terminal() {
        entry.cancelled_at = Some(now);
        let entry = entry.clone();
        drop(jobs);
        if let Err(err) = sim.persist(&entry).await {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "STORAGE",
                err.to_string(),
            );
        }
    }
    StatusCode::ACCEPTED.into_response()
}

async fn artifact(
    State(sim): State<Arc<Sim>>,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    let Some(entry) = sim.jobs.lock().await.entries.get(&id).cloned() else {
        return no_job(&id);
    };
    if entry
        .job
        .snapshot(sim.elapsed(&entry), entry.cancelled_at)
        .status
        != ClusterStatus::Completed
    {
        return problem(
            StatusCode::NOT_FOUND,
            "NOT_READY",
            "the job has no artifacts yet",
        );
    }
    let (job, wanted) = (entry.job.clone(), name.clone());
    let made = tokio::task::spawn_blocking(move || artifacts::one(&job, &wanted))
        .await
        .ok()
        .flatten();
    match made {
        Some(bytes) => Response::builder()
            .header("content-type", "application/octet-stream")
            .header("content-length", bytes.len())
            .body(Body::from(bytes))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        None => problem(
            StatusCode::NOT_FOUND,
            "NO_SUCH_ARTIFACT",
            format!("no artifact {name}"),
        ),
    }
}

async fn faults(
    State(sim): State<Arc<Sim>>,
    Path(prefix): Path<String>,
    Json(faults): Json<Faults>,
) -> Response {
    let mut jobs = sim.jobs.lock().await;
    jobs.faults.retain(|(p, _)| *p != prefix);
    jobs.faults.push((prefix, faults));
    StatusCode::NO_CONTENT.into_response()
}

/// Sends a signed webhook each time the job's status changes, until it ends (best effort: a
/// failed delivery is not retried; the receiver polls anyway).
async fn notify_changes(sim: Arc<Sim>, id: String, url: String, secret: String) {
    let mut last: Option<ClusterStatus> = None;
    loop {
        let (status, key) = {
            let jobs = sim.jobs.lock().await;
            let Some(entry) = jobs.entries.get(&id) else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let snapshot = entry.job.snapshot(sim.elapsed(entry), entry.cancelled_at);
            if snapshot.gone {
                return;
            }
            (snapshot.status, entry.job.request.idempotency_key.clone())
        };
        if last != Some(status) {
            let event = application::cluster::WebhookEvent {
                cluster_job_id: id.clone(),
                idempotency_key: key,
                status,
                at: Utc::now(),
            };
            let body = serde_json::to_vec(&event).unwrap_or_default();
            let signature =
                application::cluster::sign_webhook(&secret, Utc::now().timestamp(), &body);
            let sent = sim
                .http
                .post(&url)
                .header(application::cluster::WEBHOOK_SIGNATURE_HEADER, signature)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            if let Err(err) = sent {
                tracing::debug!(%url, error = %err, "webhook not delivered");
            }
            last = Some(status);
        }
        if status.is_terminal() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
