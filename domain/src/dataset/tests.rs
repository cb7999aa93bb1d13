use super::*;
use chrono::{TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::DomainEvent;
use uuid::Uuid;

type DatasetTest = TestFramework<Dataset>;

fn ids() -> (DatasetId, UserId) {
    (
        DatasetId(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001)),
        UserId(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002)),
    )
}

fn register() -> RegisterDataset {
    let (dataset_id, user_id) = ids();
    RegisterDataset {
        dataset_id,
        user_id,
        name: "  Support chats  ".into(),
        description: "Customer support, 2024".into(),
        format: DatasetFormat::BrightrunLoraV4,
        file_size: 1_048_576,
        file_name: "support.jsonl".into(),
        s3_bucket: "brightrun".into(),
        upload_limit: DEFAULT_UPLOAD_LIMIT_BYTES,
        registered_at: Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
    }
}

fn registered() -> DatasetRegistered {
    let (dataset_id, user_id) = ids();
    DatasetRegistered {
        dataset_id,
        user_id,
        name: "Support chats".into(),
        description: "Customer support, 2024".into(),
        format: DatasetFormat::BrightrunLoraV4,
        file_size: 1_048_576,
        file_name: "support.jsonl".into(),
        s3_bucket: "brightrun".into(),
        s3_key: format!("datasets/{user_id}/{dataset_id}/dataset.jsonl"),
        registered_at: Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
    }
}

fn invalid(field: &str, message: &str) -> DatasetError {
    DatasetError::Invalid(FieldError::new(field, message))
}

#[test]
fn registering_a_new_dataset_records_it_with_its_object_key() {
    DatasetTest::with(())
        .given_no_previous_events()
        .when(DatasetCommand::Register(register()))
        .then_expect_events(vec![DatasetEvent::DatasetRegistered(registered())]);
}

#[test]
fn a_registered_dataset_waits_for_its_upload() {
    let mut dataset = Dataset::default();
    dataset.apply(DatasetEvent::DatasetRegistered(registered()));
    assert_eq!(dataset.status(), DatasetStatus::Uploading);
    assert_eq!(dataset.owner(), Some(ids().1));
}

#[test]
fn a_dataset_is_registered_only_once() {
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(DatasetCommand::Register(register()))
        .then_expect_error(DatasetError::AlreadyRegistered(ids().0));
}

#[test]
fn name_is_required() {
    let cmd = RegisterDataset {
        name: "   ".into(),
        ..register()
    };
    DatasetTest::with(())
        .given_no_previous_events()
        .when(DatasetCommand::Register(cmd))
        .then_expect_error(invalid("name", "name is required"));
}

#[test]
fn name_is_at_most_two_hundred_characters() {
    let ok = RegisterDataset {
        name: "n".repeat(200),
        ..register()
    };
    assert!(Dataset::default()
        .decide(DatasetCommand::Register(ok))
        .is_ok());
    let cmd = RegisterDataset {
        name: "n".repeat(201),
        ..register()
    };
    DatasetTest::with(())
        .given_no_previous_events()
        .when(DatasetCommand::Register(cmd))
        .then_expect_error(invalid("name", "name must be at most 200 characters"));
}

#[test]
fn description_is_bounded() {
    let cmd = RegisterDataset {
        description: "d".repeat(2001),
        ..register()
    };
    DatasetTest::with(())
        .given_no_previous_events()
        .when(DatasetCommand::Register(cmd))
        .then_expect_error(invalid(
            "description",
            "description must be at most 2000 characters",
        ));
}

#[test]
fn file_size_must_be_positive() {
    let cmd = RegisterDataset {
        file_size: 0,
        ..register()
    };
    DatasetTest::with(())
        .given_no_previous_events()
        .when(DatasetCommand::Register(cmd))
        .then_expect_error(invalid("fileSize", "fileSize must be greater than 0"));
}

#[test]
fn file_size_may_reach_the_upload_limit_but_not_pass_it() {
    let at_limit = RegisterDataset {
        file_size: DEFAULT_UPLOAD_LIMIT_BYTES,
        ..register()
    };
    assert!(Dataset::default()
        .decide(DatasetCommand::Register(at_limit))
        .is_ok());
    let over = RegisterDataset {
        file_size: DEFAULT_UPLOAD_LIMIT_BYTES + 1,
        ..register()
    };
    DatasetTest::with(())
        .given_no_previous_events()
        .when(DatasetCommand::Register(over))
        .then_expect_error(invalid(
            "fileSize",
            "fileSize must be at most 10737418240 bytes (the upload limit)",
        ));
}

