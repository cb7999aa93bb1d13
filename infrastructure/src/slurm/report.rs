//! From what Slurm says of a job and what the trainer wrote in its run folder to the cluster
//! contract's `StatusReport`. Pure: the caller reads Slurm and the files.
//!
//! The trainer's files (`trainer/src/brightrun_trainer/reports.py`): `state.json` (the run
//! now) and `events.jsonl` (append-only metric, log and checkpoint events). The cursor is the
//! byte offset in `events.jsonl` up to which events were answered; only complete lines count.

use application::cluster::{
    ClusterArtifact, ClusterCheckpoint, ClusterError, ClusterLogLine, ClusterMetricPoint,
    ClusterStage, ClusterStatus, Evaluation, StatusReport,
};
use domain::job::config::GpuType;
use domain::job::estimate::{compute_charge, Rates};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use serde::Deserialize;

/// What Slurm's controller says of a job (`GET /slurm/v0.0.38/job/{id}`), the fields we use.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SlurmJob {
    pub job_id: u64,
    pub name: String,
    pub job_state: String,
    #[serde(default)]
    pub start_time: i64,
    #[serde(default)]
    pub end_time: i64,
    #[serde(default)]
    pub exit_code: i64,
    #[serde(default)]
    pub restart_cnt: u32,
    #[serde(default)]
    pub time_limit: Option<u64>,
    #[serde(default)]
    pub tres_per_node: String,
    #[serde(default)]
    pub node_count: Option<u64>,
    #[serde(default)]
    pub state_reason: String,
}

impl SlurmJob {
    /// GPUs Slurm allocated: `gres:gpu[:type]:<n>` per node, times the nodes.
    pub fn gpus(&self) -> u64 {
        let per_node = self
            .tres_per_node
            .split(',')
            .filter(|t| t.starts_with("gres:gpu") || t.starts_with("gres/gpu"))
            .filter_map(|t| t.rsplit([':', '=']).next()?.parse::<u64>().ok())
            .sum::<u64>();
        per_node * self.node_count.unwrap_or(1).max(1)
    }

    fn started(&self) -> bool {
        self.start_time > 0 && !matches!(self.job_state.as_str(), "PENDING" | "REQUEUED")
    }

    /// Seconds the job has run in its current (or last) run, by Slurm's own clock.
    pub fn run_seconds(&self, now_unix: i64) -> i64 {
        if !self.started() {
            return 0;
        }
        let end = if is_terminal(&self.job_state) && self.end_time > 0 {
            self.end_time
        } else {
            now_unix
        };
        (end - self.start_time).max(0)
    }
}

pub(crate) fn is_terminal(state: &str) -> bool {
    !matches!(
        state,
        "PENDING"
            | "RUNNING"
            | "CONFIGURING"
            | "COMPLETING"
            | "REQUEUED"
            | "REQUEUE_FED"
            | "REQUEUE_HOLD"
            | "RESIZING"
            | "SUSPENDED"
            | "STAGE_OUT"
            | "SIGNALING"
            | "RESV_DEL_HOLD"
    )
}

/// `state.json`, as the trainer writes it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TrainerState {
    pub status: Option<String>,
    pub stage: Option<String>,
    pub step: u64,
    pub epoch: u32,
    pub total_epochs: u32,
    pub eta_seconds: Option<f64>,
    pub dataset_bytes: u64,
    pub error: Option<ClusterError>,
    pub artifacts: Vec<TrainerArtifact>,
    pub evaluation: Option<TrainerEvaluation>,
    /// Measured before the first step (absent without validation pairs).
    pub initial_validation_loss: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainerArtifact {
    pub name: String,
    pub path: String,
    pub size_bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainerEvaluation {
    pub initial_validation_loss: f64,
    pub final_training_loss: f64,
    pub final_validation_loss: f64,
    pub best_validation_loss: f64,
    pub perplexity: f64,
    /// Base model against adapter (absent without validation pairs).
    #[serde(default)]
    pub comparison: Option<domain::model::BaseComparison>,
    /// The step the adapter is from.
    #[serde(default)]
    pub adapter_step: Option<u64>,
}

/// One line of `events.jsonl`: the trainer writes the cluster contract's own shapes (plus
/// `seq` and fields the contract does not carry, which are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TrainerEvent {
    Metric(ClusterMetricPoint),
    Log(ClusterLogLine),
    Checkpoint(TrainerCheckpoint),
}

/// A checkpoint as the trainer reports it: the contract's shape, with its adapter as a file
/// in the run folder (made a URL in the report).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainerCheckpoint {
    pub id: String,
    pub step: u64,
    pub epoch: u32,
    pub loss: f64,
    #[serde(default)]
    pub adapter: Option<TrainerArtifact>,
}

