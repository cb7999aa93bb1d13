//! Hostile clients: forged tokens, tampered upload URLs, paths in file names,
//! bodies built to hurt the parser, and streams opened by the thousand and dropped. Each gets
//! a clear 4xx and changes nothing.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::common::{eventually, send, Isolation, TestApp};

async fn datasets_of(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'dataset'")
        .fetch_one(app.pool())
        .await
        .expect("count")
}

fn assert_refused(status: u16, body: &Value, expected: u16, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
}

fn registration() -> Value {
    json!({"name": "x", "format": "brightrun-lora-v4", "fileSize": 10, "fileName": "a.jsonl"})
}

#[tokio::test]
async fn tokens_without_an_algorithm_with_another_or_for_a_deleted_user_are_refused() {
    let app = TestApp::start().await;
    let (user_id, token) = app.user("eve").await;
    let secret = app
        .service
        .as_ref()
        .expect("service")
        .state
        .config
        .jwt_secret
        .clone();
    let now = chrono::Utc::now().timestamp();
    // An ordinary user's claims, raised to admin.
    let claims = json!({"sub": user_id, "role": "admin", "iat": now, "exp": now + 3600});
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"));
    let unsigned = format!(
        "{}.{}.",
        part(&json!({"alg": "none", "typ": "JWT"})),
        part(&claims)
    );
    let other_algorithm = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS512 token");
    let signature = token.rsplit('.').next().unwrap_or_default();
    let escalated = format!(
        "{}.{}.{signature}",
        part(&json!({"alg": "HS256", "typ": "JWT"})),
        part(&claims)
    );
    for bad in [&unsigned, &other_algorithm, &escalated] {
        let (status, body) = app.get("/api/admin/audit/costs", Some(bad)).await;
        assert_refused(status, &body, 401, "UNAUTHORIZED");
        let (status, body) = app.post("/api/datasets", Some(bad), registration()).await;
        assert_refused(status, &body, 401, "UNAUTHORIZED");
    }
    assert_eq!(datasets_of(&app).await, 0);

    // A token outlives its account only until the account is gone.
    let (status, _) = app.get("/api/auth/me", Some(&token)).await;
    assert_eq!(status, 200);
    sqlx::query("DELETE FROM users WHERE id = $1::uuid")
        .bind(&user_id)
        .execute(app.pool())
        .await
        .expect("delete user");
    let (status, body) = app.get("/api/datasets", Some(&token)).await;
    assert_refused(status, &body, 401, "UNAUTHORIZED");
    let (status, body) = app
        .post("/api/datasets", Some(&token), registration())
        .await;
    assert_refused(status, &body, 401, "UNAUTHORIZED");
    assert_eq!(datasets_of(&app).await, 0);
    app.finish().await;
}

#[tokio::test]
async fn a_presigned_upload_url_is_refused_with_its_key_expiry_or_date_changed() {
    let app = TestApp::start().await;
    let (_, token) = app.user("mallory").await;
    let (status, body) = app
        .post("/api/datasets", Some(&token), registration())
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["datasetId"].as_str().expect("id").to_string();
    let url = body["data"]["uploadUrl"].as_str().expect("url").to_string();
    let put = |url: String, bytes: &'static [u8]| {
        let http = app.http.clone();
        async move {
            http.put(url)
                .body(bytes)
                .send()
                .await
                .expect("PUT")
                .status()
                .as_u16()
        }
    };
    let other_key = url.replacen(&id, &uuid::Uuid::now_v7().to_string(), 1);
    assert_ne!(other_key, url);
    let longer = with_param(&url, "X-Amz-Expires=", "604800");
    let older = with_param(&url, "X-Amz-Date=", "20200101T000000Z");
    for tampered in [other_key, longer, older] {
        let status = put(tampered.clone(), b"0123456789").await;
        assert_eq!(status, 403, "{tampered}");
    }
    // Nothing arrived: the confirm says the file is missing and the dataset waits for it.
    let (status, body) = app
        .post(
            &format!("/api/datasets/{id}/confirm"),
            Some(&token),
            json!({}),
        )
        .await;
    assert!((400..500).contains(&status), "{status} {body}");
    let (_, detail) = app.get(&format!("/api/datasets/{id}"), Some(&token)).await;
    assert_eq!(detail["data"]["dataset"]["status"], "uploading", "{detail}");
    // The right URL with a body of another size than declared: its length is signed.
    let status = put(url.clone(), b"01234567890123456789").await;
    assert_eq!(status, 403);
    // And the URL as given still takes the declared file.
    assert_eq!(put(url, b"0123456789").await, 200);
    app.finish().await;
}

