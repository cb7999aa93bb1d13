//! The GPU cluster's signed webhook (openapi/cluster.yaml): a status change of a cluster job
//! makes the saga read that job's status now instead of at its next poll. The webhook is only
//! a wake-up call: the status read stays the source of truth, so a forged or replayed call
//! could at most cause an early poll; signatures keep forgeries out, and each delivery is
//! taken once (a replay within the signature's five minutes is refused).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use application::cluster::{verify_webhook, WebhookEvent, WEBHOOK_SIGNATURE_HEADER};

use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(cluster_webhook))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookBody {
    pub cluster_job_id: String,
    pub idempotency_key: String,
    /// `queued` | `running` | `completed` | `failed` | `cancelled`
    pub status: String,
    pub at: String,
}

/// Receive a status change from the GPU cluster, signed with HMAC-SHA256 in
/// `X-Cluster-Signature: t=<unix>,v1=<hex>` over `<t>.<body>` (at most 5 minutes old).
#[utoipa::path(post, path = "/api/cluster/webhook", tag = "operations",
    request_body(content = WebhookBody, example = json!({"clusterJobId": "cj-0193a1f26c1e7d2a9f003b7c2e1d4a10", "idempotencyKey": "0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a10-1", "status": "completed", "at": "2026-11-23T10:00:00Z"})),
    params(("X-Cluster-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256>")),
    responses(
        (status = 204, description = "Accepted: the job's status is read now"),
        (status = 400, description = "`VALIDATION_ERROR`: not a webhook body", body = ErrorEnvelope),
        (status = 401, description = "`INVALID_SIGNATURE`: missing, wrong or stale signature", body = ErrorEnvelope),
        (status = 409, description = "`CONFLICT`: this delivery (its signature) was received already", body = ErrorEnvelope),
        (status = 404, description = "`NOT_FOUND`: webhooks are not configured here", body = ErrorEnvelope),
    ))]
async fn cluster_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let signature = headers
        .get(WEBHOOK_SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidSignature,
                format!("the {WEBHOOK_SIGNATURE_HEADER} header is required"),
            )
        })?;
    let Some(secret) = state.config.cluster_webhook_secret.as_deref() else {
        return Err(ApiError::not_found(
            ErrorCode::NotFound,
            "cluster webhooks are not configured (CLUSTER_WEBHOOK_SECRET)",
        ));
    };
    verify_webhook(secret, signature, &body, state.clock.now())
        .map_err(|e| ApiError::new(ErrorCode::InvalidSignature, e.to_string()))?;
    let event: WebhookEvent = serde_json::from_slice(&body)
        .map_err(|e| ApiError::validation("body", format!("not a webhook body: {e}")))?;
    let first = infrastructure::saga::record_webhook_delivery(&state.pool, signature)
        .await
        .map_err(ApiError::internal)?;
    if !first {
        return Err(ApiError::conflict(
            ErrorCode::Conflict,
            "this delivery was received already (a replayed webhook)",
        ));
    }
    let woken = infrastructure::saga::wake_cluster_job(&state.pool, &event.cluster_job_id)
        .await
        .map_err(ApiError::internal)?;
    tracing::debug!(cluster_job_id = %event.cluster_job_id, status = ?event.status, woken, "cluster webhook");
    Ok(StatusCode::NO_CONTENT.into_response())
}
