//! The CPU inference engine: llama-cpp-python's OpenAI-compatible server
//! (`python -m llama_cpp.server`, from `scripts/inference-env.sh`) over the base model's
//! GGUF with the trained adapter as a LoRA GGUF, made by llama.cpp's own converter
//! (`brightrun_trainer.gguf_adapter`, run by the trainer's Python). No server of our own: an
//! engine is a child process on a loopback port, killed with its handle.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The inference environment (`scripts/inference-env.sh`): its `bin/python` runs the
    /// server, its `share/llama.cpp` holds the converter.
    pub engine_venv: PathBuf,
    /// The Python that converts adapters (the trainer's environment: torch, transformers).
    pub trainer_python: PathBuf,
    /// Put on the converter's PYTHONPATH (the trainer's `src` folder), when not installed.
    pub trainer_src: Option<PathBuf>,
    /// The trainer's base-model folder (`TRAINER_MODELS_DIR`), for the base model's config.
    pub models_dir: Option<PathBuf>,
    /// How long an engine may take to answer after it starts.
    pub ready_within: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The adapter cannot be served as trained (`ADAPTER_NOT_SERVABLE`, ...): refused, never
    /// served as the base model.
    #[error("{code}: {message}")]
    NotServable { code: String, message: String },
    #[error("the inference engine failed: {0}")]
    Failed(String),
}

/// What the converter prints: the files the engine loads, or why it refused.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Converted {
    Served { model: String, lora: String },
    Refused { error: Refusal },
}

#[derive(Debug, Deserialize)]
struct Refusal {
    code: String,
    message: String,
}

/// A running engine: its OpenAI-compatible base URL (`http://127.0.0.1:<port>/v1`) and the
/// model name it answers to. Dropping it kills the process.
#[derive(Debug)]
pub struct Engine {
    pub base_url: String,
    pub model: String,
    child: tokio::process::Child,
}

impl Engine {
    /// The engine's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

pub struct LlamaCppEngines {
    settings: EngineSettings,
    http: reqwest::Client,
}

impl LlamaCppEngines {
    pub fn new(settings: EngineSettings) -> LlamaCppEngines {
        LlamaCppEngines {
            settings,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Converts the PEFT folder `adapter` into `work/adapter.gguf` for `base_model`.
    /// Answers (base GGUF, adapter GGUF).
    pub async fn convert(
        &self,
        base_model: &str,
        adapter: &Path,
        work: &Path,
    ) -> Result<(String, String), EngineError> {
        let failed = |e: std::io::Error| EngineError::Failed(e.to_string());
        tokio::fs::create_dir_all(work).await.map_err(failed)?;
        let mut command = tokio::process::Command::new(&self.settings.trainer_python);
        command
            .args([
                "-m",
                "brightrun_trainer.gguf_adapter",
                "--base-model",
                base_model,
            ])
            .arg("--adapter")
            .arg(adapter)
            .arg("--converter")
            .arg(self.settings.engine_venv.join("share").join("llama.cpp"))
            .arg("--out")
            .arg(work.join("adapter.gguf"))
            .env("HF_HUB_OFFLINE", "1")
            .stdin(Stdio::null());
        if let Some(src) = &self.settings.trainer_src {
            command.env("PYTHONPATH", src);
        }
        if let Some(models) = &self.settings.models_dir {
            command.env("TRAINER_MODELS_DIR", models);
        }
        let output = command.output().await.map_err(failed)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let answer = stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<Converted>(line).ok());
        match answer {
            Some(Converted::Served { model, lora }) if output.status.success() => Ok((model, lora)),
            Some(Converted::Refused { error }) => Err(EngineError::NotServable {
                code: error.code,
                message: error.message,
            }),
            _ => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
                Err(EngineError::Failed(format!(
                    "the adapter converter exited with {}: {}",
                    output.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                )))
            }
        }
    }

    /// Starts an engine serving `base` (with `lora`, when given) as `model` on a free
    /// loopback port, its log in `work/<log>`, and waits until it answers.
    pub async fn start(
        &self,
        base: &str,
        lora: Option<&str>,
        model: &str,
        work: &Path,
        log: &str,
    ) -> Result<Engine, EngineError> {
        let failed = |e: std::io::Error| EngineError::Failed(e.to_string());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(failed)?
            .port();
        let log_path = work.join(log);
        let log = std::fs::File::create(&log_path).map_err(failed)?;
        let mut command =
            tokio::process::Command::new(self.settings.engine_venv.join("bin").join("python"));
        command.args(["-m", "llama_cpp.server", "--model", base]);
        if let Some(lora) = lora {
            command.args(["--lora_path", lora]);
        }
        let child = command
            .args(["--model_alias", model, "--host", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--n_ctx", "2048"])
            // One caller's request waits for another's to end, never cuts it short.
            .args(["--interrupt_requests", "false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(failed)?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(failed)?;
        let mut engine = Engine {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            model: model.to_string(),
            child,
        };
        let deadline = tokio::time::Instant::now() + self.settings.ready_within;
        loop {
            if self.is_ready(&engine).await {
                return Ok(engine);
            }
            if !engine.is_running() || tokio::time::Instant::now() >= deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: String = log
                    .chars()
                    .rev()
                    .take(600)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                return Err(EngineError::Failed(format!(
                    "the engine did not answer within {:?}: {tail}",
                    self.settings.ready_within
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether the engine answers its model list, naming its model.
    pub async fn is_ready(&self, engine: &Engine) -> bool {
        let Ok(answer) = self
            .http
            .get(format!("{}/models", engine.base_url))
            .send()
            .await
        else {
            return false;
        };
        let Ok(list) = answer.json::<serde_json::Value>().await else {
            return false;
        };
        list["data"]
            .as_array()
            .is_some_and(|models| models.iter().any(|m| m["id"] == engine.model.as_str()))
    }
}
