use axum::routing::get;
use serde_json::{json, Value};

use crate::common::TestApp;

#[tokio::test]
async fn framework_errors_answer_the_seed_envelope() {
    let app = TestApp::start().await;
    let (status, body) = app.get("/api/no-such-thing", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    // Outside /api the web console answers: its page for any of its routes.
    for path in ["/", "/datasets/some-id", "/jobs/new"] {
        let resp = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(resp.text().await.unwrap().contains("BrightRun"), "{path}");
    }
    let missing = app
        .http
        .get(app.url("/assets/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let resp = app
        .http
        .delete(app.url("/api/datasets"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");

    let (_, token) = app.user("ada").await;
    let resp = app
        .http
        .post(app.url("/api/datasets"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"name\": \"unterminated")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(body["error"]["field"], "body");

    let big = json!({"name": "x".repeat(2 * 1024 * 1024)});
    let (status, body) = app.post("/api/datasets", Some(&token), big).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");

    let resp = app
        .http
        .post(app.url("/api/auth/login"))
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNSUPPORTED_MEDIA_TYPE");
    app.finish().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_echoes_the_callers() {
    let app = TestApp::start().await;
    let made = app.http.get(app.url("/healthz")).send().await.unwrap();
    let id = made
        .headers()
        .get("x-request-id")
        .expect("request id")
        .to_str()
        .unwrap()
        .to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let echoed = app
        .http
        .get(app.url("/nope"))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers().get("x-request-id").unwrap(), "trace-123");
    app.finish().await;
}

#[tokio::test]
async fn a_panicking_handler_answers_500_with_the_request_id_and_no_stack_trace() {
    // The product's middleware around a handler that panics.
    let router = axum::Router::new()
        .route(
            "/boom",
            get(|| async { panic!("secret internals at src/lib.rs:42") as &'static str }),
        )
        .layer(axum::middleware::from_fn(api::request_id::middleware));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}/boom"))
        .header("x-request-id", "req-boom-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers().get("x-request-id").unwrap(), "req-boom-1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "INTERNAL_ERROR");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("req-boom-1"), "{message}");
    assert!(!body.to_string().contains("secret internals"), "{body}");
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let app = TestApp::start().await;
    let (status, health) = app.get("/healthz", None).await;
    assert_eq!(
        (status, health["data"]["status"].as_str()),
        (200, Some("ok"))
    );
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["data"], json!({"postgres": true, "nats": true}));

    let (_, token) = app.user("ada").await;
    app.register_dataset(&token, "metered", 10).await;
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("brightrun_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("route=\"/api/datasets\""), "{text}");
    assert!(
        text.contains("brightrun_subscription_lag_events{subscription=\"relay\"}"),
        "{text}"
    );
    assert!(
        text.contains("brightrun_subscription_lag_events{subscription=\"projection.datasets\"}"),
        "{text}"
    );
    app.finish().await;
}

#[tokio::test]
async fn readiness_fails_when_nats_is_unreachable() {
    let mut iso = crate::common::Isolation::new();
    iso.nats_url = format!("nats://127.0.0.1:{}", crate::common::free_port());
    let app = TestApp::start_with(iso, api::Roles::ALL, &[]).await;
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "NOT_READY");
    assert_eq!(
        body["error"]["details"],
        json!({"postgres": true, "nats": false})
    );
    app.finish().await;
}
