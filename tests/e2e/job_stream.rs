//! The job's SSE stream: fed by NATS as the job moves, resumable with Last-Event-ID.

use std::time::Duration;

use application::CommandContext;
use chrono::Utc;
use domain::ids::{JobId, UserId};
use domain::job::telemetry::{MetricPoint, Progress, TelemetryEvent};
use domain::job::{CostType, JobCommand, JobStage};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::TestApp;

#[derive(Debug, Clone, PartialEq)]
struct Received {
    id: Option<String>,
    name: String,
    data: Value,
}

/// Reads an SSE response until it ends (or `within` passes), parsing events.
async fn read_events(mut response: reqwest::Response, within: Duration) -> (Vec<Received>, bool) {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => return (events, false),
            Ok(Ok(None)) => return (events, true),
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Err(err)) => panic!("stream failed: {err}"),
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut name, mut data) = (None, None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if let Some(name) = name {
                events.push(Received {
                    id,
                    name,
                    data: serde_json::from_str(&data).unwrap_or(Value::Null),
                });
            }
        }
    }
}

fn position(id: &str) -> (u64, i64) {
    let (tx, gp) = id.split_once('.').unwrap();
    (tx.parse().unwrap(), gp.parse().unwrap())
}

/// A metric point of the first epoch, as a trainer reports it.
fn point(job_id: JobId, step: u64, loss: f64) -> TelemetryEvent {
    TelemetryEvent::MetricPointRecorded(MetricPoint {
        job_id,
        step,
        epoch: 1,
        training_loss: loss,
        validation_loss: None,
        learning_rate: 2e-4,
        gradient_norm: None,
        throughput: Some(2400.0),
        gpu_utilization: None,
        recorded_at: Utc::now(),
    })
}

/// A job of `user`'s on the example dataset, and the context to drive it as the saga does.
async fn job_to_drive(app: &TestApp, user: &str, token: &str) -> (String, JobId, CommandContext) {
    let dataset = app
        .validated_dataset(token, "support-chats-v4.jsonl", "brightrun-lora-v4")
        .await;
    let id = app.create_job(token, &dataset, "llama-3-8b").await;
    let job_id = JobId(Uuid::parse_str(&id).unwrap());
    let ctx = CommandContext {
        user_id: UserId(Uuid::parse_str(user).unwrap()),
        request_id: Uuid::now_v7().to_string(),
        correlation_id: "stream-test".into(),
        causation_id: None,
    };
    (id, job_id, ctx)
}

#[tokio::test]
async fn a_watcher_sees_the_job_move_live_and_a_reconnect_gets_exactly_what_it_missed() {
    let app = TestApp::start_without_saga().await;
    let (user, token) = app.user("ada").await;
    let (_, stranger) = app.user("stranger").await;
    let (id, job_id, ctx) = job_to_drive(&app, &user, &token).await;
    let url = app.url(&format!("/api/jobs/{id}/stream"));

    // Owner only; a resume id must be one this stream sends.
    let other = app
        .http
        .get(&url)
        .bearer_auth(&stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    let bad = app
        .http
        .get(&url)
        .bearer_auth(&token)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let response = app.http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let watcher = tokio::spawn(read_events(response, Duration::from_secs(30)));

    // Drive the job as the saga will.
    let jobs = app.service.as_ref().unwrap().state.jobs.clone();
    let now = Utc::now();
    let run = |command: JobCommand| {
        let (jobs, ctx) = (jobs.clone(), ctx.clone());
        async move { jobs.execute(&ctx, job_id, command).await.expect("command") }
    };
    run(JobCommand::StartSubmission {
        attempt: 1,
        idempotency_key: format!("{id}-1"),
        at: now,
    })
    .await;
    run(JobCommand::ChangeStage {
        stage: JobStage::Training,
        message: "Epoch 1/5".into(),
        at: now,
    })
    .await;
    for (step, loss) in [(5u64, 1.5), (10, 1.1), (15, 0.8)] {
        jobs.record_telemetry(&ctx, point(job_id, step, loss))
            .await
            .unwrap();
    }
    jobs.record_telemetry(
        &ctx,
        TelemetryEvent::ProgressReported(Progress {
            job_id,
            step: 15,
            total_steps: 20,
            epoch: 4,
            total_epochs: 5,
            progress: 75.0,
            estimated_time_remaining: Some(30),
            reported_at: now,
        }),
    )
    .await
    .unwrap();
    run(JobCommand::AccrueCost {
        entry_key: "compute:1".into(),
        cost_type: CostType::Compute,
        quantity: Decimal::new(5, 1),
        rate: Decimal::new(250, 2),
        details: json!({}),
        compute_until: None,
        at: now,
    })
    .await;
    run(JobCommand::RecordCheckpoint {
        checkpoint_id: "ckpt-001".into(),
        step: 15,
        epoch: 4,
        loss: 0.8,
        file: None,
        at: now,
    })
    .await;
    run(JobCommand::Complete {
        final_training_loss: Some(0.8),
        final_validation_loss: Some(0.9),
        model_id: None,
        at: now,
    })
    .await;

    let (events, ended) = watcher.await.unwrap();
    assert!(ended, "the stream ends after complete: {events:?}");
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "stage",
            "progress",
            "cost", // the opening snapshot
            "stage",
            "stage",
            "metrics",
            "metrics",
            "metrics",
            "progress",
            "cost",
            "checkpoint",
            "complete",
        ]
    );
    assert!(events[..3].iter().all(|e| e.id.is_none()));
    assert_eq!(events[0].data["stage"], "queued");
    assert_eq!(events[4].data["stage"], "training");
    assert_eq!(events[7].data["trainingLoss"], 0.8);
    assert_eq!(events[8].data["progress"], 75.0);
    assert_eq!(events[9].data["currentCost"], 1.25);
    assert_eq!(events[10].data["checkpointId"], "ckpt-001");
    assert_eq!(events[11].data["finalCost"], 1.25);
    let ids: Vec<&str> = events[3..]
        .iter()
        .map(|e| e.id.as_deref().expect("id"))
        .collect();
    assert!(
        ids.windows(2).all(|w| position(w[0]) < position(w[1])),
        "ids follow the log: {ids:?}"
    );

    // Reconnect after the second metrics event: exactly the rest, then the end.
    let resume = events[6].id.clone().unwrap();
    let response = app
        .http
        .get(&url)
        .bearer_auth(&token)
        .header("Last-Event-ID", &resume)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (missed, ended) = read_events(response, Duration::from_secs(10)).await;
    assert!(ended);
    assert_eq!(missed, events[7..].to_vec());

    // A fresh connection to a finished job says how it ended and closes.
    let response = app.http.get(&url).bearer_auth(&token).send().await.unwrap();
    let (late, ended) = read_events(response, Duration::from_secs(10)).await;
    assert!(ended);
    assert_eq!(late.last().unwrap().name, "complete");
    app.finish().await;
}

