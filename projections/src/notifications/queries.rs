//! Reads of the notifications read model, and the user's read marks (`notification_reads`,
//! kept beside it so a replay of the notifications keeps what was read).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::Page;

/// A notification as its user sees it.
#[derive(Debug, Clone)]
pub struct NotificationRow {
    pub id: Uuid,
    pub kind: String,
    pub priority: String,
    pub title: String,
    pub message: String,
    pub action_url: String,
    pub read: bool,
    pub created_at: DateTime<Utc>,
}

/// What a page of a user's notifications holds, with the counts a bell needs.
#[derive(Debug, Clone)]
pub struct NotificationPage {
    pub notifications: Vec<NotificationRow>,
    /// Rows that matched (all pages).
    pub total: i64,
    /// The user's unread notifications, whatever the filter.
    pub unread: i64,
}

/// A page of `user`'s notifications, newest first (only the unread ones if `unread_only`).
pub async fn list(
    pool: &PgPool,
    user: Uuid,
    unread_only: bool,
    page: Page,
) -> sqlx::Result<NotificationPage> {
    let counts = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE NOT $2 OR r.notification_id IS NULL) AS "total!",
                  count(*) FILTER (WHERE r.notification_id IS NULL) AS "unread!"
           FROM rm_notifications n LEFT JOIN notification_reads r ON r.notification_id = n.id
           WHERE n.user_id = $1"#,
        user,
        unread_only
    )
    .fetch_one(pool)
    .await?;
    let notifications = sqlx::query_as!(
        NotificationRow,
        r#"SELECT n.id, n.type AS kind, n.priority, n.title, n.message, n.action_url,
                  (r.notification_id IS NOT NULL) AS "read!", n.created_at
           FROM rm_notifications n LEFT JOIN notification_reads r ON r.notification_id = n.id
           WHERE n.user_id = $1 AND (NOT $2 OR r.notification_id IS NULL)
           ORDER BY n.created_at DESC, n.id DESC LIMIT $3 OFFSET $4"#,
        user,
        unread_only,
        page.limit,
        page.offset
    )
    .fetch_all(pool)
    .await?;
    Ok(NotificationPage {
        notifications,
        total: counts.total,
        unread: counts.unread,
    })
}

/// Marks one of `user`'s notifications read; false when the user has no such notification.
/// Marking it again changes nothing.
pub async fn mark_read(
    pool: &PgPool,
    user: Uuid,
    notification: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO notification_reads (notification_id, user_id, read_at) \
         SELECT id, user_id, $3 FROM rm_notifications WHERE id = $1 AND user_id = $2 \
         ON CONFLICT DO NOTHING",
        notification,
        user,
        at
    )
    .execute(pool)
    .await?;
    if inserted.rows_affected() > 0 {
        return Ok(true);
    }
    // Read already, or not the user's: ask which.
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM rm_notifications WHERE id = $1 AND user_id = $2) AS "exists!""#,
        notification,
        user
    )
    .fetch_one(pool)
    .await
}

/// Marks every notification of `user` read; how many were unread.
pub async fn mark_all_read(pool: &PgPool, user: Uuid, at: DateTime<Utc>) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "INSERT INTO notification_reads (notification_id, user_id, read_at) \
         SELECT id, user_id, $2 FROM rm_notifications WHERE user_id = $1 ON CONFLICT DO NOTHING",
        user,
        at
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
