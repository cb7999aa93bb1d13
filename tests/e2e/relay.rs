//! The relay publishes every event to JetStream once NATS is reachable, exactly once by id,
//! in the envelope `infrastructure::relay::Envelope` describes.

use std::collections::HashSet;
use std::time::Duration;

use api::Roles;
use uuid::Uuid;

use crate::common::{stream_messages, Isolation, OwnNats, TestApp};

#[tokio::test]
async fn events_written_while_nats_is_down_are_published_once_it_is_back() {
    let mut nats = OwnNats::new();
    let mut iso = Isolation::new();
    iso.nats_url = nats.url();
    // The service starts with NATS unreachable: commands still succeed.
    let app = TestApp::start_with(iso.clone(), Roles::ALL, &[]).await;
    let (_, token) = app.user("ada").await;
    let mut datasets = Vec::new();
    for i in 0..5 {
        datasets.push(
            app.register_dataset(&token, &format!("offline {i}"), 10)
                .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e, subscription_checkpoints c WHERE c.name = 'relay' \
         AND (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position)",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(pending, 5, "nothing can be published while NATS is down");

    nats.start().await;
    let messages = stream_messages(&nats.url(), &iso.stream, 5, Duration::from_secs(30)).await;
    assert_eq!(messages.len(), 5, "{messages:?}");

    // NATS goes away again, more events are written, NATS returns (same storage).
    nats.stop();
    for i in 5..8 {
        datasets.push(
            app.register_dataset(&token, &format!("offline {i}"), 10)
                .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.start().await;
    let messages = stream_messages(&nats.url(), &iso.stream, 8, Duration::from_secs(30)).await;

    let stored: Vec<(Uuid, String, i64)> = sqlx::query_as(
        "SELECT event_id, aggregate_id, global_position FROM events ORDER BY global_position",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(stored.len(), 8);
    let ids: Vec<&str> = messages.iter().map(|(_, id, _)| id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), 8, "each event exactly once: {ids:?}");
    assert_eq!(unique.len(), 8);
    for (event_id, aggregate_id, position) in &stored {
        let (subject, _, body) = messages
            .iter()
            .find(|(_, id, _)| *id == event_id.to_string())
            .unwrap_or_else(|| panic!("event {event_id} was not published"));
        assert_eq!(
            subject,
            &format!("{}.dataset.{aggregate_id}.DatasetRegistered", iso.prefix)
        );
        assert_eq!(body["eventId"], event_id.to_string());
        assert_eq!(body["globalPosition"], *position);
        assert_eq!(body["aggregateType"], "dataset");
        assert_eq!(body["aggregateId"], aggregate_id.as_str());
        assert_eq!(body["sequence"], 1);
        assert_eq!(body["eventType"], "DatasetRegistered");
        assert_eq!(body["eventVersion"], "1");
        assert!(body["occurredAt"].is_string());
        assert!(body["metadata"]["requestId"].is_string());
        assert!(body["metadata"]["userId"].is_string());
        assert_eq!(body["payload"]["datasetId"], aggregate_id.as_str());
        assert!(datasets.contains(aggregate_id));
    }
    drop(app);
    drop(nats);
    iso.cleanup().await;
}
