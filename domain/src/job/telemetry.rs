//! High-rate job telemetry: metric points, progress and log lines. Each kind lives in a stream
//! of its own per job whose sequence is the natural key (the step, the log index), so a
//! repeated report is the same row (idempotent by construction) and appending never loads
//! the history. Whether a job accepts telemetry is `Job::accepts_telemetry`.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::JobId;
use crate::validation::storable;
use crate::FieldError;

/// Aggregate types of the telemetry streams (aggregate id = the job id).
pub const METRICS_STREAM: &str = "job_metrics";
pub const PROGRESS_STREAM: &str = "job_progress";
pub const LOGS_STREAM: &str = "job_logs";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TelemetryEvent {
    MetricPointRecorded(MetricPoint),
    ProgressReported(Progress),
    LogLineRecorded(LogLine),
}

/// A job's latest figures (`currentMetrics`), from its newest metric point.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentMetrics {
    pub training_loss: f64,
    pub validation_loss: Option<f64>,
    pub learning_rate: f64,
    /// Tokens per second.
    pub throughput: Option<f64>,
    /// Percent.
    pub gpu_utilization: Option<f64>,
}

impl From<&MetricPoint> for CurrentMetrics {
    fn from(p: &MetricPoint) -> Self {
        CurrentMetrics {
            training_loss: p.training_loss,
            validation_loss: p.validation_loss,
            learning_rate: p.learning_rate,
            throughput: p.throughput,
            gpu_utilization: p.gpu_utilization,
        }
    }
}

/// One point of a job's `metricsHistory`, plus the current figures of `currentMetrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricPoint {
    pub job_id: JobId,
    pub step: u64,
    pub epoch: u32,
    pub training_loss: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_loss: Option<f64>,
    pub learning_rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient_norm: Option<f64>,
    /// Tokens per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<f64>,
    /// Percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_utilization: Option<f64>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub job_id: JobId,
    pub step: u64,
    pub total_steps: u64,
    pub epoch: u32,
    pub total_epochs: u32,
    /// 0 to 100.
    pub progress: f64,
    pub estimated_time_remaining: Option<u64>,
    pub reported_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Info,
    Warning,
    Error,
}

impl LogLevel {
    /// As serialised (and stored in the read model).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub job_id: JobId,
    /// The cluster's index of the line (the stream's sequence).
    pub index: u64,
    pub level: LogLevel,
    pub message: String,
    pub logged_at: DateTime<Utc>,
}

/// Longest log message kept (characters).
pub const MAX_LOG_MESSAGE: usize = 4000;

impl TelemetryEvent {
    /// The stream and the sequence (natural key) the event is stored at.
    pub fn key(&self) -> (&'static str, u64) {
        match self {
            TelemetryEvent::MetricPointRecorded(p) => (METRICS_STREAM, p.step),
            TelemetryEvent::ProgressReported(p) => (PROGRESS_STREAM, p.step),
            TelemetryEvent::LogLineRecorded(l) => (LOGS_STREAM, l.index),
        }
    }

    pub fn job_id(&self) -> JobId {
        match self {
            TelemetryEvent::MetricPointRecorded(p) => p.job_id,
            TelemetryEvent::ProgressReported(p) => p.job_id,
            TelemetryEvent::LogLineRecorded(l) => l.job_id,
        }
    }

    /// Reports are checked before they are stored: figures are finite and in range.
    pub fn check(self) -> Result<TelemetryEvent, FieldError> {
        let finite = |field: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(FieldError::new(
                    field,
                    format!("{field} must be a finite number >= 0"),
                ))
            }
        };
        match self {
            TelemetryEvent::MetricPointRecorded(ref p) => {
                finite("trainingLoss", p.training_loss)?;
                finite("learningRate", p.learning_rate)?;
                for (field, v) in [
                    ("validationLoss", p.validation_loss),
                    ("gradientNorm", p.gradient_norm),
                    ("throughput", p.throughput),
                    ("gpuUtilization", p.gpu_utilization),
                ] {
                    if let Some(v) = v {
                        finite(field, v)?;
                    }
                }
                Ok(self)
            }
            TelemetryEvent::ProgressReported(mut p) => {
                finite("progress", p.progress)?;
                p.progress = p.progress.min(100.0);
                Ok(TelemetryEvent::ProgressReported(p))
            }
            TelemetryEvent::LogLineRecorded(mut l) => {
                if let Some((end, _)) = l.message.char_indices().nth(MAX_LOG_MESSAGE) {
                    l.message.truncate(end);
                }
                // A trainer's output is whatever it printed: kept, NUL aside.
                l.message = storable(l.message);
                Ok(TelemetryEvent::LogLineRecorded(l))
            }
        }
    }
}

impl DomainEvent for TelemetryEvent {
    fn event_type(&self) -> String {
        match self {
            TelemetryEvent::MetricPointRecorded(_) => "MetricPointRecorded",
            TelemetryEvent::ProgressReported(_) => "ProgressReported",
            TelemetryEvent::LogLineRecorded(_) => "LogLineRecorded",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_keeps_what_the_trainer_printed_but_nul() {
        let line = |message: &str| {
            TelemetryEvent::LogLineRecorded(LogLine {
                job_id: JobId(uuid::Uuid::nil()),
                index: 0,
                level: LogLevel::Info,
                message: message.to_string(),
                logged_at: DateTime::<Utc>::MIN_UTC,
            })
        };
        let checked = line("loss\u{0} 0.5 \u{1b}[0m\r\u{7}").check();
        assert_eq!(checked, Ok(line("loss\u{FFFD} 0.5 \u{1b}[0m\r\u{7}")));
    }

    #[test]
    fn a_log_level_is_stored_as_it_is_serialised() {
        for level in [LogLevel::Info, LogLevel::Warning, LogLevel::Error] {
            assert_eq!(
                serde_json::to_value(level).ok(),
                Some(serde_json::Value::from(level.as_str()))
            );
        }
    }
}
