//! The CPU inference engine: llama-cpp-python's OpenAI-compatible server
//! (`python -m llama_cpp.server`, from `scripts/inference-env.sh`) over the base model's
//! GGUF with the trained adapter as a LoRA GGUF, made by llama.cpp's own converter
//! (`brightrun_trainer.gguf_adapter`, run by the trainer's Python). No server of our own: an
//! engine is a child process on a loopback port, or a Slurm job on a node of the cluster
//! (`slurm::SlurmServing`), stopped with its handle.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;

use crate::slurm::{SlurmEngine, SlurmServing};

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

/// A running engine: its OpenAI-compatible base URL (`http://<host>:<port>/v1`) and the
/// model name it answers to. Dropping it stops the engine.
#[derive(Debug)]
pub struct Engine {
    pub base_url: String,
    pub model: String,
    process: Process,
}

#[derive(Debug)]
enum Process {
    Child(tokio::process::Child),
    Slurm(SlurmEngine),
}

/// Where engines run: child processes of this one, or Slurm jobs.
pub enum EngineHost {
    Local,
    Slurm(SlurmServing),
}

/// The prefix of a Slurm engine's handle in a deployment's `engine.pid`.
const SLURM_HANDLE: &str = "slurm:";

impl Engine {
    /// What finds the engine again from another process: its process id (while it
    /// runs), or `slurm:<job id>`.
    pub fn handle(&self) -> Option<String> {
        match &self.process {
            Process::Child(child) => child.id().map(|pid| pid.to_string()),
            Process::Slurm(job) => Some(format!("{SLURM_HANDLE}{}", job.job_id)),
        }
    }

    /// Whether the engine still runs.
    pub fn is_running(&mut self) -> bool {
        match &mut self.process {
            Process::Child(child) => matches!(child.try_wait(), Ok(None)),
            Process::Slurm(job) => job.is_running(),
        }
    }
}

pub struct LlamaCppEngines {
    settings: EngineSettings,
    host: EngineHost,
    http: reqwest::Client,
}

impl LlamaCppEngines {
    pub fn new(settings: EngineSettings, host: EngineHost) -> LlamaCppEngines {
        LlamaCppEngines {
            settings,
            host,
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

    /// The server's program and arguments for `base` (with `lora`, when given) as `model`,
    /// all but where it listens (`--host`, `--port`).
    fn server(&self, base: &str, lora: Option<&str>, model: &str) -> (PathBuf, Vec<String>) {
        let mut args: Vec<String> = ["-m", "llama_cpp.server", "--model", base]
            .map(String::from)
            .into();
        if let Some(lora) = lora {
            args.extend(["--lora_path".into(), lora.into()]);
        }
        args.extend(
            ["--model_alias", model, "--n_ctx", "2048"]
                // One caller's request waits for another's to end, never cuts it short.
                .into_iter()
                .chain(["--interrupt_requests", "false"])
                .map(String::from),
        );
        (self.settings.engine_venv.join("bin").join("python"), args)
    }

    /// Starts an engine serving `base` (with `lora`, when given) as `model` (on a free
    /// loopback port here, or as a Slurm job), its log in `work/<log>`, and waits until it
    /// answers.
    pub async fn start(
        &self,
        base: &str,
        lora: Option<&str>,
        model: &str,
        work: &Path,
        log: &str,
    ) -> Result<Engine, EngineError> {
        let failed = |e: std::io::Error| EngineError::Failed(e.to_string());
        let (program, args) = self.server(base, lora, model);
        let log_path = work.join(log);
        let deadline = tokio::time::Instant::now() + self.settings.ready_within;
        let mut engine = match &self.host {
            EngineHost::Local => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map_err(failed)?
                    .port();
                let log = std::fs::File::create(&log_path).map_err(failed)?;
                let child = tokio::process::Command::new(program)
                    .args(args)
                    .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().map_err(failed)?)
                    .stderr(log)
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(failed)?;
                Engine {
                    base_url: format!("http://127.0.0.1:{port}/v1"),
                    model: model.to_string(),
                    process: Process::Child(child),
                }
            }
            EngineHost::Slurm(slurm) => {
                let (job, base_url) = slurm
                    .start(
                        &program,
                        &args,
                        model,
                        work,
                        log,
                        self.settings.ready_within,
                    )
                    .await
                    .map_err(|e| EngineError::Failed(format!("{e}{}", log_tail(&log_path))))?;
                Engine {
                    base_url,
                    model: model.to_string(),
                    process: Process::Slurm(job),
                }
            }
        };
        loop {
            if self.is_ready(&engine).await {
                return Ok(engine);
            }
            if !engine.is_running() || tokio::time::Instant::now() >= deadline {
                return Err(EngineError::Failed(format!(
                    "the engine did not answer within {:?}{}",
                    self.settings.ready_within,
                    log_tail(&log_path)
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the engines an earlier process left serving the deployment `deployment`, as
    /// its `engine.pid` lists them (`handles`): a process only when its command line names
    /// the deployment (a reused pid is never killed); on Slurm, every engine job of the
    /// deployment, listed or not (a crash between submitting and writing the list).
    pub async fn stop_stale(&self, deployment: &str, handles: &str) {
        if deployment.is_empty() {
            return;
        }
        for handle in handles.lines().map(str::trim).filter(|p| !p.is_empty()) {
            if handle.starts_with(SLURM_HANDLE) {
                continue;
            }
            let Ok(cmdline) = std::fs::read(format!("/proc/{handle}/cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.contains("llama_cpp.server") && cmdline.contains(deployment) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", handle])
                    .status();
            }
        }
        if let EngineHost::Slurm(slurm) = &self.host {
            if let Err(err) = slurm.cancel_all(deployment).await {
                tracing::warn!(%deployment, error = %err, "the deployment's earlier engine jobs were not cancelled");
            }
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

/// The end of an engine's log, to say why it did not start.
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let tail: String = log
        .chars()
        .rev()
        .take(600)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}
