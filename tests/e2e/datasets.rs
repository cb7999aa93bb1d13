use domain::identity::Role;
use domain::ids::UserId;
use infrastructure::users::Users;
use serde_json::json;
use uuid::Uuid;

use crate::common::TestApp;

#[tokio::test]
async fn a_registered_dataset_is_listed_at_once() {
    let app = TestApp::start().await;
    let (user_id, token) = app.user("ada").await;
    let (status, body) = app
        .post(
            "/api/datasets",
            Some(&token),
            json!({"name": "Support chats", "description": "2024 tickets",
              "format": "brightrun-lora-v4", "fileSize": 1048576, "fileName": "support.jsonl"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["datasetId"].as_str().unwrap().to_string();
    assert_eq!(body["data"]["dataset"]["status"], "uploading");

    // No sleep: the command answered once the read model had it.
    let (status, list) = app.get("/api/datasets", Some(&token)).await;
    assert_eq!(status, 200);
    let datasets = list["data"]["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 1);
    let d = &datasets[0];
    assert_eq!(d["id"], id);
    assert_eq!(d["userId"], user_id);
    assert_eq!(d["name"], "Support chats");
    assert_eq!(d["format"], "brightrun-lora-v4");
    assert_eq!(d["fileSize"], 1048576);
    assert_eq!(d["trainingReady"], false);
    assert_eq!(d["s3Key"], format!("datasets/{user_id}/{id}/dataset.jsonl"));
    assert_eq!(
        list["meta"]["pagination"],
        json!({"page": 1, "pageSize": 20, "total": 1, "hasMore": false})
    );

    let (status, one) = app.get(&format!("/api/datasets/{id}"), Some(&token)).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["data"]["dataset"]["id"], id);
    assert_eq!(one["data"]["dataset"]["validationErrors"], json!([]));
    assert_eq!(one["data"]["dataset"]["sampleConversations"], json!([]));
    app.finish().await;
}

#[tokio::test]
async fn registration_rules_answer_the_offending_field_and_change_nothing() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let base = json!({"name": "n", "description": "", "format": "brightrun-lora-v4", "fileSize": 10, "fileName": "a.jsonl"});
    let with = |key: &str, value: serde_json::Value| {
        let mut b = base.clone();
        b[key] = value;
        b
    };
    let cases = [
        (with("name", json!("x".repeat(201))), "name"),
        (with("name", json!("   ")), "name"),
        (with("fileSize", json!(0)), "fileSize"),
        (with("fileSize", json!(10_737_418_241u64)), "fileSize"),
        (with("fileSize", json!(-1)), "fileSize"),
        (with("fileSize", json!("ten")), "fileSize"),
        (with("format", json!("csv")), "format"),
        (with("fileName", json!("")), "fileName"),
        // Postgres cannot store U+0000: it is refused like any control character.
        (with("name", json!("\u{0}\u{1a}")), "name"),
        (with("description", json!("line\u{0}")), "description"),
        (with("fileName", json!("a\u{7}.jsonl")), "fileName"),
    ];
    for (body, field) in cases {
        let (status, answer) = app.post("/api/datasets", Some(&token), body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    // A NUL in a search or a login answers 4xx, never 500.
    let (status, answer) = app.get("/api/datasets?search=a%00b", Some(&token)).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["field"], "search");
    let (status, _) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "ada\u{0}@example.com", "password": "whatever-it-is"}),
        )
        .await;
    assert_eq!(status, 401);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(events, 0);
    app.finish().await;
}

#[tokio::test]
async fn another_users_dataset_is_not_found_but_an_admin_sees_it() {
    let app = TestApp::start().await;
    let (_, owner) = app.user("owner").await;
    let (_, stranger) = app.user("stranger").await;
    let id = app.register_dataset(&owner, "private", 100).await;

    let (status, body) = app
        .get(&format!("/api/datasets/{id}"), Some(&stranger))
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "DATASET_NOT_FOUND");
    let (_, missing) = app
        .get(
            &format!("/api/datasets/{}", Uuid::now_v7()),
            Some(&stranger),
        )
        .await;
    assert_eq!(
        missing["error"]["code"], body["error"]["code"],
        "no existence leak"
    );
    let (_, list) = app.get("/api/datasets", Some(&stranger)).await;
    assert_eq!(list["meta"]["pagination"]["total"], 0);

    let (admin_id, _) = app.user("admin").await;
    Users(app.pool().clone())
        .set_role(UserId(Uuid::parse_str(&admin_id).unwrap()), Role::Admin)
        .await
        .unwrap();
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(Uuid::parse_str(&admin_id).unwrap())
        .fetch_one(app.pool())
        .await
        .unwrap();
    let (_, session) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": email, "password": "correct horse"}),
        )
        .await;
    let admin = session["data"]["token"].as_str().unwrap();
    let (status, seen) = app.get(&format!("/api/datasets/{id}"), Some(admin)).await;
    assert_eq!(status, 200, "{seen}");
    app.finish().await;
}

