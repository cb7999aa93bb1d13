//! A dataset's whole life through HTTP and the real S3 protocol: register, presigned PUT,
//! confirm, background validation to `ready` or `error`, delete, and the purge of its object.

use std::time::Duration;

use domain::dataset::validator::{validate_bytes, ValidatorOptions};
use domain::dataset::DatasetFormat;
use infrastructure::tokenizer::O200k;
use serde_json::{json, Value};

use crate::common::{eventually, send, stream_messages, Isolation, TestApp};

fn example(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))).expect("example")
}

/// Registers `bytes` as a dataset and uploads them with the presigned request: (id, body).
async fn upload(app: &TestApp, token: &str, name: &str, format: &str, bytes: &[u8]) -> String {
    let (status, body) = app
        .post(
            "/api/datasets",
            Some(token),
            json!({"name": name, "format": format, "fileSize": bytes.len(), "fileName": "data.jsonl"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let url = body["data"]["uploadUrl"].as_str().expect("uploadUrl");
    let put = app
        .http
        .put(url)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("PUT");
    assert!(put.status().is_success(), "upload: {}", put.status());
    body["data"]["datasetId"].as_str().expect("id").to_string()
}

async fn confirm(app: &TestApp, token: &str, id: &str) -> (u16, Value) {
    app.post(
        &format!("/api/datasets/{id}/confirm"),
        Some(token),
        json!({}),
    )
    .await
}

/// Polls `GET /api/datasets/{id}` until its status is not `validating`.
async fn settled(app: &TestApp, token: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = app.get(&format!("/api/datasets/{id}"), Some(token)).await;
        assert_eq!(status, 200, "{body}");
        let dataset = body["data"]["dataset"].clone();
        if dataset["status"] != "validating" {
            return dataset;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still validating: {dataset}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_example_goes_from_upload_to_ready_with_the_statistics_of_the_file() {
    let app = TestApp::start().await;
    let (user_id, token) = app.user("ada").await;
    let file = example("support-chats-v4.jsonl");
    let id = upload(&app, &token, "Support chats", "brightrun-lora-v4", &file).await;

    let (status, body) = confirm(&app, &token, &id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["message"], "Validation started");
    assert_eq!(body["data"]["status"], "validating");
    let dataset = settled(&app, &token, &id).await;
    assert_eq!(dataset["status"], "ready", "{dataset}");

    // Hand-checked figures of the example, and the validator's own figures on the same bytes.
    assert_eq!(dataset["totalConversations"], 18);
    assert_eq!(
        dataset["totalTrainingPairs"].as_i64().unwrap()
            + dataset["totalValidationPairs"].as_i64().unwrap(),
        24
    );
    let expected = validate_bytes(
        DatasetFormat::BrightrunLoraV4,
        &file,
        &O200k::load().unwrap(),
        ValidatorOptions::default(),
    );
    let s = &expected.statistics;
    assert_eq!(dataset["totalTrainingPairs"], s.total_training_pairs);
    assert_eq!(dataset["totalValidationPairs"], s.total_validation_pairs);
    assert_eq!(dataset["totalTokens"], s.total_tokens);
    assert_eq!(
        dataset["avgTurnsPerConversation"],
        s.avg_turns_per_conversation
    );
    assert_eq!(dataset["avgTokensPerTurn"], s.avg_tokens_per_turn);
    assert_eq!(dataset["tokenizer"], "o200k_base");
    assert_eq!(dataset["trainingReady"], true);
    assert_eq!(
        dataset["fullStatistics"],
        serde_json::to_value(&expected.full_statistics).unwrap()
    );
    assert_eq!(dataset["sampleConversations"].as_array().unwrap().len(), 3);
    assert_eq!(
        dataset["sampleConversations"],
        serde_json::to_value(&expected.sample_conversations).unwrap()
    );
    assert_eq!(dataset["validationErrors"], json!([]));
    assert!(dataset["uploadedAt"].is_string() && dataset["validatedAt"].is_string());

    // A repeated confirm changes nothing; the list's trainingReady filter sees the dataset.
    let (status, again) = confirm(&app, &token, &id).await;
    assert_eq!(status, 200);
    assert_eq!(again["data"]["message"], "Validation already started");
    assert_eq!(again["data"]["status"], "ready");
    let (_, ready) = app
        .get("/api/datasets?trainingReady=true", Some(&token))
        .await;
    assert_eq!(ready["data"]["datasets"][0]["id"], id.as_str());
    let (_, not_ready) = app
        .get("/api/datasets?trainingReady=false", Some(&token))
        .await;
    assert_eq!(not_ready["meta"]["pagination"]["total"], 0);
    // The status filter: ready lists it, validating and error do not.
    for (status, total) in [("ready", 1), ("validating", 0), ("error", 0), ("all", 1)] {
        let (code, list) = app
            .get(&format!("/api/datasets?status={status}"), Some(&token))
            .await;
        assert_eq!(code, 200, "{list}");
        assert_eq!(
            list["meta"]["pagination"]["total"], total,
            "status={status}"
        );
    }

    // Subscribers of NATS get what a `dataset_ready` notification needs.
    let messages = stream_messages(
        &app.iso.nats_url,
        &app.iso.stream,
        3,
        Duration::from_secs(10),
    )
    .await;
    let ready_event = messages
        .iter()
        .find(|(subject, _, _)| subject.ends_with(&format!("dataset.{id}.DatasetReady")))
        .unwrap_or_else(|| panic!("DatasetReady published: {messages:?}"));
    let payload = &ready_event.2["payload"];
    assert_eq!(payload["userId"], user_id.as_str());
    assert_eq!(payload["name"], "Support chats");
    assert_eq!(payload["trainingReady"], true);
    // The read model of a validated dataset is rebuilt identically from the events.
    let datasets = projections::by_name("datasets").unwrap();
    let report = projections::replay::replay(app.pool(), datasets)
        .await
        .unwrap();
    assert_eq!(report.differences, 0);
    app.finish().await;
}

#[tokio::test]
async fn the_legacy_format_is_validated_too() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let file = example("legacy-chats-v3.jsonl");
    let id = upload(&app, &token, "Legacy", "brightrun-lora-v3", &file).await;
    assert_eq!(confirm(&app, &token, &id).await.0, 200);
    let dataset = settled(&app, &token, &id).await;
    assert_eq!(dataset["status"], "ready", "{dataset}");
    assert!(dataset["totalTokens"].as_i64().unwrap() > 0);
    app.finish().await;
}

#[tokio::test]
async fn the_openai_sharegpt_and_alpaca_formats_validate_and_list_by_format() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    for (file, format, pairs) in [
        ("support-chats-openai.jsonl", "openai-chat", 23),
        ("support-chats-sharegpt.jsonl", "sharegpt", 24),
        ("support-faq-alpaca.jsonl", "alpaca", 18),
    ] {
        let id = upload(&app, &token, format, format, &example(file)).await;
        assert_eq!(confirm(&app, &token, &id).await.0, 200);
        let dataset = settled(&app, &token, &id).await;
        assert_eq!(dataset["status"], "ready", "{format}: {dataset}");
        assert_eq!(dataset["trainingReady"], true, "{format}");
        assert_eq!(dataset["format"], format);
        assert_eq!(dataset["totalConversations"], 18, "{format}");
        let counted = dataset["totalTrainingPairs"].as_i64().unwrap()
            + dataset["totalValidationPairs"].as_i64().unwrap();
        assert_eq!(counted, pairs, "{format}");
        let (status, listed) = app
            .get(&format!("/api/datasets?format={format}"), Some(&token))
            .await;
        assert_eq!(status, 200);
        assert_eq!(listed["meta"]["pagination"]["total"], 1, "{format}");
    }
    // A file in one format declared as another ends in error, by line.
    let id = upload(
        &app,
        &token,
        "Misnamed",
        "alpaca",
        &example("support-chats-sharegpt.jsonl"),
    )
    .await;
    assert_eq!(confirm(&app, &token, &id).await.0, 200);
    let dataset = settled(&app, &token, &id).await;
    assert_eq!(dataset["status"], "error", "{dataset}");
    let first = &dataset["validationErrors"][0];
    assert_eq!(first["line"], 1);
    assert_eq!(first["field"], "instruction");
    app.finish().await;
}

#[tokio::test]
async fn an_invalid_file_ends_in_error_with_line_numbered_errors() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let file = example("invalid-v4.jsonl");
    let id = upload(&app, &token, "Broken", "brightrun-lora-v4", &file).await;
    assert_eq!(confirm(&app, &token, &id).await.0, 200);
    let dataset = settled(&app, &token, &id).await;
    assert_eq!(dataset["status"], "error", "{dataset}");
    assert_eq!(dataset["trainingReady"], false);
    let errors = dataset["validationErrors"].as_array().unwrap();
    assert!(
        dataset["validationErrorCount"].as_i64().unwrap() >= 3,
        "{dataset}"
    );
    let line2 = errors
        .iter()
        .find(|e| e["line"] == 2)
        .expect("line 2 reported");
    assert_eq!(line2["code"], "INVALID_JSON");
    assert!(errors.iter().any(|e| e["line"] == 4
        && e["field"] == "conversation_id"
        && e["code"] == "MISSING_FIELD"));
    let message = dataset["errorMessage"].as_str().unwrap();
    assert!(message.contains("line 2"), "{message}");
    assert!(dataset["validationWarnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["code"] == "DUPLICATE_ID"));
    let (_, failed) = app
        .get("/api/datasets?trainingReady=false", Some(&token))
        .await;
    assert_eq!(failed["meta"]["pagination"]["total"], 1);

    // The read model of a failed validation is rebuilt identically from the events.
    let datasets = projections::by_name("datasets").unwrap();
    let report = projections::replay::replay(app.pool(), datasets)
        .await
        .unwrap();
    assert_eq!(report.differences, 0);
    app.finish().await;
}

#[tokio::test]
async fn confirm_needs_the_whole_file_and_the_dataset_stays_uploading_otherwise() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let file = example("support-chats-v4.jsonl");
    let id = app
        .register_dataset(&token, "Support chats", file.len() as u64)
        .await;

    let (status, body) = confirm(&app, &token, &id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "UPLOAD_NOT_FOUND");

    // Another client stored a different size at the key (the presigned URL itself refuses that).
    let (_, detail) = app.get(&format!("/api/datasets/{id}"), Some(&token)).await;
    let key = detail["data"]["dataset"]["s3Key"]
        .as_str()
        .unwrap()
        .to_string();
    let objects = app.service.as_ref().unwrap().state.objects.clone();
    let short = &file[..100];
    let presigned = objects
        .presign_put(
            &key,
            short.len() as u64,
            Duration::from_secs(60),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let put = app
        .http
        .put(&presigned.url)
        .body(short.to_vec())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());

    let (status, body) = confirm(&app, &token, &id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "UPLOAD_SIZE_MISMATCH");
    assert_eq!(body["error"]["field"], "fileSize");
    assert_eq!(body["error"]["details"]["storedSize"], 100);
    assert_eq!(body["error"]["details"]["declaredSize"], file.len());
    let (_, detail) = app.get(&format!("/api/datasets/{id}"), Some(&token)).await;
    assert_eq!(detail["data"]["dataset"]["status"], "uploading");
    app.finish().await;
}

#[tokio::test]
async fn another_users_dataset_is_not_found_on_every_endpoint() {
    let app = TestApp::start().await;
    let (_, owner) = app.user("owner").await;
    let (_, stranger) = app.user("stranger").await;
    let file = example("support-chats-v4.jsonl");
    let id = upload(&app, &owner, "Private", "brightrun-lora-v4", &file).await;
    let path = format!("/api/datasets/{id}");
    let url = app.url(&path);
    let attempts = [
        app.http.get(&url),
        app.http.patch(&url).json(&json!({"name": "mine now"})),
        app.http.delete(&url),
        app.http
            .post(app.url(&format!("{path}/confirm")))
            .json(&json!({})),
    ];
    for request in attempts {
        let (status, body) = send(request.bearer_auth(&stranger)).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "DATASET_NOT_FOUND");
    }
    let (_, detail) = app.get(&path, Some(&owner)).await;
    assert_eq!(
        detail["data"]["dataset"]["status"], "uploading",
        "the stranger changed nothing"
    );
    assert_eq!(detail["data"]["dataset"]["name"], "Private");
    app.finish().await;
}

/// A file larger than one read chunk streams through validation in pieces.
#[tokio::test]
async fn a_multi_chunk_file_streams_through_validation() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let mut file = Vec::new();
    let mut i = 0;
    while file.len() < 3 * application::validation::CHUNK_BYTES + 1000 {
        file.extend_from_slice(
            format!(
                "{}\n",
                json!({"conversation_id": format!("c{i}"), "turns": [
                    {"role": "user", "content": format!("Question number {i}: how do I reset my password?")},
                    {"role": "assistant", "content": "Open Settings, then Security, then Reset password."}]})
            )
            .as_bytes(),
        );
        i += 1;
    }
    let id = upload(&app, &token, "Generated", "brightrun-lora-v4", &file).await;
    assert_eq!(confirm(&app, &token, &id).await.0, 200);
    let dataset = settled(&app, &token, &id).await;
    assert_eq!(dataset["status"], "ready", "{dataset}");
    assert_eq!(dataset["totalConversations"], i);
    assert_eq!(
        dataset["totalTrainingPairs"].as_i64().unwrap()
            + dataset["totalValidationPairs"].as_i64().unwrap(),
        i
    );
    app.finish().await;
}

#[tokio::test]
async fn the_object_of_a_deleted_dataset_is_purged_after_the_retention() {
    let app = TestApp::start_with(
        Isolation::new(),
        api::Roles::ALL,
        &[
            ("DATASET_PURGE_AFTER_SECONDS", "1"),
            ("DATASET_PURGE_INTERVAL_SECONDS", "1"),
        ],
    )
    .await;
    let (_, token) = app.user("ada").await;
    let file = example("support-chats-v4.jsonl");
    let id = upload(&app, &token, "Short-lived", "brightrun-lora-v4", &file).await;
    let kept = upload(&app, &token, "Kept", "brightrun-lora-v4", &file).await;
    let (_, detail) = app.get(&format!("/api/datasets/{id}"), Some(&token)).await;
    let key = detail["data"]["dataset"]["s3Key"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, detail) = app
        .get(&format!("/api/datasets/{kept}"), Some(&token))
        .await;
    let kept_key = detail["data"]["dataset"]["s3Key"]
        .as_str()
        .unwrap()
        .to_string();

    let (status, body) = send(
        app.http
            .delete(app.url(&format!("/api/datasets/{id}")))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let objects = app.service.as_ref().unwrap().state.objects.clone();
    eventually("the object is purged", Duration::from_secs(20), || {
        let objects = objects.clone();
        let key = key.clone();
        async move { objects.size_of(&key).await.unwrap().is_none() }
    })
    .await;
    let pool = app.pool().clone();
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    eventually("the purge is recorded", Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT purged_at IS NOT NULL FROM rm_datasets WHERE id = $1",
            )
            .bind(uuid)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    })
    .await;
    let purges: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'DatasetObjectPurged'",
    )
    .bind(&id)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(purges, 1, "purged once");
    assert_eq!(
        objects.size_of(&kept_key).await.unwrap(),
        Some(file.len() as u64),
        "a dataset that is not deleted keeps its object"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_file_with_nul_characters_validates_and_the_next_one_still_does() {
    // NUL is valid in a JSON string but in no Postgres text: a report quoting it could not
    // be recorded, and the validation worker retried that dataset for ever, before all others.
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let file: String = (0..12)
        .map(|i| {
            json!({"conversation_id": format!("c{i}\u{0}"), "metadata": {"topic": "t\u{0}"},
                "turns": [{"role": "user", "content": format!("hi\u{0} {i}")},
                          {"role": "assistant", "content": "ho\u{0}"}]})
            .to_string()
                + "\n"
        })
        .collect();
    let id = upload(
        &app,
        &token,
        "With NUL",
        "brightrun-lora-v4",
        file.as_bytes(),
    )
    .await;
    let (status, body) = confirm(&app, &token, &id).await;
    assert_eq!(status, 200, "{body}");
    let dataset = settled(&app, &token, &id).await;
    assert_eq!(dataset["status"], "ready", "{dataset}");
    assert_eq!(dataset["totalConversations"], 12);
    assert!(!dataset.to_string().contains("\\u0000"), "{dataset}");

    let next = example("support-chats-v4.jsonl");
    let id = upload(&app, &token, "After it", "brightrun-lora-v4", &next).await;
    confirm(&app, &token, &id).await;
    assert_eq!(settled(&app, &token, &id).await["status"], "ready");
    app.finish().await;
}
