use super::config::*;
use super::estimate::*;
use super::*;
use chrono::TimeZone;
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use rust_decimal::Decimal;
use std::str::FromStr;
use uuid::Uuid;

type JobTest = TestFramework<Job>;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

fn owner() -> UserId {
    UserId(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002))
}

fn job_id() -> JobId {
    JobId(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0003))
}

fn dataset_id() -> DatasetId {
    DatasetId(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001))
}

fn request(preset: Preset, gpu: GpuType, n: u32, model: &str) -> JobRequest {
    JobRequest {
        preset,
        overrides: HyperparameterOverrides::default(),
        gpu_config: GpuConfig {
            instance_type: gpu,
            num_gpus: n,
        },
        base_model: Some(model.to_string()),
        early_stopping_patience: None,
        early_stopping_min_delta: None,
        validation_split_ratio: None,
        checkpoint_interval: None,
        seed: None,
    }
}

fn figures() -> DatasetFigures {
    DatasetFigures {
        training_pairs: 1000,
        validation_pairs: 0,
        total_tokens: 2_000_000,
        size_bytes: 1 << 30,
    }
}

// --- Presets, overrides, bounds -------------------------------------------------------------

#[test]
fn presets_carry_the_seed_values_and_the_shared_defaults() {
    let c = Preset::Conservative.hyperparameters();
    assert_eq!(
        (
            c.learning_rate,
            c.batch_size,
            c.num_epochs,
            c.lora_rank,
            c.lora_alpha,
            c.lora_dropout
        ),
        (1e-4, 4, 3, 8, 16, 0.05)
    );
    let b = Preset::Balanced.hyperparameters();
    assert_eq!(
        (
            b.learning_rate,
            b.batch_size,
            b.num_epochs,
            b.lora_rank,
            b.lora_alpha,
            b.lora_dropout
        ),
        (2e-4, 8, 5, 16, 32, 0.1)
    );
    let a = Preset::Aggressive.hyperparameters();
    assert_eq!(
        (
            a.learning_rate,
            a.batch_size,
            a.num_epochs,
            a.lora_rank,
            a.lora_alpha,
            a.lora_dropout
        ),
        (3e-4, 16, 10, 32, 64, 0.1)
    );
    assert_eq!(a.warmup_steps, 100);
    assert_eq!(
        a.target_modules,
        vec![TargetModule::QProj, TargetModule::VProj]
    );
    assert_eq!(a.optimizer_type, Optimizer::Adamw);
    assert_eq!(a.weight_decay, 0.01);
    assert_eq!(a.gradient_accumulation_steps, 1);
    assert_eq!(a.max_grad_norm, 1.0);
    assert_eq!(a.scheduler, Scheduler::Cosine);
}

#[test]
fn explicit_fields_override_the_preset_and_the_rest_stay() {
    let mut r = request(Preset::Conservative, GpuType::A100_80gb, 1, "mistral-7b");
    r.overrides.lora_rank = Some(64);
    r.overrides.target_modules = Some(vec!["q_proj".into(), "k_proj".into(), "q_proj".into()]);
    r.overrides.scheduler = Some(Scheduler::Linear);
    let c = r.resolve(1000).unwrap();
    assert_eq!(c.hyperparameters.lora_rank, 64);
    assert_eq!(
        c.hyperparameters.target_modules,
        vec![TargetModule::QProj, TargetModule::KProj]
    );
    assert_eq!(c.hyperparameters.scheduler, Scheduler::Linear);
    assert_eq!(c.hyperparameters.learning_rate, 1e-4, "from the preset");
    assert_eq!(c.preset_id, Preset::Conservative);
    assert_eq!(c.options.validation_split_ratio, 0.1);
    // 1000 pairs / batch 4 = 250 steps x 3 epochs = 750; about ten checkpoints.
    assert_eq!(c.options.checkpoint_interval, 75);
}

#[test]
fn each_bound_is_refused_by_its_field() {
    type Breaks = Box<dyn Fn(&mut JobRequest)>;
    let cases: Vec<(Breaks, &str)> = vec![
        (
            Box::new(|r| r.overrides.learning_rate = Some(0.0)),
            "hyperparameters.learningRate",
        ),
        (
            Box::new(|r| r.overrides.learning_rate = Some(0.011)),
            "hyperparameters.learningRate",
        ),
        (
            Box::new(|r| r.overrides.lora_rank = Some(0)),
            "hyperparameters.loraRank",
        ),
        (
            Box::new(|r| r.overrides.lora_rank = Some(257)),
            "hyperparameters.loraRank",
        ),
        (
            Box::new(|r| r.overrides.lora_dropout = Some(0.51)),
            "hyperparameters.loraDropout",
        ),
        (
            Box::new(|r| r.overrides.lora_dropout = Some(-0.1)),
            "hyperparameters.loraDropout",
        ),
        (
            Box::new(|r| r.overrides.batch_size = Some(0)),
            "hyperparameters.batchSize",
        ),
        (
            Box::new(|r| r.overrides.batch_size = Some(513)),
            "hyperparameters.batchSize",
        ),
        (
            Box::new(|r| r.overrides.num_epochs = Some(0)),
            "hyperparameters.numEpochs",
        ),
        (
            Box::new(|r| r.overrides.num_epochs = Some(101)),
            "hyperparameters.numEpochs",
        ),
        (
            Box::new(|r| r.overrides.target_modules = Some(vec!["w_proj".into()])),
            "hyperparameters.targetModules",
        ),
        (
            Box::new(|r| r.overrides.target_modules = Some(vec![])),
            "hyperparameters.targetModules",
        ),
        (
            Box::new(|r| r.overrides.max_grad_norm = Some(0.0)),
            "hyperparameters.maxGradNorm",
        ),
        (Box::new(|r| r.gpu_config.num_gpus = 3), "gpuConfig.numGPUs"),
        (
            Box::new(|r| r.base_model = Some("gpt-5".into())),
            "baseModel",
        ),
        (
            Box::new(|r| r.validation_split_ratio = Some(0.0)),
            "validationSplitRatio",
        ),
        (
            Box::new(|r| r.validation_split_ratio = Some(0.6)),
            "validationSplitRatio",
        ),
        (
            Box::new(|r| r.checkpoint_interval = Some(0)),
            "checkpointInterval",
        ),
        (
            Box::new(|r| r.early_stopping_patience = Some(0)),
            "earlyStoppingPatience",
        ),
    ];
    for (breaks, field) in cases {
        let mut r = request(Preset::Balanced, GpuType::A100_80gb, 1, "mistral-7b");
        breaks(&mut r);
        assert_eq!(r.resolve(100).unwrap_err().field, field);
    }
    let mut edge = request(Preset::Custom, GpuType::A100_80gb, 1, "mistral-7b");
    edge.overrides.learning_rate = Some(1e-2);
    edge.overrides.lora_rank = Some(256);
    edge.overrides.lora_dropout = Some(0.5);
    edge.overrides.batch_size = Some(512);
    edge.overrides.num_epochs = Some(100);
    assert!(
        edge.resolve(100).is_ok(),
        "the bounds themselves are allowed"
    );
}

