use super::*;
use chrono::{TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
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
            in_use: false,
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
                in_use: false,
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
            in_use: false,
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
            in_use: false,
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

// --- Upload, validation and purge -------------------------------------------------------

fn confirm(actor: Actor, stored_size: Option<u64>) -> DatasetCommand {
    DatasetCommand::ConfirmUpload(ConfirmUpload {
        actor,
        stored_size,
        confirmed_at: at(),
    })
}

fn confirmed() -> DatasetEvent {
    let (dataset_id, user_id) = ids();
    DatasetEvent::DatasetUploadConfirmed(DatasetUploadConfirmed {
        dataset_id,
        user_id,
        format: DatasetFormat::BrightrunLoraV4,
        s3_bucket: "brightrun".into(),
        s3_key: format!("datasets/{user_id}/{dataset_id}/dataset.jsonl"),
        file_size: 1_048_576,
        confirmed_at: at(),
    })
}

fn issue(line: u64, field: Option<&str>, code: &str, message: &str) -> validator::Issue {
    validator::Issue {
        line,
        field: field.map(str::to_string),
        code: code.into(),
        message: message.into(),
    }
}

fn report(errors: Vec<validator::Issue>, error_count: u64) -> validator::ValidationReport {
    validator::ValidationReport {
        is_valid: error_count == 0,
        training_ready: error_count == 0,
        errors,
        error_count,
        warnings: vec![issue(4, Some("conversation_id"), "DUPLICATE_ID", "seen")],
        warning_count: 1,
        statistics: validator::Statistics {
            total_conversations: 12,
            total_training_pairs: 11,
            total_validation_pairs: 1,
            estimated_pairs: 12,
            total_tokens: 640,
            avg_turns_per_conversation: 2.0,
            avg_tokens_per_turn: 26.5,
            tokenizer: "o200k_base".into(),
        },
        full_statistics: validator::FullStatistics {
            vocabulary_size: 120,
            unique_speakers: 2,
            topic_distribution: vec![],
            length_distribution: validator::LengthDistribution::of_sorted(&[40, 60]),
        },
        sample_conversations: vec![],
    }
}

fn record(report: validator::ValidationReport) -> DatasetCommand {
    DatasetCommand::RecordValidation(RecordValidation {
        report: Box::new(report),
        validated_at: at(),
    })
}

#[test]
fn confirming_a_complete_upload_starts_validation_with_what_the_worker_needs() {
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(confirm(owner(), Some(1_048_576)))
        .then_expect_events(vec![confirmed()]);
}

#[test]
fn confirming_without_an_object_or_with_another_size_is_refused() {
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(confirm(owner(), None))
        .then_expect_error(DatasetError::UploadMissing);
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(confirm(owner(), Some(1_000)))
        .then_expect_error(DatasetError::SizeMismatch {
            declared: 1_048_576,
            stored: 1_000,
        });
}

#[test]
fn confirming_again_records_nothing() {
    DatasetTest::with(())
        .given(vec![
            DatasetEvent::DatasetRegistered(registered()),
            confirmed(),
        ])
        .when(confirm(owner(), Some(1_048_576)))
        .then_expect_events(vec![]);
}

#[test]
fn only_the_owner_or_an_admin_confirms() {
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(confirm(stranger(), Some(1_048_576)))
        .then_expect_error(DatasetError::NotFound);
    DatasetTest::with(())
        .given(vec![
            DatasetEvent::DatasetRegistered(registered()),
            deleted(),
        ])
        .when(confirm(owner(), Some(1_048_576)))
        .then_expect_error(DatasetError::NotFound);
}

#[test]
fn a_clean_report_makes_the_dataset_ready_and_names_owner_and_dataset_for_the_notification() {
    let r = report(vec![], 0);
    let (dataset_id, user_id) = ids();
    DatasetTest::with(())
        .given(vec![
            DatasetEvent::DatasetRegistered(registered()),
            confirmed(),
        ])
        .when(record(r.clone()))
        .then_expect_events(vec![DatasetEvent::DatasetReady(DatasetReady {
            dataset_id,
            user_id,
            name: "Support chats".into(),
            training_ready: true,
            statistics: r.statistics,
            full_statistics: r.full_statistics,
            warnings: r.warnings,
            warning_count: 1,
            sample_conversations: vec![],
            validated_at: at(),
        })]);
}

#[test]
fn a_report_with_errors_fails_the_dataset_with_a_one_line_summary() {
    let errors = vec![
        issue(
            2,
            Some("turns[0].role"),
            "INVALID_VALUE",
            "role must be user, assistant or system",
        ),
        issue(5, None, "INVALID_JSON", "not JSON"),
    ];
    let r = report(errors.clone(), 7);
    let (dataset_id, user_id) = ids();
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered()), confirmed()])
        .when(record(r.clone()))
        .then_expect_events(vec![DatasetEvent::DatasetValidationFailed(
            DatasetValidationFailed {
                dataset_id,
                user_id,
                name: "Support chats".into(),
                message: "7 errors; first: line 2, turns[0].role: role must be user, assistant or system (INVALID_VALUE)".into(),
                errors,
                error_count: 7,
                warnings: r.warnings,
                warning_count: 1,
                statistics: Some(r.statistics),
                failed_at: at(),
            },
        )]);
}

