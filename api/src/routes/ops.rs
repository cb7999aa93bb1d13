//! Operations: liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::envelope::{self, Envelope};
use crate::error::{ApiError, ErrorCode, ErrorDetails, ErrorEnvelope};
use crate::state::AppState;
use crate::telemetry;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    /// The answering process (tells instances on one host apart).
    pub pid: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub postgres: bool,
    pub nats: bool,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Envelope<Health>)))]
async fn healthz() -> Response {
    envelope::ok(Health {
        status: "ok".to_string(),
        pid: std::process::id(),
    })
}

/// Postgres and NATS are reachable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Envelope<Readiness>),
        (status = 503, description = "`NOT_READY`, with what is down in `details`", body = ErrorEnvelope),
    ))]
async fn readyz(State(state): State<AppState>) -> Response {
    let postgres = infrastructure::db::ping(&state.pool).await;
    let nats = state.nats.connection_state() == async_nats::connection::State::Connected;
    if postgres && nats {
        envelope::ok(Readiness { postgres, nats })
    } else {
        ApiError::new(ErrorCode::NotReady, "a dependency is unreachable")
            .with_details(ErrorDetails {
                postgres: Some(postgres),
                nats: Some(nats),
                ..ErrorDetails::default()
            })
            .into_response()
    }
}

/// Prometheus text format: HTTP latency histograms, relay and projection lag, leadership,
/// heap bytes allocated and resident (the `brightrun` binary's allocator).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus exposition", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Response {
    telemetry::record_subscription_gauges(&state).await;
    telemetry::record_heap_gauges();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        telemetry::render(),
    )
        .into_response()
}