#[tokio::test]
async fn streams_opened_together_while_the_job_moves_each_get_every_later_event_once() {
    // A fresh stream reads the job's row and the log around its watch: whatever commits
    // between its snapshot and its live feed must still reach it, once.
    let app = TestApp::start_without_saga().await;
    let (user, token) = app.user("ada").await;
    let (id, job_id, ctx) = job_to_drive(&app, &user, &token).await;
    let url = app.url(&format!("/api/jobs/{id}/stream"));
    let jobs = app.service.as_ref().unwrap().state.jobs.clone();
    let now = Utc::now();
    jobs.execute(
        &ctx,
        job_id,
        JobCommand::StartSubmission {
            attempt: 1,
            idempotency_key: format!("{id}-1"),
            at: now,
        },
    )
    .await
    .unwrap();

    // Points are recorded one after another while streams open in waves of ten.
    const STEPS: u64 = 120;
    let writer = {
        let (jobs, ctx) = (jobs.clone(), ctx.clone());
        tokio::spawn(async move {
            for step in 1..=STEPS {
                jobs.record_telemetry(&ctx, point(job_id, step, 1.0))
                    .await
                    .unwrap();
            }
        })
    };
    let mut watchers = Vec::new();
    for _ in 0..6 {
        for _ in 0..10 {
            let (http, url, token) = (app.http.clone(), url.clone(), token.clone());
            watchers.push(tokio::spawn(async move {
                let response = http.get(&url).bearer_auth(&token).send().await.unwrap();
                assert_eq!(response.status(), 200);
                read_events(response, Duration::from_secs(60)).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    writer.await.unwrap();
    jobs.execute(
        &ctx,
        job_id,
        JobCommand::Complete {
            final_training_loss: Some(1.0),
            final_validation_loss: None,
            model_id: None,
            at: now,
        },
    )
    .await
    .unwrap();

    for watcher in watchers {
        let (events, ended) = watcher.await.unwrap();
        assert!(ended, "the stream ends after complete: {events:?}");
        assert_eq!(events.last().unwrap().name, "complete");
        let steps: Vec<u64> = events
            .iter()
            .filter(|e| e.name == "metrics")
            .map(|e| e.data["step"].as_u64().unwrap())
            .collect();
        // What a stream gets past its opening is the rest of the log: the last steps, each
        // once, with none missing between them.
        let first = steps.first().copied().unwrap_or(STEPS + 1);
        assert_eq!(
            steps,
            (first..=STEPS).collect::<Vec<_>>(),
            "a suffix of the points"
        );
        let ids: Vec<(u64, i64)> = events
            .iter()
            .filter_map(|e| e.id.as_deref().map(position))
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }
    app.finish().await;
}
