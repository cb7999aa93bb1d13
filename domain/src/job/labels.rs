//! What a client attaches to a job to find it again: a model-name suffix and a string map
//! (OpenAI's `suffix` and `metadata`). They change nothing about the training.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validation::is_refused_control;
use crate::FieldError;

/// At most this many metadata pairs (OpenAI's bound).
pub const MAX_METADATA_PAIRS: usize = 16;
pub const MAX_METADATA_KEY_CHARS: usize = 64;
pub const MAX_METADATA_VALUE_CHARS: usize = 512;
pub const MAX_SUFFIX_CHARS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLabels {
    /// Part of the fine-tuned model's name, `ft:<base>:<suffix>:<id>`.
    pub suffix: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

impl JobLabels {
    /// The labels when each is within its bounds, else the first field that is not. A suffix
    /// is letters, digits, `-` and `_` (it sits between the `:` of a model name).
    pub fn check(self) -> Result<JobLabels, FieldError> {
        if let Some(suffix) = &self.suffix {
            let chars = suffix.chars().count();
            if chars == 0 || chars > MAX_SUFFIX_CHARS {
                return Err(FieldError::new(
                    "suffix",
                    format!("suffix must be 1 to {MAX_SUFFIX_CHARS} characters"),
                ));
            }
            if !suffix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(FieldError::new(
                    "suffix",
                    "suffix may hold only letters, digits, '-' and '_'",
                ));
            }
        }
        if self.metadata.len() > MAX_METADATA_PAIRS {
            return Err(FieldError::new(
                "metadata",
                format!("metadata holds at most {MAX_METADATA_PAIRS} pairs"),
            ));
        }
        for (key, value) in &self.metadata {
            if key.is_empty() || key.chars().count() > MAX_METADATA_KEY_CHARS {
                return Err(FieldError::new(
                    "metadata",
                    format!("a metadata key must be 1 to {MAX_METADATA_KEY_CHARS} characters"),
                ));
            }
            if key.chars().any(is_refused_control) {
                return Err(FieldError::new(
                    "metadata",
                    "a metadata key may not hold control characters",
                ));
            }
            if value.chars().any(is_refused_control) {
                return Err(FieldError::new(
                    format!("metadata.{key}"),
                    "a metadata value may not hold control characters (line feed, carriage return and tab aside)",
                ));
            }
            if value.chars().count() > MAX_METADATA_VALUE_CHARS {
                return Err(FieldError::new(
                    format!("metadata.{key}"),
                    format!(
                        "a metadata value must be at most {MAX_METADATA_VALUE_CHARS} characters"
                    ),
                ));
            }
        }
        Ok(self)
    }
}
