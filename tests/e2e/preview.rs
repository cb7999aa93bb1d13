//! `POST /api/datasets/validate` runs the domain validator with the real BPE tokenizer.

use serde_json::json;

use crate::common::TestApp;

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("example dataset")
}

#[tokio::test]
async fn a_valid_example_previews_with_real_token_counts() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let (status, body) = app
        .post(
            "/api/datasets/validate",
            Some(&token),
            json!({"format": "brightrun-lora-v4", "content": example("support-chats-v4.jsonl")}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["isValid"], true, "{data}");
    assert_eq!(data["errors"], json!([]));
    let stats = &data["statistics"];
    assert_eq!(stats["tokenizer"], "o200k_base");
    assert_eq!(stats["totalConversations"], 18);
    assert_eq!(
        stats["estimatedPairs"], 24,
        "18 conversations, 6 of them with a second exchange"
    );
    let validation = stats["totalValidationPairs"].as_u64().unwrap();
    assert!(
        validation >= 6,
        "6 conversations are marked validation; others may be split there by hash"
    );
    assert_eq!(
        stats["totalTrainingPairs"].as_u64().unwrap() + validation,
        24
    );
    assert_eq!(
        stats["sampleConversation"]["conversationId"],
        "support-0001"
    );
    assert_eq!(stats["sampleConversation"]["turns"][0]["role"], "system");
    let tokens = stats["totalTokens"].as_u64().unwrap();
    assert!(
        (400..2000).contains(&tokens),
        "BPE tokens, not characters or words: {tokens}"
    );

    let (_, legacy) = app
        .post(
            "/api/datasets/validate",
            Some(&token),
            json!({"format": "brightrun-lora-v3", "content": example("legacy-chats-v3.jsonl")}),
        )
        .await;
    assert_eq!(legacy["data"]["isValid"], true, "{legacy}");
    assert_eq!(legacy["data"]["statistics"]["estimatedPairs"], 6);
    assert_eq!(
        legacy["data"]["statistics"]["sampleConversation"]["turns"][1]["role"],
        "assistant"
    );
    app.finish().await;
}

#[tokio::test]
async fn an_invalid_example_reports_each_problem_by_line_and_field() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let (status, body) = app
        .post(
            "/api/datasets/validate",
            Some(&token),
            json!({"format": "brightrun-lora-v4", "content": example("invalid-v4.jsonl")}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["isValid"], false);
    let errors: Vec<(u64, &str, &str)> = data["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["field"].as_str().unwrap_or(""),
                e["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            (2, "", "INVALID_JSON"),
            (3, "turns", "EMPTY_TURNS"),
            (4, "conversation_id", "MISSING_FIELD"),
            (6, "split", "INVALID_VALUE")
        ]
    );
    let warnings: Vec<&str> = data["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert_eq!(warnings, ["UNKNOWN_ROLE", "DUPLICATE_ID", "EMPTY_CONTENT"]);
    app.finish().await;
}

#[tokio::test]
async fn the_preview_refuses_more_than_100_kb_and_needs_a_token() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let (status, body) = app
        .post(
            "/api/datasets/validate",
            Some(&token),
            json!({"format": "brightrun-lora-v4", "content": "x".repeat(102_401)}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "content");
    let (status, body) = app
        .post(
            "/api/datasets/validate",
            Some(&token),
            json!({"format": "csv", "content": ""}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("format"))
    );
    let (status, _) = app
        .post(
            "/api/datasets/validate",
            None,
            json!({"format": "brightrun-lora-v4", "content": ""}),
        )
        .await;
    assert_eq!(status, 401);
    app.finish().await;
}
