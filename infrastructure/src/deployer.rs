//! Deployments served by llama.cpp engines (`inference::LlamaCppEngines`): each
//! deployment's adapter is fetched from the object store into `<root>/<deployment id>/`,
//! converted to GGUF once and served by one engine per replica (`minReplicas`), taken in
//! turn by chat, and one of the base model alone, whose answers the playground shows beside
//! the fine-tuned model's. The engines are child processes of this one, or Slurm jobs (then
//! the root is on the filesystem the nodes share).
//!
//! A deployment's folder says which model and deployment it is (`deployment.json`), which
//! engines serve it (`engine.pid`, one process id or `slurm:<job id>` per line) and where
//! (`engine.json`), so a process that stopped without stopping its engines (kill -9) leaves
//! nothing the next one cannot find: the deployment watcher starts the engines of current
//! deployments again and sweeps the rest. An engine that exits is replaced while the
//! others serve.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use application::models::{Deployer, EngineHealth, Route, Target};
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

/// Where an engine answers, as `engine.json` lists it for other processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Address {
    base_url: String,
    model: String,
}

/// `engine.json`: the replicas serving now, and the base model's engine.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Addresses {
    replicas: Vec<Address>,
    base: Option<Address>,
}

/// The files a deployment's engines load, made once by its start.
#[derive(Debug, Clone)]
struct Converted {
    base: String,
    lora: String,
    folder: PathBuf,
}

/// One engine of a deployment: a replica of the fine-tuned model, or the base model alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Replica(usize),
    Base,
}

impl Role {
    fn log(self) -> String {
        match self {
            Role::Replica(i) => format!("engine-{i}.log"),
            Role::Base => "engine-base.log".to_string(),
        }
    }
}

enum Member {
    Up(Box<Engine>),
    /// A replacement is starting.
    Restarting,
    /// Exited, or its replacement did not start: the next health check starts another.
    Down,
}

/// A deployment whose engines started: its replicas, then the base model's engine.
struct Served {
    files: Converted,
    members: Vec<(Role, Member)>,
    restarts: Vec<u32>,
}

impl Served {
    fn addresses(&self) -> Addresses {
        let mut addresses = Addresses::default();
        for (role, member) in &self.members {
            let Member::Up(engine) = member else { continue };
            let address = Address {
                base_url: engine.base_url.clone(),
                model: engine.model.clone(),
            };
            match role {
                Role::Replica(_) => addresses.replicas.push(address),
                Role::Base => addresses.base = Some(address),
            }
        }
        addresses
    }

    /// Writes which processes serve (`engine.pid`, one per line) and where (`engine.json`).
    fn record(&self) {
        let pids: Vec<String> = self
            .members
            .iter()
            .filter_map(|(_, m)| match m {
                Member::Up(engine) => engine.handle(),
                _ => None,
            })
            .collect();
        let folder = &self.files.folder;
        let written = std::fs::write(folder.join("engine.pid"), pids.join("\n")).and_then(|()| {
            let json = serde_json::to_vec(&self.addresses()).unwrap_or_default();
            std::fs::write(folder.join("engine.json"), json)
        });
        if let Err(err) = written {
            tracing::warn!(error = %err, folder = %folder.display(), "the engines' files were not written");
        }
    }
}

impl Addresses {
    /// Where `target`'s chat goes: the base model's engine, or the replica whose turn it is.
    fn pick(self, target: Target, turn: usize) -> Option<Route> {
        let address = match target {
            Target::Base => self.base?,
            Target::Adapter if self.replicas.is_empty() => return None,
            Target::Adapter => self.replicas[turn % self.replicas.len()].clone(),
        };
        Some(Route {
            base_url: address.base_url,
            model: address.model,
        })
    }
}

enum Slot {
    Starting,
    Serving(Box<Served>),
    Failed(String),
}

type Slots = Arc<Mutex<HashMap<String, Slot>>>;

