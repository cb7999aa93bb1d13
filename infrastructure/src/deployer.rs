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

use application::models::{Deployer, EngineHealth, Lease, Route, Target};
use application::ObjectStore;
use async_trait::async_trait;
use domain::ids::ModelId;
use domain::model::{Deployment, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use serde::{Deserialize, Serialize};

use crate::inference::{Engine, EngineError, LlamaCppEngines};

/// The base models the CPU engine has a GGUF of (`brightrun_trainer.gguf_adapter`).
pub const CPU_BASE_MODELS: &[&str] = &["smollm2-135m"];

/// How many times an engine that exits is started again before its deployment fails.
const MAX_RESTARTS: u32 = 3;

/// The files of a PEFT adapter the engine needs.
const ADAPTER_FILES: &[&str] = &[ADAPTER_WEIGHTS, ADAPTER_CONFIG];

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
    /// Starting: a replacement, or a replica more under load.
    Restarting,
    /// Exited, or its replacement did not start: the next health check starts another.
    Down,
}

/// One engine's place in a deployment: what runs there, how often it was started again,
/// and the requests with it now.
struct Seat {
    role: Role,
    member: Member,
    restarts: u32,
    load: Arc<AtomicUsize>,
}

impl Seat {
    fn new(role: Role, member: Member) -> Seat {
        Seat {
            role,
            member,
            restarts: 0,
            load: Arc::default(),
        }
    }

    fn role_index(&self) -> usize {
        match self.role {
            Role::Replica(i) => i,
            Role::Base => usize::MAX,
        }
    }

    fn route(&self) -> Option<Route> {
        let Member::Up(engine) = &self.member else {
            return None;
        };
        Some(Route {
            base_url: engine.base_url.clone(),
            model: engine.model.clone(),
            lease: Lease::on(&self.load),
        })
    }
}

/// A deployment whose engines started: its replicas, then the base model's engine.
struct Served {
    files: Converted,
    seats: Vec<Seat>,
    /// Since when its load has asked for fewer replicas than it runs.
    idle_since: Option<tokio::time::Instant>,
}

impl Served {
    fn addresses(&self) -> Addresses {
        let mut addresses = Addresses::default();
        for seat in &self.seats {
            let Member::Up(engine) = &seat.member else {
                continue;
            };
            let address = Address {
                base_url: engine.base_url.clone(),
                model: engine.model.clone(),
            };
            match seat.role {
                Role::Replica(_) => addresses.replicas.push(address),
                Role::Base => addresses.base = Some(address),
            }
        }
        addresses
    }

    /// Writes which engines serve (`engine.pid`, one per line) and where (`engine.json`).
    fn record(&self) {
        let handles: Vec<String> = self
            .seats
            .iter()
            .filter_map(|seat| match &seat.member {
                Member::Up(engine) => engine.handle(),
                _ => None,
            })
            .collect();
        let folder = &self.files.folder;
        let written =
            std::fs::write(folder.join("engine.pid"), handles.join("\n")).and_then(|()| {
                let json = serde_json::to_vec(&self.addresses()).unwrap_or_default();
                std::fs::write(folder.join("engine.json"), json)
            });
        if let Err(err) = written {
            tracing::warn!(error = %err, folder = %folder.display(), "the engines' files were not written");
        }
    }

    /// Where `target`'s chat goes: the base model's engine, or the replica with the fewest
    /// requests now (of those, the one whose turn it is).
    fn pick(&self, target: Target, turn: usize) -> Option<Route> {
        let candidates: Vec<&Seat> = self
            .seats
            .iter()
            .filter(|seat| matches!(seat.member, Member::Up(_)))
            .filter(|seat| match target {
                Target::Base => seat.role == Role::Base,
                Target::Adapter => seat.role != Role::Base,
            })
            .collect();
        let n = candidates.len();
        (0..n)
            .map(|k| candidates[(turn + k) % n])
            .min_by_key(|seat| seat.load.load(Ordering::Relaxed))
            .and_then(Seat::route)
    }

    fn replicas(&self) -> impl Iterator<Item = &Seat> {
        self.seats.iter().filter(|seat| seat.role != Role::Base)
    }

