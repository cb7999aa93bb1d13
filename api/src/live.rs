//! Live job updates for SSE, fed by NATS.
//!
//! One NATS subscription per job watched in this process (`<prefix>.*.<jobId>.*`: the job's
//! own events and its telemetry streams), fanned out to every open stream of that job through
//! a broadcast channel. A thousand streams on one job cost one subscription and one channel;
//! nothing polls the database. The subscription ends when its last stream has gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use domain::ids::JobId;
use futures::StreamExt;
use infrastructure::relay::Envelope;
use tokio::sync::{broadcast, Mutex};

/// Events buffered per job for slow streams; a stream that falls further behind catches up
/// from the event log.
const CHANNEL_CAPACITY: usize = 1024;
/// How often an idle forwarder checks whether anyone still listens.
const IDLE_CHECK: Duration = Duration::from_secs(15);

pub struct JobFeeds {
    nats: async_nats::Client,
    prefix: String,
    feeds: Mutex<HashMap<JobId, broadcast::Sender<Arc<Envelope>>>>,
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
    ) -> anyhow::Result<broadcast::Receiver<Arc<Envelope>>> {
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
                            Ok(envelope) => {
                                let _ = sender.send(Arc::new(envelope));
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
