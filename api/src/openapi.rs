//! The OpenAPI document, generated from the handlers and types (utoipa).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "BrightRun API",
        description = "Turn conversation datasets into trained LoRA adapters. Every answer is an envelope: \
            `{success: true, data, meta?}` or `{success: false, error: {code, message, details?, field?}}`.",
        version = "0.1.0",
        license(name = "Proprietary")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "datasets", description = "Conversation datasets"),
        (name = "jobs", description = "Training jobs: configuration, estimate, progress, live stream, cancel"),
        (name = "models", description = "Trained LoRA adapters and their files"),
        (name = "costs", description = "The cost ledger by period"),
        (name = "notifications", description = "Notifications and the dashboard's figures"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document as served and as checked in (pretty, trailing newline).
pub fn document() -> utoipa::openapi::OpenApi {
    crate::app::router_parts().1
}

pub fn to_pretty_json() -> String {
    let mut text = document().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}
