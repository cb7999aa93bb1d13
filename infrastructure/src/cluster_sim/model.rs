//! The simulated training run as a pure function of cluster time: given what was submitted,
//! the seed and the seconds elapsed (already multiplied by the speed factor), where the job
//! stands, its loss curve, checkpoints and logs. Nothing runs in the background, so the same
//! seed always tells the same story, and a restart of the simulator loses nothing.

use application::cluster::{
    ClusterCheckpoint, ClusterError, ClusterLogLine, ClusterMetricPoint, ClusterStage,
    ClusterStatus, Evaluation, SubmitRequest,
};
use domain::job::config::{BaseModel, Scheduler};
use domain::job::estimate::{INITIALISATION_SECONDS, SAVING_SECONDS};
use domain::model::ValidationScores;
use serde::{Deserialize, Serialize};

/// The shortest training step, seconds of cluster time.
pub const MIN_STEP_SECONDS: f64 = 1.0;

/// Faults a test (or a demo) injects into a job, keyed by idempotency-key prefix.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    /// The job fails with OUT_OF_MEMORY (retryable) when it reaches this step.
    #[serde(default)]
    pub oom_at_step: Option<u64>,
    /// The job is preempted (PREEMPTED, retryable) at this step, on its first attempt only.
    #[serde(default)]
    pub preempt_at_step: Option<u64>,
    /// The first N status reads answer HTTP 500.
    #[serde(default)]
    pub http_500s: u32,
    /// Every answer is delayed this long.
    #[serde(default)]
    pub slow_ms: u64,
    /// The cluster forgets the job once it reaches this step (404 from then on).
    #[serde(default)]
    pub disappear_at_step: Option<u64>,
    /// The first N status reads answer 404 although the job runs on (a cluster that
    /// misreports, e.g. during a failover): our side believes it lost, reconciliation finds it.
    #[serde(default)]
    pub false_404_reads: u32,
    /// Metric points every this many steps (1: every step) instead of about 500 a run.
    #[serde(default)]
    pub report_every: Option<u64>,
    /// Every log line and error message carries NUL, ESC and BEL (a trainer printing raw
    /// terminal output): what the cluster says is not ours to trust as text.
    #[serde(default)]
    pub control_characters: bool,
    /// The completed report names its artifacts this (a cluster naming its files as it
    /// likes, a path even); where they are downloaded from does not change.
    #[serde(default)]
    pub artifact_name: Option<String>,
    /// From a step on, the job's clock runs at another speed: a long history made quickly,
    /// then a run to watch live (the console's benchmark).
    #[serde(default)]
    pub pace: Option<Pace>,
}

/// `speed` cluster seconds per real second once the job reaches `from_step`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pace {
    pub from_step: u64,
    pub speed: f64,
}

/// A submitted job as the simulator keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimJob {
    pub cluster_job_id: String,
    pub request: SubmitRequest,
    pub seed: u64,
    /// 1 for the first submission of a training job, 2 for its first retry...
    pub attempt: u32,
    pub dataset_bytes: u64,
    pub dataset_tokens: u64,
    pub faults: Faults,
}

/// Deterministic uniform in [0, 1) for (seed, salt, i).
pub fn unit(seed: u64, salt: u64, i: u64) -> f64 {
    let mut z =
        seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Where a job is at some cluster time.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub status: ClusterStatus,
    pub stage: ClusterStage,
    pub step: u64,
    pub epoch: u32,
    pub progress: f64,
    pub eta_seconds: Option<u64>,
    /// Seconds of running so far (cluster time), and GPU-seconds (× numGPUs).
    pub running_seconds: f64,
    pub gpu_seconds: f64,
    pub error: Option<ClusterError>,
    /// Set once the cluster no longer knows the job.
    pub gone: bool,
}

impl SimJob {
    fn h(&self) -> &domain::job::config::Hyperparameters {
        &self.request.hyperparameters
    }

    pub fn total_steps(&self) -> u64 {
        self.request.total_steps.max(1)
    }

    pub fn epochs(&self) -> u32 {
        self.h().num_epochs.max(1)
    }

    fn steps_per_epoch(&self) -> u64 {
        self.total_steps().div_ceil(u64::from(self.epochs())).max(1)
    }

    /// Cluster seconds per step: the training tokens over the GPUs' throughput, at least
    /// `MIN_STEP_SECONDS` (a forward and backward pass never takes less).
    pub fn step_seconds(&self) -> f64 {
        let throughput = BaseModel::find(&self.request.base_model)
            .and_then(|m| m.throughput(self.request.gpu_config))
            .unwrap_or(1000.0);
        let train_tokens = self.dataset_tokens as f64 * (1.0 - self.request.validation_split_ratio);
        let seconds = train_tokens * f64::from(self.epochs()) / throughput;
        (seconds / self.total_steps() as f64).max(MIN_STEP_SECONDS)
    }

