use super::*;
use crate::cluster_sim::artifacts;
use application::cluster::SubmitRequest;
use domain::job::config::{GpuConfig, GpuType, Preset, TargetModule};

fn job(preset: Preset, seed: u64) -> SimJob {
    let mut h = preset.hyperparameters();
    h.lora_rank = 4;
    SimJob {
        cluster_job_id: "cj-1".into(),
        request: SubmitRequest {
            idempotency_key: "job-1".into(),
            dataset_url: "http://example/d".into(),
            base_model: "llama-3-8b".into(),
            dataset_format: None,
            hyperparameters: h,
            gpu_config: GpuConfig {
                instance_type: GpuType::A100_40gb,
                num_gpus: 2,
            },
            total_steps: 1000,
            checkpoint_interval: 100,
            validation_split_ratio: 0.1,
            early_stopping_patience: None,
            early_stopping_min_delta: None,
            seed: None,
            time_limit_seconds: None,
            webhook_url: None,
            resume_from: None,
            initial_adapter_url: None,
        },
        seed,
        attempt: 1,
        dataset_bytes: 50_000_000,
        dataset_tokens: 10_000_000,
        faults: Faults::default(),
    }
}

#[test]
fn the_same_seed_tells_the_same_story_and_another_seed_another() {
    let a = job(Preset::Balanced, 7);
    let b = job(Preset::Balanced, 7);
    let c = job(Preset::Balanced, 8);
    assert_eq!(a.metric_points(0, 1000), b.metric_points(0, 1000));
    assert_ne!(a.metric_points(0, 1000), c.metric_points(0, 1000));
    let t = a.duration() / 2.0;
    assert_eq!(a.snapshot(t, None), b.snapshot(t, None));
}

#[test]
fn losses_decrease_with_noise_and_validation_stays_above_training() {
    let j = job(Preset::Balanced, 1);
    let points = j.metric_points(0, 1000);
    let first = &points[..10];
    let last = &points[points.len() - 10..];
    let mean = |ps: &[ClusterMetricPoint]| {
        ps.iter().map(|p| p.training_loss).sum::<f64>() / ps.len() as f64
    };
    assert!(
        mean(last) < mean(first) * 0.5,
        "the loss falls: {} -> {}",
        mean(first),
        mean(last)
    );
    let rises = points
        .windows(2)
        .filter(|w| w[1].training_loss > w[0].training_loss)
        .count();
    assert!(
        rises > points.len() / 10,
        "the curve is noisy ({rises} rises)"
    );
    for p in points.iter().filter(|p| p.validation_loss.is_some()) {
        assert!(
            p.validation_loss.unwrap() > p.training_loss - 0.03,
            "step {}",
            p.step
        );
    }
    assert!(points.len() <= 520, "reports are thinned: {}", points.len());
}

#[test]
fn aggressive_runs_overfit_late() {
    let aggressive = job(Preset::Aggressive, 1);
    let balanced = job(Preset::Balanced, 1);
    assert!(aggressive.overfits() && !balanced.overfits());
    let val = |j: &SimJob, s: u64| j.validation_loss(s);
    assert!(
        val(&aggressive, 1000) > val(&aggressive, 600),
        "validation rises at the end"
    );
    assert!(val(&balanced, 1000) < val(&balanced, 600));
}

