//! Deployments served on this machine: each deployment's adapter is fetched from the object
//! store into `<data dir>/deployments/<deployment id>/`, converted to GGUF and served by a
//! llama.cpp engine (`inference::LlamaCppEngines`), a child process of this one.
//!
//! A deployment's folder says which model and deployment it is (`deployment.json`), which
//! process serves it (`engine.pid`) and where (`engine.json`), so a process that stopped
//! without stopping its engines (kill -9) leaves nothing the next one cannot find: the
//! deployment watcher starts the engines of current deployments again and sweeps the rest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use application::models::{Deployer, EngineHealth, Route};
use application::ObjectStore;
use async_trait::async_trait;
use domain::ids::ModelId;
use domain::model::Deployment;
use serde::{Deserialize, Serialize};

use crate::inference::{Engine, EngineError, LlamaCppEngines};

/// The base models the CPU engine has a GGUF of (`brightrun_trainer.gguf_adapter`).
pub const CPU_BASE_MODELS: &[&str] = &["smollm2-135m"];

/// How many times an engine that exits is started again before its deployment fails.
const MAX_RESTARTS: u32 = 3;

/// The files of a PEFT adapter the engine needs.
const ADAPTER_FILES: &[&str] = &["adapter_model.safetensors", "adapter_config.json"];

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Placed {
    model_id: ModelId,
    deployment_id: String,
}

enum Slot {
    Starting,
    Serving(Box<Engine>),
    Failed(String),
}

pub struct LocalDeployer {
    engines: Arc<LlamaCppEngines>,
    objects: Arc<dyn ObjectStore>,
    root: PathBuf,
    endpoint_url: String,
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    restarts: Mutex<HashMap<String, u32>>,
}

impl LocalDeployer {
    /// Deployments under `root`; callers reach them at `endpoint_url` (BrightRun's `/v1`).
    pub fn new(
        engines: LlamaCppEngines,
        objects: Arc<dyn ObjectStore>,
        root: PathBuf,
        endpoint_url: String,
    ) -> LocalDeployer {
        LocalDeployer {
            engines: Arc::new(engines),
            objects,
            root,
            endpoint_url,
            slots: Default::default(),
            restarts: Default::default(),
        }
    }

    fn folder(&self, deployment_id: &str) -> PathBuf {
        self.root.join(deployment_id)
    }

    fn launch(&self, deployment: &Deployment) {
        let engines = self.engines.clone();
        let objects = self.objects.clone();
        let slots = self.slots.clone();
        let folder = self.folder(&deployment.deployment_id);
        let deployment = deployment.clone();
        tokio::spawn(async move {
            let outcome = start(&engines, &*objects, &folder, &deployment).await;
            let mut slots = slots.lock().unwrap_or_else(|p| p.into_inner());
            // Stopped while it started: the engine is dropped (killed) here.
            if !matches!(slots.get(&deployment.deployment_id), Some(Slot::Starting)) {
                return;
            }
            match outcome {
                Ok(engine) => {
                    slots.insert(
                        deployment.deployment_id.clone(),
                        Slot::Serving(Box::new(engine)),
                    );
                }
                Err(Started::Refused(reason)) => {
                    tracing::warn!(deployment = %deployment.deployment_id, %reason, "the deployment cannot be served");
                    slots.insert(deployment.deployment_id.clone(), Slot::Failed(reason));
                }
                Err(Started::Retry(reason)) => {
                    tracing::warn!(deployment = %deployment.deployment_id, %reason, "the engine did not start; the watcher retries");
                    slots.remove(&deployment.deployment_id);
                }
            }
        });
    }
}

/// Why an engine did not start: for good, or worth another try (the store was down).
enum Started {
    Refused(String),
    Retry(String),
}

/// Places the adapter in `folder`, converts it and starts its engine.
async fn start(
    engines: &LlamaCppEngines,
    objects: &dyn ObjectStore,
    folder: &Path,
    deployment: &Deployment,
) -> Result<Engine, Started> {
    let io = |e: std::io::Error| Started::Retry(format!("{}: {e}", folder.display()));
    kill_stale_engine(folder);
    let adapter = folder.join("adapter");
    tokio::fs::create_dir_all(&adapter).await.map_err(io)?;
    let placed = Placed {
        model_id: deployment.model_id,
        deployment_id: deployment.deployment_id.clone(),
    };
    let placed = serde_json::to_vec(&placed).map_err(|e| Started::Retry(e.to_string()))?;
    tokio::fs::write(folder.join("deployment.json"), placed)
        .await
        .map_err(io)?;
    for name in ADAPTER_FILES {
        let artifact = deployment
            .artifacts
            .iter()
            .find(|a| a.name == *name)
            .ok_or_else(|| {
                Started::Refused(format!("ADAPTER_NOT_SERVABLE: the model has no {name}"))
            })?;
        let mut reader = objects
            .read(&artifact.s3_key)
            .await
            .map_err(|e| Started::Retry(format!("reading {name}: {e:#}")))?
            .ok_or_else(|| Started::Refused(format!("the model's {name} is not in storage")))?;
        let mut file = tokio::fs::File::create(adapter.join(name))
            .await
            .map_err(io)?;
        tokio::io::copy(&mut reader, &mut file).await.map_err(io)?;
    }
    let refused = |e: EngineError| match e {
        EngineError::NotServable { code, message } => {
            Started::Refused(format!("{code}: {message}"))
        }
        EngineError::Failed(message) => Started::Refused(message),
    };
    let (base, lora) = engines
        .convert(&deployment.base_model, &adapter, folder)
        .await
        .map_err(refused)?;
    let engine = engines
        .start(&base, &lora, &deployment.deployment_id, folder)
        .await
        .map_err(refused)?;
    if let Some(pid) = engine.pid() {
        tokio::fs::write(folder.join("engine.pid"), pid.to_string())
            .await
            .map_err(io)?;
    }
    let route = serde_json::json!({"baseUrl": engine.base_url, "model": engine.model});
    tokio::fs::write(folder.join("engine.json"), route.to_string())
        .await
        .map_err(io)?;
    Ok(engine)
}