    fn training_seconds(&self) -> f64 {
        self.step_seconds() * self.total_steps() as f64
    }

    /// Cluster seconds from submission to completion (without faults).
    pub fn duration(&self) -> f64 {
        INITIALISATION_SECONDS as f64 + self.training_seconds() + SAVING_SECONDS as f64
    }

    /// A message as the faults have the cluster say it.
    fn said(&self, message: String) -> String {
        if self.faults.control_characters {
            format!("{message}\u{0}\u{1b}[0m\u{7}")
        } else {
            message
        }
    }

    /// The step a failure fault stops the job at, with its error.
    fn failure(&self) -> Option<(u64, ClusterError)> {
        let oom = self.faults.oom_at_step.map(|s| {
            (
                s,
                ClusterError {
                    code: "OUT_OF_MEMORY".into(),
                    message: self.said(format!("CUDA out of memory at step {s}")),
                    retryable: true,
                },
            )
        });
        let preempt = self
            .faults
            .preempt_at_step
            .filter(|_| self.attempt <= 1)
            .map(|s| {
                (
                    s,
                    ClusterError {
                        code: "PREEMPTED".into(),
                        message: self.said(format!("the node was preempted at step {s}")),
                        retryable: true,
                    },
                )
            });
        [oom, preempt]
            .into_iter()
            .flatten()
            .filter(|(s, _)| *s <= self.total_steps())
            .min_by_key(|(s, _)| *s)
    }

    pub fn epoch_of(&self, step: u64) -> u32 {
        if step == 0 {
            return 1;
        }
        (((step - 1) / self.steps_per_epoch()) + 1).min(u64::from(self.epochs())) as u32
    }

    /// The job at `elapsed` cluster seconds since submission, cancelled at `cancelled_at`.
    pub fn snapshot(&self, elapsed: f64, cancelled_at: Option<f64>) -> Snapshot {
        let init = INITIALISATION_SECONDS as f64;
        let gpus = f64::from(self.request.gpu_config.num_gpus);
        let stop = cancelled_at.map_or(elapsed, |c| c.min(elapsed));
        let total = self.total_steps();
        let step_at = |t: f64| -> u64 {
            if t <= init {
                0
            } else {
                (((t - init) / self.step_seconds()).floor() as u64).min(total)
            }
        };
        let mut step = step_at(stop);
        let mut status = ClusterStatus::Running;
        let mut error = None;
        let mut end = stop;
        if let Some((fail_step, err)) = self.failure() {
            let fail_time = init + fail_step as f64 * self.step_seconds();
            if stop >= fail_time {
                step = fail_step;
                status = ClusterStatus::Failed;
                error = Some(err);
                end = fail_time;
            }
        }
        let done_at = self.duration();
        if status == ClusterStatus::Running && stop >= done_at {
            status = ClusterStatus::Completed;
            end = done_at;
        }
        if status == ClusterStatus::Running && cancelled_at.is_some_and(|c| c <= elapsed) {
            status = ClusterStatus::Cancelled;
        }
        let training_end = init + self.training_seconds();
        let stage = match status {
            ClusterStatus::Completed => ClusterStage::Completed,
            _ if end <= init => ClusterStage::Initializing,
            _ if end >= training_end => ClusterStage::Saving,
            _ => {
                // Validation runs over the last 2% of each epoch.
                let per_epoch = self.steps_per_epoch() as f64 * self.step_seconds();
                let into_epoch = (end - init) % per_epoch;
                if into_epoch >= per_epoch * 0.98 {
                    ClusterStage::Validating
                } else {
                    ClusterStage::Training
                }
            }
        };
        let running_seconds = (end - init).max(0.0);
        let progress = match status {
            ClusterStatus::Completed => 100.0,
            _ => (step as f64 / total as f64 * 100.0).min(99.9),
        };
        let eta_seconds =
            (status == ClusterStatus::Running).then(|| (done_at - end).max(0.0).ceil() as u64);
        let gone = self
            .faults
            .disappear_at_step
            .is_some_and(|s| step >= s && status == ClusterStatus::Running);
        Snapshot {
            status,
            stage,
            step,
            epoch: self.epoch_of(step),
            progress,
            eta_seconds,
            running_seconds,
            gpu_seconds: running_seconds * gpus,
            error,
            gone,
        }
    }

