//! The CPU inference engine through its adapter (`infrastructure::inference`): the
//! simulator's SmolLM2 adapter, converted by llama.cpp's own converter, served by
//! llama-cpp-python's OpenAI-compatible server, answers a chat completion as its model; an
//! adapter the engine cannot apply whole is refused with its code before anything starts.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use application::cluster::SubmitRequest;
use domain::job::config::TargetModule;
use infrastructure::cluster_sim::artifacts;
use infrastructure::cluster_sim::model::SimJob;
use infrastructure::inference::{EngineError, EngineHost, EngineSettings, LlamaCppEngines};
use serde_json::{json, Value};

use crate::common::Isolation;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The folder a `scripts/<env>.sh` prints (building it once per machine when missing).
pub(crate) fn environment(script: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(format!("{ROOT}/scripts/{script}"))
        .output()
        .expect("the environment script runs");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn engines() -> LlamaCppEngines {
    LlamaCppEngines::new(
        EngineSettings {
            engine_venv: environment("inference-env.sh"),
            trainer_python: environment("trainer-env.sh").join("bin").join("python"),
            trainer_src: Some(PathBuf::from(format!("{ROOT}/trainer/src"))),
            models_dir: None,
            ready_within: Duration::from_secs(90),
        },
        EngineHost::Local,
    )
}

/// The files a simulated SmolLM2 run on every module leaves, in `folder`.
fn simulated_adapter(folder: &std::path::Path, job: &SimJob) {
    std::fs::create_dir_all(folder).unwrap();
    std::fs::write(
        folder.join(artifacts::ADAPTER_MODEL),
        artifacts::adapter_model(job),
    )
    .unwrap();
    std::fs::write(
        folder.join(artifacts::ADAPTER_CONFIG),
        artifacts::adapter_config(job),
    )
    .unwrap();
}

fn smollm2_job(request: &SubmitRequest) -> SimJob {
    let mut request = request.clone();
    request.base_model = "smollm2-135m".into();
    request.hyperparameters.target_modules = TargetModule::ALL.to_vec();
    SimJob {
        cluster_job_id: "cj-engine".into(),
        request,
        seed: 7,
        attempt: 1,
        dataset_bytes: 0,
        dataset_tokens: 0,
        faults: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_adapter_is_converted_served_and_answers_as_its_model() {
    let iso = Isolation::new();
    let work = iso.data_dir().join("engine");
    let engines = engines();
    let job = smollm2_job(&crate::cluster_sim::request(
        "engine-1",
        "http://127.0.0.1:9/d",
    ));
    simulated_adapter(&work.join("adapter"), &job);

    let (base, lora) = engines
        .convert("smollm2-135m", &work.join("adapter"), &work)
        .await
        .expect("converted");
    assert!(
        base.ends_with(".gguf") && lora.ends_with("adapter.gguf"),
        "{base} {lora}"
    );
    let mut engine = engines
        .start(
            &base,
            Some(&lora),
            "ft:smollm2-135m:engine:1",
            &work,
            "engine.log",
        )
        .await
        .expect("serving");
    assert!(engine.is_running());
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(format!("{}/chat/completions", engine.base_url))
        .json(
            &json!({"model": engine.model, "max_tokens": 8, "temperature": 0,
                      "messages": [{"role": "user", "content": "Say hello"}]}),
        )
        .send()
        .await
        .expect("chat")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["model"], "ft:smollm2-135m:engine:1", "{answer}");
    assert_eq!(
        answer["choices"][0]["message"]["role"], "assistant",
        "{answer}"
    );
    assert!(
        answer["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "{answer}"
    );
    let log = std::fs::read_to_string(work.join("engine.log")).unwrap_or_default();
    assert!(
        log.contains("llama_adapter_lora_init"),
        "the LoRA was not loaded: {log}"
    );
    drop(engine);
    iso.cleanup().await;
}

#[tokio::test]
async fn an_adapter_the_engine_cannot_apply_whole_is_refused_with_its_code() {
    let iso = Isolation::new();
    let work = iso.data_dir().join("engine");
    let job = smollm2_job(&crate::cluster_sim::request(
        "engine-2",
        "http://127.0.0.1:9/d",
    ));
    simulated_adapter(&work.join("adapter"), &job);
    let config = work.join("adapter").join(artifacts::ADAPTER_CONFIG);
    let mut peft: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    peft["modules_to_save"] = json!(["lm_head"]);
    std::fs::write(&config, peft.to_string()).unwrap();

    let refused = engines()
        .convert("smollm2-135m", &work.join("adapter"), &work)
        .await;
    assert!(
        matches!(&refused, Err(EngineError::NotServable { code, message })
            if code == "ADAPTER_NOT_SERVABLE" && message.contains("modules_to_save")),
        "{refused:?}"
    );
    assert!(!work.join("adapter.gguf").exists());
    iso.cleanup().await;
}