/// The complete lines of `events` (the bytes of `events.jsonl` after the cursor): the events
/// and how many bytes they took. A line that does not parse is skipped (logged by the caller).
pub fn parse_events(events: &[u8]) -> (Vec<Result<TrainerEvent, String>>, usize) {
    let end = events
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let parsed = events[..end]
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice::<TrainerEvent>(line).map_err(|e| e.to_string()))
        .collect();
    (parsed, end)
}

/// Where the job stands, from Slurm's state (the truth for "is it running") and the trainer's
/// (the truth for "how did it end"). A trainer that wrote its end while Slurm still runs it
/// is reported running until Slurm agrees, so the GPU time is whole when it is billed.
pub fn outcome(job: &SlurmJob, trainer: &TrainerState) -> (ClusterStatus, Option<ClusterError>) {
    let error = |code: &str, message: String, retryable: bool| {
        Some(ClusterError {
            code: code.into(),
            message,
            retryable,
        })
    };
    let trainer_status = trainer.status.as_deref();
    match job.job_state.as_str() {
        "PENDING" | "REQUEUED" | "REQUEUE_FED" | "REQUEUE_HOLD" | "CONFIGURING" => {
            (ClusterStatus::Queued, None)
        }
        state if !is_terminal(state) => (ClusterStatus::Running, None),
        "COMPLETED" => match trainer_status {
            Some("completed") => (ClusterStatus::Completed, None),
            Some("cancelled") => (ClusterStatus::Cancelled, None),
            Some("failed") => (ClusterStatus::Failed, trainer.error.clone()),
            _ => (
                ClusterStatus::Failed,
                error(
                    "TRAINER_EXITED",
                    "the trainer exited without finishing the run".into(),
                    true,
                ),
            ),
        },
        "CANCELLED" => (ClusterStatus::Cancelled, None),
        "TIMEOUT" => (
            ClusterStatus::Failed,
            error(
                "TIME_LIMIT",
                format!(
                    "the run passed its time limit of {} minutes (twice the longest estimate) and was stopped",
                    job.time_limit.unwrap_or(0)
                ),
                false,
            ),
        ),
        "OUT_OF_MEMORY" => (
            ClusterStatus::Failed,
            error(
                "OUT_OF_MEMORY",
                "the node ran out of memory; use a smaller batch size or more GPU memory".into(),
                false,
            ),
        ),
        "NODE_FAIL" | "BOOT_FAIL" => (
            ClusterStatus::Failed,
            error(
                "NODE_FAILURE",
                format!("the node running the job failed ({})", job.job_state),
                true,
            ),
        ),
        "PREEMPTED" => (
            ClusterStatus::Failed,
            error(
                "PREEMPTED",
                "the job was preempted by the scheduler".into(),
                true,
            ),
        ),
        // FAILED, DEADLINE and anything newer.
        state => match (trainer_status, &trainer.error) {
            (Some("failed"), Some(e)) => (ClusterStatus::Failed, Some(e.clone())),
            _ => (
                ClusterStatus::Failed,
                error(
                    "TRAINER_CRASHED",
                    format!(
                        "the trainer ended with Slurm state {state} (exit code {}) before reporting why",
                        job.exit_code
                    ),
                    true,
                ),
            ),
        },
    }
}

fn stage_of(job: &SlurmJob, trainer: &TrainerState, status: ClusterStatus) -> ClusterStage {
    if status == ClusterStatus::Completed {
        return ClusterStage::Completed;
    }
    if !job.started() {
        return ClusterStage::Initializing;
    }
    match trainer.stage.as_deref() {
        Some("training") => ClusterStage::Training,
        Some("validating") => ClusterStage::Validating,
        Some("saving") | Some("completed") => ClusterStage::Saving,
        _ => ClusterStage::Initializing,
    }
}

pub struct ReportInput<'a> {
    pub job: &'a SlurmJob,
    pub trainer: &'a TrainerState,
    pub events: Vec<TrainerEvent>,
    pub next_cursor: u64,
    pub total_steps: u64,
    pub gpu_type: GpuType,
    pub rates: &'a Rates,
    pub now_unix: i64,
    /// `file://` URL of an artifact at `path`.
    pub artifact_url: &'a dyn Fn(&str) -> String,
}

