//! The HTTP client of the GPU cluster contract (`openapi/cluster.yaml`), behind the
//! application's `GpuCluster` port: a timeout per call, retries with exponential backoff on
//! 5xx, timeouts and connection errors, and a clear error on 4xx (never retried). The API
//! key goes to the cluster's own origin only: a report naming a file elsewhere is refused
//! before anything is sent. Every answer is read to a cap (a report to
//! `MAX_ANSWER_BYTES`, a file to the size its report declared), never whole on trust.

use std::time::Duration;

use application::cluster::{
    ClusterCallError, GpuCluster, StatusReport, SubmitRequest, SubmitResponse,
};
use async_trait::async_trait;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub timeout: Duration,
    /// Attempts per call (the first one included).
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            attempts: 4,
            first_backoff: Duration::from_millis(200),
        }
    }
}

/// The most memory a download reserves up front for the size the cluster declares.
const PREALLOCATE: u64 = 256 * 1024 * 1024;

/// The largest JSON answer (a status report with its logs) read from the cluster.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Connections to the cluster kept open between calls.
const IDLE_CONNECTIONS: usize = 16;

#[derive(Clone)]
pub struct HttpCluster {
    http: reqwest::Client,
    /// Artifacts and checkpoints (megabytes): a connection of their own each time, because
    /// hyper keeps a connection's read buffer at the size a large body grew it to (up to
    /// 400 KiB) while the pool keeps the connection; one kept per running job made `serve`'s
    /// memory grow with the jobs in the load run.
    downloads: reqwest::Client,
    base: String,
    /// Where `base` lies: the only origin the API key is sent to.
    origin: Option<reqwest::Url>,
    api_key: Option<String>,
    options: ClientOptions,
}

impl HttpCluster {
    pub fn new(base: &str, api_key: Option<String>, options: ClientOptions) -> HttpCluster {
        HttpCluster {
            http: reqwest::Client::builder()
                .timeout(options.timeout)
                .pool_max_idle_per_host(IDLE_CONNECTIONS)
                .build()
                .unwrap_or_default(),
            downloads: reqwest::Client::builder()
                .timeout(options.timeout)
                .pool_max_idle_per_host(0)
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_string(),
            origin: reqwest::Url::parse(base).ok(),
            api_key,
            options,
        }
    }

    /// Sends the request built by `build` until it succeeds, a 4xx answers, or the attempts
    /// run out. `job` names the job for a 404.
    async fn call<T: DeserializeOwned>(
        &self,
        job: Option<&str>,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<T, ClusterCallError> {
        let response = self.send(job, build).await?;
        let status = response.status().as_u16();
        let body = read_capped(response, MAX_ANSWER_BYTES as u64)
            .await?
            .map_err(|()| ClusterCallError::Rejected {
                status,
                message: format!("an answer longer than {MAX_ANSWER_BYTES} bytes"),
            })?;
        serde_json::from_slice(&body)
            .map_err(|e| ClusterCallError::Unavailable(format!("unreadable answer: {e}")))
    }

    /// Whether `url` lies on the cluster's own origin (scheme, host and port).
    fn is_own(&self, url: &reqwest::Url) -> bool {
        self.origin
            .as_ref()
            .is_some_and(|own| own.origin() == url.origin())
    }

    async fn send(
        &self,
        job: Option<&str>,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClusterCallError> {
        self.send_with(&self.http, job, build).await
    }

    async fn send_with(
        &self,
        http: &reqwest::Client,
        job: Option<&str>,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClusterCallError> {
        let mut backoff = self.options.first_backoff;
        let mut last = String::new();
        for attempt in 1..=self.options.attempts.max(1) {
            let mut request = build(http);
            if let Some(key) = &self.api_key {
                request = request.bearer_auth(key);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        return Ok(response);
                    }
                    let body = response.text().await.unwrap_or_default();
                    if status.as_u16() == 404 {
                        if let Some(job) = job {
                            return Err(ClusterCallError::UnknownJob(job.to_string()));
                        }
                    }
                    if status.is_client_error() {
                        return Err(ClusterCallError::Rejected {
                            status: status.as_u16(),
                            message: body,
                        });
                    }
                    last = format!("{status}: {body}");
                }
                Err(err) => last = err.to_string(),
            }
            metrics::counter!("brightrun_cluster_call_errors_total").increment(1);
            if attempt < self.options.attempts {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(ClusterCallError::Unavailable(last))
    }
}

#[async_trait]
impl GpuCluster for HttpCluster {
    async fn submit(&self, request: &SubmitRequest) -> Result<SubmitResponse, ClusterCallError> {
        let url = format!("{}/v1/jobs", self.base);
        self.call(None, |http| http.post(&url).json(request)).await
    }

    async fn status(
        &self,
        cluster_job_id: &str,
        cursor: Option<&str>,
    ) -> Result<StatusReport, ClusterCallError> {
        let url = format!("{}/v1/jobs/{cluster_job_id}", self.base);
        self.call(Some(cluster_job_id), |http| {
            let request = http.get(&url);
            match cursor {
                Some(c) => request.query(&[("cursor", c)]),
                None => request,
            }
        })
        .await
    }

    async fn download(&self, url: &str, size_bytes: u64) -> Result<Vec<u8>, ClusterCallError> {
        let refused = |message: String| ClusterCallError::Rejected {
            status: 400,
            message,
        };
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| refused(format!("the cluster named an unusable URL {url:?}: {e}")))?;
        if !self.is_own(&parsed) {
            return Err(refused(format!(
                "the cluster named a file at {}, not on the cluster ({}): not fetched, and its key not sent",
                parsed.origin().ascii_serialization(),
                self.base
            )));
        }
        let response = self
            .send_with(&self.downloads, None, |http| http.get(parsed.clone()))
            .await?;
        read_capped(response, size_bytes).await?.map_err(|()| {
            refused(format!(
                "{url} is longer than the {size_bytes} bytes reported"
            ))
        })
    }

    async fn cancel(&self, cluster_job_id: &str) -> Result<(), ClusterCallError> {
        let url = format!("{}/v1/jobs/{cluster_job_id}/cancel", self.base);
        self.send(Some(cluster_job_id), |http| http.post(&url))
            .await
            .map(|_| ())
    }
}

/// The body of `response`, or `Err(())` once it proves longer than `cap` (by its declared
/// length, before anything is read, or as it arrives). The declared length is reserved at
/// once (at most `PREALLOCATE`): collected chunk by chunk, a body held its chunks and their
/// copy together, twice the file.
async fn read_capped(
    mut response: reqwest::Response,
    cap: u64,
) -> Result<Result<Vec<u8>, ()>, ClusterCallError> {
    let declared = response.content_length().unwrap_or(0);
    if declared > cap {
        return Ok(Err(()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(declared.min(PREALLOCATE)).unwrap_or(0));
    let interrupted =
        |e: reqwest::Error| ClusterCallError::Unavailable(format!("download interrupted: {e}"));
    while let Some(chunk) = response.chunk().await.map_err(interrupted)? {
        if (bytes.len() + chunk.len()) as u64 > cap {
            return Ok(Err(()));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Ok(bytes))
}