    /// Learning rate at `step`: linear warm-up, then the scheduler.
    pub fn learning_rate(&self, step: u64) -> f64 {
        let h = self.h();
        let peak = h.learning_rate;
        let warmup = u64::from(h.warmup_steps).min(self.total_steps() / 2);
        if step < warmup {
            return peak * (step as f64 + 1.0) / warmup as f64;
        }
        let span = (self.total_steps() - warmup).max(1) as f64;
        let frac = ((step - warmup) as f64 / span).min(1.0);
        match h.scheduler {
            Scheduler::Constant => peak,
            Scheduler::Linear => peak * (1.0 - frac),
            Scheduler::Cosine => peak * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos()),
        }
    }

    /// Whether this run overfits late: high learning rate or many epochs.
    pub fn overfits(&self) -> bool {
        self.h().learning_rate >= 3e-4 || self.h().num_epochs >= 10
    }

    fn smooth_training_loss(&self, step: u64) -> f64 {
        let frac = step as f64 / self.total_steps() as f64;
        let start = 2.1 + 0.4 * unit(self.seed, 1, 0);
        let floor = 0.35 + 0.2 * unit(self.seed, 2, 0);
        let speed = 2.0 + self.h().learning_rate * 1.0e4;
        floor + (start - floor) * (-speed * frac).exp()
    }

    /// Training loss at `step`: an exponential decay to a floor, with deterministic noise.
    pub fn training_loss(&self, step: u64) -> f64 {
        let frac = step as f64 / self.total_steps() as f64;
        let noise = 0.06 * (unit(self.seed, 3, step) - 0.5) * (1.0 - 0.6 * frac);
        (self.smooth_training_loss(step) + noise).max(0.01)
    }

    /// Validation loss at `step`: above training, and rising late when the run overfits.
    pub fn validation_loss(&self, step: u64) -> f64 {
        let frac = step as f64 / self.total_steps() as f64;
        let gap = 0.06 + 0.06 * unit(self.seed, 4, 0);
        let overfit = if self.overfits() {
            1.2 * (frac - 0.55).max(0.0).powi(2)
        } else {
            0.0
        };
        let noise = 0.02 * (unit(self.seed, 5, step) - 0.5);
        self.smooth_training_loss(step) + gap + overfit + noise
    }

    /// Metric points are reported every this many steps (at most ~500 per run) and at the end.
    pub fn report_every(&self) -> u64 {
        self.faults
            .report_every
            .unwrap_or_else(|| self.total_steps().div_ceil(500))
            .max(1)
    }

    /// Cluster seconds since submission after `real` seconds at `speed` (the simulator's),
    /// the job's own pace from its step on.
    pub fn cluster_seconds(&self, real: f64, speed: f64) -> f64 {
        let fast = real * speed;
        let Some(pace) = self.faults.pace else {
            return fast;
        };
        let switch = INITIALISATION_SECONDS as f64 + pace.from_step as f64 * self.step_seconds();
        if fast <= switch {
            fast
        } else {
            switch + (real - switch / speed) * pace.speed
        }
    }

    /// Validation runs at every checkpoint and at the last step.
    fn validates_at(&self, step: u64) -> bool {
        step.is_multiple_of(self.request.checkpoint_interval.max(1)) || step == self.total_steps()
    }

    /// Points for steps in (after, upto], in step order.
    pub fn metric_points(&self, after: u64, upto: u64) -> Vec<ClusterMetricPoint> {
        let every = self.report_every();
        let throughput = self.step_seconds().recip()
            * (self.dataset_tokens as f64
                * (1.0 - self.request.validation_split_ratio)
                * f64::from(self.epochs())
                / self.total_steps() as f64);
        (after + 1..=upto.min(self.total_steps()))
            .filter(|s| s % every == 0 || *s == self.total_steps() || self.validates_at(*s))
            .map(|step| {
                let frac = step as f64 / self.total_steps() as f64;
                ClusterMetricPoint {
                    step,
                    epoch: self.epoch_of(step),
                    training_loss: self.training_loss(step),
                    validation_loss: self.validates_at(step).then(|| self.validation_loss(step)),
                    learning_rate: self.learning_rate(step),
                    gradient_norm: 0.4 + 1.2 * (-3.0 * frac).exp() + 0.2 * unit(self.seed, 6, step),
                    throughput: throughput * (0.97 + 0.06 * unit(self.seed, 7, step)),
                    gpu_utilization: 88.0 + 10.0 * unit(self.seed, 8, step),
                    at_seconds: step as f64 * self.step_seconds(),
                }
            })
            .collect()
    }

    /// Checkpoints saved up to `step`, every `checkpointInterval` steps.
    pub fn checkpoints(&self, upto: u64) -> Vec<ClusterCheckpoint> {
        let every = self.request.checkpoint_interval.max(1);
        (1..=upto.min(self.total_steps()) / every)
            .map(|n| {
                let step = n * every;
                ClusterCheckpoint {
                    id: format!("ckpt-{n:03}"),
                    step,
                    epoch: self.epoch_of(step),
                    loss: self.validation_loss(step),
                    adapter: None,
                }
            })
            .collect()
    }

    /// Every log line up to `snapshot`, in order (indexes are stable).
    pub fn logs(&self, snapshot: &Snapshot) -> Vec<ClusterLogLine> {
        let init = INITIALISATION_SECONDS as f64;
        let mut lines: Vec<(f64, &str, String)> = vec![
            (
                0.0,
                "info",
                format!(
                    "allocated {} x {}",
                    self.request.gpu_config.num_gpus,
                    self.request.gpu_config.instance_type.as_str()
                ),
            ),
            (
                1.0,
                "info",
                format!(
                    "downloaded the dataset ({} bytes, {} tokens)",
                    self.dataset_bytes, self.dataset_tokens
                ),
            ),
            (
                init * 0.5,
                "info",
                format!(
                    "loaded {} with LoRA r={} on {:?}",
                    self.request.base_model,
                    self.h().lora_rank,
                    self.h()
                        .target_modules
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                ),
            ),
        ];
        for epoch in 1..=self.epochs() {
            let first = u64::from(epoch - 1) * self.steps_per_epoch();
            lines.push((
                init + first as f64 * self.step_seconds(),
                "info",
                format!("epoch {epoch}/{} started", self.epochs()),
            ));
        }
        for c in self.checkpoints(self.total_steps()) {
            lines.push((
                init + c.step as f64 * self.step_seconds(),
                "info",
                format!(
                    "saved checkpoint {} at step {} (loss {:.4})",
                    c.id, c.step, c.loss
                ),
            ));
        }
        lines.push((
            init + self.training_seconds(),
            "info",
            "training finished; saving the adapter".into(),
        ));
        lines.push((self.duration(), "info", "adapter saved".into()));
        let horizon = init + snapshot.running_seconds;
        let mut out: Vec<ClusterLogLine> = lines
            .into_iter()
            .filter(|(at, _, _)| {
                *at <= horizon
                    || (snapshot.status == ClusterStatus::Completed && *at <= self.duration())
            })
            .enumerate()
            .map(|(index, (at, level, message))| ClusterLogLine {
                index: index as u64,
                level: level.to_string(),
                message: self.said(message),
                at_seconds: at,
            })
            .collect();
        if let Some(err) = &snapshot.error {
            out.push(ClusterLogLine {
                index: out.len() as u64,
                level: "error".into(),
                message: format!("{}: {}", err.code, err.message),
                at_seconds: horizon,
            });
        }
        out
    }

    pub fn evaluation(&self) -> Evaluation {
        let last = self.total_steps();
        let final_validation_loss = self.validation_loss(last);
        let best = self
            .checkpoints(last)
            .iter()
            .map(|c| c.loss)
            .chain([final_validation_loss])
            .fold(f64::INFINITY, f64::min);
        let first_check = self.request.checkpoint_interval.max(1).min(last);
        let initial = self.validation_loss(first_check.min(self.report_every()));
        // Scores follow how far the validation loss fell (and how low it ended), with a
        // little per-run spread: a better run scores higher, deterministically per seed.
        let learned = if initial > 0.0 {
            (1.0 - final_validation_loss / initial).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let fit = (-final_validation_loss).exp();
        let score = |salt: u64, base: f64, weight: f64| {
            (base + weight * (0.6 * learned + 0.4 * fit) + 0.04 * (unit(self.seed, salt, 0) - 0.5))
                .clamp(0.0, 1.0)
        };
        Evaluation {
            initial_validation_loss: initial,
            final_training_loss: self.training_loss(last),
            final_validation_loss,
            best_validation_loss: best,
            perplexity: final_validation_loss.exp(),
            validation_scores: Some(ValidationScores {
                semantic_similarity: score(20, 0.45, 0.5),
                coherence: score(21, 0.5, 0.45),
                fluency: score(22, 0.55, 0.42),
                task_accuracy: score(23, 0.3, 0.6),
            }),
            // The simulator generates no text: it makes up no BLEU or ROUGE.
            comparison: None,
            adapter_step: None,
        }
    }
}

#[cfg(test)]
mod tests;
