//! The presigned upload: the registration answers a real SigV4-presigned PUT URL of the
//! embedded S3-protocol server; any HTTP client uploads with it, and nothing else gets in.

use serde_json::json;

use crate::common::TestApp;

#[tokio::test]
async fn a_registered_dataset_is_uploaded_with_its_presigned_url_and_nothing_else_works() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let file = std::fs::read(format!(
        "{}/../examples/support-chats-v4.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let (status, body) = app
        .post(
            "/api/datasets",
            Some(&token),
            json!({"name": "Support chats", "format": "brightrun-lora-v4", "fileSize": file.len(), "fileName": "support-chats-v4.jsonl"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let data = &body["data"];
    let url = data["uploadUrl"].as_str().unwrap().to_string();
    assert_eq!(data["uploadMethod"], "PUT");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(data["uploadExpiresAt"].is_string());
    let key = data["dataset"]["s3Key"].as_str().unwrap().to_string();
    assert!(
        url.contains(&key),
        "the URL targets the dataset's key: {url}"
    );

    let objects = app.service.as_ref().unwrap().state.objects.clone();
    assert_eq!(objects.size_of(&key).await.unwrap(), None);

    let http = reqwest::Client::new();
    // A tampered URL and a body of another size than declared are refused by the store.
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &url[at..at + 1] == "a" { "b" } else { "a" };
    let tampered = format!("{}{}{}", &url[..at], flipped, &url[at + 1..]);
    assert_eq!(
        http.put(&tampered)
            .body(file.clone())
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let short = http
        .put(&url)
        .body(file[..file.len() - 1].to_vec())
        .send()
        .await
        .unwrap();
    assert!(short.status().is_client_error(), "{}", short.status());
    assert_eq!(
        objects.size_of(&key).await.unwrap(),
        None,
        "nothing was stored"
    );

    let put = http.put(&url).body(file.clone()).send().await.unwrap();
    assert!(
        put.status().is_success(),
        "{} {}",
        put.status(),
        put.text().await.unwrap_or_default()
    );
    assert_eq!(
        objects.size_of(&key).await.unwrap(),
        Some(file.len() as u64)
    );
    app.finish().await;
}
