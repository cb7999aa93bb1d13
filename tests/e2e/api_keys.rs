//! API keys over HTTP: made once, used like a login token, listed without their secret,
//! revoked (at once, on another instance too), expired, and no key crosses users.

use std::time::Duration;

use api::Roles;
use serde_json::json;

use crate::common::{Isolation, TestApp};

#[tokio::test]
async fn an_api_key_works_like_a_token_until_it_is_revoked_on_every_instance() {
    let iso = Isolation::new();
    let one = TestApp::start_with(iso.clone(), Roles::ALL, &[]).await;
    let two = TestApp::start_with(iso.clone(), Roles::ALL, &[]).await;
    let (ada, token) = one.user("ada").await;
    let (_, bob_token) = one.user("bob").await;

    // Bad input: a clear error naming the field, and nothing made.
    for (body, field) in [
        (json!({"name": "  "}), "name"),
        (
            json!({"name": "x", "expiresAt": "2020-01-01T00:00:00Z"}),
            "expiresAt",
        ),
        (json!({"name": "x", "expiresAt": null}), "expiresAt"),
        (json!({"name": "x", "scopes": ["all"]}), "scopes"),
    ] {
        let (status, refused) = one
            .post("/api/auth/api-keys", Some(&token), body.clone())
            .await;
        assert_eq!(status, 400, "{body}: {refused}");
        assert_eq!(refused["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(refused["error"]["field"], field, "{body}: {refused}");
    }
    let (_, none) = one.get("/api/auth/api-keys", Some(&token)).await;
    assert_eq!(none["data"]["apiKeys"], json!([]));

    let (status, created) = one
        .post(
            "/api/auth/api-keys",
            Some(&token),
            json!({"name": " notebook "}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["data"]["key"].as_str().unwrap().to_string();
    let view = &created["data"]["apiKey"];
    assert!(key.starts_with("brk_") && key.len() > 90, "{key}");
    assert_eq!(view["name"], "notebook");
    assert!(key.starts_with(view["prefix"].as_str().unwrap()));
    assert!(view["lastUsedAt"].is_null());
    let id = view["id"].as_str().unwrap().to_string();

    // The key is a token: as its user, on either instance.
    for app in [&one, &two] {
        let (status, me) = app.get("/api/auth/me", Some(&key)).await;
        assert_eq!(status, 200, "{me}");
        assert_eq!(me["data"]["user"]["id"], ada.as_str());
    }
    let dataset = one.register_dataset(&key, "made-with-a-key", 100).await;
    // Listed without its secret, with its last use.
    let (_, list) = one.get("/api/auth/api-keys", Some(&token)).await;
    assert_eq!(list["data"]["apiKeys"].as_array().unwrap().len(), 1);
    assert!(list["data"]["apiKeys"][0]["lastUsedAt"].is_string());
    assert!(
        !list.to_string().contains(&key[20..]),
        "no secret in the list"
    );
    // Only a hash was recorded.
    let payloads: Vec<String> =
        sqlx::query_scalar("SELECT payload::text FROM events WHERE aggregate_type = 'api_key'")
            .fetch_all(one.pool())
            .await
            .unwrap();
    assert_eq!(payloads.len(), 1);
    assert!(!payloads[0].contains(&key[20..]) && payloads[0].contains("secretHash"));

    // Another user: not their key to see or revoke, and the key's user's data stays theirs.
    let (_, bob_list) = one.get("/api/auth/api-keys", Some(&bob_token)).await;
    assert_eq!(bob_list["data"]["apiKeys"], json!([]));
    let (status, refused) = one
        .delete(&format!("/api/auth/api-keys/{id}"), Some(&bob_token))
        .await;
    assert_eq!(status, 404, "{refused}");
    assert_eq!(refused["error"]["code"], "API_KEY_NOT_FOUND");
    let (_, bob_key) = one
        .post(
            "/api/auth/api-keys",
            Some(&bob_token),
            json!({"name": "bob"}),
        )
        .await;
    let bob_key = bob_key["data"]["key"].as_str().unwrap();
    let (status, _) = one
        .get(&format!("/api/datasets/{dataset}"), Some(bob_key))
        .await;
    assert_eq!(status, 404, "bob's key does not see ada's dataset");
    let (status, _) = one
        .delete("/api/auth/api-keys/not-a-uuid", Some(&token))
        .await;
    assert_eq!(status, 404);

    // Revoked on one instance: the next request fails on both, at once.
    let (status, revoked) = one
        .delete(&format!("/api/auth/api-keys/{id}"), Some(&key))
        .await;
    assert_eq!(status, 200, "{revoked}");
    for app in [&two, &one] {
        let (status, refused) = app.get("/api/datasets", Some(&key)).await;
        assert_eq!(status, 401, "{refused}");
        assert_eq!(refused["error"]["code"], "UNAUTHORIZED");
    }
    let (_, list) = one.get("/api/auth/api-keys", Some(&token)).await;
    assert_eq!(list["data"]["apiKeys"], json!([]));
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&id)
    .fetch_all(one.pool())
    .await
    .unwrap();
    assert_eq!(types, ["ApiKeyCreated", "ApiKeyRevoked"]);
    // A forged key of the right shape, and a tampered secret, are refused alike.
    let mut tampered = key.clone();
    tampered.pop();
    tampered.push(if key.ends_with('0') { '1' } else { '0' });
    for forged in [
        tampered.as_str(),
        "brk_00000000000000000000000000000000_0000000000000000000000000000000000",
    ] {
        let (status, _) = one.get("/api/datasets", Some(forged)).await;
        assert_eq!(status, 401, "{forged}");
    }
    one.finish().await;
    two.finish().await;
}

#[tokio::test]
async fn an_api_key_stops_at_its_expiry() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let expires = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (status, created) = app
        .post(
            "/api/auth/api-keys",
            Some(&token),
            json!({"name": "short-lived", "expiresAt": expires}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["data"]["key"].as_str().unwrap();
    let (status, _) = app.get("/api/datasets", Some(key)).await;
    assert_eq!(status, 200);
    let left = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(200)).await;
    let (status, refused) = app.get("/api/datasets", Some(key)).await;
    assert_eq!(status, 401, "{refused}");
    app.finish().await;
}