/// `url` with the value of query parameter `name=` replaced by `value`.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let Some(start) = url.find(name).map(|i| i + name.len()) else {
        panic!("{name} not in {url}");
    };
    let end = url[start..].find('&').map_or(url.len(), |i| start + i);
    format!("{}{value}{}", &url[..start], &url[end..])
}

#[tokio::test]
async fn file_names_with_paths_or_control_characters_are_refused_by_field() {
    let app = TestApp::start().await;
    let (_, token) = app.user("mallory").await;
    for name in [
        "../../etc/passwd",
        "..\\..\\boot.ini",
        "/abs.jsonl",
        "bell\u{7}.jsonl",
        "line\nbreak.jsonl",
        "nul\u{0}.jsonl",
    ] {
        let mut body = registration();
        body["fileName"] = json!(name);
        let (status, answer) = app.post("/api/datasets", Some(&token), body).await;
        assert_refused(status, &answer, 400, "VALIDATION_ERROR");
        assert_eq!(answer["error"]["field"], "fileName", "{name:?}: {answer}");
    }
    assert_eq!(datasets_of(&app).await, 0);
    app.finish().await;
}

#[tokio::test]
async fn bodies_built_to_hurt_the_parser_are_refused_and_the_service_goes_on() {
    let app = TestApp::start().await;
    let (_, token) = app.user("mallory").await;
    let raw = |path: &str, body: Vec<u8>| {
        app.http
            .post(app.url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
    };
    // JSON nested 10,000 deep.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes();
    let (status, body) = send(raw("/api/datasets", deep.clone())).await;
    assert_refused(status, &body, 400, "VALIDATION_ERROR");
    let (status, body) = send(raw("/v1/fine_tuning/jobs", deep)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    // A field nested deep inside a valid object.
    let nested = format!(
        r#"{{"name": "x", "format": "brightrun-lora-v4", "fileSize": 10, "fileName": "a.jsonl", "description": {}1{}}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let (status, body) = send(raw("/api/datasets", nested.into_bytes())).await;
    assert_refused(status, &body, 400, "VALIDATION_ERROR");
    // Invalid UTF-8 in a string.
    let mut invalid = br#"{"name": "caf"#.to_vec();
    invalid.extend_from_slice(&[0xC3, 0x28, 0xFF]);
    invalid.extend_from_slice(
        br#"", "format": "brightrun-lora-v4", "fileSize": 10, "fileName": "a.jsonl"}"#,
    );
    let (status, body) = send(raw("/api/datasets", invalid)).await;
    assert_refused(status, &body, 400, "VALIDATION_ERROR");
    // 100 MB of JSON: refused once it passes the body limit, without reading the rest.
    let huge = vec![b' '; 100 * 1024 * 1024];
    match raw("/api/jobs/estimate", huge).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert_refused(status, &body, 413, "PAYLOAD_TOO_LARGE");
        }
        // The server may answer and close before the client has sent it all.
        Err(err) => assert!(err.is_request() || err.is_body(), "{err}"),
    }
    assert_eq!(datasets_of(&app).await, 0);
    let (status, _) = app.get("/api/datasets", Some(&token)).await;
    assert_eq!(status, 200);
    app.finish().await;
}

#[tokio::test]
async fn a_thousand_streams_opened_and_dropped_leave_nothing_behind() {
    let app = TestApp::start_with(
        Isolation::new(),
        api::Roles {
            saga: false,
            ..api::Roles::ALL
        },
        &[
            ("RATE_LIMIT_EXPENSIVE_PER_CALLER", "0"),
            ("RATE_LIMIT_EXPENSIVE_PER_ADDRESS", "0"),
            ("SSE_STREAMS_PER_USER", "0"),
        ],
    )
    .await;
    let (_, token) = app.user("flood").await;
    let dataset = app
        .validated_dataset(&token, "support-chats-v4.jsonl", "brightrun-lora-v4")
        .await;
    // No saga: the job stays queued, so no stream ends on its own (a stream of a job that
    // has ended closes at once, and a running job would send each of the thousand streams
    // every metric point, loading the machine the other tests share).
    let job = app.create_job(&token, &dataset, "smollm2-135m").await;
    let open = |app: &TestApp| {
        let req = app
            .http
            .get(app.url(&format!("/api/jobs/{job}/stream")))
            .bearer_auth(&token);
        async move { req.send().await.expect("stream") }
    };
    let mut streams = Vec::new();
    for _ in 0..1_000 {
        let resp = open(&app).await;
        assert_eq!(resp.status(), 200);
        streams.push(resp);
    }
    let gauge = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("brightrun_sse_streams_open "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    let metrics = || async {
        let resp = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("metrics");
        resp.text().await.expect("text")
    };
    assert_eq!(gauge(&metrics().await), 1_000.0);
    drop(streams);
    eventually(
        "every dropped stream is let go",
        Duration::from_secs(30),
        || async { gauge(&metrics().await) == 0.0 },
    )
    .await;
    // The service still answers, streams included.
    let resp = open(&app).await;
    assert_eq!(resp.status(), 200);
    let (status, _) = app.get(&format!("/api/jobs/{job}"), Some(&token)).await;
    assert_eq!(status, 200);
    app.finish().await;
}

/// Whether the server closes `socket` within `within` (it reads the end of the stream, or a
/// reset), reading and dropping whatever it answers first.
async fn closed_within(socket: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Slow clients cannot hold sockets: on the API and on the embedded object store, a
/// connection that sends half a request line, or idles after a request, is closed after
/// `HTTP_HEADER_READ_TIMEOUT_SECONDS`.
#[tokio::test]
async fn a_client_that_sends_half_a_request_or_idles_is_disconnected_by_the_api_and_the_store() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::start_with(
        Isolation::new(),
        api::Roles::ALL,
        &[("HTTP_HEADER_READ_TIMEOUT_SECONDS", "1")],
    )
    .await;
    let (_, token) = app.user("ada").await;
    let (_, registered) = app
        .post("/api/datasets", Some(&token), registration())
        .await;
    let upload = reqwest::Url::parse(registered["data"]["uploadUrl"].as_str().unwrap()).unwrap();
    let api_addr = app.base.trim_start_matches("http://").to_string();
    let store_addr = format!(
        "{}:{}",
        upload.host_str().unwrap(),
        upload.port_or_known_default().unwrap()
    );
    for (server, addr) in [("api", &api_addr), ("object store", &store_addr)] {
        for half in [
            &b"GET /api/da"[..],
            b"GET /api/jobs/0193",
            b"PUT /bucket/key HTTP/1.1\r\nhost: x\r\n",
        ] {
            let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
            socket.write_all(half).await.unwrap();
            assert!(
                closed_within(&mut socket, Duration::from_secs(10)).await,
                "{server} kept a connection that sent {:?}",
                String::from_utf8_lossy(half)
            );
        }
        // A whole request is answered; the kept-alive connection then idles and is closed.
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(
            closed_within(&mut socket, Duration::from_secs(10)).await,
            "{server} kept an idle connection"
        );
    }
    // The service goes on.
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200);
    app.finish().await;
}

/// The development JWT secret is published: `serve` refuses it on an address other machines
/// reach, and says what to do.
#[tokio::test]
async fn serve_refuses_the_development_secret_on_an_address_other_machines_reach() {
    let iso = Isolation::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_brightrun"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", iso.database_url())
        .env("BRIGHTRUN_DATA_DIR", iso.data_dir())
        .env("BRIGHTRUN_ADDR", "0.0.0.0:0")
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("JWT_SECRET"), "{said}");
    assert!(said.contains("0.0.0.0"), "{said}");
    iso.cleanup().await;
}

