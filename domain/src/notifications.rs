//! Which events notify whom, and how: `dataset_ready` (medium),
//! `job_complete` (high), `job_failed` (high), `system` (medium: a failed job the cluster
//! still had, resumed by reconciliation); `cost_alert` (high/critical) comes from the budget.
//! Each carries an `actionUrl` to the resource.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::budget::BudgetEvent;
use crate::costs::AlertLevel;
use crate::dataset::DatasetEvent;
use crate::ids::UserId;
use crate::job::estimate::cents;
use crate::job::JobEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationType {
    JobComplete,
    JobFailed,
    CostAlert,
    DatasetReady,
    System,
}

impl NotificationType {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationType::JobComplete => "job_complete",
            NotificationType::JobFailed => "job_failed",
            NotificationType::CostAlert => "cost_alert",
            NotificationType::DatasetReady => "dataset_ready",
            NotificationType::System => "system",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Medium,
    High,
    Critical,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub user_id: UserId,
    pub kind: NotificationType,
    pub priority: Priority,
    pub title: String,
    pub message: String,
    pub action_url: String,
}

pub fn from_dataset_event(event: &DatasetEvent) -> Option<Notification> {
    match event {
        DatasetEvent::DatasetReady(e) => Some(Notification {
            user_id: e.user_id,
            kind: NotificationType::DatasetReady,
            priority: Priority::Medium,
            title: format!("Dataset \"{}\" is ready", e.name),
            message: if e.training_ready {
                format!(
                    "{} training pairs, {} tokens: ready to train.",
                    e.statistics.total_training_pairs, e.statistics.total_tokens
                )
            } else {
                format!(
                    "Validated, but {} training pairs are not enough to train (10 at least).",
                    e.statistics.total_training_pairs
                )
            },
            action_url: format!("/datasets/{}", e.dataset_id),
        }),
        _ => None,
    }
}

fn usd(amount: Decimal) -> String {
    format!("${}", cents(amount))
}

pub fn from_job_event(event: &JobEvent) -> Option<Notification> {
    match event {
        JobEvent::JobCompleted(e) => Some(Notification {
            user_id: e.user_id,
            kind: NotificationType::JobComplete,
            priority: Priority::High,
            title: "Training Completed!".to_string(),
            message: format!(
                "Your LoRA model has been successfully trained (job {}, cost {}).",
                e.job_id,
                usd(e.final_cost)
            ),
            // The model it made; a completion recorded without one points at the job.
            action_url: match e.model_id {
                Some(model) => format!("/models/{model}"),
                None => format!("/jobs/{}", e.job_id),
            },
        }),
        JobEvent::JobRecoveredFromCluster(e) => Some(Notification {
            user_id: e.user_id,
            kind: NotificationType::System,
            priority: Priority::Medium,
            title: "Training resumed".to_string(),
            message: format!(
                "Job {} was marked failed, but the GPU cluster still had it ({}): it is running again and will finish on its own.",
                e.job_id, e.cluster_status
            ),
            action_url: format!("/jobs/{}", e.job_id),
        }),
        JobEvent::JobFailed(e) => Some(Notification {
            user_id: e.user_id,
            kind: NotificationType::JobFailed,
            priority: Priority::High,
            title: "Training failed".to_string(),
            message: format!(
                "Job {} failed after {} retries: {} ({}). It cost {}.",
                e.job_id,
                e.retry_count,
                e.message,
                e.code,
                usd(e.final_cost)
            ),
            action_url: format!("/jobs/{}", e.job_id),
        }),
        _ => None,
    }
}

pub fn from_budget_event(event: &BudgetEvent) -> Notification {
    match event {
        BudgetEvent::BudgetThresholdCrossed(e) => {
            let (priority, title) = match e.level {
                AlertLevel::Warning => (
                    Priority::High,
                    format!("{} % of your monthly budget used", e.percent),
                ),
                AlertLevel::Critical => (Priority::Critical, "Monthly budget reached".to_string()),
            };
            Notification {
                user_id: e.user_id,
                kind: NotificationType::CostAlert,
                priority,
                title,
                message: format!(
                    "You have spent {} of your {} budget for {}.",
                    usd(e.spent),
                    usd(e.budget),
                    e.month
                ),
                action_url: "/costs".to_string(),
            }
        }
    }
}
