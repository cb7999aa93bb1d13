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
