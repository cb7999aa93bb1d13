//! `POST /api/datasets/{id}/upload`: the file streams through the API into storage in bounded
//! memory; a body that passes the declared size is refused mid-stream and leaves nothing; a
//! multipart form works like a raw body; only the owner may upload, once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::TestApp;

const LINE: &str = "{\"conversation_id\": \"c\", \"turns\": [{\"role\": \"user\", \"content\": \"How do I reset my password?\"}, {\"role\": \"assistant\", \"content\": \"Open Settings, then Security, then Reset password.\"}]}\n";

/// `size` bytes of JSONL, produced chunk by chunk (never whole in memory).
fn generated(size: u64) -> reqwest::Body {
    let chunk: Vec<u8> = LINE.as_bytes().repeat((1 << 20) / LINE.len());
    let chunk = bytes::Bytes::from(chunk);
    let stream = futures::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= size {
                return None;
            }
            let n = (size - sent).min(chunk.len() as u64) as usize;
            Some((Ok::<_, std::io::Error>(chunk.slice(..n)), sent + n as u64))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

/// The process's peak resident memory so far (VmHWM), bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

async fn register(app: &TestApp, token: &str, size: u64) -> (String, String) {
    let (status, body) = app
        .post(
            "/api/datasets",
            Some(token),
            json!({"name": "big chats", "format": "brightrun-lora-v4", "fileSize": size, "fileName": "big.jsonl"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["data"]["datasetId"].as_str().unwrap().to_string(),
        body["data"]["dataset"]["s3Key"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

async fn upload(
    app: &TestApp,
    token: &str,
    id: &str,
    body: reqwest::Body,
) -> Result<(u16, Value), String> {
    let resp = app
        .http
        .post(app.url(&format!("/api/datasets/{id}/upload")))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn a_300_mb_file_streams_through_the_api_in_bounded_memory() {
    // No workers: validating 300 MB is another test's business.
    let roles = api::Roles {
        workers: false,
        ..api::Roles::ALL
    };
    let app = TestApp::start_with(crate::common::Isolation::new(), roles, &[]).await;
    let (_, token) = app.user("ada").await;
    let size: u64 = 300 * 1024 * 1024 + 12_345;
    let (id, key) = register(&app, &token, size).await;
    let before = peak_rss();
    let started = std::time::Instant::now();
    let (status, body) = upload(&app, &token, &id, generated(size))
        .await
        .expect("answered");
    let grown = peak_rss().saturating_sub(before);
    eprintln!("uploaded in {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["bytesReceived"], size);
    assert_eq!(body["data"]["message"], "Validation started");
    let objects = app.service.as_ref().unwrap().state.objects.clone();
    assert_eq!(objects.size_of(&key).await.unwrap(), Some(size));
    // Client, server and storage share this process: together they stayed far below the file.
    assert!(
        grown < 96 * 1024 * 1024,
        "peak RSS grew by {} MiB for a 300 MiB upload",
        grown >> 20
    );
    eprintln!("peak RSS grew by {} MiB for a 300 MiB upload", grown >> 20);
    app.finish().await;
}

#[tokio::test]
async fn an_oversized_upload_is_refused_mid_stream_and_leaves_nothing() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let objects = app.service.as_ref().unwrap().state.objects.clone();

    // Declared 10 MiB (past one 8 MiB part), sent 64 MiB: refused once 10 MiB have passed.
    let declared = 10 * 1024 * 1024;
    let (id, key) = register(&app, &token, declared).await;
    match upload(&app, &token, &id, generated(64 * 1024 * 1024)).await {
        Ok((status, body)) => {
            assert_eq!(status, 409, "{body}");
            assert_eq!(body["error"]["code"], "UPLOAD_SIZE_MISMATCH");
            assert_eq!(body["error"]["field"], "fileSize");
        }
        // The server may close the connection before the client reads the answer.
        Err(err) => eprintln!("the client saw the refusal as: {err}"),
    }
    assert_eq!(objects.size_of(&key).await.unwrap(), None, "nothing stored");
    let (_, body) = app.get(&format!("/api/datasets/{id}"), Some(&token)).await;
    assert_eq!(body["data"]["dataset"]["status"], "uploading");
    // Nothing half-written either: no leftover parts in the embedded store's folder.
    let leftovers = walk(&app.iso.data_dir().join("objects"))
        .into_iter()
        .filter(|p| p.contains(&id))
        .collect::<Vec<_>>();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A short body is a size mismatch, and stores nothing.
    let (status, body) = upload(&app, &token, &id, generated(1000))
        .await
        .expect("answered");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "UPLOAD_SIZE_MISMATCH");
    assert_eq!(objects.size_of(&key).await.unwrap(), None);
    app.finish().await;
}

#[tokio::test]
async fn with_signed_payloads_a_file_goes_in_parts_and_a_refused_one_leaves_nothing() {
    // S3_SIGN_PAYLOADS: the path taken for a store over plain HTTP off the machine (each
    // 8 MiB part signed, one part stored while the next is received).
    let roles = api::Roles {
        workers: false,
        ..api::Roles::ALL
    };
    let app = TestApp::start_with(
        crate::common::Isolation::new(),
        roles,
        &[("S3_SIGN_PAYLOADS", "true")],
    )
    .await;
    let (_, token) = app.user("ada").await;
    let objects = app.service.as_ref().unwrap().state.objects.clone();

    let size: u64 = 3 * 8 * 1024 * 1024 + 4321; // three whole parts and a short last one
    let (id, key) = register(&app, &token, size).await;
    let (status, body) = upload(&app, &token, &id, generated(size))
        .await
        .expect("answered");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["bytesReceived"], size);
    assert_eq!(objects.size_of(&key).await.unwrap(), Some(size));
    let mut stored = Vec::new();
    let mut reader = objects.read(&key).await.unwrap().expect("stored");
    tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut stored)
        .await
        .unwrap();
    // What `generated` sends: its 1 MiB chunk over and over, the last one cut.
    let chunk = LINE.as_bytes().repeat((1 << 20) / LINE.len());
    let sent: Vec<u8> = chunk.iter().copied().cycle().take(size as usize).collect();
    assert!(stored == sent, "the parts were stored in their order");

    let declared = 20 * 1024 * 1024;
    let (id, key) = register(&app, &token, declared).await;
    match upload(&app, &token, &id, generated(64 * 1024 * 1024)).await {
        Ok((status, body)) => assert_eq!(status, 409, "{body}"),
        Err(err) => eprintln!("the client saw the refusal as: {err}"),
    }
    assert_eq!(objects.size_of(&key).await.unwrap(), None, "nothing stored");
    let (status, _) = upload(&app, &token, &id, generated(9 * 1024 * 1024))
        .await
        .expect("answered");
    assert_eq!(status, 409, "a short body is a size mismatch");
    assert_eq!(objects.size_of(&key).await.unwrap(), None);
    app.finish().await;
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn a_multipart_form_uploads_for_its_owner_only_and_once() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let (_, stranger) = app.user("mallory").await;
    let file = std::fs::read(format!(
        "{}/../examples/support-chats-v4.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let (id, _) = register(&app, &token, file.len() as u64).await;
    let form = |bytes: Vec<u8>| {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("support-chats-v4.jsonl"),
        )
    };
    let send = |who: &str, bytes: Vec<u8>| {
        app.http
            .post(app.url(&format!("/api/datasets/{id}/upload")))
            .bearer_auth(who.to_string())
            .multipart(form(bytes))
            .send()
    };
    let theirs = send(&stranger, file.clone()).await.unwrap();
    assert_eq!(theirs.status(), 404);
    let body: Value = theirs.json().await.unwrap();
    assert_eq!(body["error"]["code"], "DATASET_NOT_FOUND");

    let mine = send(&token, file.clone()).await.unwrap();
    assert_eq!(mine.status(), 200);
    let body: Value = mine.json().await.unwrap();
    assert_eq!(body["data"]["bytesReceived"], file.len());
    let again = send(&token, file.clone()).await.unwrap();
    assert_eq!(again.status(), 409);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "DATASET_NOT_UPLOADING");

    // Validated like any upload.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = app.get(&format!("/api/datasets/{id}"), Some(&token)).await;
        if body["data"]["dataset"]["status"] == "ready" {
            assert_eq!(body["data"]["dataset"]["trainingReady"], true);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.finish().await;
}
