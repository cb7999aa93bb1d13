//! Notifications (seed 001 "Notifications API") and the dashboard's figures (seed 002).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::envelope::{self, pagination, Envelope, PageParams};
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiQuery, AuthUser};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .routes(routes!(mark_read))
        .routes(routes!(mark_all_read))
        .routes(routes!(dashboard_stats))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct NotificationParams {
    /// Only unread ones (default false).
    pub unread_only: Option<bool>,
    pub page: Option<u32>,
    pub page_size: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    pub id: Uuid,
    /// `job_complete` | `job_failed` | `cost_alert` | `dataset_ready` | `system`
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: String,
    /// `low` | `medium` | `high` | `critical`
    pub priority: String,
    pub title: String,
    pub message: String,
    pub action_url: String,
    pub read: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    pub notifications: Vec<NotificationView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPage {
    pub success: bool,
    pub data: NotificationList,
    /// `pagination` and `unreadCount`.
    #[schema(value_type = Object)]
    pub meta: serde_json::Value,
}

/// The caller's notifications, newest first; `meta.unreadCount` counts the unread ones.
#[utoipa::path(get, path = "/api/notifications", tag = "notifications", security(("bearer" = [])),
    params(NotificationParams),
    responses(
        (status = 200, description = "A page of notifications", body = NotificationPage),
        (status = 400, description = "`VALIDATION_ERROR` (unreadOnly, page, pageSize)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn list_notifications(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiQuery(params): ApiQuery<NotificationParams>,
) -> ApiResult<Response> {
    let (page, page_size, offset) = PageParams {
        page: params.page,
        page_size: params.page_size,
    }
    .resolve()?;
    let unread_only = params.unread_only.unwrap_or(false);
    let filter = "n.user_id = $1 AND (NOT $2 OR r.notification_id IS NULL)";
    let from = "rm_notifications n LEFT JOIN notification_reads r ON r.notification_id = n.id";
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {from} WHERE {filter}"))
        .bind(principal.user_id.0)
        .bind(unread_only)
        .fetch_one(&state.pool)
        .await
        .map_err(ApiError::internal)?;
    let unread: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {from} WHERE n.user_id = $1 AND r.notification_id IS NULL"
    ))
    .bind(principal.user_id.0)
    .fetch_one(&state.pool)
    .await
    .map_err(ApiError::internal)?;
    let notifications = sqlx::query_as::<_, NotificationView>(&format!(
        "SELECT n.id, n.type, n.priority, n.title, n.message, n.action_url, \
           (r.notification_id IS NOT NULL) AS read, n.created_at \
         FROM {from} WHERE {filter} ORDER BY n.created_at DESC, n.id DESC LIMIT $3 OFFSET $4"
    ))
    .bind(principal.user_id.0)
    .bind(unread_only)
    .bind(page_size as i64)
    .bind(offset)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::internal)?;
    let pagination = pagination(page, page_size, total);
    Ok(axum::Json(serde_json::json!({
        "success": true,
        "data": {"notifications": notifications},
        "meta": {"pagination": pagination, "unreadCount": unread},
    }))
    .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarkedRead {
    pub id: Uuid,
    pub read: bool,
}

/// Mark one notification read (seed 001). Another user's answers 404.
#[utoipa::path(patch, path = "/api/notifications/{id}/read", tag = "notifications", security(("bearer" = [])),
    params(("id" = String, Path, description = "Notification id (UUID)")),
    responses(
        (status = 200, description = "Read", body = Envelope<MarkedRead>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`NOTIFICATION_NOT_FOUND`", body = ErrorEnvelope),
    ))]
async fn mark_read(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let not_found =
        || ApiError::not_found("NOTIFICATION_NOT_FOUND", format!("no notification {id}"));
    let notification = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let inserted = sqlx::query(
        "INSERT INTO notification_reads (notification_id, user_id, read_at) \
         SELECT id, user_id, $3 FROM rm_notifications WHERE id = $1 AND user_id = $2 \
         ON CONFLICT DO NOTHING",
    )
    .bind(notification)
    .bind(principal.user_id.0)
    .bind(state.clock.now())
    .execute(&state.pool)
    .await
    .map_err(ApiError::internal)?
    .rows_affected();
    if inserted == 0 {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM rm_notifications WHERE id = $1 AND user_id = $2)",
        )
        .bind(notification)
        .bind(principal.user_id.0)
        .fetch_one(&state.pool)
        .await
        .map_err(ApiError::internal)?;
        if !exists {
            return Err(not_found());
        }
    }
    Ok(envelope::ok(MarkedRead {
        id: notification,
        read: true,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllRead {
    /// How many were unread.
    pub marked: u64,
}

/// Mark every notification of the caller read.
#[utoipa::path(post, path = "/api/notifications/read-all", tag = "notifications", security(("bearer" = [])),
    responses(
        (status = 200, description = "All read", body = Envelope<AllRead>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn mark_all_read(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
) -> ApiResult<Response> {
    let marked = sqlx::query(
        "INSERT INTO notification_reads (notification_id, user_id, read_at) \
         SELECT id, user_id, $2 FROM rm_notifications WHERE user_id = $1 ON CONFLICT DO NOTHING",
    )
    .bind(principal.user_id.0)
    .bind(state.clock.now())
    .execute(&state.pool)
    .await
    .map_err(ApiError::internal)?
    .rows_affected();
    Ok(envelope::ok(AllRead { marked }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DashboardStats {
    pub total_datasets: i64,
    /// Queued, initializing or running.
    pub active_jobs: i64,
    /// Stored or deployed models (archived and deleted ones do not count).
    pub completed_models: i64,
    /// Everything the caller's ledger holds (USD, cents).
    pub total_cost: f64,
}

/// The dashboard's four figures (seed 002 `GET /api/dashboard/stats`).
#[utoipa::path(get, path = "/api/dashboard/stats", tag = "notifications", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's figures", body = Envelope<DashboardStats>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn dashboard_stats(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
) -> ApiResult<Response> {
    let (datasets, jobs, models, cost): (i64, i64, i64, Decimal) = sqlx::query_as(&format!(
        "SELECT \
           (SELECT count(*) FROM rm_datasets WHERE user_id = $1 AND deleted_at IS NULL), \
           (SELECT count(*) FROM rm_jobs WHERE user_id = $1 AND status IN {}), \
           (SELECT count(*) FROM rm_models WHERE user_id = $1 AND deleted_at IS NULL AND status IN ('stored', 'deployed')), \
           (SELECT COALESCE(sum(amount), 0) FROM rm_cost_ledger WHERE user_id = $1)",
        infrastructure::jobs::active_statuses_sql()
    ))
    .bind(principal.user_id.0)
    .fetch_one(&state.pool)
    .await
    .map_err(ApiError::internal)?;
    Ok(envelope::ok(DashboardStats {
        total_datasets: datasets,
        active_jobs: jobs,
        completed_models: models,
        total_cost: envelope::money(cost),
    }))
}
