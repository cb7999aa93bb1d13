//! The Model aggregate: a trained LoRA adapter, registered when its job completes
//! (DOMAIN.md "Models"). Quality metrics are computed here, from the run's losses.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::{DatasetId, JobId, ModelId, UserId};
use crate::job::config::JobConfiguration;

/// How well the validation curve converged (documented in the README):
/// `score = clamp(drop, 0, 1) × (1 − clamp(gap, 0, 1))`, where `drop = 1 − final / initial`
/// validation loss and `gap = (finalValidation − finalTraining) / finalValidation`; a final
/// validation loss more than 5 % above the best one (overfitting) costs one level.
/// Levels: excellent ≥ 0.6, good ≥ 0.4, acceptable ≥ 0.2 (seed 001's names), poor below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Convergence {
    Excellent,
    Good,
    Acceptable,
    Poor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QualityMetrics {
    pub final_training_loss: f64,
    pub final_validation_loss: f64,
    pub best_validation_loss: f64,
    /// exp(finalValidationLoss)
    pub perplexity: f64,
    pub convergence_score: f64,
    pub convergence_quality: Convergence,
}

impl QualityMetrics {
    pub fn from_losses(
        initial_validation: f64,
        final_training: f64,
        final_validation: f64,
        best_validation: f64,
    ) -> QualityMetrics {
        let drop = if initial_validation > 0.0 {
            1.0 - final_validation / initial_validation
        } else {
            0.0
        };
        let gap = if final_validation > 0.0 {
            (final_validation - final_training) / final_validation
        } else {
            0.0
        };
        let score = drop.clamp(0.0, 1.0) * (1.0 - gap.clamp(0.0, 1.0));
        let mut level = match score {
            s if s >= 0.6 => 0,
            s if s >= 0.4 => 1,
            s if s >= 0.2 => 2,
            _ => 3,
        };
        if final_validation > best_validation * 1.05 {
            level = (level + 1).min(3);
        }
        QualityMetrics {
            final_training_loss: final_training,
            final_validation_loss: final_validation,
            best_validation_loss: best_validation,
            perplexity: final_validation.exp(),
            convergence_score: score,
            convergence_quality: [
                Convergence::Excellent,
                Convergence::Good,
                Convergence::Acceptable,
                Convergence::Poor,
            ][level],
        }
    }
}

/// The next version of a retrained model: the parent's minor number bumped (1.0.0 → 1.1.0).
pub fn next_version(parent: Option<&str>) -> String {
    let Some(parent) = parent else {
        return "1.0.0".to_string();
    };
    let mut parts = parent.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let major = parts.next().unwrap_or(1);
    let minor = parts.next().unwrap_or(0);
    format!("{major}.{}.0", minor + 1)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelArtifact {
    pub name: String,
    pub s3_key: String,
    pub size_bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingSummary {
    pub total_steps: u64,
    pub epochs: u32,
    /// GPU time of the successful attempt, seconds (all GPUs).
    pub gpu_seconds: f64,
    pub retry_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ModelEvent {
    ModelRegistered(Box<ModelRegistered>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRegistered {
    pub model_id: ModelId,
    pub user_id: UserId,
    pub job_id: JobId,
    pub dataset_id: DatasetId,
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_model_id: Option<ModelId>,
    pub configuration: JobConfiguration,
    pub quality: QualityMetrics,
    pub training: TrainingSummary,
    pub artifacts: Vec<ModelArtifact>,
    pub final_cost: Decimal,
    pub registered_at: DateTime<Utc>,
}

impl DomainEvent for ModelEvent {
    fn event_type(&self) -> String {
        match self {
            ModelEvent::ModelRegistered(_) => "ModelRegistered".to_string(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelCommand {
    /// Registering again (a saga retry after a crash) records nothing.
    Register(Box<ModelRegistered>),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("a model needs at least its adapter file")]
    NoArtifacts,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Model {
    id: Option<ModelId>,
}

impl Model {
    pub fn decide(&self, command: ModelCommand) -> Result<Vec<ModelEvent>, ModelError> {
        match command {
            ModelCommand::Register(registered) => {
                if self.id.is_some() {
                    return Ok(vec![]);
                }
                if registered.artifacts.is_empty() {
                    return Err(ModelError::NoArtifacts);
                }
                Ok(vec![ModelEvent::ModelRegistered(registered)])
            }
        }
    }
}

impl Aggregate for Model {
    const TYPE: &'static str = "model";
    type Command = ModelCommand;
    type Event = ModelEvent;
    type Error = ModelError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ModelEvent::ModelRegistered(e) => self.id = Some(e.model_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_bump_the_minor_number() {
        assert_eq!(next_version(None), "1.0.0");
        assert_eq!(next_version(Some("1.0.0")), "1.1.0");
        assert_eq!(next_version(Some("2.3.1")), "2.4.0");
    }

    #[test]
    fn convergence_follows_the_documented_rule() {
        // drop 1 - 0.5/2.0 = 0.75, gap (0.5-0.45)/0.5 = 0.1: score 0.675, excellent.
        let q = QualityMetrics::from_losses(2.0, 0.45, 0.5, 0.5);
        assert!((q.convergence_score - 0.675).abs() < 1e-12);
        assert_eq!(q.convergence_quality, Convergence::Excellent);
        assert!((q.perplexity - 0.5f64.exp()).abs() < 1e-12);
        // The same run ending 10 % above its best validation loss loses a level.
        let overfit = QualityMetrics::from_losses(2.0, 0.45, 0.5, 0.45);
        assert_eq!(overfit.convergence_quality, Convergence::Good);
        // Hardly any drop: poor.
        let flat = QualityMetrics::from_losses(1.0, 0.9, 0.95, 0.95);
        assert_eq!(flat.convergence_quality, Convergence::Poor);
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn convergence_levels_use_seed_001s_names() {
        let names: Vec<String> = [
            Convergence::Excellent,
            Convergence::Good,
            Convergence::Acceptable,
            Convergence::Poor,
        ]
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
        assert_eq!(names, vec!["excellent", "good", "acceptable", "poor"]);
        // A middling run is "acceptable".
        let q = QualityMetrics::from_losses(1.0, 0.6, 0.7, 0.7);
        assert_eq!(q.convergence_quality, Convergence::Acceptable);
    }
}
