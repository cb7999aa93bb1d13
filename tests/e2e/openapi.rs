use crate::common::TestApp;

#[tokio::test]
async fn the_served_document_equals_the_checked_in_file() {
    let app = TestApp::start().await;
    let (status, served) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, 200);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    let text = std::fs::read_to_string(path).expect("openapi/openapi.json is checked in");
    let checked_in: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(
        served == checked_in,
        "openapi/openapi.json is stale: regenerate it with `cargo run -p api --bin brightrun -- openapi > openapi/openapi.json`"
    );
    assert_eq!(
        text,
        api::openapi::to_pretty_json(),
        "the checked-in file is not the generator's exact output"
    );
    for path in [
        "/api/auth/signup",
        "/api/auth/login",
        "/api/auth/me",
        "/api/datasets",
        "/api/datasets/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            served["paths"].get(path).is_some(),
            "{path} missing from the document"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn the_docs_page_is_served_without_the_internet() {
    let app = TestApp::start().await;
    let page = app.http.get(app.url("/api/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://"),
        "the page must not load assets from a CDN"
    );
    let bundle = app
        .http
        .get(app.url("/api/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200, "assets are vendored into the binary");
    app.finish().await;
}

/// Every event type the domain defines is in the NATS contract for subscribers.
#[test]
fn the_nats_contract_lists_every_event_type() {
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let contract = std::fs::read_to_string(format!("{root}/docs/events.md")).unwrap();
    let mut found = Vec::new();
    for file in [
        "domain/src/dataset/events.rs",
        "domain/src/job/events.rs",
        "domain/src/job/telemetry.rs",
        "domain/src/model.rs",
        "domain/src/budget.rs",
        "domain/src/api_key.rs",
    ] {
        let source = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let start = source.find("fn event_type").expect("event_type");
        let body = &source[start..];
        let body = &body[..body[3..].find("fn ").map_or(body.len(), |i| i + 3)];
        for (i, part) in body.split('"').enumerate() {
            if i % 2 == 1 && part.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                found.push(part.to_string());
            }
        }
    }
    assert!(found.len() >= 28, "{found:?}");
    for event in &found {
        assert!(
            contract.contains(&format!("`{event}`")),
            "{event} is missing from docs/events.md"
        );
    }
}

/// Every endpoint the seeds name: seed 001's route tree and API sections, seed 000's
/// "Complete API reference", seed 002's dashboard stats, seed 004's confirm and metrics
/// routes (NextAuth's own routes are superseded by signup/login with bearer tokens).
const SEED_ENDPOINTS: [(&str, &str, &str); 31] = [
    ("post", "/api/auth/signup", "001 §1, 000, 002"),
    ("post", "/api/auth/login", "001 §1"),
    ("get", "/api/datasets", "001 tree + §2, 000"),
    ("post", "/api/datasets", "001 tree + §2, 000"),
    ("get", "/api/datasets/{id}", "001 tree + §2, 000"),
    ("patch", "/api/datasets/{id}", "001 tree + §2, 000"),
    ("delete", "/api/datasets/{id}", "001 tree + §2, 000"),
    ("post", "/api/datasets/{id}/upload", "001 tree"),
    ("post", "/api/datasets/{id}/confirm", "000, 004 F2.1"),
    ("post", "/api/datasets/validate", "001 tree + §2, 000"),
    ("get", "/api/jobs", "001 tree + §3, 000"),
    ("post", "/api/jobs", "001 tree + §3, 000"),
    ("get", "/api/jobs/{id}", "001 tree + §3, 000"),
    ("patch", "/api/jobs/{id}", "001 tree"),
    ("get", "/api/jobs/{id}/stream", "001 tree + §3, 000"),
    ("post", "/api/jobs/{id}/cancel", "001 tree + §3, 000"),
    ("get", "/api/jobs/{id}/metrics", "001 tree, 004"),
    ("post", "/api/jobs/estimate", "001 tree + §3, 000"),
    ("get", "/api/models", "001 tree + §4, 000"),
    ("get", "/api/models/{id}", "001 tree + §4, 000"),
    ("patch", "/api/models/{id}", "001 §4"),
    ("delete", "/api/models/{id}", "001 §4"),
    ("get", "/api/models/{id}/download", "001 tree + §4, 000"),
    ("post", "/api/models/{id}/deploy", "001 tree + §4, 000"),
    ("get", "/api/models/artifacts", "001 tree"),
    ("get", "/api/costs", "001 tree + §5, 000"),
    ("get", "/api/costs/summary", "001 tree + §5, 000"),
    ("get", "/api/notifications", "001 tree + §6, 000"),
    ("patch", "/api/notifications/{id}/read", "001 §6, 000"),
    ("get", "/api/dashboard/stats", "002"),
    ("get", "/api/auth/me", "001 §1 (session), 002"),
];

/// The operation's request body and JSON answers carry an example somewhere: on the media
/// type, or on the schema it refers to.
fn has_example(doc: &serde_json::Value, media: &serde_json::Value) -> bool {
    if media.get("example").is_some() || media.get("examples").is_some() {
        return true;
    }
    let schema = &media["schema"];
    if schema.get("example").is_some() || schema.get("examples").is_some() {
        return true;
    }
    schema["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .is_some_and(|name| {
            let s = &doc["components"]["schemas"][name];
            s.get("example").is_some() || s.get("examples").is_some()
        })
}

#[tokio::test]
async fn every_endpoint_the_seeds_name_is_served_and_documented() {
    let app = TestApp::start().await;
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, 200);
    let mut problems = Vec::new();
    for (method, path, source) in SEED_ENDPOINTS {
        let Some(op) = doc["paths"][path].get(method) else {
            problems.push(format!("{method} {path} ({source}) is missing"));
            continue;
        };
        if op["summary"].as_str().is_none_or(|s| s.trim().is_empty()) {
            problems.push(format!("{method} {path}: no summary"));
        }
        let responses = op["responses"].as_object().cloned().unwrap_or_default();
        if !responses
            .keys()
            .any(|code| code.parse::<u16>().is_ok_and(|c| c >= 400))
        {
            problems.push(format!("{method} {path}: no error answers"));
        }
        for (code, response) in &responses {
            let Ok(code) = code.parse::<u16>() else {
                continue;
            };
            if code >= 400 {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                if schema.as_str() != Some("#/components/schemas/ErrorEnvelope") {
                    problems.push(format!(
                        "{method} {path}: {code} does not answer the error envelope"
                    ));
                }
            }
        }
        if let Some(content) = op["requestBody"]["content"].as_object() {
            if !content.values().any(|media| has_example(&doc, media)) {
                problems.push(format!("{method} {path}: the request body has no example"));
            }
        }
        let success = responses
            .iter()
            .find(|(code, _)| code.starts_with('2'))
            .map(|(_, r)| r.clone());
        match success {
            None => problems.push(format!("{method} {path}: no success answer")),
            Some(r) => {
                if let Some(media) = r["content"].get("application/json") {
                    if !has_example(&doc, media) {
                        problems.push(format!("{method} {path}: the answer has no example"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    app.finish().await;
}
