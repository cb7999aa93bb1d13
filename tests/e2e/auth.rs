use std::time::Duration;

use domain::identity::Role;
use domain::ids::UserId;
use infrastructure::auth::{Principal, TokenKeys};
use infrastructure::config::DEVELOPMENT_JWT_SECRET;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::TestApp;

fn email() -> String {
    format!("Ada.{}@Example.com", Uuid::now_v7().simple())
}

#[tokio::test]
async fn signup_answers_201_with_the_user_and_a_working_token() {
    let app = TestApp::start().await;
    let email = email();
    let (status, body) = app
        .post(
            "/api/auth/signup",
            None,
            json!({"email": email, "password": "longenough", "name": "Ada", "organization": "Lab"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["data"]["user"]["email"], email.to_lowercase());
    assert_eq!(body["data"]["user"]["role"], "user");
    assert!(
        body["data"]["user"].get("passwordHash").is_none() && !body.to_string().contains("argon2")
    );
    let token = body["data"]["token"].as_str().unwrap();
    let (status, me) = app.get("/api/auth/me", Some(token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["data"]["user"]["id"], body["data"]["user"]["id"]);
    // The user's fields: the plan (FREE to start), the budget, the last change.
    let user = &me["data"]["user"];
    assert_eq!(user["subscriptionTier"], "FREE");
    assert_eq!(user["monthlyBudget"], Value::Null);
    assert!(user["updatedAt"].is_string(), "{user}");
    assert_eq!(body["data"]["user"]["subscriptionTier"], "FREE");

    // The budget set with PATCH is what `me` and the login answer afterwards.
    let (status, patched) = app
        .patch("/api/auth/me", Some(token), json!({"monthlyBudget": 500}))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["data"]["user"]["monthlyBudget"], 500.0);
    let (_, me) = app.get("/api/auth/me", Some(token)).await;
    assert_eq!(me["data"]["user"]["monthlyBudget"], 500.0);
    let (status, login) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": email, "password": "longenough"}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["data"]["user"]["monthlyBudget"], 500.0);
    assert_eq!(login["data"]["user"]["subscriptionTier"], "FREE");
    app.finish().await;
}

#[tokio::test]
async fn signup_refuses_a_taken_email_whatever_its_case() {
    let app = TestApp::start().await;
    let email = email();
    let first = app
        .post(
            "/api/auth/signup",
            None,
            json!({"email": email, "password": "longenough", "name": "Ada"}),
        )
        .await;
    assert_eq!(first.0, 201);
    let (status, body) = app
        .post(
            "/api/auth/signup",
            None,
            json!({"email": email.to_uppercase(), "password": "longenough", "name": "Ada"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "EMAIL_EXISTS");
    app.finish().await;
}

#[tokio::test]
async fn signup_names_the_field_that_breaks_a_rule() {
    let app = TestApp::start().await;
    let cases = [
        (
            json!({"email": "not-an-email", "password": "longenough", "name": "Ada"}),
            "email",
        ),
        (
            json!({"email": email(), "password": "short", "name": "Ada"}),
            "password",
        ),
        (
            json!({"email": email(), "password": "longenough", "name": "A"}),
            "name",
        ),
        (
            json!({"email": email(), "password": "longenough", "name": "Ada", "organization": "o".repeat(201)}),
            "organization",
        ),
        (json!({"email": email(), "name": "Ada"}), "password"),
    ];
    for (body, field) in cases {
        let (status, answer) = app.post("/api/auth/signup", None, body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    app.finish().await;
}

#[tokio::test]
async fn login_answers_the_same_401_for_a_wrong_password_and_an_unknown_email() {
    let app = TestApp::start().await;
    let email = email();
    app.post(
        "/api/auth/signup",
        None,
        json!({"email": email, "password": "longenough", "name": "Ada"}),
    )
    .await;
    let (ok, session) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": email, "password": "longenough"}),
        )
        .await;
    assert_eq!(ok, 200, "{session}");
    assert!(session["data"]["token"].is_string() && session["data"]["expiresAt"].is_string());
    let wrong = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": email, "password": "wrongpassword"}),
        )
        .await;
    let unknown = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "nobody@example.com", "password": "longenough"}),
        )
        .await;
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong.1["error"]["code"], "INVALID_CREDENTIALS");
    assert_eq!(wrong, unknown);
    app.finish().await;
}

#[tokio::test]
async fn repeated_failed_logins_are_rate_limited_even_with_the_right_password() {
    let app = TestApp::start().await;
    let email = email();
    app.post(
        "/api/auth/signup",
        None,
        json!({"email": email, "password": "longenough", "name": "Ada"}),
    )
    .await;
    for _ in 0..5 {
        let (status, _) = app
            .post(
                "/api/auth/login",
                None,
                json!({"email": email, "password": "wrongpassword"}),
            )
            .await;
        assert_eq!(status, 401);
    }
    let resp = app
        .http
        .post(app.url("/api/auth/login"))
        .json(&json!({"email": email, "password": "longenough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    app.finish().await;
}

#[tokio::test]
async fn missing_malformed_expired_and_tampered_tokens_are_401() {
    let app = TestApp::start().await;
    let (user_id, token) = app.user("ada").await;
    let keys = TokenKeys::new(DEVELOPMENT_JWT_SECRET, Duration::from_secs(60));
    let principal = Principal {
        user_id: UserId(Uuid::parse_str(&user_id).unwrap()),
        role: Role::User,
    };
    let (expired, _) = keys
        .issue(principal, chrono::Utc::now() - chrono::Duration::hours(1))
        .unwrap();
    let foreign = TokenKeys::new("another-secret-entirely", Duration::from_secs(60));
    let (forged, _) = foreign.issue(principal, chrono::Utc::now()).unwrap();
    let mut tampered = token.clone();
    tampered.replace_range(token.len() - 4.., "AAAA");

    let (status, body) = app.get("/api/auth/me", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("UNAUTHORIZED"))
    );
    for bad in [
        "garbage",
        "a.b.c",
        expired.as_str(),
        forged.as_str(),
        tampered.as_str(),
    ] {
        let (status, body) = app.get("/api/datasets", Some(bad)).await;
        assert_eq!(status, 401, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "UNAUTHORIZED");
    }
    let basic = app
        .http
        .get(app.url("/api/auth/me"))
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    app.finish().await;
}
