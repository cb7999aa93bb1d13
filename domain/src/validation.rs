use serde::Serialize;

/// A rule a request broke, named by the wire (camelCase) field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Checks a text's length in characters (not bytes), after trimming.
pub fn text_length(field: &str, value: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let len = value.trim().chars().count();
    if len < min {
        return Err(if min == 1 {
            FieldError::new(field, format!("{field} is required"))
        } else {
            FieldError::new(field, format!("{field} must be at least {min} characters"))
        });
    }
    if len > max {
        return Err(FieldError::new(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    Ok(())
}