#[test]
fn the_gpus_must_hold_the_base_model() {
    let small = request(Preset::Balanced, GpuType::A100_80gb, 1, "llama-3-70b")
        .resolve(100)
        .unwrap_err();
    assert_eq!(small.field, "gpuConfig");
    assert!(
        small.message.contains("at least 160 GB"),
        "{}",
        small.message
    );
    let forbidden = request(Preset::Balanced, GpuType::A100_40gb, 8, "llama-3-70b")
        .resolve(100)
        .unwrap_err();
    assert_eq!(forbidden.field, "gpuConfig");
    assert!(
        request(Preset::Balanced, GpuType::A100_80gb, 2, "llama-3-70b")
            .resolve(100)
            .is_ok()
    );
    assert!(
        request(Preset::Balanced, GpuType::A100_40gb, 1, "llama-3-8b")
            .resolve(100)
            .is_ok()
    );
    let mut default_model = request(Preset::Balanced, GpuType::H100_80gb, 2, "x");
    default_model.base_model = None;
    assert_eq!(
        default_model.resolve(100).unwrap().base_model,
        "llama-3-70b"
    );
}

// --- Estimate, checked by hand ----------------------------------------------------------------

#[test]
fn estimate_of_mistral_on_one_a100_80gb_balanced() {
    let config = request(Preset::Balanced, GpuType::A100_80gb, 1, "mistral-7b")
        .resolve(1000)
        .unwrap();
    let e = estimate(&config, figures(), &Rates::default());
    // ceil(1000 / 8) x 5
    assert_eq!(e.total_steps, 625);
    assert_eq!(e.tokens_per_second, 3000);
    // ceil(2,000,000 x 5 / 3000) = 3334, + 300 + 120
    assert_eq!(e.duration.estimated, 3754);
    assert_eq!(e.duration.min, 3003); // 0.8x = 3003.2
    assert_eq!(e.duration.max, 4880); // 1.3x = 4880.2
    assert_eq!(e.cost.compute.quantity, d("1.042778")); // 3754 / 3600
    assert_eq!(e.cost.compute.rate, d("3.20"));
    assert_eq!(e.cost.compute.total, d("3.34")); // 3.3368896
    assert_eq!(e.cost.storage.quantity, d("6")); // 1 GB + 5 GB
    assert_eq!(e.cost.storage.total, d("0.14")); // 0.138
    assert_eq!(e.cost.data_transfer.quantity, d("2"));
    assert_eq!(e.cost.data_transfer.total, d("0.18"));
    assert_eq!(e.cost.total, d("3.66"));
}

#[test]
fn estimate_of_llama_70b_on_four_h100_aggressive_with_accumulation() {
    let mut r = request(Preset::Aggressive, GpuType::H100_80gb, 4, "llama-3-70b");
    r.overrides.gradient_accumulation_steps = Some(2);
    let config = r.resolve(900).unwrap();
    let dataset = DatasetFigures {
        training_pairs: 900,
        validation_pairs: 100,
        total_tokens: 1_000_000,
        size_bytes: 1 << 29,
    };
    let e = estimate(&config, dataset, &Rates::default());
    assert_eq!(e.training_tokens, 900_000);
    // ceil(900 / (16 x 2)) = 29, x 10 epochs
    assert_eq!(e.total_steps, 290);
    // 900 x 4 x 0.9^2
    assert_eq!(e.tokens_per_second, 2916);
    // ceil(9,000,000 / 2916) = 3087, + 420
    assert_eq!(e.duration.estimated, 3507);
    assert_eq!((e.duration.min, e.duration.max), (2806, 4559));
    assert_eq!(e.cost.compute.quantity, d("0.974167"));
    assert_eq!(e.cost.compute.rate, d("18.00")); // 4.50 x 4
    assert_eq!(e.cost.compute.total, d("17.54")); // 17.535006
    assert_eq!(e.cost.storage.total, d("0.13")); // 5.5 x 0.023 = 0.1265
    assert_eq!(e.cost.data_transfer.total, d("0.09")); // 1 GB x 0.09
    assert_eq!(e.cost.total, d("17.76"));
}

#[test]
fn money_rounds_half_even_to_cents() {
    assert_eq!(cents(d("0.125")), d("0.12"));
    assert_eq!(cents(d("0.135")), d("0.14"));
    assert_eq!(micros(d("0.0000005")), d("0.000000"));
    assert_eq!(micros(d("0.0000015")), d("0.000002"));
}

// --- The aggregate ----------------------------------------------------------------------------

fn ready_dataset() -> DatasetForJob {
    DatasetForJob {
        id: dataset_id(),
        owner: owner(),
        name: "Support chats".into(),
        format: DatasetFormat::Sharegpt,
        status: DatasetStatus::Ready,
        training_ready: true,
        figures: figures(),
    }
}

fn create_with(dataset: Option<DatasetForJob>) -> JobCommand {
    JobCommand::Create(Box::new(CreateJob {
        job_id: job_id(),
        user_id: owner(),
        dataset_id: dataset_id(),
        dataset,
        request: request(Preset::Balanced, GpuType::A100_80gb, 1, "mistral-7b"),
        rates: Rates::default(),
        parent_model_id: None,
        parent: None,
        from_checkpoint: None,
        checkpoint: None,
        name: None,
        labels: Default::default(),
        created_at: at(),
    }))
}

fn created() -> JobEvent {
    let config = request(Preset::Balanced, GpuType::A100_80gb, 1, "mistral-7b")
        .resolve(1000)
        .unwrap();
    JobEvent::JobCreated(Box::new(JobCreated {
        job_id: job_id(),
        user_id: owner(),
        dataset_id: dataset_id(),
        name: Some("Training on Support chats".into()),
        dataset_name: "Support chats".into(),
        dataset_format: Some(DatasetFormat::Sharegpt),
        estimate: estimate(&config, figures(), &Rates::default()),
        configuration: config,
        rates: Rates::default(),
        parent_model_id: None,
        from_checkpoint: None,
        suffix: None,
        metadata: Default::default(),
        created_at: at(),
    }))
}

fn started(attempt: u32) -> JobEvent {
    JobEvent::JobSubmissionStarted(JobSubmissionStarted {
        job_id: job_id(),
        attempt,
        idempotency_key: format!("{}-{attempt}", job_id()),
        started_at: at(),
    })
}