/// A method a client makes up is counted under "other": no new metric series per made-up
/// method (a client could otherwise grow `/metrics` without bound).
#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let app = TestApp::start().await;
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).expect("method");
        let resp = app
            .http
            .request(method, app.url("/api/datasets"))
            .send()
            .await
            .expect("request");
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(!text.contains("BREW"), "{text}");
    assert!(
        text.lines().any(
            |l| l.starts_with("brightrun_http_request_duration_seconds_count")
                && l.contains("method=\"other\"")
        ),
        "{text}"
    );
    app.finish().await;
}

/// Every answer carries the security headers; the console's pages a policy that lets them
/// load only our files and reach only us and the object store; HSTS only when the trusted
/// proxy says the client spoke https.
#[tokio::test]
async fn pages_and_answers_carry_security_headers() {
    let vars = [("TRUST_FORWARDED_FOR", "true")];
    let app = TestApp::start_with(Isolation::new(), api::Roles::ALL, &vars).await;
    let store = app
        .service
        .as_ref()
        .and_then(|s| s.embedded_s3.as_ref())
        .map(|s| s.endpoint.clone())
        .expect("the embedded store");
    let header = |resp: &reqwest::Response, name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let page = app.http.get(app.url("/datasets")).send().await.unwrap();
    assert!(header(&page, "content-type").starts_with("text/html"));
    let policy = header(&page, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        &format!("connect-src 'self' {store}"),
    ] {
        assert!(policy.contains(directive), "{directive} not in {policy}");
    }
    let answer = app.http.get(app.url("/api/auth/me")).send().await.unwrap();
    assert_eq!(
        header(&answer, "content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'"
    );
    for resp in [&page, &answer] {
        assert_eq!(header(resp, "x-content-type-options"), "nosniff");
        assert_eq!(header(resp, "referrer-policy"), "no-referrer");
        assert_eq!(header(resp, "x-frame-options"), "DENY");
        assert_eq!(
            header(resp, "strict-transport-security"),
            "",
            "over plain http"
        );
    }
    let over_tls = app
        .http
        .get(app.url("/"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(
        header(&over_tls, "strict-transport-security").starts_with("max-age="),
        "{:?}",
        over_tls.headers()
    );
    app.finish().await;
}

/// The embedded object store signs with keys of its own data folder (made at random on first
/// use, readable by its owner only, the same after a restart, another folder's differ),
/// refuses the keys once published in the repository, and lets only the console's origins
/// read its answers cross-origin.
#[tokio::test]
async fn the_embedded_store_has_keys_of_its_own_and_answers_only_the_console_cross_origin() {
    use std::os::unix::fs::PermissionsExt;

    use application::ObjectStore;
    use infrastructure::s3::{embedded_credentials, S3Settings, S3Store, CREDENTIALS_FILE};

    let console = "http://console.example:8080";
    let app = TestApp::start_with(
        Isolation::new(),
        api::Roles::ALL,
        &[("CONSOLE_ORIGINS", console)],
    )
    .await;
    let store = app
        .service
        .as_ref()
        .and_then(|s| s.embedded_s3.as_ref())
        .map(|s| s.endpoint.clone())
        .expect("the embedded store");
    let file = app.iso.data_dir().join(CREDENTIALS_FILE);
    let mode = std::fs::metadata(&file)
        .expect("credentials")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let ours = embedded_credentials(&app.iso.data_dir(), (None, None)).unwrap();
    assert!(ours.0.len() >= 32 && ours.1.len() >= 64, "{ours:?}");
    let elsewhere = Isolation::new().data_dir();
    let theirs = embedded_credentials(&elsewhere, (None, None)).unwrap();
    let _ = std::fs::remove_dir_all(&elsewhere);
    assert_ne!(ours, theirs, "two data folders share keys");

    let client = |access: &str, secret: &str| {
        S3Store::new(&S3Settings {
            endpoint: store.clone(),
            region: "us-east-1".into(),
            access_key: access.into(),
            secret_key: secret.into(),
            bucket: "brightrun".into(),
            sign_payloads: false,
        })
    };
    let published = client(
        "brightrun-local",
        infrastructure::config::PUBLISHED_S3_SECRET_KEY,
    );
    assert!(
        published.size_of("datasets/any").await.is_err(),
        "the published keys were let in"
    );
    assert_eq!(
        client(&ours.0, &ours.1)
            .size_of("datasets/any")
            .await
            .unwrap(),
        None
    );

    let preflight = |origin: &'static str| {
        app.http
            .request(
                reqwest::Method::OPTIONS,
                format!("{store}/brightrun/datasets/x"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .send()
    };
    let allowed = preflight(console).await.unwrap();
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.as_bytes()),
        Some(console.as_bytes()),
        "{:?}",
        allowed.headers()
    );
    let stranger = preflight("http://evil.example").await.unwrap();
    assert!(
        stranger
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "{:?}",
        stranger.headers()
    );
    app.finish().await;
}

/// A user holds at most `SSE_STREAMS_PER_USER` streams open (one more is 429 until one
/// closes; another user is not held back by them), and a stream ends by itself once its API
/// key is revoked or its account deleted.
#[tokio::test]
async fn open_streams_are_capped_per_user_and_end_when_their_credential_is_withdrawn() {
    let app = TestApp::start_with(
        Isolation::new(),
        api::Roles {
            saga: false,
            ..api::Roles::ALL
        },
        &[("SSE_STREAMS_PER_USER", "2"), ("SSE_RECHECK_SECONDS", "1")],
    )
    .await;
    let (ada, token) = app.user("ada").await;
    let (_, bob) = app.user("bob").await;
    let dataset = app
        .validated_dataset(&token, "support-chats-v4.jsonl", "brightrun-lora-v4")
        .await;
    let job = app.create_job(&token, &dataset, "smollm2-135m").await;
    let bob_dataset = app
        .validated_dataset(&bob, "support-chats-v4.jsonl", "brightrun-lora-v4")
        .await;
    let bob_job = app.create_job(&bob, &bob_dataset, "smollm2-135m").await;
    let open = |job: &str, credential: &str| {
        app.http
            .get(app.url(&format!("/api/jobs/{job}/stream")))
            .bearer_auth(credential)
            .send()
    };
    let first = open(&job, &token).await.unwrap();
    let second = open(&job, &token).await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open(&job, &token).await.unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    assert_eq!(
        open(&bob_job, &bob).await.unwrap().status(),
        200,
        "bob is held back by ada's streams"
    );

    // A stream opened with an API key ends once the key is revoked.
    drop(second);
    let (status, created) = app
        .post(
            "/api/auth/api-keys",
            Some(&token),
            json!({"name": "notebook"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["data"]["key"].as_str().unwrap().to_string();
    let key_id = created["data"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut keyed = None;
    for _ in 0..50 {
        let resp = open(&job, &key).await.unwrap();
        if resp.status() == 200 {
            keyed = Some(resp);
            break;
        }
        // The dropped stream's slot is given back as its connection closes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keyed = keyed.expect("a slot once a stream closed");
    let (status, body) = app
        .delete(&format!("/api/auth/api-keys/{key_id}"), Some(&token))
        .await;
    assert!(status == 200 || status == 204, "{status} {body}");
    let ended = tokio::time::timeout(Duration::from_secs(15), keyed.bytes()).await;
    assert!(
        matches!(ended, Ok(Ok(_))),
        "the revoked key's stream did not end: {ended:?}"
    );

    // A stream of a deleted account ends too.
    sqlx::query("DELETE FROM users WHERE id = $1::uuid")
        .bind(&ada)
        .execute(app.pool())
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(15), first.bytes()).await;
    assert!(
        matches!(ended, Ok(Ok(_))),
        "the deleted account's stream did not end: {ended:?}"
    );
    app.finish().await;
}
