//! `brightrun parked list|retry`: what the subscriptions parked, and asking their leaders to
//! handle it again (see infrastructure::parking).

use std::fmt::Write;
use std::time::Duration;

use infrastructure::parking::{self, ParkedEvent};
use sqlx::PgPool;
use uuid::Uuid;

/// One block per parked event: where it is, what it is, how often and why it failed.
pub fn render(parked: &[ParkedEvent]) -> String {
    let mut out = String::new();
    if parked.is_empty() {
        out.push_str("no parked events\n");
        return out;
    }
    for p in parked {
        let _ = writeln!(
            out,
            "{} {} position {}: {} of {} {} ({} attempts, parked {})",
            p.subscription,
            p.event_id,
            p.global_position,
            p.event_type,
            p.aggregate_type,
            p.aggregate_id,
            p.attempts,
            p.parked_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        );
        let _ = writeln!(out, "    {}", p.last_error.replace('\n', "\n    "));
    }
    let _ = writeln!(out, "{} parked", parked.len());
    out
}

/// Asks for a retry of the named parked events (all, if none is named) and waits up to `wait`
/// for each outcome, printing it. Answers whether every one was handled.
pub async fn retry(
    pool: &PgPool,
    subscription: Option<&str>,
    events: &[Uuid],
    wait: Duration,
) -> anyhow::Result<bool> {
    let asked = parking::request_retry(pool, subscription, events).await?;
    if asked.is_empty() {
        println!("nothing to retry: no parked event matches");
        return Ok(events.is_empty());
    }
    for id in events {
        if !asked.iter().any(|(_, e)| e == id) {
            println!("{id}: not a parked event");
        }
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut pending = asked;
    let mut all_handled = true;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (subscription, event_id) in pending {
            match parking::get(pool, &subscription, event_id).await? {
                Some(p) if p.resolved_at.is_some() => {
                    println!("{subscription} {event_id}: handled")
                }
                Some(p) if p.retry_requested_at.is_none() => {
                    all_handled = false;
                    println!(
                        "{subscription} {event_id}: failed again, still parked: {}",
                        p.last_error
                    );
                }
                Some(_) => still.push((subscription, event_id)),
                None => {}
            }
        }
        pending = still;
        if !pending.is_empty() && tokio::time::Instant::now() >= deadline {
            for (subscription, event_id) in &pending {
                println!(
                    "{subscription} {event_id}: asked; no leader handled it within {}s (it will when its subscription runs)",
                    wait.as_secs()
                );
            }
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(all_handled)
}