/// Kills the engine an earlier process left serving from `folder` (its pid file, checked
/// against the process's command line so a reused pid is never killed).
fn kill_stale_engine(folder: &Path) {
    let Ok(pid) = std::fs::read_to_string(folder.join("engine.pid")) else {
        return;
    };
    let pid = pid.trim();
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return;
    };
    let cmdline = String::from_utf8_lossy(&cmdline);
    if cmdline.contains("llama_cpp.server") && cmdline.contains(&*folder.to_string_lossy()) {
        let _ = std::process::Command::new("kill")
            .args(["-9", pid])
            .status();
    }
    let _ = std::fs::remove_file(folder.join("engine.pid"));
    let _ = std::fs::remove_file(folder.join("engine.json"));
}

#[async_trait]
impl Deployer for LocalDeployer {
    fn check(&self, deployment: &Deployment) -> Result<(), String> {
        if !CPU_BASE_MODELS.contains(&deployment.base_model.as_str()) {
            return Err(format!(
                "no inference engine here serves {}: the CPU engine (llama.cpp) serves {}",
                deployment.base_model,
                CPU_BASE_MODELS.join(", ")
            ));
        }
        Ok(())
    }

    fn endpoint_url(&self) -> String {
        self.endpoint_url.clone()
    }

    fn expected_start(&self) -> Duration {
        Duration::from_secs(30)
    }

    async fn health(&self, deployment: &Deployment) -> anyhow::Result<EngineHealth> {
        let id = &deployment.deployment_id;
        let health = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let running = match slots.get_mut(id) {
                Some(Slot::Serving(engine)) => engine.is_running(),
                _ => false,
            };
            match slots.get(id) {
                Some(Slot::Starting) => return Ok(EngineHealth::Starting),
                Some(Slot::Failed(reason)) => return Ok(EngineHealth::Failed(reason.clone())),
                Some(Slot::Serving(_)) if running => return Ok(EngineHealth::Serving),
                Some(Slot::Serving(_)) => {
                    let mut restarts = self.restarts.lock().unwrap_or_else(|p| p.into_inner());
                    let count = restarts.entry(id.clone()).or_default();
                    *count += 1;
                    if *count > MAX_RESTARTS {
                        let reason =
                            format!("the engine exited {MAX_RESTARTS} times; see engine.log");
                        slots.insert(id.clone(), Slot::Failed(reason.clone()));
                        EngineHealth::Failed(reason)
                    } else {
                        tracing::warn!(deployment = %id, "the engine exited; starting it again");
                        slots.insert(id.clone(), Slot::Starting);
                        EngineHealth::Starting
                    }
                }
                None => {
                    slots.insert(id.clone(), Slot::Starting);
                    EngineHealth::Starting
                }
            }
        };
        if health == EngineHealth::Starting {
            self.launch(deployment);
        }
        Ok(health)
    }

    async fn stop(&self, deployment_id: &str) -> anyhow::Result<()> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(deployment_id);
        drop(slot);
        let folder = self.folder(deployment_id);
        kill_stale_engine(&folder);
        match tokio::fs::remove_dir_all(&folder).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn running(&self) -> anyhow::Result<Vec<(ModelId, String)>> {
        let mut found = Vec::new();
        let mut entries = match tokio::fs::read_dir(&self.root).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = entries.next_entry().await? {
            let Ok(bytes) = tokio::fs::read(entry.path().join("deployment.json")).await else {
                continue;
            };
            if let Ok(placed) = serde_json::from_slice::<Placed>(&bytes) {
                found.push((placed.model_id, placed.deployment_id));
            }
        }
        Ok(found)
    }

    async fn route(&self, deployment_id: &str) -> Option<Route> {
        if let Some(Slot::Serving(engine)) = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(deployment_id)
        {
            return Some(Route {
                base_url: engine.base_url.clone(),
                model: engine.model.clone(),
            });
        }
        // Served by another process over the same data folder (the workers role).
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Written {
            base_url: String,
            model: String,
        }
        let bytes = tokio::fs::read(self.folder(deployment_id).join("engine.json"))
            .await
            .ok()?;
        let written: Written = serde_json::from_slice(&bytes).ok()?;
        Some(Route {
            base_url: written.base_url,
            model: written.model,
        })
    }
}

/// The target when no inference engine is configured: every deployment is refused, saying
/// how to configure one.
pub struct NoEngine;

#[async_trait]
impl Deployer for NoEngine {
    fn check(&self, _deployment: &Deployment) -> Result<(), String> {
        Err(
            "no inference engine is configured: set INFERENCE_VENV to the environment \
             scripts/inference-env.sh builds (and TRAINER_PYTHON to the trainer's)"
                .to_string(),
        )
    }

    fn endpoint_url(&self) -> String {
        String::new()
    }

    fn expected_start(&self) -> Duration {
        Duration::ZERO
    }

    async fn health(&self, _deployment: &Deployment) -> anyhow::Result<EngineHealth> {
        Ok(EngineHealth::Failed(
            "no inference engine is configured".to_string(),
        ))
    }

    async fn stop(&self, _deployment_id: &str) -> anyhow::Result<()> {
        Ok(())
    }

    async fn running(&self) -> anyhow::Result<Vec<(ModelId, String)>> {
        Ok(Vec::new())
    }

    async fn route(&self, _deployment_id: &str) -> Option<Route> {
        None
    }
}
