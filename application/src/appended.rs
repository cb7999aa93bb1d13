//! What a command and the event repository tell each other past cqrs-es, in slots that live
//! for the command's future only (task-locals, so no other command sees them):
//! - where its events landed: the repository records the position its append answered, so a
//!   command learns it without a second read;
//! - that its aggregate is new: a command on an id the service has just made (UUID v7) skips
//!   the read of a history that cannot exist. Nothing is lost if one did: the append of the
//!   first event collides with it on the primary key and the command fails as a conflict.

use std::cell::Cell;
use std::future::Future;

use crate::LogPosition;

tokio::task_local! {
    static APPENDED: Cell<Option<LogPosition>>;
    static FRESH: String;
}

/// Runs `work`, a command creating the aggregate `aggregate_id` the service has just made.
pub async fn on_fresh<T>(aggregate_id: impl ToString, work: impl Future<Output = T>) -> T {
    FRESH.scope(aggregate_id.to_string(), work).await
}

/// Whether the command running now creates `aggregate_id` (so it has no history to read).
pub fn is_fresh(aggregate_id: &str) -> bool {
    FRESH.try_with(|id| id == aggregate_id).unwrap_or(false)
}

/// Called by the event repository after an append: the position of its last event. Outside
/// `capture` it is a no-op.
pub fn record(position: LogPosition) {
    let _ = APPENDED.try_with(|slot| slot.set(Some(position)));
}

/// Runs `work` and answers its output with the position of the last append it made (none if
/// it appended nothing).
pub async fn capture<T>(work: impl Future<Output = T>) -> (T, Option<LogPosition>) {
    APPENDED
        .scope(Cell::new(None), async {
            let out = work.await;
            (out, APPENDED.with(Cell::get))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(global_position: i64) -> LogPosition {
        LogPosition {
            transaction_id: 7,
            global_position,
        }
    }

    #[tokio::test]
    async fn a_capture_sees_its_own_last_append_and_nothing_else() {
        record(at(1)); // outside any capture: nowhere to go, no panic
        let ((), seen) = capture(async {
            record(at(2));
            record(at(3));
        })
        .await;
        assert_eq!(seen, Some(at(3)));
        let ((), nothing) = capture(async {}).await;
        assert_eq!(nothing, None);
        // Two commands at once each see their own.
        let (a, b) = tokio::join!(
            capture(async {
                tokio::task::yield_now().await;
                record(at(10));
            }),
            capture(async { record(at(20)) })
        );
        assert_eq!((a.1, b.1), (Some(at(10)), Some(at(20))));
    }

    #[tokio::test]
    async fn only_the_aggregate_a_command_creates_is_fresh_and_only_inside_it() {
        assert!(!is_fresh("a"));
        on_fresh("a", async {
            assert!(is_fresh("a"));
            assert!(!is_fresh("b"));
        })
        .await;
        assert!(!is_fresh("a"));
    }
}
