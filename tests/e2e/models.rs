//! The Models API end to end: a model trained by the saga
//! read in detail, downloaded file by file and as one archive (each download billed), edited,
//! refused a deployment no engine serves, retrained into a new version, archived and deleted; another user sees none of it.

use std::io::Read;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::common::{eventually, TestApp};
use crate::saga::{launch, start, until};

async fn completed_model(app: &TestApp, token: &str, job: &str) -> String {
    let job = until(app, token, job, "completion", |j| {
        j["status"] == "completed"
    })
    .await;
    job["artifactId"].as_str().expect("artifactId").to_string()
}

async fn fetch(app: &TestApp, url: &str) -> Vec<u8> {
    let resp = app.http.get(url).send().await.expect("download");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.bytes().await.expect("body").to_vec()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn a_model_through_its_whole_api() {
    let app = start(&[]).await;
    let (_, token) = app.user("ada").await;
    let (_, stranger) = app.user("mallory").await;
    let job = launch(&app, &token).await;
    let id = completed_model(&app, &token, &job).await;
    let base = format!("/api/models/{id}");

    // The detail: the run's history, the dataset it came from, where to download.
    let (status, body) = app.get(&base, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let model = &body["data"]["model"];
    assert_eq!(model["version"], "1.0.0");
    assert_eq!(model["status"], "stored");
    assert!(!model["metricsHistory"].as_array().unwrap().is_empty());
    let lineage = &model["datasetLineage"];
    assert_eq!(lineage["originalDataset"]["id"], model["datasetId"]);
    assert!(lineage["splits"]["train"].as_i64().unwrap() > 0);
    assert!(!lineage["preprocessingSteps"].as_array().unwrap().is_empty());
    let scores = &model["qualityMetrics"]["validationScores"];
    for score in ["semanticSimilarity", "coherence", "fluency", "taskAccuracy"] {
        let v = scores[score].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&v), "{score} = {v}");
    }
    let (_, job_body) = app.get(&format!("/api/jobs/{job}"), Some(&token)).await;
    assert_eq!(
        model["trainingSummary"]["totalCost"],
        job_body["data"]["job"]["finalCost"]
    );
    assert_eq!(
        model["configuration"]["datasetName"],
        "support-chats-v4.jsonl"
    );
    // Reading a model writes nothing: no archive exists until a download asks for one.
    assert_eq!(
        model["downloadUrls"]["allArtifacts"],
        Value::Null,
        "{model}"
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'ModelArchiveStored'",
    )
    .bind(&id)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(stored, 0, "a GET built no archive");
    let adapter_url = model["downloadUrls"]["adapterModel"].as_str().unwrap();
    assert_eq!(
        sha256(&fetch(&app, adapter_url).await),
        model["artifacts"]["adapterModel"]["checksum"]
            .as_str()
            .unwrap()
    );

    // The stored files, before any archive exists: exactly the three the job produced.
    let (status, files) = app
        .get(&format!("/api/models/artifacts?modelId={id}"), Some(&token))
        .await;
    assert_eq!(status, 200, "{files}");
    let adapters: Vec<&Value> = files["data"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "adapter")
        .collect();
    assert_eq!(adapters.len(), 3, "{files}");
    for f in &adapters {
        let key = match f["fileName"].as_str().unwrap() {
            "adapter_model.safetensors" => "adapterModel",
            "adapter_config.json" => "adapterConfig",
            _ => "tokenizer",
        };
        assert_eq!(f["checksum"], model["artifacts"][key]["checksum"]);
        assert_eq!(f["size"], model["artifacts"][key]["size"]);
        assert_eq!(f["version"], "1.0.0");
    }

    // Each file downloads as stated; `all` is one ZIP of every file, built once.
    let mut billed = 0;
    for (choice, key) in [
        ("adapter-model", "adapterModel"),
        ("adapter-config", "adapterConfig"),
        ("tokenizer", "tokenizer"),
    ] {
        let (status, d) = app
            .get(&format!("{base}/download?artifact={choice}"), Some(&token))
            .await;
        assert_eq!(status, 200, "{d}");
        let bytes = fetch(&app, d["data"]["downloadUrl"].as_str().unwrap()).await;
        assert_eq!(bytes.len() as u64, d["data"]["fileSize"].as_u64().unwrap());
        assert_eq!(sha256(&bytes), d["data"]["sha256"].as_str().unwrap());
        assert_eq!(d["data"]["sha256"], model["artifacts"][key]["checksum"]);
        billed += 1;
    }
    // The adapters saved at the run's checkpoints: copied into storage while the job ran,
    // each listed on the model and downloadable like the final adapter.
    let checkpoints = model["artifacts"]["checkpoints"].as_array().unwrap();
    let job_checkpoints = job_body["data"]["job"]["checkpoints"].as_array().unwrap();
    assert!(!checkpoints.is_empty(), "{model}");
    assert_eq!(
        checkpoints.len(),
        job_checkpoints.len(),
        "{job_checkpoints:?}"
    );
    for (c, j) in checkpoints.iter().zip(job_checkpoints) {
        assert_eq!(c["id"], j["id"]);
        assert_eq!(
            (&c["checksum"], &c["size"], &c["s3Key"]),
            (&j["checksum"], &j["size"], &j["s3Key"])
        );
        assert_eq!(c["fileName"], "adapter_model.safetensors");
    }
    let final_adapter = model["artifacts"]["adapterModel"]["checksum"]
        .as_str()
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    for c in [&checkpoints[0], checkpoints.last().unwrap()] {
        let (status, d) = app
            .get(
                &format!(
                    "{base}/download?artifact=checkpoint&checkpointId={}",
                    c["id"].as_str().unwrap()
                ),
                Some(&token),
            )
            .await;
        assert_eq!(status, 200, "{d}");
        billed += 1;
        let bytes = fetch(&app, d["data"]["downloadUrl"].as_str().unwrap()).await;
        assert_eq!(sha256(&bytes), c["checksum"].as_str().unwrap());
        assert_eq!(bytes.len() as u64, c["size"].as_u64().unwrap());
        assert_ne!(
            c["checksum"].as_str().unwrap(),
            final_adapter,
            "a checkpoint is not the final adapter"
        );
        // A safetensors file with the adapter's LoRA tensors.
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
        assert!(header
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.ends_with("lora_A.weight")));
        seen.insert(sha256(&bytes));
    }
    if checkpoints.len() > 1 {
        assert_eq!(seen.len(), 2, "each checkpoint has its own weights");
    }
    // Without a checkpointId: the newest checkpoint.
    let (status, body) = app
        .get(
            &format!("{base}/download?artifact=checkpoint"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    billed += 1;
    assert_eq!(
        body["data"]["sha256"],
        checkpoints.last().unwrap()["checksum"],
        "{body}"
    );
    let (status, body) = app
        .get(
            &format!("{base}/download?artifact=checkpoint&checkpointId=nope"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "ARTIFACT_NOT_FOUND");
    // Storage bills what is stored: the model's files and every checkpoint adapter.
    let files: u64 = ["adapterModel", "adapterConfig", "tokenizer"]
        .iter()
        .map(|k| model["artifacts"][k]["size"].as_u64().unwrap())
        .sum();
    let adapters: u64 = checkpoints
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .sum();
    let storage: Value = sqlx::query_scalar(
        "SELECT details FROM rm_cost_ledger WHERE job_id = $1::uuid AND cost_type = 'storage'",
    )
    .bind(&job)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(storage["bytes"], files + adapters, "{storage}");
    assert_eq!(storage["checkpointBytes"], adapters, "{storage}");

    let mut archive_sha = None;
    for _ in 0..2 {
        let (status, d) = app
            .get(&format!("{base}/download?artifact=all"), Some(&token))
            .await;
        assert_eq!(status, 200, "{d}");
        billed += 1;
        let bytes = fetch(&app, d["data"]["downloadUrl"].as_str().unwrap()).await;
        let sha = sha256(&bytes);
        assert_eq!(&sha, d["data"]["sha256"].as_str().unwrap());
        assert!(archive_sha.is_none() || archive_sha.as_ref() == Some(&sha));
        archive_sha = Some(sha);
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a ZIP");
        let mut names = Vec::new();
        for i in 0..zip.len() {
            let mut file = zip.by_index(i).unwrap();
            let name = file.name().unwrap().to_string();
            let mut content = Vec::new();
            file.read_to_end(&mut content).unwrap();
            let key = match name.as_str() {
                "adapter_model.safetensors" => "adapterModel",
                "adapter_config.json" => "adapterConfig",
                "tokenizer.json" => "tokenizer",
                other => panic!("unexpected {other} in the archive"),
            };
            assert_eq!(sha256(&content), model["artifacts"][key]["checksum"]);
            names.push(name);
        }
        names.sort();
        assert_eq!(
            names,
            [
                "adapter_config.json",
                "adapter_model.safetensors",
                "tokenizer.json"
            ]
        );
    }
    let archives: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'ModelArchiveStored'",
    )
    .bind(&id)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(archives, 1, "the archive is built once");
    // Once built, the detail offers it too.
    eventually(
        "the detail offers the archive",
        Duration::from_secs(10),
        || async {
            let (_, body) = app.get(&base, Some(&token)).await;
            body["data"]["model"]["downloadUrls"]["allArtifacts"].is_string()
        },
    )
    .await;
    // Every issued URL is a data transfer entry in the owner's ledger, under the model's job.
    eventually("download entries in the ledger", Duration::from_secs(10), || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rm_cost_ledger WHERE model_id = $1::uuid AND cost_type = 'data_transfer' \
             AND job_id = $2::uuid",
        )
        .bind(&id)
        .bind(&job)
        .fetch_one(app.pool())
        .await
        .unwrap();
        n == billed
    })
    .await;

    // Another user finds nothing, whatever the endpoint.
    for path in [
        base.clone(),
        format!("{base}/download"),
        format!("{base}/download?artifact=all"),
    ] {
        let (status, body) = app.get(&path, Some(&stranger)).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "MODEL_NOT_FOUND");
    }
    let (status, _) = app
        .patch(&base, Some(&stranger), json!({"name": "mine"}))
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .post(
            &format!("{base}/deploy"),
            Some(&stranger),
            json!({"environment": "staging"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.delete(&base, Some(&stranger)).await;
    assert_eq!(status, 404);
    let (_, theirs) = app.get("/api/models/artifacts", Some(&stranger)).await;
    assert_eq!(theirs["meta"]["pagination"]["total"], 0);
    // A billing admin reads anyone's costs, not their models.
    let (bookkeeper, _) = app.user("bookkeeper").await;
    infrastructure::users::Users(app.pool().clone())
        .set_role(
            domain::ids::UserId(Uuid::parse_str(&bookkeeper).unwrap()),
            domain::identity::Role::BillingAdmin,
        )
        .await
        .unwrap();
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1::uuid")
        .bind(&bookkeeper)
        .fetch_one(app.pool())
        .await
        .unwrap();
    let (_, login) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": email, "password": "correct horse"}),
        )
        .await;
    let billing = login["data"]["token"].as_str().unwrap().to_string();
    for path in [base.clone(), format!("{base}/download")] {
        let (status, _) = app.get(&path, Some(&billing)).await;
        assert_eq!(status, 404, "{path}");
    }
    let owner: String =
        sqlx::query_scalar("SELECT user_id::text FROM rm_models WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(app.pool())
            .await
            .unwrap();
    let (status, costs) = app
        .get(&format!("/api/costs?userId={owner}"), Some(&billing))
        .await;
    assert_eq!(status, 200, "{costs}");

    // Metadata: checked field by field.
    let (status, body) = app
        .patch(
            &base,
            Some(&token),
            json!({"name": "Support bot", "description": "October tickets"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["model"]["name"], "Support bot");
    assert_eq!(body["data"]["model"]["description"], "October tickets");
    for (patch, field) in [
        (json!({"name": " "}), "name"),
        (json!({"status": "deployed"}), "status"),
    ] {
        let (status, body) = app.patch(&base, Some(&token), patch).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["field"], field);
    }

    // Deployment: checked field by field, then refused with its reason when no engine
    // here serves the model (this service has none configured); nothing is recorded.
    let (status, body) = app
        .post(
            &format!("{base}/deploy"),
            Some(&token),
            json!({"environment": "staging", "endpointName": "Not Valid"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "endpointName");
    let (status, body) = app
        .post(
            &format!("{base}/deploy"),
            Some(&token),
            json!({"environment": "staging", "endpointName": "support-bot"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "ADAPTER_NOT_SERVABLE");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("INFERENCE_VENV"),
        "{body}"
    );
    let (_, body) = app.get(&base, Some(&token)).await;
    assert_eq!(body["data"]["model"]["status"], "stored");
    assert_eq!(body["data"]["model"]["deployment"], Value::Null, "{body}");
    let (status, body) = app
        .post(&format!("{base}/undeploy"), Some(&token), json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "MODEL_NOT_DEPLOYED");

    // Retraining from it: only from one's own model, on its base model.
    let dataset = body_dataset(&app, &token, &id).await;
    let theirs = app
        .validated_dataset(&stranger, "support-chats-v4.jsonl", "brightrun-lora-v4")
        .await;
    let retrain = |dataset: &str, parent: &str, base: &str| {
        json!({"datasetId": dataset, "presetId": "balanced", "baseModel": base,
               "hyperparameters": {"loraRank": 4}, "parentModelId": parent,
               "gpuConfig": {"instanceType": "a100-80gb", "numGPUs": 1}})
    };
    let unknown = Uuid::now_v7().to_string();
    for (who, on, parent, base, field) in [
        (
            &token,
            &dataset,
            unknown.as_str(),
            "llama-3-8b",
            "parentModelId",
        ),
        (&token, &dataset, id.as_str(), "mistral-7b", "baseModel"),
        (
            &stranger,
            &theirs,
            id.as_str(),
            "llama-3-8b",
            "parentModelId",
        ),
    ] {
        let (status, body) = app
            .post("/api/jobs", Some(who), retrain(on, parent, base))
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    // Version 1.1.0, linked both ways.
    let (status, created) = app
        .post(
            "/api/jobs",
            Some(&token),
            json!({"datasetId": dataset, "presetId": "balanced", "baseModel": "llama-3-8b",
                   "hyperparameters": {"loraRank": 4}, "parentModelId": id,
                   "gpuConfig": {"instanceType": "a100-40gb", "numGPUs": 1}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let child_job = created["data"]["jobId"].as_str().unwrap().to_string();
    let child = completed_model(&app, &token, &child_job).await;
    let child_base = format!("/api/models/{child}");
    let (_, body) = app.get(&child_base, Some(&token)).await;
    assert_eq!(body["data"]["model"]["version"], "1.1.0");
    assert_eq!(body["data"]["model"]["parentModelId"], id.as_str());
    let (_, body) = app.get(&base, Some(&token)).await;
    assert_eq!(body["data"]["model"]["childModelIds"], json!([child]));

    // Archived, it cannot be deployed; deleted, it is gone (and off its parent's list).
    let (status, body) = app
        .patch(&child_base, Some(&token), json!({"status": "archived"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["model"]["status"], "archived");
    // The dashboard counts stored and deployed models only: the parent, not the archived child.
    let (_, stats) = app.get("/api/dashboard/stats", Some(&token)).await;
    assert_eq!(stats["data"]["completedModels"], 1, "{stats}");
    let (status, body) = app
        .post(
            &format!("{child_base}/deploy"),
            Some(&token),
            json!({"environment": "staging"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "MODEL_ARCHIVED");
    let (status, body) = app.delete(&child_base, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app.get(&child_base, Some(&token)).await;
    assert_eq!(status, 404);
    let (_, list) = app.get("/api/models", Some(&token)).await;
    assert_eq!(list["meta"]["pagination"]["total"], 1);
    let (_, body) = app.get(&base, Some(&token)).await;
    assert_eq!(body["data"]["model"]["childModelIds"], json!([]));
    app.finish().await;
}

async fn body_dataset(app: &TestApp, token: &str, model: &str) -> String {
    let (_, body) = app.get(&format!("/api/models/{model}"), Some(token)).await;
    body["data"]["model"]["datasetId"]
        .as_str()
        .unwrap()
        .to_string()
}