pub struct LocalDeployer {
    engines: Arc<LlamaCppEngines>,
    objects: Arc<dyn ObjectStore>,
    root: PathBuf,
    endpoint_url: String,
    slots: Slots,
    /// Turns through a deployment's replicas (whichever process runs them).
    next: AtomicUsize,
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
            next: AtomicUsize::new(0),
        }
    }

    fn folder(&self, deployment_id: &str) -> PathBuf {
        self.root.join(deployment_id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
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
            // Stopped while it started: the engines are dropped (killed) here.
            if !matches!(slots.get(&deployment.deployment_id), Some(Slot::Starting)) {
                return;
            }
            match outcome {
                Ok(served) => {
                    served.record();
                    slots.insert(deployment.deployment_id.clone(), Slot::Serving(served));
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

    /// Starts a replacement for the deployment's engine `index`, which exited.
    fn replace(&self, deployment_id: &str, index: usize, role: Role, files: Converted) {
        let engines = self.engines.clone();
        let slots = self.slots.clone();
        let id = deployment_id.to_string();
        tokio::spawn(async move {
            let started = start_engine(&engines, &files, &id, role).await;
            let mut slots = slots.lock().unwrap_or_else(|p| p.into_inner());
            let Some(Slot::Serving(served)) = slots.get_mut(&id) else {
                return;
            };
            let Some((_, member)) = served.members.get_mut(index) else {
                return;
            };
            *member = match started {
                Ok(engine) => Member::Up(Box::new(engine)),
                Err(err) => {
                    tracing::warn!(deployment = %id, error = %err, "a replacement engine did not start");
                    Member::Down
                }
            };
            served.record();
        });
    }
}

/// Why an engine did not start: for good, or worth another try (the store was down).
enum Started {
    Refused(String),
    Retry(String),
}

fn refused(e: EngineError) -> Started {
    match e {
        EngineError::NotServable { code, message } => {
            Started::Refused(format!("{code}: {message}"))
        }
        EngineError::Failed(message) => Started::Refused(message),
    }
}

/// Starts one engine of the deployment `id` over its converted files: a replica answers to
/// the deployment's id, the base model's engine to `<id>-base` (both name the deployment
/// on their command line, by which a later process finds them).
async fn start_engine(
    engines: &LlamaCppEngines,
    files: &Converted,
    id: &str,
    role: Role,
) -> Result<Engine, EngineError> {
    let (lora, model) = match role {
        Role::Replica(_) => (Some(files.lora.as_str()), id.to_string()),
        Role::Base => (None, format!("{id}-base")),
    };
    engines
        .start(&files.base, lora, &model, &files.folder, &role.log())
        .await
}

/// Places the adapter in `folder`, converts it and starts the deployment's engines: its
/// replicas and the base model's.
async fn start(
    engines: &LlamaCppEngines,
    objects: &dyn ObjectStore,
    folder: &Path,
    deployment: &Deployment,
) -> Result<Box<Served>, Started> {
    let io = |e: std::io::Error| Started::Retry(format!("{}: {e}", folder.display()));
    stop_stale_engines(engines, folder).await;
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
    let (base, lora) = engines
        .convert(&deployment.base_model, &adapter, folder)
        .await
        .map_err(refused)?;
    let files = Converted {
        base,
        lora,
        folder: folder.to_path_buf(),
    };
    let roles: Vec<Role> = (0..deployment.replicas as usize)
        .map(Role::Replica)
        .chain([Role::Base])
        .collect();
    let started = futures::future::join_all(
        roles
            .iter()
            .map(|role| start_engine(engines, &files, &deployment.deployment_id, *role)),
    )
    .await;
    let mut members = Vec::with_capacity(roles.len());
    for (role, engine) in roles.iter().zip(started) {
        // Any that did not start fails the start (the others are dropped, killed).
        members.push((*role, Member::Up(Box::new(engine.map_err(refused)?))));
    }
    Ok(Box::new(Served {
        files,
        restarts: vec![0; members.len()],
        members,
    }))
}

/// Stops the engines an earlier process left serving from `folder` (its `engine.pid`; the
/// folder is named by the deployment id, which each engine's command line or job names).
async fn stop_stale_engines(engines: &LlamaCppEngines, folder: &Path) {
    let handles = std::fs::read_to_string(folder.join("engine.pid")).unwrap_or_default();
    let deployment = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    engines.stop_stale(&deployment, &handles).await;
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

    /// Serving while one replica answers; an engine that exited is replaced (each at most
    /// `MAX_RESTARTS` times, then the deployment fails).
    async fn health(&self, deployment: &Deployment) -> anyhow::Result<EngineHealth> {
        let id = &deployment.deployment_id;
        let mut replacements = Vec::new();
        let health = {
            let mut slots = self.lock();
            match slots.get_mut(id) {
                Some(Slot::Starting) => return Ok(EngineHealth::Starting),
                Some(Slot::Failed(reason)) => return Ok(EngineHealth::Failed(reason.clone())),
                Some(Slot::Serving(served)) => {
                    let mut failed = None;
                    let mut changed = false;
                    for (index, (role, member)) in served.members.iter_mut().enumerate() {
                        let exited = match member {
                            Member::Up(engine) => !engine.is_running(),
                            Member::Restarting => false,
                            Member::Down => true,
                        };
                        if !exited {
                            continue;
                        }
                        changed = true;
                        served.restarts[index] += 1;
                        if served.restarts[index] > MAX_RESTARTS {
                            failed = Some(format!(
                                "an engine exited {MAX_RESTARTS} times; see {}",
                                role.log()
                            ));
                            break;
                        }
                        tracing::warn!(deployment = %id, ?role, "an engine exited; starting another");
                        *member = Member::Restarting;
                        replacements.push((index, *role, served.files.clone()));
                    }
                    if changed {
                        served.record();
                    }
                    let answering = served
                        .members
                        .iter()
                        .any(|(role, m)| matches!((role, m), (Role::Replica(_), Member::Up(_))));
                    match failed {
                        Some(reason) => {
                            replacements.clear();
                            slots.insert(id.clone(), Slot::Failed(reason.clone()));
                            EngineHealth::Failed(reason)
                        }
                        None if answering => EngineHealth::Serving,
                        None => EngineHealth::Starting,
                    }
                }
                None => {
                    slots.insert(id.clone(), Slot::Starting);
                    drop(slots);
                    self.launch(deployment);
                    return Ok(EngineHealth::Starting);
                }
            }
        };
        for (index, role, files) in replacements {
            self.replace(id, index, role, files);
        }
        Ok(health)
    }

    async fn stop(&self, deployment_id: &str) -> anyhow::Result<()> {
        let slot = self.lock().remove(deployment_id);
        drop(slot);
        let folder = self.folder(deployment_id);
        stop_stale_engines(&self.engines, &folder).await;
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

    async fn route(&self, deployment_id: &str, target: Target) -> Option<Route> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(Slot::Serving(served)) = self.lock().get(deployment_id) {
            return served.addresses().pick(target, turn);
        }
        // Served by another process over the same data folder (the workers role).
        let bytes = tokio::fs::read(self.folder(deployment_id).join("engine.json"))
            .await
            .ok()?;
        serde_json::from_slice::<Addresses>(&bytes)
            .ok()?
            .pick(target, turn)
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

    async fn route(&self, _deployment_id: &str, _target: Target) -> Option<Route> {
        None
    }
}