fn training() -> JobEvent {
    JobEvent::JobStageChanged(JobStageChanged {
        job_id: job_id(),
        stage: JobStage::Training,
        message: "Epoch 1/5".into(),
        changed_at: at(),
    })
}

fn accrued(key: &str, amount: &str) -> JobEvent {
    JobEvent::JobCostAccrued(JobCostAccrued {
        job_id: job_id(),
        user_id: owner(),
        entry_key: key.into(),
        cost_type: CostType::Compute,
        amount: d(amount),
        rate: d("3.20"),
        quantity: d(amount) / d("3.20"),
        details: serde_json::json!({}),
        job_total: d(amount),
        estimated_total: d("3.66"),
        attempt: None,
        gpu_seconds_until: None,
        accrued_at: at(),
    })
}

fn fail(retryable: bool) -> JobCommand {
    JobCommand::Fail {
        code: "OOM".into(),
        message: "GPU memory exceeded".into(),
        retryable,
        at: at(),
    }
}

fn cancel(user: UserId) -> JobCommand {
    JobCommand::Cancel {
        actor: Actor {
            user_id: user,
            is_admin: false,
        },
        at: at(),
    }
}

#[test]
fn a_job_is_created_on_an_owned_ready_training_ready_dataset_with_its_estimate() {
    JobTest::with(())
        .given_no_previous_events()
        .when(create_with(Some(ready_dataset())))
        .then_expect_events(vec![created()]);
}

