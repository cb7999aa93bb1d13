//! Live job updates for SSE, fed by NATS.
//!
//! One NATS subscription per job watched in this process (`<prefix>.*.<jobId>.*`: the job's
//! own events and its telemetry streams), fanned out to every open stream of that job through
//! a broadcast channel of events already rendered as SSE bytes. A thousand streams on one job
//! cost one subscription, one channel and one rendering per event (each stream sends the same
//! bytes); nothing polls the database. The subscription ends when its last stream has gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use application::LogPosition;
use axum::body::Bytes;
use domain::ids::JobId;
use domain::job::telemetry::TelemetryEvent;
use domain::job::{Job, JobEvent};
use futures::StreamExt;
use infrastructure::event_log::StoredEvent;
use infrastructure::relay::Envelope;
use serde_json::{json, Value};
use tokio::sync::{broadcast, Mutex};

/// Events buffered per job for slow streams; a stream that falls further behind catches up
/// from the event log.
const CHANNEL_CAPACITY: usize = 1024;
/// How often an idle forwarder checks whether anyone still listens.
const IDLE_CHECK: Duration = Duration::from_secs(15);

/// One SSE event before it is rendered (`Frame`): name, JSON data, its log position (`None`
/// for the opening snapshot).
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub name: &'static str,
    pub data: String,
    pub position: Option<LogPosition>,
    pub terminal: bool,
}

/// An event as a stream sends it: its SSE text (`event`, `data`, and `id` when it has a
/// position), written once and shared by every stream that sends it.
#[derive(Debug, Clone)]
pub struct Frame {
    pub bytes: Bytes,
    pub position: Option<LogPosition>,
    pub terminal: bool,
}

impl From<LiveEvent> for Frame {
    fn from(event: LiveEvent) -> Frame {
        // JSON text holds no raw line break, so `data` is one line.
        let mut text = format!("event: {}\ndata: {}\n", event.name, event.data);
        if let Some(p) = event.position {
            text.push_str(&format!("id: {}.{}\n", p.transaction_id, p.global_position));
        }
        text.push('\n');
        Frame {
            bytes: Bytes::from(text),
            position: event.position,
            terminal: event.terminal,
        }
    }
}

pub fn event(name: &'static str, data: Value) -> Option<LiveEvent> {
    Some(LiveEvent {
        name,
        data: data.to_string(),
        position: None,
        terminal: matches!(name, "complete" | "cancelled"),
    })
}

/// The stream's event bodies, each written once: for the events as they are recorded
/// (below) and for the opening snapshot of a fresh connection (`routes::job_stream`).
pub mod bodies {
    use rust_decimal::Decimal;
    use serde::Serialize;
    use serde_json::json;

    use super::{event, LiveEvent};
    use crate::envelope::money;

    pub fn stage(stage: impl Serialize, message: impl Serialize) -> Option<LiveEvent> {
        event("stage", json!({"stage": stage, "message": message}))
    }

    pub fn progress(
        progress: impl Serialize,
        epoch: impl Serialize,
        step: impl Serialize,
        total_steps: impl Serialize,
        estimated_time_remaining: impl Serialize,
    ) -> Option<LiveEvent> {
        event(
            "progress",
            json!({"progress": progress, "currentEpoch": epoch, "currentStep": step,
                   "totalSteps": total_steps, "estimatedTimeRemaining": estimated_time_remaining}),
        )
    }

    pub fn cost(current: Decimal, estimated_total: Decimal) -> Option<LiveEvent> {
        event(
            "cost",
            json!({"currentCost": money(current), "estimatedTotal": money(estimated_total)}),
        )
    }

    /// A failure; one that will not be retried ends the stream.
    pub fn error(
        message: impl Serialize,
        code: impl Serialize,
        can_retry: bool,
        retry_count: impl Serialize,
    ) -> Option<LiveEvent> {
        event(
            "error",
            json!({"error": message, "code": code, "canRetry": can_retry, "retryCount": retry_count}),
        )
        .map(|mut e| {
            e.terminal = !can_retry;
            e
        })
    }

    pub fn complete(
        job_id: impl Serialize,
        artifact_id: impl Serialize,
        final_cost: Decimal,
    ) -> Option<LiveEvent> {
        event(
            "complete",
            json!({"jobId": job_id, "artifactId": artifact_id, "finalCost": money(final_cost)}),
        )
    }

    pub fn cancelled(
        job_id: impl Serialize,
        cost_so_far: Decimal,
        refund_amount: Decimal,
    ) -> Option<LiveEvent> {
        event(
            "cancelled",
            json!({"jobId": job_id, "costSoFar": money(cost_so_far), "refundAmount": money(refund_amount)}),
        )
    }
}