#[test]
fn file_name_is_required_and_has_no_path() {
    let empty = RegisterDataset {
        file_name: "".into(),
        ..register()
    };
    DatasetTest::with(())
        .given_no_previous_events()
        .when(DatasetCommand::Register(empty))
        .then_expect_error(invalid("fileName", "fileName is required"));
    let path = RegisterDataset {
        file_name: "../etc/passwd".into(),
        ..register()
    };
    DatasetTest::with(())
        .given_no_previous_events()
        .when(DatasetCommand::Register(path))
        .then_expect_error(invalid("fileName", "fileName must not contain a path"));
}

#[test]
fn events_carry_their_type_and_version() {
    let event = DatasetEvent::DatasetRegistered(registered());
    assert_eq!(event.event_type(), "DatasetRegistered");
    assert_eq!(event.event_version(), "1");
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["DatasetRegistered"]["format"], "brightrun-lora-v4");
    assert_eq!(json["DatasetRegistered"]["fileSize"], 1_048_576);
}

fn owner() -> Actor {
    Actor {
        user_id: ids().1,
        is_admin: false,
    }
}

fn stranger() -> Actor {
    Actor {
        user_id: UserId(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0099)),
        is_admin: false,
    }
}

fn at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap()
}

fn update(actor: Actor, name: Option<&str>, description: Option<&str>) -> DatasetCommand {
    DatasetCommand::UpdateDetails(UpdateDatasetDetails {
        actor,
        name: name.map(str::to_string),
        description: description.map(str::to_string),
        updated_at: at(),
    })
}

fn deleted() -> DatasetEvent {
    DatasetEvent::DatasetDeleted(DatasetDeleted {
        dataset_id: ids().0,
        deleted_by: ids().1,
        deleted_at: at(),
    })
}

#[test]
fn the_owner_renames_a_dataset_and_only_changed_fields_are_recorded() {
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(update(
            owner(),
            Some(" Tickets 2024 "),
            Some("Customer support, 2024"),
        ))
        .then_expect_events(vec![DatasetEvent::DatasetDetailsUpdated(
            DatasetDetailsUpdated {
                dataset_id: ids().0,
                name: Some("Tickets 2024".into()),
                description: None,
                updated_by: ids().1,
                updated_at: at(),
            },
        )]);
}

#[test]
fn an_update_that_changes_nothing_records_nothing() {
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(update(owner(), Some("Support chats"), None))
        .then_expect_events(vec![]);
}

#[test]
fn an_update_needs_a_field_and_keeps_the_registration_bounds() {
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(update(owner(), None, None))
        .then_expect_error(invalid("name", "send name and/or description to change"));
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(update(owner(), Some(""), None))
        .then_expect_error(invalid("name", "name is required"));
}

#[test]
fn another_user_is_told_the_dataset_does_not_exist_but_an_admin_may_act() {
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(update(stranger(), Some("mine now"), None))
        .then_expect_error(DatasetError::NotFound);
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(DatasetCommand::Delete(DeleteDataset {
            actor: stranger(),
            deleted_at: at(),
        }))
        .then_expect_error(DatasetError::NotFound);
    let admin = Actor {
        is_admin: true,
        ..stranger()
    };
    let mut dataset = Dataset::default();
    dataset.apply(DatasetEvent::DatasetRegistered(registered()));
    assert_eq!(
        dataset
            .decide(DatasetCommand::Delete(DeleteDataset {
                actor: admin,
                deleted_at: at()
            }))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn an_unregistered_dataset_cannot_be_changed() {
    DatasetTest::with(())
        .given_no_previous_events()
        .when(update(owner(), Some("x"), None))
        .then_expect_error(DatasetError::NotFound);
}

#[test]
fn a_deleted_dataset_is_gone_for_every_command() {
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(DatasetCommand::Delete(DeleteDataset {
            actor: owner(),
            deleted_at: at(),
        }))
        .then_expect_events(vec![deleted()]);
    DatasetTest::with(())
        .given(vec![
            DatasetEvent::DatasetRegistered(registered()),
            deleted(),
        ])
        .when(DatasetCommand::Delete(DeleteDataset {
            actor: owner(),
            deleted_at: at(),
        }))
        .then_expect_error(DatasetError::NotFound);
    DatasetTest::with(())
        .given(vec![
            DatasetEvent::DatasetRegistered(registered()),
            deleted(),
        ])
        .when(update(owner(), Some("back"), None))
        .then_expect_error(DatasetError::NotFound);
}
