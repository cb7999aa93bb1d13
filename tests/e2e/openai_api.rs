//! The `/v1` surface answers OpenAI's error shape for what never reaches a handler too: no
//! key, malformed bodies, unknown routes and methods. (The official SDK's own tests are in
//! tests/sdk, run by scripts/sdk-test.sh.)

use serde_json::{json, Value};

use crate::common::{send, TestApp};
use crate::saga::{launch, start, until};

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

/// A form's fields beside the file are bounded: a text field past 4 KiB answers 413 naming
/// it, more than 16 fields or a second file 400, in OpenAI's shape, and nothing is stored.
#[tokio::test]
async fn v1_file_forms_are_bounded_field_by_field_and_in_their_number() {
    use reqwest::multipart::{Form, Part};
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let file = || {
        Part::bytes(
            std::fs::read(format!(
                "{}/../examples/support-chats-openai.jsonl",
                env!("CARGO_MANIFEST_DIR")
            ))
            .expect("example"),
        )
        .file_name("chats.jsonl")
    };
    let upload = |form: Form| {
        send(
            app.http
                .post(app.url("/v1/files"))
                .bearer_auth(&token)
                .multipart(form),
        )
    };
    let big = "x".repeat(api::multipart::MAX_TEXT_FIELD_BYTES + 1);

    let (status, body) = upload(
        Form::new()
            .text("purpose", big.clone())
            .part("file", file()),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_openai_error(&body, "invalid_request_error", Some("purpose"));

    let (status, body) = upload(
        Form::new()
            .text("purpose", "fine-tune")
            .part("file", file())
            .text("note", big.clone()),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_openai_error(&body, "invalid_request_error", Some("note"));

    let mut many = Form::new().text("purpose", "fine-tune");
    for i in 0..api::multipart::MAX_FIELDS {
        many = many.text(format!("extra{i}"), "x");
    }
    let (status, body) = upload(many.part("file", file())).await;
    assert_eq!(status, 400, "{body}");
    assert_openai_error(&body, "invalid_request_error", Some("file"));

    let (status, body) = upload(
        Form::new()
            .text("purpose", "fine-tune")
            .part("file", file())
            .part("file", file()),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_openai_error(&body, "invalid_request_error", Some("file"));

    let (status, body) = app.get("/v1/files", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!([]), "nothing was stored");

    // Within the bounds, the same form is taken.
    let (status, body) = upload(
        Form::new()
            .text("purpose", "fine-tune")
            .text("note", "a short note")
            .part("file", file()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].as_str().unwrap().starts_with("file-"), "{body}");

    // The API's own upload form is bounded the same way.
    let dataset = app.register_dataset(&token, "form", 10).await;
    let (status, body) = send(
        app.http
            .post(app.url(&format!("/api/datasets/{dataset}/upload")))
            .bearer_auth(&token)
            .multipart(
                Form::new()
                    .text("comment", big)
                    .part("file", Part::bytes(vec![b'x'; 10])),
            ),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(body["error"]["field"], "comment");
    app.finish().await;
}

/// A job's events over `/v1` say what happened, never where its files lie in our bucket nor
/// the saga's and the ledger's own keys.
#[tokio::test]
async fn v1_job_events_name_no_object_keys() {
    let app = start(&[]).await;
    let (_, token) = app.user("ada").await;
    let job = launch(&app, &token).await;
    until(&app, &token, &job, "completion", |j| {
        j["status"] == "completed"
    })
    .await;
    let (status, body) = app
        .get(
            &format!("/v1/fine_tuning/jobs/ftjob-{job}/events?limit=100"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let events = body["data"].as_array().expect("events");
    let saved = events
        .iter()
        .find(|e| e["data"].get("JobCheckpointSaved").is_some())
        .expect("a checkpoint event");
    assert!(
        saved["data"]["JobCheckpointSaved"]["step"].is_u64(),
        "{saved}"
    );
    assert!(events
        .iter()
        .any(|e| e["data"].get("JobCostAccrued").is_some()));
    let text = body.to_string();
    for internal in [
        "s3Key",
        "idempotencyKey",
        "entryKey",
        "checkpoints/",
        "models/",
    ] {
        assert!(!text.contains(internal), "{internal} in {text}");
    }
    app.finish().await;
}