/// What a stored event shows on the stream, if anything.
fn live_event(
    aggregate_type: &str,
    event_type: &str,
    payload: &Value,
    position: LogPosition,
) -> Option<LiveEvent> {
    let tagged = json!({ event_type: payload });
    let mut live = if aggregate_type == <Job as cqrs_es::Aggregate>::TYPE {
        match serde_json::from_value::<JobEvent>(tagged).ok()? {
            JobEvent::JobCreated(_) | JobEvent::JobMetadataUpdated(_) => None,
            JobEvent::JobRecoveredFromCluster(e) => bodies::stage(
                "training",
                format!(
                    "Recovered: the GPU cluster still has job {} ({})",
                    e.cluster_job_id, e.cluster_status
                ),
            ),
            JobEvent::JobSubmissionStarted(e) => bodies::stage(
                "initializing",
                format!("Submitting to the GPU cluster (attempt {})", e.attempt),
            ),
            JobEvent::JobSubmitted(e) => bodies::stage(
                "initializing",
                format!("Accepted by the GPU cluster as {}", e.cluster_job_id),
            ),
            JobEvent::JobStageChanged(e) => bodies::stage(e.stage.as_str(), e.message),
            JobEvent::JobCheckpointSaved(e) => event(
                "checkpoint",
                json!({"checkpointId": e.checkpoint_id, "step": e.step, "epoch": e.epoch, "loss": e.loss}),
            ),
            JobEvent::JobCostAccrued(e) => bodies::cost(e.job_total, e.estimated_total),
            JobEvent::JobRetryScheduled(e) => bodies::error(e.message, e.code, true, e.retry_count),
            JobEvent::JobFailed(e) => bodies::error(e.message, e.code, false, e.retry_count),
            JobEvent::JobCompleted(e) => bodies::complete(e.job_id, e.model_id, e.final_cost),
            JobEvent::JobCancelled(e) => {
                bodies::cancelled(e.job_id, e.cost_so_far, e.refund_amount)
            }
        }
    } else {
        match serde_json::from_value::<TelemetryEvent>(tagged).ok()? {
            TelemetryEvent::ProgressReported(p) => bodies::progress(
                p.progress,
                p.epoch,
                p.step,
                p.total_steps,
                p.estimated_time_remaining,
            ),
            TelemetryEvent::MetricPointRecorded(p) => event(
                "metrics",
                json!({"step": p.step, "epoch": p.epoch, "trainingLoss": p.training_loss,
                       "validationLoss": p.validation_loss, "learningRate": p.learning_rate,
                       "throughput": p.throughput, "gpuUtilization": p.gpu_utilization}),
            ),
            TelemetryEvent::LogLineRecorded(l) => event(
                "log",
                json!({"timestamp": l.logged_at, "level": l.level, "message": l.message}),
            ),
        }
    }?;
    live.position = Some(position);
    Some(live)
}

pub fn from_envelope(e: &Envelope) -> Option<LiveEvent> {
    let position = LogPosition {
        transaction_id: e.transaction_id,
        global_position: e.global_position,
    };
    live_event(&e.aggregate_type, &e.event_type, &e.payload, position)
}

pub fn from_stored(e: &StoredEvent) -> Option<LiveEvent> {
    live_event(&e.aggregate_type, &e.event_type, e.data(), e.position)
}

pub struct JobFeeds {
    nats: async_nats::Client,
    prefix: String,
    feeds: Mutex<HashMap<JobId, broadcast::Sender<Arc<Frame>>>>,
}

impl JobFeeds {
    pub fn new(nats: async_nats::Client, prefix: &str) -> Arc<JobFeeds> {
        Arc::new(JobFeeds {
            nats,
            prefix: prefix.to_string(),
            feeds: Mutex::new(HashMap::new()),
        })
    }

    /// A receiver of `job`'s events from now on. When it answers, NATS has registered the
    /// subscription: anything published afterwards reaches the receiver.
    pub async fn watch(
        self: &Arc<Self>,
        job: JobId,
    ) -> anyhow::Result<broadcast::Receiver<Arc<Frame>>> {
        let mut feeds = self.feeds.lock().await;
        if let Some(sender) = feeds.get(&job) {
            return Ok(sender.subscribe());
        }
        let subject = format!("{}.*.{job}.*", self.prefix);
        let mut subscription = self.nats.subscribe(subject).await?;
        self.nats.flush().await?;
        let (sender, receiver) = broadcast::channel(CHANNEL_CAPACITY);
        feeds.insert(job, sender.clone());
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut idle = tokio::time::interval(IDLE_CHECK);
            loop {
                tokio::select! {
                    message = subscription.next() => {
                        let Some(message) = message else { break };
                        match serde_json::from_slice::<Envelope>(&message.payload) {
                            // Rendered here once for every stream; what a stream never shows
                            // wakes none of them.
                            Ok(envelope) => {
                                if let Some(live) = from_envelope(&envelope) {
                                    let _ = sender.send(Arc::new(Frame::from(live)));
                                }
                            }
                            Err(err) => tracing::warn!(%job, error = %err, "unreadable event on NATS"),
                        }
                    }
                    _ = idle.tick() => {}
                }
                if sender.receiver_count() == 0 && this.forget_if_idle(job).await {
                    break;
                }
            }
            let _ = subscription.unsubscribe().await;
            metrics::gauge!("brightrun_sse_feeds").decrement(1.0);
        });
        metrics::gauge!("brightrun_sse_feeds").increment(1.0);
        Ok(receiver)
    }

    /// Removes the job's feed when nobody listens (under the lock, so a new stream either
    /// joined before, or creates a fresh feed after).
    async fn forget_if_idle(&self, job: JobId) -> bool {
        let mut feeds = self.feeds.lock().await;
        match feeds.get(&job) {
            Some(sender) if sender.receiver_count() == 0 => {
                feeds.remove(&job);
                true
            }
            Some(_) => false,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_the_sse_text_of_its_event_with_the_log_position_as_id() {
        let mut metrics =
            event("metrics", json!({"step": 7, "trainingLoss": 1.5})).expect("an event");
        metrics.position = Some(LogPosition {
            transaction_id: 812,
            global_position: 40,
        });
        let frame = Frame::from(metrics);
        assert_eq!(
            &frame.bytes[..],
            b"event: metrics\ndata: {\"step\":7,\"trainingLoss\":1.5}\nid: 812.40\n\n"
        );
        assert_eq!(frame.position.map(|p| p.global_position), Some(40));
        assert!(!frame.terminal);

        let opening = Frame::from(event("complete", json!({"jobId": "j"})).expect("an event"));
        assert_eq!(
            &opening.bytes[..],
            b"event: complete\ndata: {\"jobId\":\"j\"}\n\n"
        );
        assert!(opening.terminal && opening.position.is_none());
    }
}
