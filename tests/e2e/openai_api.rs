//! The `/v1` surface answers OpenAI's error shape for what never reaches a handler too: no
//! key, malformed bodies, unknown routes and methods. (The official SDK's own tests are in
//! tests/sdk, run by scripts/sdk-test.sh.)

use serde_json::{json, Value};

use crate::common::{send, TestApp};

fn assert_openai_error(body: &Value, kind: &str, param: Option<&str>) {
    let error = &body["error"];
    assert!(body.get("success").is_none(), "no envelope on /v1: {body}");
    assert_eq!(error["type"], kind, "{body}");
    assert_eq!(error["param"].as_str(), param, "{body}");
    assert!(
        !error["message"].as_str().unwrap_or_default().is_empty(),
        "{body}"
    );
    assert!(error["code"].is_string(), "{body}");
}

#[tokio::test]
async fn v1_errors_have_openais_shape_wherever_they_arise() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;

    let (status, body) = app.get("/v1/fine_tuning/jobs", None).await;
    assert_eq!(status, 401);
    assert_openai_error(&body, "authentication_error", None);
    assert_eq!(body["error"]["code"], "invalid_api_key");

    let (status, body) = send(
        app.http
            .post(app.url("/v1/fine_tuning/jobs"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(status, 400);
    assert_openai_error(&body, "invalid_request_error", Some("body"));

    let (status, body) = app
        .post(
            "/v1/fine_tuning/jobs",
            Some(&token),
            json!({"model": "llama-3-8b"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_openai_error(&body, "invalid_request_error", Some("training_file"));

    let (status, body) = app
        .post(
            "/v1/fine_tuning/jobs",
            Some(&token),
            json!({"model": "llama-3-8b", "training_file": "file-x", "hyperparameters": {"n_epochs": "lots"}}),
        )
        .await;
    assert_eq!(status, 400);
    assert_openai_error(
        &body,
        "invalid_request_error",
        Some("hyperparameters.n_epochs"),
    );

    let (status, body) = app.get("/v1/no/such/route", Some(&token)).await;
    assert_eq!(status, 404);
    assert_openai_error(&body, "invalid_request_error", None);

    let (status, body) = send(app.http.put(app.url("/v1/files")).bearer_auth(&token)).await;
    assert_eq!(status, 405);
    assert_openai_error(&body, "invalid_request_error", None);

    let (status, body) = send(
        app.http
            .post(app.url("/v1/files"))
            .bearer_auth(&token)
            .header("content-type", "text/plain")
            .body("hello"),
    )
    .await;
    assert_eq!(status, 400);
    assert_openai_error(&body, "invalid_request_error", Some("file"));

    let (status, body) = app.get("/v1/files?limit=0", Some(&token)).await;
    assert_eq!(status, 400);
    assert_openai_error(&body, "invalid_request_error", Some("limit"));

    // Postgres refuses NUL in jsonb: it is refused before, as bad input.
    let (status, body) = app
        .get(
            "/v1/fine_tuning/jobs?metadata%5Bteam%5D=a%00b",
            Some(&token),
        )
        .await;
    assert_eq!(status, 400);
    assert_openai_error(&body, "invalid_request_error", Some("metadata[team]"));

    // /api keeps its envelope.
    let (status, body) = app.get("/api/jobs/nope", Some(&token)).await;
    assert_eq!(status, 404);
    assert_eq!(body["success"], false);
    app.finish().await;
}