#[test]
fn a_job_without_a_name_is_named_after_its_dataset_and_a_given_name_is_kept_trimmed() {
    let named = |name: Option<&str>| {
        let JobCommand::Create(mut create) = create_with(Some(ready_dataset())) else {
            unreachable!()
        };
        create.name = name.map(str::to_string);
        let events = JobTest::with(())
            .given_no_previous_events()
            .when(JobCommand::Create(create))
            .inspect_result();
        match events.as_deref() {
            Ok([JobEvent::JobCreated(job)]) => Ok(job.name()),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.clone()),
        }
    };
    assert_eq!(named(None).unwrap(), "Training on Support chats");
    assert_eq!(named(Some("  Support bot v2 ")).unwrap(), "Support bot v2");
    for bad in ["", "   ", "tab\u{0}null", &"n".repeat(101)] {
        match named(Some(bad)) {
            Err(JobError::Invalid(e)) => assert_eq!(e.field, "name", "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn a_default_name_fits_the_name_bound_and_old_events_get_one_too() {
    let long = "d".repeat(300);
    assert_eq!(default_name(&long).chars().count(), MAX_NAME_CHARS);
    assert!(check_name(&default_name(&long)).is_ok());
    let JobEvent::JobCreated(mut old) = created() else {
        unreachable!()
    };
    old.name = None;
    assert_eq!(old.name(), "Training on Support chats");
}

#[test]
fn a_jobs_suffix_metadata_and_seed_are_recorded_with_it() {
    let metadata: std::collections::BTreeMap<String, String> =
        [("team".to_string(), "support".to_string())].into();
    let JobCommand::Create(mut create) = create_with(Some(ready_dataset())) else {
        unreachable!()
    };
    create.labels = labels::JobLabels {
        suffix: Some("support-bot_2".into()),
        metadata: metadata.clone(),
    };
    create.request.seed = Some(7);
    let events = JobTest::with(())
        .given_no_previous_events()
        .when(JobCommand::Create(create))
        .inspect_result()
        .unwrap();
    let [JobEvent::JobCreated(job)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(job.suffix.as_deref(), Some("support-bot_2"));
    assert_eq!(job.metadata, metadata);
    assert_eq!(job.configuration.options.seed, Some(7));
}

#[test]
fn a_bad_suffix_metadata_or_seed_is_refused_by_its_field() {
    let many: std::collections::BTreeMap<String, String> = (0..17)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    let long_value: std::collections::BTreeMap<String, String> =
        [("note".to_string(), "x".repeat(513))].into();
    let cases = [
        (
            Some("has:colon".to_string()),
            Default::default(),
            None,
            "suffix",
        ),
        (Some(String::new()), Default::default(), None, "suffix"),
        (Some("x".repeat(65)), Default::default(), None, "suffix"),
        (None, many, None, "metadata"),
        (None, long_value, None, "metadata.note"),
        (
            None,
            [("note".to_string(), "nul\u{0}".to_string())].into(),
            None,
            "metadata.note",
        ),
        (
            None,
            [("k\u{7}".to_string(), "v".to_string())].into(),
            None,
            "metadata",
        ),
        (None, Default::default(), Some(MAX_SEED + 1), "seed"),
    ];
    for (suffix, metadata, seed, field) in cases {
        let JobCommand::Create(mut create) = create_with(Some(ready_dataset())) else {
            unreachable!()
        };
        create.labels = labels::JobLabels { suffix, metadata };
        create.request.seed = seed;
        let err = JobTest::with(())
            .given_no_previous_events()
            .when(JobCommand::Create(create))
            .inspect_result()
            .unwrap_err();
        match err {
            JobError::Invalid(e) => assert_eq!(e.field, field, "{e}"),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn a_dataset_that_is_not_ready_or_not_the_users_is_refused() {
    JobTest::with(())
        .given_no_previous_events()
        .when(create_with(None))
        .then_expect_error(JobError::DatasetNotFound(dataset_id()));
    let mut other = ready_dataset();
    other.owner = UserId(Uuid::from_u128(99));
    JobTest::with(())
        .given_no_previous_events()
        .when(create_with(Some(other)))
        .then_expect_error(JobError::DatasetNotFound(dataset_id()));
    let mut validating = ready_dataset();
    validating.status = DatasetStatus::Validating;
    let err = JobTest::with(())
        .given_no_previous_events()
        .when(create_with(Some(validating)))
        .inspect_result()
        .unwrap_err();
    assert!(matches!(
        err,
        JobError::DatasetNotReady {
            status: "validating",
            ..
        }
    ));
    let mut too_small = ready_dataset();
    too_small.training_ready = false;
    let err = JobTest::with(())
        .given_no_previous_events()
        .when(create_with(Some(too_small)))
        .inspect_result()
        .unwrap_err();
    assert!(matches!(
        err,
        JobError::DatasetNotReady {
            status: "ready",
            ..
        }
    ));
}

#[test]
fn the_saga_moves_a_job_through_submission_stages_and_completion() {
    JobTest::with(())
        .given(vec![created()])
        .when(JobCommand::StartSubmission {
            attempt: 1,
            idempotency_key: format!("{}-1", job_id()),
            at: at(),
        })
        .then_expect_events(vec![started(1)]);
    JobTest::with(())
        .given(vec![created(), started(1)])
        .when(JobCommand::RecordSubmission {
            attempt: 1,
            cluster_job_id: "cj-1".into(),
            at: at(),
        })
        .then_expect_events(vec![JobEvent::JobSubmitted(JobSubmitted {
            job_id: job_id(),
            attempt: 1,
            cluster_job_id: "cj-1".into(),
            submitted_at: at(),
        })]);
    JobTest::with(())
        .given(vec![created(), started(1)])
        .when(JobCommand::ChangeStage {
            stage: JobStage::Training,
            message: "Epoch 1/5".into(),
            at: at(),
        })
        .then_expect_events(vec![training()]);
    JobTest::with(())
        .given(vec![
            created(),
            started(1),
            training(),
            accrued("c-1", "1.234567"),
            accrued("c-2", "0.5"),
        ])
        .when(JobCommand::Complete {
            final_training_loss: Some(0.4),
            final_validation_loss: Some(0.5),
            model_id: None,
            at: at(),
        })
        .then_expect_events(vec![JobEvent::JobCompleted(JobCompleted {
            job_id: job_id(),
            user_id: owner(),
            final_training_loss: Some(0.4),
            final_validation_loss: Some(0.5),
            model_id: None,
            final_cost: d("1.73"),
            completed_at: at(),
        })]);
}

#[test]
fn repeated_reports_record_nothing() {
    JobTest::with(())
        .given(vec![created(), started(1)])
        .when(JobCommand::StartSubmission {
            attempt: 1,
            idempotency_key: "again".into(),
            at: at(),
        })
        .then_expect_events(vec![]);
    JobTest::with(())
        .given(vec![created(), started(1), training()])
        .when(JobCommand::ChangeStage {
            stage: JobStage::Training,
            message: "again".into(),
            at: at(),
        })
        .then_expect_events(vec![]);
    JobTest::with(())
        .given(vec![created(), started(1), training(), accrued("c-1", "1")])
        .when(JobCommand::AccrueCost {
            entry_key: "c-1".into(),
            cost_type: CostType::Compute,
            quantity: d("1"),
            rate: d("3.20"),
            details: serde_json::json!({}),
            compute_until: None,
            at: at(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_cost_accrual_records_quantity_times_rate_to_six_digits() {
    JobTest::with(())
        .given(vec![created(), started(1), training()])
        .when(JobCommand::AccrueCost {
            entry_key: "compute:0-30".into(),
            cost_type: CostType::Compute,
            quantity: d("0.0083333333"),
            rate: d("3.20"),
            details: serde_json::json!({"from": 0, "to": 30}),
            compute_until: None,
            at: at(),
        })
        .then_expect_events(vec![JobEvent::JobCostAccrued(JobCostAccrued {
            job_id: job_id(),
            user_id: owner(),
            entry_key: "compute:0-30".into(),
            cost_type: CostType::Compute,
            amount: d("0.026667"),
            rate: d("3.20"),
            quantity: d("0.0083333333"),
            details: serde_json::json!({"from": 0, "to": 30}),
            job_total: d("0.026667"),
            estimated_total: d("3.66"),
            attempt: None,
            gpu_seconds_until: None,
            accrued_at: at(),
        })]);
}

#[test]
fn a_failure_keeps_the_clusters_words_but_nul() {
    JobTest::with(())
        .given(vec![created(), started(1), training()])
        .when(JobCommand::Fail {
            code: "OOM\u{0}".into(),
            message: "CUDA out of memory\u{0}\u{1b}[0m".into(),
            retryable: false,
            at: at(),
        })
        .then_expect_events(vec![JobEvent::JobFailed(JobFailed {
            job_id: job_id(),
            user_id: owner(),
            code: "OOM\u{FFFD}".into(),
            message: "CUDA out of memory\u{FFFD}\u{1b}[0m".into(),
            retry_count: 0,
            final_cost: d("0"),
            failed_at: at(),
        })]);
}

#[test]
fn retryable_failures_are_retried_three_times_then_the_job_fails() {
    let retry = |n: u32| {
        JobEvent::JobRetryScheduled(JobRetryScheduled {
            job_id: job_id(),
            retry_count: n,
            code: "OOM".into(),
            message: "GPU memory exceeded".into(),
            scheduled_at: at(),
        })
    };
    JobTest::with(())
        .given(vec![created(), started(1), training()])
        .when(fail(true))
        .then_expect_events(vec![retry(1)]);
    JobTest::with(())
        .given(vec![
            created(),
            started(1),
            retry(1),
            started(2),
            retry(2),
            started(3),
            retry(3),
            started(4),
        ])
        .when(fail(true))
        .then_expect_events(vec![JobEvent::JobFailed(JobFailed {
            job_id: job_id(),
            user_id: owner(),
            code: "OOM".into(),
            message: "GPU memory exceeded".into(),
            retry_count: 3,
            final_cost: d("0"),
            failed_at: at(),
        })]);
    let after_retry = JobTest::with(())
        .given(vec![created(), started(1), retry(1)])
        .when(JobCommand::StartSubmission {
            attempt: 2,
            idempotency_key: "k2".into(),
            at: at(),
        })
        .inspect_result()
        .unwrap();
    assert_eq!(after_retry.len(), 1, "a retried job is submitted again");
}

#[test]
fn a_retried_attempt_resumes_from_the_cluster_job_that_failed() {
    let submitted = |attempt: u32, id: &str| {
        JobEvent::JobSubmitted(JobSubmitted {
            job_id: job_id(),
            attempt,
            cluster_job_id: id.into(),
            submitted_at: at(),
        })
    };
    let retry = |n: u32| {
        JobEvent::JobRetryScheduled(JobRetryScheduled {
            job_id: job_id(),
            retry_count: n,
            code: "TRAINER_CRASHED".into(),
            message: "killed".into(),
            scheduled_at: at(),
        })
    };
    let job = |events: Vec<JobEvent>| {
        let mut job = Job::default();
        for e in events {
            job.apply(e);
        }
        job
    };
    // The first attempt resumes from nothing; the second from the first's cluster job.
    let first = job(vec![created(), started(1), submitted(1, "cj-1")]);
    assert_eq!(first.resume_from(), None);
    assert!(first.retries(true) && !first.retries(false));
    let second = job(vec![
        created(),
        started(1),
        submitted(1, "cj-1"),
        retry(1),
        started(2),
    ]);
    assert_eq!(second.resume_from(), Some("cj-1"));
    // An attempt that failed before it reached the cluster leaves the one before it.
    let third = job(vec![
        created(),
        started(1),
        submitted(1, "cj-1"),
        retry(1),
        started(2),
        retry(2),
        started(3),
    ]);
    assert_eq!(third.resume_from(), Some("cj-1"));
    let fourth = job(vec![
        created(),
        started(1),
        submitted(1, "cj-1"),
        retry(1),
        started(2),
        submitted(2, "cj-2"),
        retry(2),
        started(3),
        retry(3),
    ]);
    assert_eq!(fourth.resume_from(), Some("cj-2"));
    assert!(!fourth.retries(true), "three retries are the most");
}

#[test]
fn cancel_in_each_state() {
    let cancelled = |cost: &str, refund: &str| {
        JobEvent::JobCancelled(JobCancelled {
            job_id: job_id(),
            user_id: owner(),
            cancelled_by: owner(),
            cost_so_far: d(cost),
            refund_amount: d(refund),
            cancelled_at: at(),
        })
    };
    // The refund is the unused compute: the estimate's compute line (3.34 of the 3.66 total,
    // see the estimate test) less the compute accrued, in cents.
    JobTest::with(())
        .given(vec![created()])
        .when(cancel(owner()))
        .then_expect_events(vec![cancelled("0", "3.34")]);
    JobTest::with(())
        .given(vec![created(), started(1)])
        .when(cancel(owner()))
        .then_expect_events(vec![cancelled("0", "3.34")]);
    JobTest::with(())
        .given(vec![
            created(),
            started(1),
            training(),
            accrued("c-1", "1.004999"),
        ])
        .when(cancel(owner()))
        .then_expect_events(vec![cancelled("1.00", "2.34")]);
    // Storage and transfer are spent whether or not training finishes: they refund nothing.
    let mut transfer = accrued("t-1", "0.5");
    if let JobEvent::JobCostAccrued(e) = &mut transfer {
        e.cost_type = CostType::DataTransfer;
    }
    JobTest::with(())
        .given(vec![created(), started(1), transfer])
        .when(cancel(owner()))
        .then_expect_events(vec![cancelled("0.50", "3.34")]);
    JobTest::with(())
        .given(vec![
            created(),
            started(1),
            training(),
            accrued("c-1", "9.5"),
        ])
        .when(cancel(owner()))
        .then_expect_events(vec![cancelled("9.50", "0")]);
    for terminal in [
        cancelled("0", "3.66"),
        JobEvent::JobFailed(JobFailed {
            job_id: job_id(),
            user_id: owner(),
            code: "X".into(),
            message: "x".into(),
            retry_count: 0,
            final_cost: d("0"),
            failed_at: at(),
        }),
    ] {
        let err = JobTest::with(())
            .given(vec![created(), terminal])
            .when(cancel(owner()))
            .inspect_result()
            .unwrap_err();
        assert!(matches!(err, JobError::NotCancellable(_)));
    }
    JobTest::with(())
        .given(vec![created()])
        .when(cancel(UserId(Uuid::from_u128(99))))
        .then_expect_error(JobError::NotFound);
}

#[test]
fn after_the_end_cluster_reports_change_nothing_but_earlier_costs_land() {
    let done = vec![
        created(),
        started(1),
        training(),
        JobEvent::JobCancelled(JobCancelled {
            job_id: job_id(),
            user_id: owner(),
            cancelled_by: owner(),
            cost_so_far: d("0"),
            refund_amount: d("3.66"),
            cancelled_at: at(),
        }),
    ];
    for report in [
        JobCommand::ChangeStage {
            stage: JobStage::Saving,
            message: "late".into(),
            at: at(),
        },
        JobCommand::Complete {
            final_training_loss: None,
            final_validation_loss: None,
            model_id: None,
            at: at(),
        },
        fail(false),
        JobCommand::RecordCheckpoint {
            checkpoint_id: "ckpt-1".into(),
            step: 10,
            epoch: 1,
            loss: 0.5,
            file: None,
            at: at(),
        },
    ] {
        JobTest::with(())
            .given(done.clone())
            .when(report)
            .then_expect_events(vec![]);
    }
    let landed = JobTest::with(())
        .given(done)
        .when(JobCommand::AccrueCost {
            entry_key: "compute:final".into(),
            cost_type: CostType::Compute,
            quantity: d("0.1"),
            rate: d("3.20"),
            details: serde_json::json!({}),
            compute_until: None,
            at: at(),
        })
        .inspect_result()
        .unwrap();
    assert_eq!(landed.len(), 1);
}

#[test]
fn telemetry_is_accepted_only_while_the_job_is_under_way() {
    let mut job = Job::default();
    job.apply(created());
    assert!(!job.accepts_telemetry());
    job.apply(started(1));
    assert!(job.accepts_telemetry());
    job.apply(training());
    assert!(job.accepts_telemetry());
    job.apply(JobEvent::JobCompleted(JobCompleted {
        job_id: job_id(),
        user_id: owner(),
        final_training_loss: None,
        final_validation_loss: None,
        model_id: None,
        final_cost: d("0"),
        completed_at: at(),
    }));
    assert!(!job.accepts_telemetry());
}

#[test]
fn telemetry_figures_are_checked_and_keyed_by_step() {
    use super::telemetry::*;
    let point = MetricPoint {
        job_id: job_id(),
        step: 40,
        epoch: 1,
        training_loss: 0.9,
        validation_loss: Some(f64::NAN),
        learning_rate: 2e-4,
        gradient_norm: None,
        throughput: None,
        gpu_utilization: None,
        recorded_at: at(),
    };
    let err = TelemetryEvent::MetricPointRecorded(point.clone())
        .check()
        .unwrap_err();
    assert_eq!(err.field, "validationLoss");
    let ok = TelemetryEvent::MetricPointRecorded(MetricPoint {
        validation_loss: Some(1.0),
        ..point
    })
    .check()
    .unwrap();
    assert_eq!(ok.key(), (METRICS_STREAM, 40));
}

#[test]
fn reports_out_of_order_record_nothing() {
    // Submission recorded before it started, a stage while queued, completion while queued.
    for report in [
        JobCommand::RecordSubmission {
            attempt: 1,
            cluster_job_id: "cj".into(),
            at: at(),
        },
        JobCommand::ChangeStage {
            stage: JobStage::Training,
            message: "early".into(),
            at: at(),
        },
        JobCommand::Complete {
            final_training_loss: None,
            final_validation_loss: None,
            model_id: None,
            at: at(),
        },
    ] {
        JobTest::with(())
            .given(vec![created()])
            .when(report)
            .then_expect_events(vec![]);
    }
    // A submission of an older attempt, a stage the cluster does not report.
    JobTest::with(())
        .given(vec![created(), started(1)])
        .when(JobCommand::RecordSubmission {
            attempt: 0,
            cluster_job_id: "old".into(),
            at: at(),
        })
        .then_expect_events(vec![]);
    JobTest::with(())
        .given(vec![created(), started(1)])
        .when(JobCommand::ChangeStage {
            stage: JobStage::Completed,
            message: "not a report".into(),
            at: at(),
        })
        .then_expect_events(vec![]);
    // Commands on a job that does not exist.
    JobTest::with(())
        .given_no_previous_events()
        .when(cancel(owner()))
        .then_expect_error(JobError::NotFound);
}

#[test]
fn a_negative_cost_is_refused() {
    let err = JobTest::with(())
        .given(vec![created()])
        .when(JobCommand::AccrueCost {
            entry_key: "x".into(),
            cost_type: CostType::Storage,
            quantity: d("-1"),
            rate: d("0.023"),
            details: serde_json::json!({}),
            compute_until: None,
            at: at(),
        })
        .inspect_result()
        .unwrap_err();
    assert!(matches!(err, JobError::Invalid(_)));
}

#[test]
fn compute_entries_mark_how_much_gpu_time_of_an_attempt_is_accrued() {
    let mut job = Job::default();
    job.apply(created());
    job.apply(started(1));
    let events = job
        .decide(JobCommand::AccrueCost {
            entry_key: "compute:1:0".into(),
            cost_type: CostType::Compute,
            quantity: d("1"),
            rate: d("3.20"),
            details: serde_json::json!({}),
            compute_until: Some((1, d("3600"))),
            at: at(),
        })
        .unwrap();
    match &events[0] {
        JobEvent::JobCostAccrued(e) => {
            assert_eq!((e.attempt, e.gpu_seconds_until), (Some(1), Some(d("3600"))))
        }
        other => panic!("{other:?}"),
    }
    for e in events {
        job.apply(e);
    }
    assert_eq!(job.compute_accrued(1), d("3600"));
    assert_eq!(job.compute_accrued(2), d("0"));
    assert!(job.has_entry("compute:1:0"));
}

#[test]
fn a_checkpoint_is_recorded_once_with_its_stored_adapter_and_storage_counts_its_bytes() {
    let record = |id: &str, file: Option<StoredFile>| JobCommand::RecordCheckpoint {
        checkpoint_id: id.into(),
        step: 10,
        epoch: 1,
        loss: 0.5,
        file,
        at: at(),
    };
    let stored = |key: &str, size: u64| StoredFile {
        s3_key: key.into(),
        size_bytes: size,
        sha256: "ab".repeat(32),
    };
    let mut job = Job::default();
    for e in [created(), started(1), training()] {
        job.apply(e);
    }
    let events = job
        .decide(record(
            "a1-ckpt-001",
            Some(stored("checkpoints/j/a1-ckpt-001/a", 1000)),
        ))
        .unwrap();
    match &events[..] {
        [JobEvent::JobCheckpointSaved(e)] => {
            assert_eq!(e.file(), Some(stored("checkpoints/j/a1-ckpt-001/a", 1000)))
        }
        other => panic!("{other:?}"),
    }
    for e in events {
        job.apply(e);
    }
    assert!(job.has_checkpoint("a1-ckpt-001"));
    // The same checkpoint again (a repeated report) records nothing, with or without a file.
    assert!(job
        .decide(record("a1-ckpt-001", Some(stored("elsewhere", 5))))
        .unwrap()
        .is_empty());
    for e in job.decide(record("a1-ckpt-002", None)).unwrap() {
        job.apply(e);
    }
    for e in job
        .decide(record(
            "a1-ckpt-003",
            Some(stored("checkpoints/j/a1-ckpt-003/a", 500)),
        ))
        .unwrap()
    {
        job.apply(e);
    }
    // Only checkpoints whose adapter was copied count towards storage.
    assert_eq!(job.stored_checkpoint_bytes(), 1500);
}

#[test]
fn a_checkpoint_event_written_before_files_were_copied_still_reads_and_has_no_file() {
    let old = serde_json::json!({"jobId": job_id(), "checkpointId": "ckpt-1", "step": 5, "epoch": 1,
        "loss": 0.4, "s3Key": "checkpoints/x/1/ckpt-1", "savedAt": at()});
    let e: JobCheckpointSaved = serde_json::from_value(old).unwrap();
    assert_eq!(e.s3_key.as_deref(), Some("checkpoints/x/1/ckpt-1"));
    assert_eq!(e.file(), None);
}

fn update(user: UserId, name: Option<&str>, tags: Option<Vec<&str>>) -> JobCommand {
    JobCommand::UpdateMetadata {
        actor: Actor {
            user_id: user,
            is_admin: false,
        },
        name: name.map(String::from),
        description: None,
        tags: tags.map(|t| t.into_iter().map(String::from).collect()),
        at: at(),
    }
}

#[test]
fn metadata_changes_are_checked_and_recorded_in_any_state() {
    JobTest::with(())
        .given(vec![created(), started(1), training()])
        .when(update(
            owner(),
            Some("  Support bot  "),
            Some(vec!["support", " october ", "support"]),
        ))
        .then_expect_events(vec![JobEvent::JobMetadataUpdated(JobMetadataUpdated {
            job_id: job_id(),
            name: Some("Support bot".into()),
            description: None,
            tags: Some(vec!["support".into(), "october".into()]),
            updated_at: at(),
        })]);
    JobTest::with(())
        .given(vec![created()])
        .when(update(owner(), Some(""), None))
        .then_expect_error(JobError::Invalid(FieldError::new(
            "name",
            "name is required",
        )));
    JobTest::with(())
        .given(vec![created()])
        .when(update(owner(), None, Some(vec!["ok", "  "])))
        .then_expect_error(JobError::Invalid(FieldError::new(
            "tags[1]",
            "tags[1] is required",
        )));
    JobTest::with(())
        .given(vec![created()])
        .when(update(UserId(Uuid::from_u128(99)), Some("mine"), None))
        .then_expect_error(JobError::NotFound);
    // Nothing to change records nothing.
    JobTest::with(())
        .given(vec![created()])
        .when(update(owner(), None, None))
        .then_expect_events(vec![]);
}

#[test]
fn a_failed_job_the_cluster_still_runs_is_recovered_once() {
    let submitted = JobEvent::JobSubmitted(JobSubmitted {
        job_id: job_id(),
        attempt: 1,
        cluster_job_id: "cj-1".into(),
        submitted_at: at(),
    });
    let failed = JobEvent::JobFailed(JobFailed {
        job_id: job_id(),
        user_id: owner(),
        code: "CLUSTER_LOST_JOB".into(),
        message: "gone".into(),
        retry_count: 3,
        final_cost: Decimal::ZERO,
        failed_at: at(),
    });
    let recover = |id: &str| JobCommand::RecoverFromCluster {
        cluster_job_id: id.into(),
        cluster_status: "running".into(),
        at: at(),
    };
    let recovered = JobEvent::JobRecoveredFromCluster(JobRecoveredFromCluster {
        job_id: job_id(),
        user_id: owner(),
        attempt: 1,
        cluster_job_id: "cj-1".into(),
        cluster_status: "running".into(),
        recovered_at: at(),
    });
    JobTest::with(())
        .given(vec![
            created(),
            started(1),
            submitted.clone(),
            failed.clone(),
        ])
        .when(recover("cj-1"))
        .then_expect_events(vec![recovered.clone()]);
    // Another cluster job, a job that did not fail, or one already recovered: nothing.
    JobTest::with(())
        .given(vec![
            created(),
            started(1),
            submitted.clone(),
            failed.clone(),
        ])
        .when(recover("cj-0"))
        .then_expect_events(vec![]);
    JobTest::with(())
        .given(vec![created(), started(1), submitted.clone()])
        .when(recover("cj-1"))
        .then_expect_events(vec![]);
    JobTest::with(())
        .given(vec![created(), started(1), submitted, failed, recovered])
        .when(recover("cj-1"))
        .then_expect_events(vec![]);
}

#[test]
fn a_job_continues_an_own_checkpoint_that_kept_its_adapter() {
    let source = JobId(Uuid::from_u128(5));
    let configuration = request(Preset::Balanced, GpuType::A100_80gb, 1, "mistral-7b")
        .resolve(1000)
        .unwrap();
    let h = &configuration.hyperparameters;
    let kept = CheckpointForJob {
        owner: owner(),
        base_model: "mistral-7b".into(),
        lora_rank: h.lora_rank,
        target_modules: h.target_modules.clone(),
        s3_key: Some("jobs/5/checkpoints/ckpt-2/adapter_model.safetensors".into()),
    };
    assert_eq!(
        check_checkpoint(owner(), source, "ckpt-2", Some(&kept), &configuration),
        Ok(StartingCheckpoint {
            job_id: source,
            checkpoint_id: "ckpt-2".into(),
            s3_key: "jobs/5/checkpoints/ckpt-2/adapter_model.safetensors".into(),
        })
    );
    let field = |r: Result<StartingCheckpoint, JobError>| match r {
        Err(JobError::Invalid(f)) => f.field,
        other => panic!("{other:?}"),
    };
    let no_file = CheckpointForJob {
        s3_key: None,
        ..kept.clone()
    };
    let theirs = CheckpointForJob {
        owner: UserId(Uuid::from_u128(99)),
        ..kept.clone()
    };
    let other_rank = CheckpointForJob {
        lora_rank: h.lora_rank * 2,
        ..kept.clone()
    };
    for (checkpoint, expected) in [
        (Some(&no_file), "fromCheckpoint"),
        (Some(&theirs), "fromCheckpoint"),
        (None, "fromCheckpoint"),
        (Some(&other_rank), "hyperparameters.loraRank"),
    ] {
        assert_eq!(
            field(check_checkpoint(
                owner(),
                source,
                "ckpt-2",
                checkpoint,
                &configuration
            )),
            expected
        );
    }
}

#[test]
fn retraining_starts_from_an_own_model_on_its_base_model_with_its_adapter_s_shape() {
    let parent_id = ModelId(Uuid::from_u128(77));
    let config = |model: &str| {
        let mut h = Preset::Balanced.hyperparameters();
        h.lora_rank = 16;
        h.target_modules = vec![TargetModule::VProj, TargetModule::QProj];
        JobConfiguration {
            preset_id: Preset::Balanced,
            hyperparameters: h,
            gpu_config: GpuConfig {
                instance_type: GpuType::A100_80gb,
                num_gpus: 1,
            },
            base_model: model.into(),
            options: TrainingOptions {
                early_stopping_patience: None,
                early_stopping_min_delta: None,
                validation_split_ratio: 0.1,
                checkpoint_interval: 10,
                seed: None,
            },
        }
    };
    let mine = ParentForJob {
        owner: owner(),
        base_model: "mistral-7b".into(),
        lora_rank: 16,
        target_modules: vec![TargetModule::QProj, TargetModule::VProj],
    };
    // The modules in another order are the same adapter.
    assert_eq!(
        check_parent(owner(), parent_id, Some(&mine), &config("mistral-7b")),
        Ok(())
    );
    let field = |r: Result<(), JobError>| match r {
        Err(JobError::Invalid(f)) => f.field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(check_parent(
            owner(),
            parent_id,
            Some(&mine),
            &config("llama-3-8b")
        )),
        "baseModel"
    );
    let mut rank = config("mistral-7b");
    rank.hyperparameters.lora_rank = 8;
    assert_eq!(
        field(check_parent(owner(), parent_id, Some(&mine), &rank)),
        "hyperparameters.loraRank"
    );
    let mut modules = config("mistral-7b");
    modules
        .hyperparameters
        .target_modules
        .push(TargetModule::KProj);
    assert_eq!(
        field(check_parent(owner(), parent_id, Some(&mine), &modules)),
        "hyperparameters.targetModules"
    );
    let theirs = ParentForJob {
        owner: UserId(Uuid::from_u128(99)),
        ..mine
    };
    assert_eq!(
        field(check_parent(
            owner(),
            parent_id,
            Some(&theirs),
            &config("mistral-7b")
        )),
        "parentModelId"
    );
    assert_eq!(
        field(check_parent(
            owner(),
            parent_id,
            None,
            &config("mistral-7b")
        )),
        "parentModelId"
    );
}

#[test]
fn every_command_but_create_may_be_decided_again_after_a_lost_race() {
    assert!(cancel(owner()).is_repeatable());
    let fail = JobCommand::Fail {
        code: "X".into(),
        message: "x".into(),
        retryable: false,
        at: at(),
    };
    assert!(fail.is_repeatable());
    assert!(!create_with(None).is_repeatable());
}

#[test]
fn each_bound_of_the_table_refuses_the_values_outside_it_by_its_field() {
    for b in bounds::ALL {
        assert!(b.check(b.max).is_ok(), "{} max", b.field);
        let err = b.check(b.max + 1.0).unwrap_err();
        assert_eq!(err.field, b.field);
        if b.min_exclusive {
            assert!(b.check(b.min).is_err(), "{} excludes its min", b.field);
        } else {
            assert!(b.check(b.min).is_ok(), "{} includes its min", b.field);
            assert!(b.check(b.min - 1.0).is_err());
        }
    }
}

#[test]
fn every_typical_range_lies_inside_its_allowed_one_and_holds_every_preset() {
    for b in bounds::ALL {
        assert!(b.typical_min <= b.typical_max, "{}", b.field);
        assert!(b.check(b.typical_max).is_ok(), "{}", b.field);
        assert!(
            b.typical_min > b.min || (!b.min_exclusive && b.typical_min == b.min),
            "{}",
            b.field
        );
    }
    for (preset, model) in Preset::ALL
        .into_iter()
        .flat_map(|p| BASE_MODELS.iter().map(move |m| (p, m)))
    {
        let h = preset.hyperparameters_for(model);
        let values = [
            (bounds::LEARNING_RATE, h.learning_rate),
            (bounds::BATCH_SIZE, h.batch_size.into()),
            (bounds::NUM_EPOCHS, h.num_epochs.into()),
            (bounds::WARMUP_STEPS, h.warmup_steps.into()),
            (bounds::LORA_RANK, h.lora_rank.into()),
            (bounds::LORA_ALPHA, h.lora_alpha.into()),
            (bounds::LORA_DROPOUT, h.lora_dropout),
            (bounds::WEIGHT_DECAY, h.weight_decay),
            (
                bounds::GRADIENT_ACCUMULATION_STEPS,
                h.gradient_accumulation_steps.into(),
            ),
            (bounds::MAX_GRAD_NORM, h.max_grad_norm),
        ];
        for (b, v) in values {
            assert!(
                b.is_typical(v),
                "{preset:?} on {}: {} = {v}",
                model.id,
                b.field
            );
        }
    }
    // An extreme value, allowed, is not typical.
    assert!(bounds::BATCH_SIZE.check(512u32).is_ok());
    assert!(!bounds::BATCH_SIZE.is_typical(512.0));
    assert!(!bounds::LEARNING_RATE.is_typical(0.009));
}

#[test]
fn a_small_model_trains_at_its_scaled_preset_rate_unless_the_rate_is_given() {
    let small = |preset, lr: Option<f64>| {
        let mut r = request(preset, GpuType::A100_40gb, 1, "smollm2-135m");
        r.overrides.learning_rate = lr;
        r.resolve(100).unwrap().hyperparameters.learning_rate
    };
    assert_eq!(small(Preset::Balanced, None), 2e-3);
    assert_eq!(small(Preset::Conservative, None), 1e-3);
    assert_eq!(small(Preset::Custom, None), 2e-3);
    assert_eq!(
        small(Preset::Balanced, Some(5e-4)),
        5e-4,
        "a given rate is kept"
    );
    let large = request(Preset::Balanced, GpuType::A100_80gb, 1, "mistral-7b");
    assert_eq!(
        large.resolve(100).unwrap().hyperparameters.learning_rate,
        2e-4
    );
}

#[test]
fn a_presets_warmup_is_at_most_a_tenth_of_the_run_unless_it_is_given() {
    let warmup = |pairs, given: Option<u32>| {
        let mut r = request(Preset::Balanced, GpuType::A100_80gb, 1, "mistral-7b");
        r.overrides.warmup_steps = given;
        let c = r.resolve(pairs).unwrap();
        (
            c.hyperparameters.warmup_steps,
            total_steps(pairs, &c.hyperparameters),
        )
    };
    // 17 pairs, batch 8, 5 epochs: 15 steps, 1 of warmup (the preset's 100 would be all of it).
    assert_eq!(warmup(17, None), (1, 15));
    assert_eq!(warmup(8, None), (0, 5));
    // A long run keeps the preset's 100.
    assert_eq!(warmup(100_000, None).0, 100);
    assert_eq!(warmup(17, Some(10)).0, 10, "a given warmup is kept");
}

#[test]
fn a_transfer_is_billed_per_gb_with_six_digits() {
    // 1.5 GB (of 2^30 bytes) at $0.09: 0.135.
    let (gb, amount) = transfer_charge(3 * (BYTES_PER_GB / 2), d("0.09"));
    assert_eq!(gb, d("1.5"));
    assert_eq!(amount, d("0.135"));
    // 1 byte: a millionth of a GB rounds to zero, and so does its cost.
    assert_eq!(transfer_charge(1, d("0.09")), (d("0"), d("0")));
}

#[test]
fn gpu_time_is_billed_in_hours_to_ten_digits_and_the_amount_to_six() {
    // 90 GPU-seconds at $3.20 an hour: 0.025 h, $0.08.
    assert_eq!(compute_charge(d("90"), d("3.20")), (d("0.025"), d("0.08")));
    // One GPU-second: 1/3600 h kept to 10 digits, its cost to 6.
    let (hours, amount) = compute_charge(d("1"), d("3.20"));
    assert_eq!(hours, d("0.0002777778"));
    assert_eq!(amount, d("0.000889"));
    // The ledger's quantity is the same hours.
    assert_eq!(gpu_hours(d("1")), hours);
}

#[test]
fn each_base_model_starts_from_the_cheapest_gpus_per_token_that_can_train_it() {
    let rates = Rates::default();
    for model in &BASE_MODELS {
        let g = default_gpu_config(model, &rates).expect("every model has GPUs");
        assert!(check_gpu_fits(model, g).is_ok(), "{}: {g:?}", model.id);
    }
    let find = |id| BaseModel::find(id).expect("a model");
    // Small models fit one GPU, and one is cheaper per token than several.
    let small = default_gpu_config(find("smollm2-135m"), &rates).expect("gpus");
    assert_eq!(small.num_gpus, 1);
    // 70B needs 160 GB: two 80 GB GPUs, never the 40 GB type it cannot run on.
    let big = default_gpu_config(find("llama-3-70b"), &rates).expect("gpus");
    assert_eq!(big.num_gpus, 2);
    assert_ne!(big.instance_type, GpuType::A100_40gb);
    // A rate change moves the choice: the H100 at a tenth of its price wins for everyone.
    let cheap_h100 = Rates {
        h100_80gb_per_gpu_hour: rates.h100_80gb_per_gpu_hour / Decimal::from(10),
        ..rates.clone()
    };
    for model in &BASE_MODELS {
        let g = default_gpu_config(model, &cheap_h100).expect("gpus");
        assert_eq!(g.instance_type, GpuType::H100_80gb, "{}", model.id);
    }
}

#[test]
fn each_projection_has_the_widths_of_its_base_model_s_own_layers() {
    use crate::job::config::TargetModule::*;
    // SmolLM2-135M: hidden 576, 3 key/value heads of 64, MLP 1536 (its config.json).
    let smol = BaseModel::find("smollm2-135m").expect("smollm2");
    let widths: Vec<_> = [QProj, KProj, VProj, OProj, GateProj, UpProj, DownProj]
        .into_iter()
        .map(|m| (m.block(), m.as_str(), smol.projection(m)))
        .collect();
    assert_eq!(
        widths,
        [
            ("self_attn", "q_proj", (576, 576)),
            ("self_attn", "k_proj", (576, 192)),
            ("self_attn", "v_proj", (576, 192)),
            ("self_attn", "o_proj", (576, 576)),
            ("mlp", "gate_proj", (576, 1536)),
            ("mlp", "up_proj", (576, 1536)),
            ("mlp", "down_proj", (1536, 576)),
        ]
    );
    // Llama 3 8B: 8 key/value heads of 128, MLP 14336.
    let llama = BaseModel::find("llama-3-8b").expect("llama");
    assert_eq!(llama.projection(VProj), (4096, 1024));
    assert_eq!(llama.projection(DownProj), (14336, 4096));
}
