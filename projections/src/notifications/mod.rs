//! `rm_notifications`: what the user is told, from Dataset and Job events (rules in
//! `domain::notifications`).

pub mod queries;

use async_trait::async_trait;
use cqrs_es::Aggregate;
use domain::budget::Budget;
use domain::dataset::Dataset;
use domain::job::Job;
use domain::notifications::{from_budget_event, from_dataset_event, from_job_event, Notification};
use infrastructure::event_log::{Interest, StoredEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Projector;

pub struct NotificationsProjector;

/// A notification's id: derived from the event that caused it.
pub fn notification_id(event_id: Uuid) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("notification:{event_id}").as_bytes(),
    )
}

#[async_trait]
impl Projector for NotificationsProjector {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn interest(&self) -> Interest {
        Interest::events(
            &[
                <Dataset as Aggregate>::TYPE,
                <Job as Aggregate>::TYPE,
                <Budget as Aggregate>::TYPE,
            ],
            &[
                "DatasetReady",
                "JobCompleted",
                "JobFailed",
                "JobRecoveredFromCluster",
                "BudgetThresholdCrossed",
            ],
        )
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_notifications"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        let notification: Option<Notification> = match event.aggregate_type.as_str() {
            t if t == <Dataset as Aggregate>::TYPE && event.event_type == "DatasetReady" => {
                from_dataset_event(&event.decode()?)
            }
            t if t == <Job as Aggregate>::TYPE
                && matches!(
                    event.event_type.as_str(),
                    "JobCompleted" | "JobFailed" | "JobRecoveredFromCluster"
                ) =>
            {
                from_job_event(&event.decode()?)
            }
            t if t == <Budget as Aggregate>::TYPE => Some(from_budget_event(&event.decode()?)),
            _ => None,
        };
        let Some(n) = notification else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO rm_notifications (id, user_id, type, priority, title, message, action_url, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(notification_id(event.event_id))
        .bind(n.user_id.0)
        .bind(n.kind.as_str())
        .bind(n.priority.as_str())
        .bind(&n.title)
        .bind(&n.message)
        .bind(&n.action_url)
        .bind(event.recorded_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
