//! Rate limits: writes and expensive requests counted per caller and per client address, in
//! windows every instance shares; one too many answers 429 `RATE_LIMITED` with Retry-After
//! and changes nothing. Failed logins are throttled per address as well as per e-mail from
//! that address.

use serde_json::{json, Value};

use crate::common::{send, Isolation, TestApp};

/// A day-long window: a test never straddles two (unless it runs across midnight UTC).
const WINDOW: (&str, &str) = ("RATE_LIMIT_WINDOW_SECONDS", "86400");

fn assert_limited(status: u16, headers: &reqwest::header::HeaderMap, body: &Value, whom: &str) {
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(whom), "{message}");
    let retry_after: u64 = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
}

/// Signs up an account whose password is "correct horse": answers its e-mail.
async fn real_account(app: &TestApp) -> String {
    let email = format!("real-{}@example.com", uuid::Uuid::now_v7().simple());
    let (status, body) = app
        .post(
            "/api/auth/signup",
            None,
            json!({"email": email, "password": "correct horse", "name": "Real"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    email
}

async fn post_from(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    address: &str,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app
        .http
        .post(app.url(path))
        .header("x-forwarded-for", address)
        .json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn dataset(name: &str) -> Value {
    json!({"name": name, "format": "brightrun-lora-v4", "fileSize": 10, "fileName": "a.jsonl"})
}

#[tokio::test]
async fn a_caller_s_writes_are_counted_across_instances_and_the_one_too_many_changes_nothing() {
    let iso = Isolation::new();
    let vars = [WINDOW, ("RATE_LIMIT_WRITES_PER_CALLER", "5")];
    let one = TestApp::start_with(iso.clone(), api::Roles::ALL, &vars).await;
    let two = TestApp::start_with(iso.clone(), api::Roles::ALL, &vars).await;
    let (_, token) = one.user("busy").await;
    for i in 0..5 {
        let app = if i % 2 == 0 { &one } else { &two };
        let (status, body) = app
            .post("/api/datasets", Some(&token), dataset(&format!("set {i}")))
            .await;
        assert_eq!(status, 201, "write {i}: {body}");
    }
    for app in [&one, &two] {
        let resp = app
            .http
            .post(app.url("/api/datasets"))
            .bearer_auth(&token)
            .json(&dataset("one too many"))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body: Value = resp.json().await.expect("envelope");
        assert_limited(status, &headers, &body, "this caller");
    }
    let (_, list) = one.get("/api/datasets?limit=50", Some(&token)).await;
    assert_eq!(
        list["data"]["datasets"].as_array().map(Vec::len),
        Some(5),
        "{list}"
    );
    // Reads are not limited, and another caller from the same address has a count of its own.
    let (status, _) = two.get("/api/datasets", Some(&token)).await;
    assert_eq!(status, 200);
    let (_, other) = two.user("calm").await;
    let (status, body) = two
        .post("/api/datasets", Some(&other), dataset("theirs"))
        .await;
    assert_eq!(status, 201, "{body}");
    two.finish().await;
    one.finish().await;
}

#[tokio::test]
async fn expensive_requests_are_counted_per_address_even_unauthenticated_and_v1_answers_in_openai_s_shape(
) {
    let vars = [
        WINDOW,
        ("TRUST_FORWARDED_FOR", "true"),
        ("RATE_LIMIT_EXPENSIVE_PER_ADDRESS", "3"),
    ];
    let app = TestApp::start_with(Isolation::new(), api::Roles::ALL, &vars).await;
    let (_, token) = app.user("estimator").await;
    let estimate = json!({"datasetId": uuid::Uuid::now_v7(), "presetId": "balanced"});
    for _ in 0..3 {
        let (status, _, body) = post_from(
            &app,
            "/api/jobs/estimate",
            Some(&token),
            "203.0.113.7",
            estimate.clone(),
        )
        .await;
        assert_ne!(status, 429, "{body}");
    }
    let (status, headers, body) = post_from(
        &app,
        "/api/jobs/estimate",
        Some(&token),
        "203.0.113.7",
        estimate.clone(),
    )
    .await;
    assert_limited(status, &headers, &body, "this address");
    // The same caller from elsewhere goes on.
    let (status, _, body) = post_from(
        &app,
        "/api/jobs/estimate",
        Some(&token),
        "203.0.113.8",
        estimate,
    )
    .await;
    assert_ne!(status, 429, "{body}");

    // SSE connections count, and so do requests that fail authentication.
    let job = uuid::Uuid::now_v7();
    let stream = |address: &'static str| {
        app.http
            .get(app.url(&format!("/api/jobs/{job}/stream")))
            .header("x-forwarded-for", address)
    };
    for _ in 0..3 {
        let (status, _) = send(stream("198.51.100.1")).await;
        assert_eq!(status, 401);
    }
    let resp = stream("198.51.100.1").send().await.expect("stream");
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let body: Value = resp.json().await.expect("envelope");
    assert_limited(status, &headers, &body, "this address");

    // /v1 answers the OpenAI SDK's shape (it backs off on 429 by Retry-After).
    for _ in 0..3 {
        let (status, _, _) = post_from(&app, "/v1/files", None, "192.0.2.9", json!({})).await;
        assert_ne!(status, 429);
    }
    let (status, headers, body) = post_from(&app, "/v1/files", None, "192.0.2.9", json!({})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(headers.contains_key("retry-after"));
    app.finish().await;
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address_as_well_as_per_email() {
    let vars = [
        ("TRUST_FORWARDED_FOR", "true"),
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "3"),
    ];
    let app = TestApp::start_with(Isolation::new(), api::Roles::ALL, &vars).await;
    let email = real_account(&app).await;
    // A sprayer tries one password on many accounts: each e-mail stays under its own limit.
    for i in 0..3 {
        let (status, _, body) = post_from(
            &app,
            "/api/auth/login",
            None,
            "203.0.113.50",
            json!({"email": format!("victim{i}@example.com"), "password": "winter2026"}),
        )
        .await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, headers, body) = post_from(
        &app,
        "/api/auth/login",
        None,
        "203.0.113.50",
        json!({"email": email, "password": "correct horse"}),
    )
    .await;
    assert_limited(status, &headers, &body, "this address");
    // The account's owner, elsewhere, is not locked out by it.
    let (status, _, body) = post_from(
        &app,
        "/api/auth/login",
        None,
        "203.0.113.51",
        json!({"email": email, "password": "correct horse"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    app.finish().await;
}

/// An attacker who fails five times for someone else's e-mail locks only itself out: the
/// owner logs in from their own address, and the owner's success does not give the attacker
/// its guesses back.
#[tokio::test]
async fn wrong_passwords_from_a_stranger_lock_only_the_stranger_out() {
    let vars = [("TRUST_FORWARDED_FOR", "true")];
    let app = TestApp::start_with(Isolation::new(), api::Roles::ALL, &vars).await;
    let email = real_account(&app).await;
    let login = |address: &'static str, password: &'static str| {
        let app = &app;
        let email = email.clone();
        async move {
            post_from(
                app,
                "/api/auth/login",
                None,
                address,
                json!({"email": email, "password": password}),
            )
            .await
        }
    };
    for _ in 0..5 {
        let (status, _, body) = login("203.0.113.66", "winter2026").await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, headers, body) = login("203.0.113.66", "correct horse").await;
    assert_limited(
        status,
        &headers,
        &body,
        "for this account from this address",
    );
    let (status, _, body) = login("198.51.100.77", "correct horse").await;
    assert_eq!(status, 200, "the owner is locked out by a stranger: {body}");
    let (status, headers, body) = login("203.0.113.66", "correct horse").await;
    assert_limited(
        status,
        &headers,
        &body,
        "for this account from this address",
    );
    app.finish().await;
}

/// A burst of failed logins over many e-mails, all sent at once from one address with the
/// default settings: attempts count each other while in flight, so no more than the limit
/// are answered 401 and the rest 429 with Retry-After, even before any of them has failed;
/// once the limit is reached even the right password from that address waits.
#[tokio::test]
async fn a_burst_of_failed_logins_over_many_e_mails_from_one_address_is_throttled() {
    let app = TestApp::start().await;
    let limit = app
        .service
        .as_ref()
        .unwrap()
        .state
        .config
        .login_max_failures_per_address;
    let email = real_account(&app).await;
    let burst = (0..limit + 10).map(|i| {
        let request = app
            .http
            .post(app.url("/api/auth/login"))
            .json(&json!({"email": format!("victim{i}@example.com"), "password": "winter2026"}));
        async move {
            let resp = request.send().await.expect("request");
            let status = resp.status().as_u16();
            let retry_after = resp.headers().contains_key("retry-after");
            (status, retry_after)
        }
    });
    let answers = futures::future::join_all(burst).await;
    let refused = answers.iter().filter(|(s, _)| *s == 401).count() as i64;
    let limited = answers.iter().filter(|(s, r)| *s == 429 && *r).count() as i64;
    assert!(
        refused <= limit,
        "{refused} failures answered 401: {answers:?}"
    );
    assert_eq!(refused + limited, limit + 10, "{answers:?}");
    assert!(limited >= 10, "{answers:?}");
    // Those refused before their password was checked did not count: failures one after
    // another take the address exactly to the limit, and no further.
    for i in refused..limit {
        let (status, body) = app
            .post(
                "/api/auth/login",
                None,
                json!({"email": format!("later{i}@example.com"), "password": "winter2026"}),
            )
            .await;
        assert_eq!(status, 401, "failure {} of {limit}: {body}", i + 1);
    }
    let resp = app
        .http
        .post(app.url("/api/auth/login"))
        .json(&json!({"email": email, "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    let headers = resp.headers().clone();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_limited(status, &headers, &body, "this address");
    app.finish().await;
}

/// Behind the trusted proxy, a client that makes up the first `X-Forwarded-For` entries of
/// each request is still counted as the address the proxy appended.
#[tokio::test]
async fn made_up_forwarded_addresses_do_not_escape_the_per_address_throttle() {
    let vars = [
        ("TRUST_FORWARDED_FOR", "true"),
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "3"),
    ];
    let app = TestApp::start_with(Isolation::new(), api::Roles::ALL, &vars).await;
    let mut answers = Vec::new();
    for i in 0..4 {
        let (status, _, body) = post_from(
            &app,
            "/api/auth/login",
            None,
            &format!("192.0.2.{i}, 203.0.113.70"),
            json!({"email": format!("victim{i}@example.com"), "password": "winter2026"}),
        )
        .await;
        answers.push((status, body));
    }
    assert!(answers[..3].iter().all(|(s, _)| *s == 401), "{answers:?}");
    assert_eq!(answers[3].0, 429, "{answers:?}");
    app.finish().await;
}

/// Every login costs a password hash, so logins are counted whatever their outcome: per
/// e-mail from one address and per address in the rate-limit window. A password longer than sign-up allows is
/// refused before it is hashed.
#[tokio::test]
async fn logins_are_limited_whatever_their_outcome_and_an_overlong_password_is_refused() {
    let vars = [
        WINDOW,
        ("TRUST_FORWARDED_FOR", "true"),
        ("RATE_LIMIT_LOGINS_PER_EMAIL", "3"),
        ("RATE_LIMIT_LOGINS_PER_ADDRESS", "4"),
    ];
    let app = TestApp::start_with(Isolation::new(), api::Roles::ALL, &vars).await;
    let email = real_account(&app).await;
    let login = |address: &'static str, email: String| {
        let app = &app;
        async move {
            post_from(
                app,
                "/api/auth/login",
                None,
                address,
                json!({"email": email, "password": "correct horse"}),
            )
            .await
        }
    };
    // Three good logins for the e-mail from one address: the fourth from there waits, while
    // the same e-mail from another address is not held back by them.
    for _ in 0..3 {
        let (status, _, body) = login("198.51.100.1", email.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, headers, body) = login("198.51.100.1", email.clone()).await;
    assert_limited(status, &headers, &body, "this e-mail from this address");
    let (status, _, body) = login("198.51.100.2", email.clone()).await;
    assert_eq!(status, 200, "{body}");
    // Four logins from one address, over other e-mails: the fifth waits.
    for i in 0..4 {
        let (status, _, body) = login("198.51.100.9", format!("other{i}@example.com")).await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, headers, body) = login("198.51.100.9", "other9@example.com".into()).await;
    assert_limited(status, &headers, &body, "this address");

    let (status, _, body) = post_from(
        &app,
        "/api/auth/login",
        None,
        "198.51.100.20",
        json!({"email": "x@example.com", "password": "p".repeat(257)}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "password");
    app.finish().await;
}
