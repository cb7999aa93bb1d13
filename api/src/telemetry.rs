//! Logging and metrics set-up.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide metrics recorder (once; later calls reuse it).
pub fn install_metrics() {
    PROMETHEUS.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .ok()?
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).ok()?;
        Some(handle)
    });
}

/// What the process's allocator reports about the heap.
#[derive(Debug, Clone, Copy)]
pub struct HeapFigures {
    pub allocated: u64,
    pub resident: u64,
}

static HEAP_PROBE: OnceLock<fn() -> Option<HeapFigures>> = OnceLock::new();

/// Sets how `/metrics` reads the heap (the binary knows its allocator; a library user,
/// such as a test, has none to report).
pub fn set_heap_probe(probe: fn() -> Option<HeapFigures>) {
    let _ = HEAP_PROBE.set(probe);
}

/// `brightrun_heap_allocated_bytes` and `brightrun_heap_resident_bytes`, read now.
pub fn record_heap_gauges() {
    if let Some(figures) = HEAP_PROBE.get().and_then(|probe| probe()) {
        metrics::gauge!("brightrun_heap_allocated_bytes").set(figures.allocated as f64);
        metrics::gauge!("brightrun_heap_resident_bytes").set(figures.resident as f64);
    }
}

pub fn render() -> String {
    PROMETHEUS
        .get()
        .and_then(|h| h.as_ref())
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// Lag of every subscription (events committed but not yet processed) and whether this
/// process leads it, read at scrape time so any instance reports the truth.
pub async fn record_subscription_gauges(state: &AppState) {
    let parked: std::collections::HashMap<String, i64> =
        match infrastructure::parking::counts(&state.pool).await {
            Ok(counts) => counts.into_iter().collect(),
            Err(err) => {
                tracing::warn!(error = %err, "cannot count parked events");
                Default::default()
            }
        };
    let rows = infrastructure::subscription::lags(&state.pool).await;
    match rows {
        Ok(rows) => {
            for lag in rows {
                metrics::gauge!("brightrun_parked_events", "subscription" => lag.name.clone())
                    .set(parked.get(&lag.name).copied().unwrap_or(0) as f64);
                metrics::gauge!("brightrun_subscription_lag_events", "subscription" => lag.name.clone())
                    .set(lag.events as f64);
                metrics::gauge!("brightrun_subscription_lag_seconds", "subscription" => lag.name)
                    .set(lag.seconds);
            }
        }
        Err(err) => tracing::warn!(error = %err, "cannot read subscription lag"),
    }
    for (name, leading) in state.leadership.snapshot() {
        metrics::gauge!("brightrun_subscription_leader", "subscription" => name).set(if leading {
            1.0
        } else {
            0.0
        });
    }
}

/// Logs to stderr at `default_level` (or `RUST_LOG`), with colours only on a terminal: a log
/// written to a file or a pipe carries no escape codes.
pub fn init_logging(default_level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default_level},sqlx=warn,async_nats=warn"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heap_figures_the_binary_reports_are_in_the_exposition() {
        install_metrics();
        record_heap_gauges();
        assert!(
            !render().contains("brightrun_heap_allocated_bytes"),
            "no probe, no figure"
        );
        set_heap_probe(|| {
            Some(HeapFigures {
                allocated: 5 << 20,
                resident: 9 << 20,
            })
        });
        record_heap_gauges();
        let text = render();
        assert!(
            text.contains("brightrun_heap_allocated_bytes 5242880"),
            "{text}"
        );
        assert!(
            text.contains("brightrun_heap_resident_bytes 9437184"),
            "{text}"
        );
    }
}
