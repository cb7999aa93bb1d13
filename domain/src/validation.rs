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

/// Control characters no text may hold: all but line feed, carriage return and tab.
pub fn is_refused_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\n' | '\r' | '\t')
}

/// Text we did not write (a dataset's, the cluster's) as an event may carry it: NUL, which a
/// JSON string may hold but no Postgres text or `jsonb` value (so no event or read model),
/// becomes U+FFFD; everything else is kept as it came.
pub fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// Checks a text's length in characters (not bytes) and refuses control characters: at least `min` once trimmed, at most
/// `max` as sent.
pub fn text_length(field: &str, value: &str, min: usize, max: usize) -> Result<(), FieldError> {
    if value.chars().any(is_refused_control) {
        return Err(FieldError::new(
            field,
            format!("{field} must not contain control characters (line breaks and tabs are fine)"),
        ));
    }
    let len = value.trim().chars().count();
    if len < min {
        return Err(if min == 1 {
            FieldError::new(field, format!("{field} is required"))
        } else {
            FieldError::new(field, format!("{field} must be at least {min} characters"))
        });
    }
    if value.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// A text that must stay on one line (a file name goes into headers and paths): no control
/// characters at all, line breaks and tabs included.
pub fn one_line(field: &str, value: &str) -> Result<(), FieldError> {
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("{field} must be one line without control characters"),
        ));
    }
    Ok(())
}

/// A name that becomes one segment of an object key (a file the cluster names): not empty,
/// at most 255 bytes, no path separator, not `.` or `..`, no control characters. A name the
/// cluster gives must not reach outside the place we put it.
pub fn one_segment(field: &str, value: &str) -> Result<(), FieldError> {
    let refused = value.is_empty()
        || value.len() > 255
        || value == "."
        || value == ".."
        || value.contains(['/', '\\'])
        || value.chars().any(char::is_control);
    if refused {
        return Err(FieldError::new(
            field,
            format!("{field} must be one name of at most 255 bytes, without a path or control characters (was {value:?})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_segment_is_a_name_and_never_a_path() {
        for good in ["adapter_model.safetensors", "ckpt-001", "a..b", ".hidden"] {
            assert!(one_segment("name", good).is_ok(), "{good}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "a\u{0}b",
            "a\nb",
            long.as_str(),
        ] {
            let e = one_segment("artifacts[0].name", bad).unwrap_err();
            assert_eq!(e.field, "artifacts[0].name", "{bad:?}");
        }
    }

    #[test]
    fn one_line_refuses_line_breaks_and_tabs_too() {
        assert!(one_line("fileName", "support chats (v2).jsonl").is_ok());
        for bad in ["a\nb", "a\rb", "a\tb", "a\u{7}b"] {
            let e = one_line("fileName", bad).unwrap_err();
            assert_eq!(e.field, "fileName", "{bad:?}");
        }
    }

    #[test]
    fn text_refuses_control_characters_and_counts_its_maximum_as_sent() {
        assert!(text_length("name", "Support bot\nv2\t(draft)", 1, 100).is_ok());
        for bad in ["a\u{0}", "\u{1b}[31m", "a\u{7f}", "a\u{85}"] {
            let e = text_length("name", bad, 1, 100).unwrap_err();
            assert_eq!(e.field, "name");
            assert!(e.message.contains("control characters"), "{e}");
        }
        // The minimum counts what trimming leaves; the maximum counts what was sent.
        assert!(text_length("name", "  a  ", 1, 5).is_ok());
        assert!(text_length("name", "  a   ", 1, 5).is_err());
        assert!(text_length("name", "   ", 1, 5).is_err());
    }
}