#[test]
fn the_run_moves_through_its_stages_and_completes_with_checkpoints_and_logs() {
    let j = job(Preset::Balanced, 1);
    let at_start = j.snapshot(10.0, None);
    assert_eq!(
        (at_start.status, at_start.stage, at_start.step),
        (ClusterStatus::Running, ClusterStage::Initializing, 0)
    );
    let mid = j.snapshot(300.0 + j.step_seconds() * 450.5, None);
    assert_eq!((mid.stage, mid.step), (ClusterStage::Training, 450));
    assert_eq!(mid.epoch, 3, "1000 steps over 5 epochs: 200 per epoch");
    assert!(mid.eta_seconds.unwrap() > 0);
    assert!((mid.gpu_seconds - 2.0 * j.step_seconds() * 450.5).abs() < 1e-6);
    let saving = j.snapshot(j.duration() - 60.0, None);
    assert_eq!(saving.stage, ClusterStage::Saving);
    let done = j.snapshot(j.duration() + 1.0, None);
    assert_eq!(
        (done.status, done.progress, done.step),
        (ClusterStatus::Completed, 100.0, 1000)
    );
    assert_eq!(j.checkpoints(1000).len(), 10);
    assert_eq!(j.checkpoints(450).len(), 4);
    let logs = j.logs(&done);
    assert!(logs
        .iter()
        .any(|l| l.message.contains("saved checkpoint ckpt-010")));
    assert_eq!(logs.last().unwrap().message, "adapter saved");
    assert!(logs.windows(2).all(|w| w[0].index + 1 == w[1].index));
    let early = j.logs(&at_start);
    assert_eq!(
        &logs[..early.len()],
        &early[..],
        "indexes are stable as the run goes on"
    );
}

#[test]
fn faults_stop_the_run_where_they_say() {
    let mut oom = job(Preset::Balanced, 1);
    oom.faults.oom_at_step = Some(300);
    let s = oom.snapshot(oom.duration(), None);
    assert_eq!((s.status, s.step), (ClusterStatus::Failed, 300));
    let err = s.error.unwrap();
    assert_eq!((err.code.as_str(), err.retryable), ("OUT_OF_MEMORY", true));
    oom.attempt = 4;
    assert_eq!(
        oom.snapshot(oom.duration(), None).status,
        ClusterStatus::Failed,
        "OOM recurs on every attempt"
    );

    let mut preempt = job(Preset::Balanced, 1);
    preempt.faults.preempt_at_step = Some(100);
    assert_eq!(
        preempt
            .snapshot(preempt.duration(), None)
            .error
            .unwrap()
            .code,
        "PREEMPTED"
    );
    preempt.attempt = 2;
    assert_eq!(
        preempt.snapshot(preempt.duration() + 1.0, None).status,
        ClusterStatus::Completed,
        "only the first attempt is preempted"
    );

    let mut gone = job(Preset::Balanced, 1);
    gone.faults.disappear_at_step = Some(10);
    assert!(gone.snapshot(300.0 + 11.0 * gone.step_seconds(), None).gone);
    assert!(!gone.snapshot(300.0 + 9.0 * gone.step_seconds(), None).gone);

    let j = job(Preset::Balanced, 1);
    let cancelled = j.snapshot(j.duration(), Some(400.0));
    assert_eq!(cancelled.status, ClusterStatus::Cancelled);
    assert!(
        (cancelled.running_seconds - 100.0).abs() < 1e-9,
        "GPU time stops at the cancel"
    );
}

#[test]
fn each_checkpoint_adapter_is_a_valid_safetensors_file_of_its_own() {
    let j = job(Preset::Balanced, 3);
    let last = artifacts::adapter_model(&j);
    let at_10 = artifacts::checkpoint_adapter(&j, 10);
    let at_20 = artifacts::checkpoint_adapter(&j, 20);
    for bytes in [&at_10, &at_20] {
        let tensors = safetensors::SafeTensors::deserialize(bytes).expect("safetensors parses");
        let final_tensors = safetensors::SafeTensors::deserialize(&last).unwrap();
        assert_eq!(tensors.len(), final_tensors.len());
        for (name, t) in tensors.tensors() {
            let f = final_tensors.tensor(&name).expect("the same tensors");
            assert_eq!((t.shape(), t.dtype()), (f.shape(), f.dtype()), "{name}");
        }
        assert_eq!(bytes.len(), last.len());
    }
    assert_ne!(at_10, at_20, "each checkpoint has its own values");
    assert_ne!(at_10, last);
    assert_eq!(
        artifacts::checkpoint_adapter(&j, 10),
        at_10,
        "deterministic"
    );
}