#[test]
fn a_result_is_recorded_once_and_not_for_a_dataset_deleted_meanwhile() {
    let ready = DatasetTest::with(())
        .given(vec![
            DatasetEvent::DatasetRegistered(registered()),
            confirmed(),
        ])
        .when(record(report(vec![], 0)))
        .inspect_result()
        .expect("recorded");
    let mut given = vec![DatasetEvent::DatasetRegistered(registered()), confirmed()];
    given.extend(ready);
    DatasetTest::with(())
        .given(given)
        .when(record(report(vec![], 0)))
        .then_expect_events(vec![]);
    DatasetTest::with(())
        .given(vec![
            DatasetEvent::DatasetRegistered(registered()),
            confirmed(),
            deleted(),
        ])
        .when(record(report(vec![], 0)))
        .then_expect_events(vec![]);
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(record(report(vec![], 0)))
        .then_expect_events(vec![]);
}

#[test]
fn an_unreadable_object_fails_validation_with_its_code() {
    DatasetTest::with(())
        .given(vec![
            DatasetEvent::DatasetRegistered(registered()),
            confirmed(),
        ])
        .when(DatasetCommand::FailValidation(FailValidation {
            code: "OBJECT_MISSING".into(),
            message: "the uploaded file is no longer in storage".into(),
            failed_at: at(),
        }))
        .then_expect_events(vec![DatasetEvent::DatasetValidationFailed(
            DatasetValidationFailed {
                dataset_id: ids().0,
                user_id: ids().1,
                name: "Support chats".into(),
                message: "the uploaded file is no longer in storage".into(),
                errors: vec![issue(
                    0,
                    None,
                    "OBJECT_MISSING",
                    "the uploaded file is no longer in storage",
                )],
                error_count: 1,
                warnings: vec![],
                warning_count: 0,
                statistics: None,
                failed_at: at(),
            },
        )]);
}

fn purge(days_after_delete: i64) -> DatasetCommand {
    DatasetCommand::PurgeObject(PurgeObject {
        purged_at: at() + chrono::Duration::days(days_after_delete),
        purge_after: DEFAULT_PURGE_AFTER,
    })
}

#[test]
fn a_deleted_datasets_object_is_purged_once_after_thirty_days() {
    let (dataset_id, user_id) = ids();
    let purged = DatasetEvent::DatasetObjectPurged(DatasetObjectPurged {
        dataset_id,
        s3_bucket: "brightrun".into(),
        s3_key: format!("datasets/{user_id}/{dataset_id}/dataset.jsonl"),
        purged_at: at() + chrono::Duration::days(30),
    });
    DatasetTest::with(())
        .given(vec![
            DatasetEvent::DatasetRegistered(registered()),
            deleted(),
        ])
        .when(purge(29))
        .then_expect_error(DatasetError::PurgeNotDue {
            due_at: at() + chrono::Duration::days(30),
        });
    DatasetTest::with(())
        .given(vec![
            DatasetEvent::DatasetRegistered(registered()),
            deleted(),
        ])
        .when(purge(30))
        .then_expect_events(vec![purged.clone()]);
    DatasetTest::with(())
        .given(vec![
            DatasetEvent::DatasetRegistered(registered()),
            deleted(),
            purged,
        ])
        .when(purge(31))
        .then_expect_events(vec![]);
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(purge(31))
        .then_expect_events(vec![]);
}

#[test]
fn the_summary_names_the_place_of_the_first_error() {
    assert_eq!(
        error_summary(&[issue(0, None, "EMPTY_FILE", "the file is empty")], 1),
        "1 error; first: the file is empty (EMPTY_FILE)"
    );
    assert_eq!(
        error_summary(&[issue(3, None, "INVALID_JSON", "bad")], 2),
        "2 errors; first: line 3: bad (INVALID_JSON)"
    );
}

#[test]
fn a_dataset_a_job_trains_on_cannot_be_deleted() {
    DatasetTest::with(())
        .given(vec![DatasetEvent::DatasetRegistered(registered())])
        .when(DatasetCommand::Delete(DeleteDataset {
            actor: owner(),
            in_use: true,
            deleted_at: at(),
        }))
        .then_expect_error(DatasetError::InUse);
}