pub fn status_report(input: ReportInput<'_>) -> StatusReport {
    let ReportInput {
        job,
        trainer,
        events,
        next_cursor,
        total_steps,
        gpu_type,
        rates,
        now_unix,
        artifact_url,
    } = input;
    let (status, error) = outcome(job, trainer);
    let stage = stage_of(job, trainer, status);
    let gpu_seconds = (job.run_seconds(now_unix) as u64 * job.gpus()) as f64;
    let (_, billed) = compute_charge(
        Decimal::from_f64(gpu_seconds).unwrap_or_default(),
        rates.gpu_hour(gpu_type),
    );
    let mut metrics = Vec::new();
    let mut checkpoints = Vec::new();
    let mut logs = Vec::new();
    for event in events {
        match event {
            TrainerEvent::Metric(point) => metrics.push(point),
            TrainerEvent::Log(line) => logs.push(line),
            TrainerEvent::Checkpoint(c) => checkpoints.push(ClusterCheckpoint {
                id: c.id,
                step: c.step,
                epoch: c.epoch,
                loss: c.loss,
                adapter: c.adapter.map(|a| ClusterArtifact {
                    url: artifact_url(&a.path),
                    name: a.name,
                    size_bytes: a.size_bytes,
                    sha256: a.sha256,
                }),
            }),
        }
    }
    let completed = status == ClusterStatus::Completed;
    let artifacts = if completed {
        trainer
            .artifacts
            .iter()
            .map(|a| ClusterArtifact {
                name: a.name.clone(),
                url: artifact_url(&a.path),
                size_bytes: a.size_bytes,
                sha256: a.sha256.clone(),
            })
            .collect()
    } else {
        vec![]
    };
    let evaluation = trainer
        .evaluation
        .as_ref()
        .filter(|_| completed)
        .map(|e| Evaluation {
            initial_validation_loss: e.initial_validation_loss,
            final_training_loss: e.final_training_loss,
            final_validation_loss: e.final_validation_loss,
            best_validation_loss: e.best_validation_loss,
            perplexity: e.perplexity,
            validation_scores: None,
            comparison: e.comparison,
            adapter_step: e.adapter_step,
        });
    let step = trainer.step.min(total_steps);
    StatusReport {
        cluster_job_id: job.job_id.to_string(),
        status,
        stage,
        epoch: trainer.epoch,
        total_epochs: trainer.total_epochs,
        step,
        total_steps,
        progress: if completed {
            100.0
        } else {
            (step as f64 / total_steps.max(1) as f64 * 100.0).min(100.0)
        },
        eta_seconds: trainer.eta_seconds.map(|s| s.max(0.0) as u64),
        metrics,
        checkpoints,
        logs,
        cursor: next_cursor.to_string(),
        gpu_seconds,
        billed_cost: billed.to_string(),
        dataset_bytes: trainer.dataset_bytes,
        error: if status == ClusterStatus::Failed {
            error
        } else {
            None
        },
        artifacts,
        evaluation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: &str) -> SlurmJob {
        SlurmJob {
            job_id: 7,
            name: "brightrun-j-1".into(),
            job_state: state.into(),
            start_time: 1_000,
            end_time: 1_090,
            exit_code: 0,
            restart_cnt: 0,
            time_limit: Some(30),
            tres_per_node: "gres:gpu:a100_40gb:2".into(),
            node_count: Some(1),
            state_reason: "None".into(),
        }
    }

    fn trainer(status: &str) -> TrainerState {
        TrainerState {
            status: Some(status.into()),
            ..TrainerState::default()
        }
    }

    #[test]
    fn gpu_time_is_slurms_run_time_times_its_gpus() {
        let running = job("RUNNING");
        assert_eq!(running.gpus(), 2);
        assert_eq!(running.run_seconds(1_030), 30);
        let done = job("COMPLETED");
        assert_eq!(
            done.run_seconds(5_000),
            90,
            "a finished job stops at its end time"
        );
        let mut pending = job("PENDING");
        pending.start_time = 0;
        assert_eq!(pending.run_seconds(5_000), 0);
        let mut generic = job("RUNNING");
        generic.tres_per_node = "gres:gpu:4".into();
        generic.node_count = Some(2);
        assert_eq!(generic.gpus(), 8);
    }

    #[test]
    fn a_finished_trainer_is_running_until_slurm_says_it_ended() {
        assert_eq!(
            outcome(&job("RUNNING"), &trainer("completed")).0,
            ClusterStatus::Running
        );
        assert_eq!(
            outcome(&job("COMPLETING"), &trainer("completed")).0,
            ClusterStatus::Running
        );
        assert_eq!(
            outcome(&job("COMPLETED"), &trainer("completed")),
            (ClusterStatus::Completed, None)
        );
        assert_eq!(
            outcome(&job("PENDING"), &TrainerState::default()).0,
            ClusterStatus::Queued
        );
        // Requeued after a preemption: queued again, the trainer resumes when it starts.
        assert_eq!(
            outcome(&job("REQUEUED"), &trainer("running")).0,
            ClusterStatus::Queued
        );
    }

    #[test]
    fn how_a_run_ended_comes_from_the_trainer_when_it_said_so() {
        let mut oom = trainer("failed");
        oom.error = Some(ClusterError {
            code: "OUT_OF_MEMORY".into(),
            message: "out of memory".into(),
            retryable: false,
        });
        let (status, error) = outcome(&job("FAILED"), &oom);
        assert_eq!(status, ClusterStatus::Failed);
        assert_eq!(
            error.map(|e| (e.code, e.retryable)),
            Some(("OUT_OF_MEMORY".into(), false))
        );
        // Killed before it could say anything: worth retrying.
        let (_, error) = outcome(&job("FAILED"), &trainer("running"));
        assert_eq!(
            error.map(|e| (e.code, e.retryable)),
            Some(("TRAINER_CRASHED".into(), true))
        );
        let (_, error) = outcome(&job("TIMEOUT"), &trainer("running"));
        let error = error.expect("an error");
        assert_eq!(
            (error.code.as_str(), error.retryable),
            ("TIME_LIMIT", false)
        );
        assert!(error.message.contains("30 minutes"));
        let (_, error) = outcome(&job("NODE_FAIL"), &trainer("running"));
        assert_eq!(error.map(|e| e.retryable), Some(true));
        assert_eq!(
            outcome(&job("CANCELLED"), &trainer("cancelled")),
            (ClusterStatus::Cancelled, None)
        );
        let (status, error) = outcome(&job("COMPLETED"), &trainer("running"));
        assert_eq!(status, ClusterStatus::Failed);
        assert_eq!(error.map(|e| e.code), Some("TRAINER_EXITED".into()));
    }

    #[test]
    fn only_complete_event_lines_are_read() {
        let bytes = b"{\"seq\":1,\"kind\":\"log\",\"index\":0,\"level\":\"info\",\"message\":\"hi\",\"atSeconds\":0.5}\n{\"seq\":2,\"kind\":\"metric\",\"step\":1,\"epoch\":1,\"trainingLoss\":2.5,\"learningRate\":0.001,\"gradientNorm\":1.0,\"throughput\":100.0,\"gpuUtilization\":0.0,\"memoryMb\":10.0,\"atSeconds\":1.0}\n{\"seq\":3,\"kind\":\"chec";
        let (events, used) = parse_events(bytes);
        assert_eq!(events.len(), 2);
        assert_eq!(used, bytes.iter().rposition(|b| *b == b'\n').unwrap() + 1);
        assert!(matches!(
            &events[1],
            Ok(TrainerEvent::Metric(p)) if p.step == 1 && p.training_loss == 2.5
        ));
    }

    #[test]
    fn a_completed_report_carries_artifacts_evaluation_and_the_bill() {
        let mut t = trainer("completed");
        t.stage = Some("completed".into());
        t.step = 4;
        t.epoch = 1;
        t.total_epochs = 1;
        t.dataset_bytes = 7374;
        t.artifacts = vec![TrainerArtifact {
            name: "adapter_config.json".into(),
            path: "/runs/k/adapter/adapter_config.json".into(),
            size_bytes: 10,
            sha256: "ab".into(),
        }];
        t.evaluation = Some(TrainerEvaluation {
            initial_validation_loss: 3.7,
            final_training_loss: 2.7,
            final_validation_loss: 3.0,
            best_validation_loss: 3.0,
            perplexity: 20.1,
            adapter_step: Some(40),
            comparison: Some(domain::model::BaseComparison {
                validation_pairs: 3,
                generated_pairs: 3,
                base: domain::model::ModelScores {
                    loss: 3.5,
                    perplexity: 33.1,
                    bleu: 2.0,
                    rouge_l: 15.0,
                },
                adapter: domain::model::ModelScores {
                    loss: 3.0,
                    perplexity: 20.1,
                    bleu: 9.5,
                    rouge_l: 31.0,
                },
            }),
        });
        let rates = Rates::default();
        let report = status_report(ReportInput {
            job: &job("COMPLETED"),
            trainer: &t,
            events: vec![],
            next_cursor: 120,
            total_steps: 4,
            gpu_type: GpuType::A100_40gb,
            rates: &rates,
            now_unix: 9_999,
            artifact_url: &|p| format!("file://{p}"),
        });
        assert_eq!(report.status, ClusterStatus::Completed);
        assert_eq!(report.stage, ClusterStage::Completed);
        assert_eq!(report.progress, 100.0);
        assert_eq!(report.cursor, "120");
        // 90 s x 2 GPUs at $2.50 per GPU-hour.
        assert_eq!(report.gpu_seconds, 180.0);
        assert_eq!(
            report.billed_cost.parse::<Decimal>().ok(),
            Some(Decimal::new(125, 3))
        );
        assert_eq!(
            report.artifacts[0].url,
            "file:///runs/k/adapter/adapter_config.json"
        );
        let evaluation = report.evaluation.expect("evaluation");
        assert_eq!(evaluation.final_validation_loss, 3.0);
        // The trainer's comparison is passed on; no simulated scores are added.
        assert_eq!(evaluation.comparison.map(|c| c.adapter.bleu), Some(9.5));
        assert_eq!(evaluation.validation_scores, None);
    }
}