#[test]
fn the_adapter_is_a_valid_safetensors_file_with_peft_names_and_shapes() {
    let mut j = job(Preset::Balanced, 3);
    j.request.hyperparameters.target_modules = vec![TargetModule::QProj, TargetModule::VProj];
    let bytes = artifacts::adapter_model(&j);
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors parses");
    // llama-3-8b: 32 layers x 2 modules x (A, B)
    assert_eq!(tensors.len(), 32 * 2 * 2);
    let a = tensors
        .tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
        .expect("A");
    assert_eq!(a.shape(), &[4, 4096]);
    assert_eq!(a.dtype(), safetensors::Dtype::BF16);
    let b = tensors
        .tensor("base_model.model.model.layers.31.self_attn.v_proj.lora_B.weight")
        .expect("B");
    // Grouped-query attention: 8 key/value heads of 128.
    assert_eq!(b.shape(), &[1024, 4]);
    assert_eq!(artifacts::adapter_model(&j), bytes, "deterministic");

    let config: serde_json::Value = serde_json::from_slice(&artifacts::adapter_config(&j)).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 32);
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    assert_eq!(config["base_model_name_or_path"], "llama-3-8b");
    assert_eq!(config["task_type"], "CAUSAL_LM");
    assert_eq!(
        artifacts::sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn a_paced_job_reports_every_step_and_slows_down_from_its_step() {
    let mut j = job(Preset::Balanced, 3);
    j.faults.report_every = Some(1);
    j.faults.pace = Some(Pace {
        from_step: 600,
        speed: 2.0,
    });
    assert_eq!(j.metric_points(0, 1000).len(), 1000, "a point per step");
    let step = j.step_seconds();
    let switch = INITIALISATION_SECONDS as f64 + 600.0 * step;
    // At 100x the simulator reaches step 600 at switch / 100 real seconds...
    assert_eq!(j.cluster_seconds(switch / 100.0, 100.0), switch);
    assert_eq!(j.cluster_seconds(1.0, 100.0), 100.0);
    // ...then the job's clock runs at 2x: ten real seconds later, 20 cluster seconds on.
    let later = j.cluster_seconds(switch / 100.0 + 10.0, 100.0);
    assert!((later - (switch + 20.0)).abs() < 1e-9, "{later}");
    let unpaced = job(Preset::Balanced, 3);
    assert_eq!(unpaced.cluster_seconds(10.0, 100.0), 1000.0);
    assert!(unpaced.metric_points(0, 1000).len() < 1000);
}

#[test]
fn each_named_artifact_is_made_again_the_same_and_no_other_name_is() {
    let j = job(Preset::Balanced, 3);
    for name in artifacts::NAMES {
        let bytes = artifacts::one(&j, name).expect(name);
        assert!(!bytes.is_empty(), "{name}");
        assert_eq!(
            artifacts::one(&j, name),
            Some(bytes),
            "{name} is deterministic"
        );
    }
    assert_eq!(
        artifacts::one(&j, artifacts::ADAPTER_MODEL),
        Some(artifacts::adapter_model(&j))
    );
    assert_eq!(artifacts::one(&j, "../secrets"), None);
}

/// Every module's tensors have its own block and widths, as PEFT saves them over the real
/// model (and llama.cpp's converter takes them): MLP modules under `mlp`, key and value
/// projections as wide as the key/value heads.
#[test]
fn each_module_s_tensors_have_the_names_and_widths_of_the_real_layer() {
    let mut j = job(Preset::Balanced, 3);
    j.request.base_model = "smollm2-135m".into();
    j.request.hyperparameters.target_modules = TargetModule::ALL.to_vec();
    let bytes = artifacts::adapter_model(&j);
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors parses");
    assert_eq!(tensors.len(), 30 * 7 * 2);
    for (name, shape) in [
        ("layers.0.self_attn.q_proj.lora_B", [576, 4]),
        ("layers.0.self_attn.k_proj.lora_B", [192, 4]),
        ("layers.29.self_attn.v_proj.lora_A", [4, 576]),
        ("layers.29.self_attn.v_proj.lora_B", [192, 4]),
        ("layers.3.mlp.gate_proj.lora_B", [1536, 4]),
        ("layers.3.mlp.down_proj.lora_A", [4, 1536]),
        ("layers.3.mlp.down_proj.lora_B", [576, 4]),
    ] {
        let tensor = tensors
            .tensor(&format!("base_model.model.model.{name}.weight"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(tensor.shape(), &shape, "{name}");
    }
}
