//! Where a command's events landed, from the append itself.
//!
//! cqrs-es answers nothing from `execute`, so the event repository records the position its
//! append answered here, in a slot that lives for the command's future only (a task-local):
//! a command learns its position without a second read, and no other command can see it.

use std::cell::Cell;
use std::future::Future;

use crate::LogPosition;

tokio::task_local! {
    static APPENDED: Cell<Option<LogPosition>>;
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
}
