//! Where old event payloads become current ones.
//!
//! Stored events are never rewritten: an event written as version N is read through the
//! chain of upcasters up to the current version, both when an aggregate loads (as a cqrs-es
//! `EventUpcaster`) and when a subscriber reads the global log (`upcast_payload`).
//! Every event type is at version 1 today, so the chain is empty; adding a version means
//! adding one `Step` to `STEPS`.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::Value;

/// One upcast: payloads of `event_type` at `from_version` are rewritten by `apply`.
pub struct Step {
    pub event_type: &'static str,
    pub from_version: &'static str,
    pub to_version: &'static str,
    pub apply: fn(Value) -> Value,
}

/// Ordered: an upcaster for version 1 comes before one for version 2.
pub const STEPS: &[Step] = &[];

/// Brings a payload to the current version of its event type.
pub fn upcast_payload(event_type: &str, version: &str, payload: Value) -> (String, Value) {
    upcast_with(STEPS, event_type, version, payload)
}

fn upcast_with(steps: &[Step], event_type: &str, version: &str, payload: Value) -> (String, Value) {
    let mut version = version.to_string();
    let mut payload = payload;
    for step in steps {
        if step.event_type == event_type && step.from_version == version {
            payload = (step.apply)(payload);
            version = step.to_version.to_string();
        }
    }
    (version, payload)
}

/// The same chain, for cqrs-es when it loads an aggregate.
pub struct ChainUpcaster;

impl EventUpcaster for ChainUpcaster {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        STEPS
            .iter()
            .any(|s| s.event_type == event_type && s.from_version == event_version)
    }

    fn upcast(&self, event: SerializedEvent) -> SerializedEvent {
        let (event_version, payload) =
            upcast_payload(&event.event_type, &event.event_version, event.payload);
        SerializedEvent {
            event_version,
            payload,
            ..event
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rename_title(mut v: Value) -> Value {
        if let Some(inner) = v.get_mut("Renamed").and_then(Value::as_object_mut) {
            if let Some(t) = inner.remove("title") {
                inner.insert("name".into(), t);
            }
        }
        v
    }

    fn add_default(mut v: Value) -> Value {
        if let Some(inner) = v.get_mut("Renamed").and_then(Value::as_object_mut) {
            inner.entry("note").or_insert(json!(""));
        }
        v
    }

    const TEST_STEPS: &[Step] = &[
        Step {
            event_type: "Renamed",
            from_version: "1",
            to_version: "2",
            apply: rename_title,
        },
        Step {
            event_type: "Renamed",
            from_version: "2",
            to_version: "3",
            apply: add_default,
        },
    ];

    #[test]
    fn an_old_payload_walks_the_whole_chain() {
        let (v, p) = upcast_with(
            TEST_STEPS,
            "Renamed",
            "1",
            json!({"Renamed": {"title": "x"}}),
        );
        assert_eq!(v, "3");
        assert_eq!(p, json!({"Renamed": {"name": "x", "note": ""}}));
    }

    #[test]
    fn a_current_payload_is_left_alone() {
        let payload = json!({"Renamed": {"name": "x", "note": "n"}});
        assert_eq!(
            upcast_with(TEST_STEPS, "Renamed", "3", payload.clone()),
            ("3".into(), payload)
        );
        assert_eq!(upcast_payload("DatasetRegistered", "1", json!({})).0, "1");
    }
}