    /// Adds or removes replicas as the load asks (`Deployment::wanted_replicas`): one more
    /// per request over what the replicas take, at once; one fewer after the load has asked
    /// for fewer for `calm`, never one that is starting or has a request. Answers the
    /// replicas to start.
    fn scale(&mut self, deployment: &Deployment, calm: Duration) -> Vec<Role> {
        let load: usize = self
            .replicas()
            .map(|s| s.load.load(Ordering::Relaxed))
            .sum();
        let wanted = deployment.wanted_replicas(u32::try_from(load).unwrap_or(u32::MAX)) as usize;
        let running = self.replicas().count();
        let mut started = Vec::new();
        if wanted >= running {
            self.idle_since = None;
        }
        if wanted > running {
            let first = self
                .replicas()
                .map(|s| s.role_index() + 1)
                .max()
                .unwrap_or(0);
            for index in first..first + (wanted - running) {
                let role = Role::Replica(index);
                self.seats.push(Seat::new(role, Member::Restarting));
                started.push(role);
            }
            tracing::info!(deployment = %deployment.deployment_id, load, replicas = wanted, "more replicas for the load");
        } else if wanted < running {
            let now = tokio::time::Instant::now();
            let since = *self.idle_since.get_or_insert(now);
            if now.duration_since(since) >= calm {
                let spare = self
                    .seats
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.role != Role::Base && s.load.load(Ordering::Relaxed) == 0)
                    .filter(|(_, s)| !matches!(s.member, Member::Restarting))
                    .max_by_key(|(_, s)| (matches!(s.member, Member::Down), s.role_index()))
                    .map(|(i, _)| i);
                if let Some(index) = spare {
                    // Dropped: its engine is stopped.
                    self.seats.remove(index);
                    self.idle_since = Some(now);
                    self.record();
                    tracing::info!(deployment = %deployment.deployment_id, replicas = running - 1, "a replica fewer, the load being lower");
                }
            }
        }
        started
    }
}

impl Addresses {
    /// Where `target`'s chat goes, as another process lists the engines: the base model's
    /// engine, or the replica whose turn it is.
    fn pick(self, target: Target, turn: usize) -> Option<Route> {
        let address = match target {
            Target::Base => self.base?,
            Target::Adapter if self.replicas.is_empty() => return None,
            Target::Adapter => self.replicas[turn % self.replicas.len()].clone(),
        };
        Some(Route {
            base_url: address.base_url,
            model: address.model,
            lease: Lease::default(),
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
    /// How long a lower load lasts before a replica over `minReplicas` stops.
    calm: Duration,
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
            calm: Duration::from_secs(60),
        }
    }

    /// Stops a replica over `minReplicas` once the load has asked for fewer for `calm`.
    pub fn scale_down_after(mut self, calm: Duration) -> LocalDeployer {
        self.calm = calm;
        self
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

    /// Starts the deployment's engine `role` (one that exited, or a replica more).
    fn replace(&self, deployment_id: &str, role: Role, files: Converted) {
        let engines = self.engines.clone();
        let slots = self.slots.clone();
        let id = deployment_id.to_string();
        tokio::spawn(async move {
            let started = start_engine(&engines, &files, &id, role).await;
            let mut slots = slots.lock().unwrap_or_else(|p| p.into_inner());
            let Some(Slot::Serving(served)) = slots.get_mut(&id) else {
                return;
            };
            // Scaled away while it started: the engine is dropped (stopped) here.
            let Some(seat) = served.seats.iter_mut().find(|s| s.role == role) else {
                return;
            };
            seat.member = match started {
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
    let mut seats = Vec::with_capacity(roles.len());
    for (role, engine) in roles.iter().zip(started) {
        // Any that did not start fails the start (the others are dropped, killed).
        seats.push(Seat::new(
            *role,
            Member::Up(Box::new(engine.map_err(refused)?)),
        ));
    }
    Ok(Box::new(Served {
        files,
        seats,
        idle_since: None,
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
    /// `MAX_RESTARTS` times, then the deployment fails), and replicas follow the load
    /// between `minReplicas` and `maxReplicas`.
    async fn health(&self, deployment: &Deployment) -> anyhow::Result<EngineHealth> {
        let id = &deployment.deployment_id;
        let mut starts = Vec::new();
        let health = {
            let mut slots = self.lock();
            match slots.get_mut(id) {
                Some(Slot::Starting) => return Ok(EngineHealth::Starting),
                Some(Slot::Failed(reason)) => return Ok(EngineHealth::Failed(reason.clone())),
                Some(Slot::Serving(served)) => {
                    let mut failed = None;
                    let mut changed = false;
                    for seat in served.seats.iter_mut() {
                        let exited = match &mut seat.member {
                            Member::Up(engine) => !engine.is_running(),
                            Member::Restarting => false,
                            Member::Down => true,
                        };
                        if !exited {
                            continue;
                        }
                        changed = true;
                        seat.restarts += 1;
                        if seat.restarts > MAX_RESTARTS {
                            failed = Some(format!(
                                "an engine exited {MAX_RESTARTS} times; see {}",
                                seat.role.log()
                            ));
                            break;
                        }
                        tracing::warn!(deployment = %id, role = ?seat.role, "an engine exited; starting another");
                        seat.member = Member::Restarting;
                        starts.push(seat.role);
                    }
                    if changed {
                        served.record();
                    }
                    if failed.is_none() {
                        starts.extend(served.scale(deployment, self.calm));
                    }
                    let answering = served
                        .replicas()
                        .any(|seat| matches!(seat.member, Member::Up(_)));
                    let files = served.files.clone();
                    match failed {
                        Some(reason) => {
                            starts.clear();
                            slots.insert(id.clone(), Slot::Failed(reason.clone()));
                            EngineHealth::Failed(reason)
                        }
                        None => {
                            for role in &starts {
                                self.replace(id, *role, files.clone());
                            }
                            if answering {
                                EngineHealth::Serving
                            } else {
                                EngineHealth::Starting
                            }
                        }
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
            return served.pick(target, turn);
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
