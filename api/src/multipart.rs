//! Bounds on multipart forms (`POST /v1/files`, `POST /api/datasets/{id}/upload`): the file
//! streams through, but nothing else in a form may make the server hold or walk more than a
//! little. axum's `Multipart` reads a text field whole and walks any number of fields, so
//! each form here counts its fields and reads text through `text`.

use axum::extract::multipart::Field;

use crate::error::{ApiError, ApiResult, ErrorCode};

/// The most a text field (`purpose`, or any field but the file) may hold.
pub const MAX_TEXT_FIELD_BYTES: usize = 4 * 1024;
/// The most fields a form may have, the file included.
pub const MAX_FIELDS: usize = 16;

/// Counts a form's fields as they come.
#[derive(Debug, Default)]
pub struct FieldCount(usize);

impl FieldCount {
    /// One more field: refused (400, naming `param`) past `MAX_FIELDS`.
    pub fn one_more(&mut self, param: &str) -> ApiResult<()> {
        self.0 += 1;
        if self.0 > MAX_FIELDS {
            return Err(ApiError::validation(
                param,
                format!("a form may have at most {MAX_FIELDS} fields; nothing was stored"),
            ));
        }
        Ok(())
    }
}

/// The text of `field`, read to its end but never past `MAX_TEXT_FIELD_BYTES` (413 naming
/// the field); not UTF-8 is a 400 naming it. `broken` maps a form that stops parsing.
pub async fn text(
    mut field: Field<'_>,
    broken: impl Fn(axum::extract::multipart::MultipartError) -> ApiError,
) -> ApiResult<String> {
    let name = field.name().unwrap_or("field").to_string();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(&broken)? {
        if bytes.len() + chunk.len() > MAX_TEXT_FIELD_BYTES {
            let mut err = ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the form field `{name}` holds more than {MAX_TEXT_FIELD_BYTES} bytes; nothing was stored"
                ),
            );
            err.body.field = Some(name);
            return Err(err);
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| {
        ApiError::validation(
            name.clone(),
            format!("the form field `{name}` is not UTF-8 text"),
        )
    })
}