#[tokio::test]
async fn lists_paginate_filter_search_and_sort() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    for i in 0..25u64 {
        let name = if i % 5 == 0 {
            format!("Legal {i:02}")
        } else {
            format!("Chat {i:02}")
        };
        app.register_dataset(&token, &name, 1000 + i).await;
    }
    let (_, page2) = app
        .get(
            "/api/datasets?page=2&pageSize=10&sortBy=size-asc",
            Some(&token),
        )
        .await;
    assert_eq!(
        page2["meta"]["pagination"],
        json!({"page": 2, "pageSize": 10, "total": 25, "hasMore": true})
    );
    let sizes: Vec<i64> = page2["data"]["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["fileSize"].as_i64().unwrap())
        .collect();
    assert_eq!(sizes, (1010..1020).collect::<Vec<_>>());

    let (_, last) = app
        .get("/api/datasets?page=3&pageSize=10", Some(&token))
        .await;
    assert_eq!(last["meta"]["pagination"]["hasMore"], false);
    assert_eq!(last["data"]["datasets"].as_array().unwrap().len(), 5);

    let (_, legal) = app
        .get("/api/datasets?search=LEGAL&sortBy=name-desc", Some(&token))
        .await;
    let names: Vec<&str> = legal["data"]["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Legal 20", "Legal 15", "Legal 10", "Legal 05", "Legal 00"]
    );

    let (_, none) = app
        .get(
            "/api/datasets?format=brightrun-lora-v3&trainingReady=all",
            Some(&token),
        )
        .await;
    assert_eq!(none["meta"]["pagination"]["total"], 0);
    let (_, wildcard) = app.get("/api/datasets?search=%25", Some(&token)).await;
    assert_eq!(
        wildcard["meta"]["pagination"]["total"], 0,
        "% is searched literally"
    );

    for (query, field) in [
        ("page=0", "page"),
        ("pageSize=101", "pageSize"),
        ("pageSize=abc", "pageSize"),
        ("sortBy=size", "sortBy"),
        ("trainingReady=maybe", "trainingReady"),
        ("status=done", "status"),
    ] {
        let (status, body) = app
            .get(&format!("/api/datasets?{query}"), Some(&token))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    app.finish().await;
}

async fn send_json(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    crate::common::send(req).await
}

#[tokio::test]
async fn the_owner_renames_and_deletes_a_dataset_and_reads_see_it_at_once() {
    let app = TestApp::start().await;
    let (_, token) = app.user("ada").await;
    let (_, stranger) = app.user("stranger").await;
    let id = app.register_dataset(&token, "Support chats", 10).await;
    let path = format!("/api/datasets/{id}");

    let (status, body) = send_json(
        &app,
        reqwest::Method::PATCH,
        &path,
        &token,
        Some(json!({"name": "Tickets 2024"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["dataset"]["name"], "Tickets 2024");
    assert_eq!(
        body["data"]["dataset"]["description"], "about Support chats",
        "untouched fields stay"
    );
    let (_, found) = app.get("/api/datasets?search=tickets", Some(&token)).await;
    assert_eq!(found["meta"]["pagination"]["total"], 1);

    for (patch, field) in [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"description": "d".repeat(2001)}), "description"),
    ] {
        let (status, body) =
            send_json(&app, reqwest::Method::PATCH, &path, &token, Some(patch)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["field"], field);
    }
    let (status, body) = send_json(
        &app,
        reqwest::Method::PATCH,
        &path,
        &stranger,
        Some(json!({"name": "mine"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("DATASET_NOT_FOUND"))
    );
    let (status, _) = send_json(&app, reqwest::Method::DELETE, &path, &stranger, None).await;
    assert_eq!(status, 404);

    let (status, body) = send_json(&app, reqwest::Method::DELETE, &path, &token, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["message"], "Dataset marked for deletion");
    let (status, _) = app.get(&path, Some(&token)).await;
    assert_eq!(status, 404, "a deleted dataset is gone from reads at once");
    let (_, list) = app.get("/api/datasets", Some(&token)).await;
    assert_eq!(list["meta"]["pagination"]["total"], 0);
    let (status, _) = send_json(&app, reqwest::Method::DELETE, &path, &token, None).await;
    assert_eq!(status, 404, "deleting twice");
    let (status, _) = send_json(
        &app,
        reqwest::Method::PATCH,
        &path,
        &token,
        Some(json!({"name": "back"})),
    )
    .await;
    assert_eq!(status, 404);
    let deleted_at: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT deleted_at FROM rm_datasets WHERE id = $1")
            .bind(Uuid::parse_str(&id).unwrap())
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert!(deleted_at.is_some(), "soft delete: the row stays, marked");
    app.finish().await;
}
