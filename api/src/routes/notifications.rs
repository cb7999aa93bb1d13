//! Notifications and the dashboard's figures.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use projections::notifications::queries::{self as read, NotificationRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::envelope::{self, pagination, Envelope, PageParams};
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};
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

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    pub id: Uuid,
    /// `job_complete` | `job_failed` | `cost_alert` | `dataset_ready` | `system`
    #[serde(rename = "type")]
    pub kind: String,
    /// `low` | `medium` | `high` | `critical`
    pub priority: String,
    pub title: String,
    pub message: String,
    pub action_url: String,
    pub read: bool,
    pub created_at: DateTime<Utc>,
}

impl From<NotificationRow> for NotificationView {
    fn from(n: NotificationRow) -> Self {
        NotificationView {
            id: n.id,
            kind: n.kind,
            priority: n.priority,
            title: n.title,
            message: n.message,
            action_url: n.action_url,
            read: n.read,
            created_at: n.created_at,
        }
    }
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
    pub meta: NotificationMeta,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationMeta {
    pub pagination: crate::envelope::Pagination,
    /// The caller's unread notifications, whatever the filter.
    pub unread_count: i64,
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
    let (page, page_size, window) = PageParams {
        page: params.page,
        page_size: params.page_size,
    }
    .resolve()?;
    let found = read::list(
        &state.pool,
        principal.user_id.0,
        params.unread_only.unwrap_or(false),
        window,
    )
    .await
    .map_err(ApiError::internal)?;
    let notifications: Vec<NotificationView> = found
        .notifications
        .into_iter()
        .map(NotificationView::from)
        .collect();
    let (total, unread) = (found.total, found.unread);
    Ok(axum::Json(NotificationPage {
        success: true,
        data: NotificationList { notifications },
        meta: NotificationMeta {
            pagination: pagination(page, page_size, total),
            unread_count: unread,
        },
    })
    .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarkedRead {
    pub id: Uuid,
    pub read: bool,
}

/// Mark one notification read. Another user's answers 404.
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
    let not_found = || {
        ApiError::not_found(
            ErrorCode::NotificationNotFound,
            format!("no notification {id}"),
        )
    };
    let notification = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let found = read::mark_read(
        &state.pool,
        principal.user_id.0,
        notification,
        state.clock.now(),
    )
    .await
    .map_err(ApiError::internal)?;
    if !found {
        return Err(not_found());
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
    let marked = read::mark_all_read(&state.pool, principal.user_id.0, state.clock.now())
        .await
        .map_err(ApiError::internal)?;
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

/// The dashboard's four figures.
#[utoipa::path(get, path = "/api/dashboard/stats", tag = "notifications", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's figures", body = Envelope<DashboardStats>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn dashboard_stats(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
) -> ApiResult<Response> {
    let figures = projections::dashboard::figures(&state.pool, principal.user_id.0)
        .await
        .map_err(ApiError::internal)?;
    Ok(envelope::ok(DashboardStats {
        total_datasets: figures.datasets,
        active_jobs: figures.active_jobs,
        completed_models: figures.completed_models,
        total_cost: envelope::money(figures.total_cost),
    }))
}
