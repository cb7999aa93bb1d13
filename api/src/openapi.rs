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
        (name = "openai", description = "OpenAI-compatible fine-tuning under `/v1`: files, fine-tuning jobs (events, checkpoints) and models in OpenAI's shapes and errors (`{\"error\": {message, type, param, code}}`), for the official `openai` SDK with `base_url=<host>/v1` and an API key. BrightRun-only settings ride in `metadata`: `preset`, `gpu_type`, `gpu_count`, `lora_rank`."),
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

/// The document as served and as checked in: generated from the handlers and types, with
/// the contract's statements (`crate::contract`) and an example for every body.
pub fn document() -> serde_json::Value {
    document_of(crate::app::router_parts().1)
}

/// The document of the handlers' generated one (the router hands over what it built).
pub fn document_of(generated: utoipa::openapi::OpenApi) -> serde_json::Value {
    let generated = serde_json::to_value(generated).unwrap_or_default();
    fill_examples(crate::contract::apply(generated))
}

/// The document, pretty, with a trailing newline (the checked-in file's exact text).
pub fn to_pretty_json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

/// Every JSON request body and success answer that has no hand-written example gets one
/// built from its schema: the schema's own examples and enums where it has them, otherwise a
/// value chosen by the field's name and format. Built from the schema, it always matches it.
pub fn fill_examples(mut doc: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let schemas = doc
        .pointer("/components/schemas")
        .cloned()
        .unwrap_or_default();
    let fill = |content: Option<&mut Value>| {
        let Some(content) = content.and_then(Value::as_object_mut) else {
            return;
        };
        if content.contains_key("example") || content.contains_key("examples") {
            return;
        }
        if let Some(schema) = content.get("schema").cloned() {
            content.insert("example".into(), synthesize(&schemas, &schema, "", 0));
        }
    };
    for op in crate::contract::operations(&mut doc) {
        fill(op.pointer_mut("/requestBody/content/application~1json"));
        if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
            for (code, response) in responses.iter_mut() {
                if code.starts_with('2') {
                    fill(response.pointer_mut("/content/application~1json"));
                }
            }
        }
    }
    doc
}

fn synthesize(
    schemas: &serde_json::Value,
    schema: &serde_json::Value,
    name: &str,
    depth: usize,
) -> serde_json::Value {
    use serde_json::{json, Value};
    if depth > 12 {
        return Value::Null;
    }
    if let Some(example) = schema.get("example") {
        return example.clone();
    }
    if let Some(r) = schema["$ref"].as_str() {
        let target = r.rsplit('/').next().unwrap_or_default();
        return synthesize(schemas, &schemas[target], name, depth + 1);
    }
    if let Some(all) = schema["allOf"].as_array() {
        let mut merged = serde_json::Map::new();
        for part in all {
            if let Value::Object(o) = synthesize(schemas, part, name, depth + 1) {
                merged.extend(o);
            }
        }
        return Value::Object(merged);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            let choice = options
                .iter()
                .find(|o| o["type"] != "null")
                .unwrap_or(&Value::Null);
            return synthesize(schemas, choice, name, depth + 1);
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        return values
            .iter()
            .find(|v| !v.is_null())
            .cloned()
            .unwrap_or(Value::Null);
    }
    let kind = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(types) => types
            .iter()
            .filter_map(|t| t.as_str())
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_string(),
        _ if schema.get("properties").is_some() => "object".to_string(),
        _ => "object".to_string(),
    };
    let lower = name.to_ascii_lowercase();
    match kind.as_str() {
        "object" => {
            let mut out = serde_json::Map::new();
            if let Some(props) = schema["properties"].as_object() {
                for (key, sub) in props {
                    out.insert(key.clone(), synthesize(schemas, sub, key, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => json!([synthesize(schemas, &schema["items"], name, depth + 1)]),
        "boolean" => json!(!lower.starts_with("has") || lower == "success"),
        "integer" => json!(match lower.as_str() {
            "page" => 1,
            "pagesize" => 20,
            "batchsize" => 4,
            "lorarank" => 16,
            "loraalpha" => 32,
            "numgpus" => 1,
            "gradientaccumulationsteps" => 4,
            "warmupsteps" => 100,
            "checkpointinterval" => 50,
            "earlystoppingpatience" => 3,
            "minreplicas" | "maxreplicas" => 1,
            n if n.contains("filesize") || n.contains("bytes") || n == "size" => 2_097_152,
            n if n.contains("tokens") => 184_320,
            n if n.contains("step") => 120,
            n if n.contains("epoch") => 3,
            n if n.contains("count") || n == "total" => 1,
            n if n.contains("seconds") || n.contains("remaining") => 1800,
            _ => 1,
        }),
        "number" => json!(match lower.as_str() {
            "loradropout" => 0.05,
            "validationsplitratio" => 0.1,
            "weightdecay" => 0.01,
            "maxgradnorm" => 1.0,
            "throughput" => 2900.0,
            "perplexity" => 2.32,
            n if n.contains("loss") => 0.842,
            n if n.contains("rate") && n.contains("learning") => 0.0002,
            n if n.contains("progress") || n.contains("utilization") => 62.5,
            n if n.contains("cost")
                || n.contains("budget")
                || n.contains("spen")
                || n.contains("amount") =>
                12.48,
            _ => 0.75,
        }),
        _ => {
            let format = schema["format"].as_str().unwrap_or_default();
            json!(match (format, lower.as_str()) {
                ("uuid", _) => "0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a10",
                ("date-time", _) => "2026-11-23T10:00:00Z",
                ("date", _) => "2026-11-23",
                (_, "email") => "ada@example.com",
                (_, "basemodel") => "llama-3-8b",
                (_, "presetid" | "presetused") => "balanced",
                (_, "level") => "info",
                (_, "currency") => "USD",
                (_, "password") => "correct horse battery",
                (_, "organization") => "Acme Support",
                (_, "optimizertype") => "adamw",
                (_, "scheduler") => "cosine",
                (_, "targetmodules") => "q_proj",
                (_, "currentstage") => "training",
                (_, "errorcode" | "code") => "OUT_OF_MEMORY",
                (_, "errormessage") => "CUDA out of memory at step 120",
                (_, "format") => "brightrun-lora-v4",
                (_, "role") => "user",
                (_, "tokenizer") => "o200k_base",
                (_, "content") => "Open Settings, then Security, then Reset password.",
                (_, "title") => "Training complete",
                (_, "period") => "2026-11-23",
                (_, n) if n.contains("url") =>
                    "https://brightrun.example/objects/…?X-Amz-Signature=…",
                (_, n) if n.contains("sha256") || n == "checksum" =>
                    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                (_, n) if n.contains("key") =>
                    "models/0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a10/adapter_model.safetensors",
                (_, "token") => "eyJhbGciOiJIUzI1NiJ9.…",
                (_, n) if n.contains("filename") => "support-chats.jsonl",
                (_, "message") => "Validation started",
                (_, n) if n.contains("name") => "Support chats",
                (_, "description") => "Customer support conversations, October",
                (_, "version") => "1.0.0",
                (_, n) if n.contains("status") => "ready",
                _ => "text",
            })
        }
    }
}
