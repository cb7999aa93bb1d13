//! What validation answers; field names are the wire names (camelCase).

use serde::{Deserialize, Serialize};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Issue {
    /// 1-based line number; 0 for the file as a whole.
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    pub total_conversations: u64,
    pub total_training_pairs: u64,
    pub total_validation_pairs: u64,
    pub estimated_pairs: u64,
    pub total_tokens: u64,
    pub avg_turns_per_conversation: f64,
    pub avg_tokens_per_turn: f64,
    /// The BPE vocabulary the tokens were counted with.
    pub tokenizer: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicCount {
    pub topic: String,
    pub count: u64,
}

/// Tokens per conversation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LengthDistribution {
    pub min: u64,
    pub max: u64,
    pub mean: f64,
    /// The middle value, or the mean of the two middle values.
    pub median: f64,
    /// Nearest rank: the smallest value with at least 95 % of conversations at or below it.
    pub p95: u64,
}

impl LengthDistribution {
    pub fn of_sorted(lengths: &[u64]) -> LengthDistribution {
        let n = lengths.len();
        if n == 0 {
            return LengthDistribution {
                min: 0,
                max: 0,
                mean: 0.0,
                median: 0.0,
                p95: 0,
            };
        }
        let median = if n % 2 == 1 {
            lengths[n / 2] as f64
        } else {
            (lengths[n / 2 - 1] + lengths[n / 2]) as f64 / 2.0
        };
        let rank = (n * 95).div_ceil(100).max(1);
        LengthDistribution {
            min: lengths[0],
            max: lengths[n - 1],
            mean: lengths.iter().sum::<u64>() as f64 / n as f64,
            median,
            p95: lengths[rank - 1],
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FullStatistics {
    /// Distinct token ids seen.
    pub vocabulary_size: u64,
    pub unique_speakers: u64,
    pub topic_distribution: Vec<TopicCount>,
    pub length_distribution: LengthDistribution,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleTurn {
    pub role: String,
    pub content: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleConversation {
    pub conversation_id: String,
    pub turns: Vec<SampleTurn>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationReport {
    pub is_valid: bool,
    /// No errors and at least the minimum number of training pairs (10).
    pub training_ready: bool,
    /// The first errors (100 at most); `error_count` counts them all.
    pub errors: Vec<Issue>,
    pub error_count: u64,
    pub warnings: Vec<Issue>,
    pub warning_count: u64,
    pub statistics: Statistics,
    pub full_statistics: FullStatistics,
    /// The first conversations (3), normalised to roles and contents.
    pub sample_conversations: Vec<SampleConversation>,
}
