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
