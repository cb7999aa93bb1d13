//! A small client of Slurm's REST daemon (`slurmrestd`, OpenAPI plugin v0.0.38), JWT auth:
//! each request carries `X-SLURM-USER-NAME` and `X-SLURM-USER-TOKEN`.

use std::collections::BTreeMap;
use std::time::Duration;

use application::cluster::ClusterCallError;
use serde::{Deserialize, Serialize};

use super::report::SlurmJob;

/// Slurm's "Invalid job id specified".
const ESLURM_INVALID_JOB_ID: i64 = 2017;

#[derive(Clone)]
pub struct SlurmRest {
    http: reqwest::Client,
    base: String,
    version: String,
    user: String,
    token: String,
}

/// `POST .../job/submit`: a batch script and its job description.
#[derive(Debug, Clone, Serialize)]
pub struct JobSubmission {
    pub script: String,
    pub job: JobDescription,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobDescription {
    pub name: String,
    pub comment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gres: Option<String>,
    /// Minutes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<u64>,
    pub current_working_directory: String,
    pub standard_output: String,
    pub standard_error: String,
    pub environment: BTreeMap<String, String>,
    /// Requeued (not failed) when the node fails or the job is preempted.
    pub requeue: bool,
    pub cpus_per_task: u32,
}

#[derive(Debug, Deserialize)]
struct SlurmError {
    #[serde(default)]
    error_number: Option<i64>,
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    errors: Vec<SlurmError>,
    #[serde(default)]
    jobs: Vec<SlurmJob>,
    #[serde(default)]
    job_id: Option<u64>,
}

impl SlurmRest {
    pub fn new(base: &str, version: &str, user: &str, token: &str) -> SlurmRest {
        SlurmRest {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_string(),
            version: version.to_string(),
            user: user.to_string(),
            token: token.to_string(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/slurm/{}/{path}", self.base, self.version)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, ClusterCallError> {
        let response = request
            .header("X-SLURM-USER-NAME", &self.user)
            .header("X-SLURM-USER-TOKEN", &self.token)
            .send()
            .await
            .map_err(|e| ClusterCallError::Unavailable(format!("slurmrestd: {e}")))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(ClusterCallError::Rejected {
                status: status.as_u16(),
                message: "slurmrestd refused our token (SLURM_USER / SLURM_JWT)".into(),
            });
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| ClusterCallError::Unavailable(format!("slurmrestd: {e}")))?;
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            if status.is_server_error() {
                ClusterCallError::Unavailable(format!("slurmrestd answered {status}"))
            } else {
                ClusterCallError::Rejected {
                    status: status.as_u16(),
                    message: format!("slurmrestd's answer did not parse: {e}"),
                }
            }
        })?;
        Ok(answer)
    }

    fn refused(errors: &[SlurmError], status: u16) -> ClusterCallError {
        let message = errors
            .iter()
            .map(|e| {
                [e.error.as_deref(), e.description.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ")
            })
            .collect::<Vec<_>>()
            .join("; ");
        ClusterCallError::Rejected { status, message }
    }

    /// Submits a batch job; its Slurm job id.
    pub async fn submit(&self, submission: &JobSubmission) -> Result<u64, ClusterCallError> {
        let answer = self
            .send(self.http.post(self.url("job/submit")).json(submission))
            .await?;
        match answer.job_id {
            Some(id) if answer.errors.is_empty() => Ok(id),
            _ => Err(Self::refused(&answer.errors, 400)),
        }
    }

    /// The job, or `None` when the controller does not know it (never submitted, or
    /// forgotten after `MinJobAge`).
    pub async fn job(&self, id: u64) -> Result<Option<SlurmJob>, ClusterCallError> {
        let answer = self
            .send(self.http.get(self.url(&format!("job/{id}"))))
            .await?;
        if answer.errors.iter().any(|e| {
            e.error_number == Some(ESLURM_INVALID_JOB_ID)
                || e.error_code == Some(ESLURM_INVALID_JOB_ID)
        }) {
            return Ok(None);
        }
        if !answer.errors.is_empty() {
            return Err(ClusterCallError::Unavailable(format!(
                "{:?}",
                Self::refused(&answer.errors, 500)
            )));
        }
        Ok(answer.jobs.into_iter().find(|j| j.job_id == id))
    }

    /// Every job the controller knows.
    pub async fn jobs(&self) -> Result<Vec<SlurmJob>, ClusterCallError> {
        let answer = self.send(self.http.get(self.url("jobs"))).await?;
        if !answer.errors.is_empty() {
            return Err(ClusterCallError::Unavailable(format!(
                "{:?}",
                Self::refused(&answer.errors, 500)
            )));
        }
        Ok(answer.jobs)
    }

    /// Cancels the job (SIGTERM, then SIGKILL after Slurm's `KillWait`).
    pub async fn cancel(&self, id: u64) -> Result<(), ClusterCallError> {
        let answer = self
            .send(self.http.delete(self.url(&format!("job/{id}"))))
            .await?;
        if answer.errors.is_empty() {
            return Ok(());
        }
        if answer.errors.iter().any(|e| {
            e.error_number == Some(ESLURM_INVALID_JOB_ID)
                || e.error_code == Some(ESLURM_INVALID_JOB_ID)
        }) {
            return Err(ClusterCallError::UnknownJob(id.to_string()));
        }
        // "Job/step already completing or completed": nothing left to stop.
        if answer.errors.iter().any(|e| {
            e.error
                .as_deref()
                .is_some_and(|m| m.contains("already completing or completed"))
        }) {
            return Ok(());
        }
        Err(Self::refused(&answer.errors, 409))
    }
}
