//! Two service instances on one database: each subscription runs in exactly one of them, and
//! the other takes over when the leader stops.

use std::time::Duration;

use api::Roles;

use crate::common::{eventually, Isolation, TestApp};

/// Every subscription a `serve` with all roles runs.
fn subscriptions() -> Vec<String> {
    let mut names: Vec<String> = projections::all()
        .iter()
        .map(|p| projections::subscription_name(p.name()))
        .collect();
    names.extend(
        [
            infrastructure::relay::SUBSCRIPTION,
            infrastructure::dataset_workers::VALIDATION_SUBSCRIPTION,
            infrastructure::saga::FEEDER_SUBSCRIPTION,
            infrastructure::budget::BUDGET_SUBSCRIPTION,
        ]
        .map(String::from),
    );
    names
}

#[tokio::test]
async fn each_subscription_runs_in_one_instance_and_fails_over() {
    let iso = Isolation::new();
    let mut one = TestApp::start_with(iso.clone(), Roles::ALL, &[]).await;
    let two = TestApp::start_with(iso.clone(), Roles::ALL, &[]).await;
    let leads = |app: &TestApp, name: &str| {
        app.service
            .as_ref()
            .is_some_and(|s| s.state.leadership.is_leading(name))
    };

    for name in subscriptions() {
        let name = name.as_str();
        eventually(
            &format!("{name} has a leader"),
            Duration::from_secs(10),
            || async { leads(&one, name) || leads(&two, name) },
        )
        .await;
    }
    // Stable: over a second of lease checks, never both.
    for _ in 0..10 {
        for name in subscriptions() {
            let name = name.as_str();
            assert!(
                !(leads(&one, name) && leads(&two, name)),
                "{name} runs twice"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
        .fetch_one(two.pool())
        .await
        .unwrap();
    assert_eq!(held, subscriptions().len() as i64);

    // Work submitted to either instance is projected once.
    let (_, token) = two.user("ada").await;
    let id = two.register_dataset(&token, "shared", 10).await;
    let (status, _) = one.get(&format!("/api/datasets/{id}"), Some(&token)).await;
    assert_eq!(status, 200);

    // The first instance stops; the second takes every subscription over.
    one.stop().await;
    for name in subscriptions() {
        let name = name.as_str();
        eventually(
            &format!("{name} fails over"),
            Duration::from_secs(10),
            || async { leads(&two, name) },
        )
        .await;
    }
    let id = two.register_dataset(&token, "after failover", 10).await;
    let (status, _) = two.get(&format!("/api/datasets/{id}"), Some(&token)).await;
    assert_eq!(status, 200);
    two.finish().await;
}
