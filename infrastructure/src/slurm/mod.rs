//! The GPU cluster port on Slurm, through its REST daemon `slurmrestd`.
//!
//! A submission becomes a Slurm batch job named `brightrun-<idempotency key>` that runs the
//! reference trainer (`trainer/`) in a run folder of its own, `<runs dir>/<key>/`, on a
//! filesystem the nodes and `serve` share (as a Slurm cluster's shared scratch). The folder
//! holds the submission (`spec.json`), the Slurm job id once known, and what the trainer
//! reports (`state.json`, `events.jsonl`, checkpoints, the final adapter).
//!
//! - Idempotent by key: a submission whose folder names a job Slurm knows answers that job;
//!   a crash between `sbatch` and writing the id is covered by looking the name up in Slurm.
//! - GPU type and count become `--gres=gpu:<type>:<n>` (the type by configuration) and a
//!   partition; on a CPU-only node advertising such gres the same request runs on CPU.
//! - Status: Slurm's job state says whether it runs and how it ended; the trainer's files say
//!   the stage, metrics, checkpoints, logs, errors, evaluation and artifacts (the cursor is a
//!   byte offset in `events.jsonl`). GPU seconds are Slurm's run time times its GPUs.
//! - Each job gets a time limit from its estimate; cancel is `scancel` (SIGTERM, the trainer
//!   stops at the next step); preemption requeues the job and the trainer resumes from its
//!   last checkpoint in the same folder.

mod report;
mod rest;
mod serve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use application::cluster::{
    ClusterCallError, ClusterStatus, GpuCluster, StatusReport, SubmitRequest, SubmitResponse,
};
use async_trait::async_trait;
use domain::job::config::GpuType;
use domain::job::estimate::Rates;

pub use report::{outcome, parse_events, SlurmJob, TrainerEvent, TrainerState};
pub use rest::SlurmRest;
use rest::{JobDescription, JobSubmission};
pub use serve::{SlurmEngine, SlurmServing};

const JOB_PREFIX: &str = "brightrun-";
const SLURM_JOB_ID_FILE: &str = "slurm_job_id";
/// Marks a run folder the saga is done with: removed once its Slurm job has stopped.
const RELEASED_FILE: &str = "released";

#[derive(Clone)]
pub struct SlurmSettings {
    /// `http://host:port` of slurmrestd.
    pub rest_url: String,
    /// OpenAPI plugin version, `v0.0.38` for Slurm 22.05.
    pub api_version: String,
    pub user: String,
    pub jwt: String,
    pub partition: Option<String>,
    /// Our GPU types to Slurm gres names (`a100-40gb` → `gpu:a100_40gb`); a type not listed
    /// asks for untyped `gpu:<n>`.
    pub gres: BTreeMap<GpuType, String>,
    /// Run folders, shared between `serve` and the nodes.
    pub runs_dir: PathBuf,
    /// The Python that runs the trainer (its environment: scripts/trainer-env.sh).
    pub trainer_python: String,
    /// Put on the job's PYTHONPATH (the trainer's `src` folder), when it is not installed.
    pub trainer_src: Option<PathBuf>,
    /// The trainer's base-model folder (`TRAINER_MODELS_DIR`).
    pub models_dir: Option<PathBuf>,
    pub cpus_per_task: u32,
    pub rates: Rates,
}

impl std::fmt::Debug for SlurmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlurmSettings")
            .field("rest_url", &self.rest_url)
            .field("api_version", &self.api_version)
            .field("user", &self.user)
            .field("jwt", &"***")
            .field("partition", &self.partition)
            .field("gres", &self.gres)
            .field("runs_dir", &self.runs_dir)
            .field("trainer_python", &self.trainer_python)
            .field("trainer_src", &self.trainer_src)
            .field("models_dir", &self.models_dir)
            .field("cpus_per_task", &self.cpus_per_task)
            .finish()
    }
}

impl SlurmSettings {
    /// A client of the settings' slurmrestd, as their user.
    fn rest(&self) -> SlurmRest {
        SlurmRest::new(&self.rest_url, &self.api_version, &self.user, &self.jwt)
    }
}

/// Parses `a100-40gb=gpu:a100_40gb,h100-80gb=gpu:h100` (`SLURM_GPU_GRES`).
pub fn parse_gres_map(text: &str) -> Result<BTreeMap<GpuType, String>, String> {
    let mut map = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (ours, theirs) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not <gpu type>=<gres>"))?;
        let gpu = GpuType::ALL
            .into_iter()
            .find(|g| g.as_str() == ours.trim())
            .ok_or_else(|| {
                format!("'{ours}' is not a GPU type (a100-40gb, a100-80gb, h100-80gb)")
            })?;
        map.insert(gpu, theirs.trim().to_string());
    }
    Ok(map)
}

pub struct SlurmCluster {
    rest: SlurmRest,
    settings: SlurmSettings,
}

fn unavailable(e: impl std::fmt::Display) -> ClusterCallError {
    ClusterCallError::Unavailable(e.to_string())
}

/// Our keys are `<uuid>-<attempt>`; anything else could escape the runs folder.
fn check_key(key: &str) -> Result<(), ClusterCallError> {
    if key.is_empty()
        || key.len() > 100
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ClusterCallError::Rejected {
            status: 400,
            message: format!("idempotency key '{key}' must be letters, digits, '-' or '_'"),
        });
    }
    Ok(())
}

/// Writes `bytes` to `path` whole or not at all, readable by its owner only (a run's files
/// hold a presigned URL of the user's dataset).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The newest whole checkpoint in `folder` (`checkpoint-<step>` with its
/// `trainer_state.json`, the last file the trainer writes of one), as the trainer resumes.
fn newest_checkpoint(folder: &Path) -> Option<PathBuf> {
    std::fs::read_dir(folder)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let step: u64 = entry
                .file_name()
                .to_str()?
                .strip_prefix("checkpoint-")?
                .parse()
                .ok()?;
            let path = entry.path();
            path.join("trainer_state.json")
                .exists()
                .then_some((step, path))
        })
        .max()
        .map(|(_, path)| path)
}

/// Copies the folder `from` (files and folders, recursively) to `into`.
fn copy_folder(from: &Path, into: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(into)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = into.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_folder(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Creates `run_dir` inside `runs` (made if missing) for its owner only: mode 0700, whatever
/// the umask, and again if it was there already.
fn private_folder(runs: &Path, run_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::create_dir_all(runs)?;
    match std::fs::DirBuilder::new().mode(0o700).create(run_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o700))
}

impl SlurmCluster {
    /// Removes each released run folder whose Slurm job has stopped (or Slurm no longer
    /// knows). A folder Slurm cannot be asked about now stays for the next sweep.
    async fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.settings.runs_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.join(RELEASED_FILE).exists() {
                continue;
            }
            let id = std::fs::read_to_string(dir.join(SLURM_JOB_ID_FILE))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok());
            let stopped = match id {
                Some(id) => match self.rest.job(id).await {
                    Ok(Some(job)) => report::is_terminal(&job.job_state),
                    Ok(None) => true,
                    Err(_) => false,
                },
                None => true,
            };
            if stopped {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {
                        tracing::info!(run_dir = %dir.display(), "released run folder removed")
                    }
                    Err(e) => {
                        tracing::warn!(run_dir = %dir.display(), error = %e, "cannot remove a released run folder")
                    }
                }
            }
        }
    }

    pub fn new(settings: SlurmSettings) -> SlurmCluster {
        SlurmCluster {
            rest: settings.rest(),
            settings,
        }
    }

    pub fn rest(&self) -> &SlurmRest {
        &self.rest
    }

    fn run_dir(&self, key: &str) -> PathBuf {
        self.settings.runs_dir.join(key)
    }

    fn gres(&self, request: &SubmitRequest) -> String {
        let n = request.gpu_config.num_gpus;
        match self.settings.gres.get(&request.gpu_config.instance_type) {
            Some(name) => format!("{name}:{n}"),
            None => format!("gpu:{n}"),
        }
    }

    fn batch_script(&self, run_dir: &Path) -> String {
        let dir = shell_quote(&run_dir.to_string_lossy());
        format!(
            "#!/bin/bash\n\
             # A BrightRun training run (written by the Slurm adapter). Started again in the\n\
             # same folder after a requeue, the trainer resumes from its last checkpoint.\n\
             set -eu\n\
             umask 077\n\
             cd {dir}\n\
             exec {} -m brightrun_trainer {dir}\n",
            shell_quote(&self.settings.trainer_python)
        )
    }

    fn environment(&self, run_dir: &Path) -> BTreeMap<String, String> {
        let mut env = BTreeMap::from([
            (
                "PATH".to_string(),
                "/usr/local/bin:/usr/bin:/bin".to_string(),
            ),
            ("HOME".into(), run_dir.to_string_lossy().into_owned()),
            ("HF_HUB_OFFLINE".into(), "1".into()),
            ("TRANSFORMERS_OFFLINE".into(), "1".into()),
            ("TOKENIZERS_PARALLELISM".into(), "false".into()),
            ("PYTHONUNBUFFERED".into(), "1".into()),
        ]);
        if let Some(src) = &self.settings.trainer_src {
            env.insert("PYTHONPATH".into(), src.to_string_lossy().into_owned());
        }
        if let Some(models) = &self.settings.models_dir {
            env.insert(
                "TRAINER_MODELS_DIR".into(),
                models.to_string_lossy().into_owned(),
            );
        }
        env
    }

    /// The Slurm job of this key, if one was submitted: by the id in its folder, or by name.
    async fn existing(&self, key: &str) -> Result<Option<u64>, ClusterCallError> {
        let file = self.run_dir(key).join(SLURM_JOB_ID_FILE);
        if let Ok(text) = tokio::fs::read_to_string(&file).await {
            if let Ok(id) = text.trim().parse::<u64>() {
                if self.rest.job(id).await?.is_some() {
                    return Ok(Some(id));
                }
            }
        }
        let name = format!("{JOB_PREFIX}{key}");
        Ok(self
            .rest
            .jobs()
            .await?
            .into_iter()
            .filter(|j| j.name == name)
            .map(|j| j.job_id)
            .min())
    }

    /// The run folder of the Slurm job `cluster_job_id` (by the id each folder keeps: Slurm
    /// forgets finished jobs).
    fn run_dir_of(&self, cluster_job_id: &str) -> Option<PathBuf> {
        std::fs::read_dir(&self.settings.runs_dir)
            .ok()?
            .flatten()
            .map(|entry| entry.path())
            .find(|dir| {
                std::fs::read_to_string(dir.join(SLURM_JOB_ID_FILE))
                    .is_ok_and(|id| id.trim() == cluster_job_id)
            })
    }

    /// Copies the newest whole checkpoint of the failed run `failed` into `run_dir`, where
    /// the trainer resumes from it (weights, optimizer, scheduler, RNG and step, as after a
    /// requeue), with the validation loss measured before training. A failed run that kept
    /// none leaves the new one to start from step 0.
    fn carry_checkpoint(&self, failed: &str, run_dir: &Path) {
        let Some(from) = self.run_dir_of(failed) else {
            tracing::warn!(%failed, "no run folder to resume from; training starts from step 0");
            return;
        };
        let Some(checkpoint) = newest_checkpoint(&from.join("checkpoints")) else {
            tracing::info!(%failed, "the failed run kept no checkpoint; training starts from step 0");
            return;
        };
        let Some(name) = checkpoint.file_name() else {
            return;
        };
        let into = run_dir.join("checkpoints").join(name);
        if let Err(err) = copy_folder(&checkpoint, &into) {
            tracing::warn!(%failed, error = %err, "the checkpoint was not copied; training starts from step 0");
            let _ = std::fs::remove_dir_all(&into);
            return;
        }
        let before = self.read_trainer(&from).initial_validation_loss;
        let state = serde_json::json!({
            "initialValidationLoss": before,
            "resumedFrom": from.file_name().map(|n| n.to_string_lossy().into_owned()),
        });
        if let Err(err) =
            write_atomically(&run_dir.join("state.json"), state.to_string().as_bytes())
        {
            tracing::warn!(%failed, error = %err, "the resumed run's state was not written");
        }
        tracing::info!(%failed, checkpoint = %checkpoint.display(), "the retried run resumes from the failed run's checkpoint");
    }

    fn read_trainer(&self, run_dir: &Path) -> TrainerState {
        match std::fs::read(run_dir.join("state.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(run_dir = %run_dir.display(), error = %e, "unreadable trainer state");
                TrainerState::default()
            }),
            Err(_) => TrainerState::default(),
        }
    }

    fn read_events(&self, run_dir: &Path, cursor: u64) -> (Vec<TrainerEvent>, u64) {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut file) = std::fs::File::open(run_dir.join("events.jsonl")) else {
            return (vec![], cursor);
        };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(cursor)).is_err() || file.read_to_end(&mut bytes).is_err() {
            return (vec![], cursor);
        }
        let (parsed, used) = parse_events(&bytes);
        let events = parsed
            .into_iter()
            .filter_map(|e| {
                e.map_err(|error| {
                    tracing::warn!(run_dir = %run_dir.display(), %error, "unreadable trainer event skipped")
                })
                .ok()
            })
            .collect();
        (events, cursor + used as u64)
    }
}

#[async_trait]
impl GpuCluster for SlurmCluster {
    async fn submit(&self, request: &SubmitRequest) -> Result<SubmitResponse, ClusterCallError> {
        let key = &request.idempotency_key;
        check_key(key)?;
        if let Some(id) = self.existing(key).await? {
            return Ok(SubmitResponse {
                cluster_job_id: id.to_string(),
                status: ClusterStatus::Queued,
                created: false,
            });
        }
        let run_dir = self.run_dir(key);
        private_folder(&self.settings.runs_dir, &run_dir).map_err(unavailable)?;
        self.sweep().await;
        if let Some(failed) = &request.resume_from {
            self.carry_checkpoint(failed, &run_dir);
        }
        let spec = serde_json::to_vec_pretty(request).map_err(unavailable)?;
        write_atomically(&run_dir.join("spec.json"), &spec).map_err(unavailable)?;
        let dir = run_dir.to_string_lossy().into_owned();
        let submission = JobSubmission {
            script: self.batch_script(&run_dir),
            job: JobDescription {
                name: format!("{JOB_PREFIX}{key}"),
                comment: format!("BrightRun {key}"),
                partition: self.settings.partition.clone(),
                gres: Some(self.gres(request)),
                time_limit: request.time_limit_seconds.map(|s| s.div_ceil(60).max(1)),
                current_working_directory: dir.clone(),
                standard_output: format!("{dir}/slurm-%j.out"),
                standard_error: format!("{dir}/slurm-%j.out"),
                environment: self.environment(&run_dir),
                requeue: true,
                cpus_per_task: self.settings.cpus_per_task,
            },
        };
        let id = self.rest.submit(&submission).await?;
        write_atomically(&run_dir.join(SLURM_JOB_ID_FILE), id.to_string().as_bytes())
            .map_err(unavailable)?;
        tracing::info!(%key, slurm_job_id = id, gres = ?submission.job.gres, "submitted to Slurm");
        Ok(SubmitResponse {
            cluster_job_id: id.to_string(),
            status: ClusterStatus::Queued,
            created: true,
        })
    }

    async fn status(
        &self,
        cluster_job_id: &str,
        cursor: Option<&str>,
    ) -> Result<StatusReport, ClusterCallError> {
        let unknown = || ClusterCallError::UnknownJob(cluster_job_id.to_string());
        let id: u64 = cluster_job_id.parse().map_err(|_| unknown())?;
        let job = self.rest.job(id).await?.ok_or_else(unknown)?;
        let key = job.name.strip_prefix(JOB_PREFIX).ok_or_else(unknown)?;
        check_key(key).map_err(|_| unknown())?;
        let run_dir = self.run_dir(key);
        let spec: SubmitRequest = std::fs::read(run_dir.join("spec.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(unknown)?;
        let trainer = self.read_trainer(&run_dir);
        let cursor = cursor.and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
        let (events, next_cursor) = self.read_events(&run_dir, cursor);
        let now = chrono::Utc::now().timestamp();
        Ok(report::status_report(report::ReportInput {
            job: &job,
            trainer: &trainer,
            events,
            next_cursor,
            total_steps: spec.total_steps,
            gpu_type: spec.gpu_config.instance_type,
            rates: &self.settings.rates,
            now_unix: now,
            artifact_url: &|path| format!("file://{path}"),
        }))
    }

    async fn cancel(&self, cluster_job_id: &str) -> Result<(), ClusterCallError> {
        let id: u64 = cluster_job_id
            .parse()
            .map_err(|_| ClusterCallError::UnknownJob(cluster_job_id.to_string()))?;
        // The trainer also stops on this file, should the signal not reach it.
        if let Some(job) = self.rest.job(id).await? {
            if let Some(key) = job.name.strip_prefix(JOB_PREFIX) {
                if check_key(key).is_ok() {
                    let _ = std::fs::write(self.run_dir(key).join("cancel"), b"");
                }
            }
        }
        self.rest.cancel(id).await
    }

    /// Marks the job's run folder released, then sweeps: it goes (with the dataset's copy and
    /// the presigned URL in its spec) as soon as Slurm says the job has stopped, at once or at
    /// a later submission or release.
    async fn release(&self, cluster_job_id: &str) -> Result<(), ClusterCallError> {
        let Ok(id) = cluster_job_id.parse::<u64>() else {
            return Ok(());
        };
        if let Some(job) = self.rest.job(id).await? {
            if let Some(key) = job.name.strip_prefix(JOB_PREFIX) {
                if check_key(key).is_ok() && self.run_dir(key).is_dir() {
                    std::fs::write(self.run_dir(key).join(RELEASED_FILE), b"")
                        .map_err(unavailable)?;
                }
            }
        }
        self.sweep().await;
        Ok(())
    }

    /// Every run folder whose spec names the dataset: its copy (`dataset.jsonl`) goes, and
    /// the folder with it once Slurm says the job stopped (a purged dataset has no active job:
    /// these are runs that were never released, such as those from before releases).
    async fn forget_dataset(&self, dataset_key: &str) -> Result<(), ClusterCallError> {
        let Ok(entries) = std::fs::read_dir(&self.settings.runs_dir) else {
            return Ok(());
        };
        let suffix = format!("/{dataset_key}");
        for entry in entries.flatten() {
            let dir = entry.path();
            let names_it = std::fs::read(dir.join("spec.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<SubmitRequest>(&b).ok())
                .and_then(|spec| reqwest::Url::parse(&spec.dataset_url).ok())
                .is_some_and(|url| url.path().ends_with(&suffix));
            if !names_it {
                continue;
            }
            match std::fs::remove_file(dir.join("dataset.jsonl")) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(unavailable(e)),
            }
            std::fs::write(dir.join(RELEASED_FILE), b"").map_err(unavailable)?;
            tracing::info!(run_dir = %dir.display(), dataset_key, "a purged dataset's copy removed from a run folder");
        }
        self.sweep().await;
        Ok(())
    }

    async fn download(&self, url: &str, size_bytes: u64) -> Result<Vec<u8>, ClusterCallError> {
        let refused = |message: String| ClusterCallError::Rejected {
            status: 400,
            message,
        };
        let path = url
            .strip_prefix("file://")
            .ok_or_else(|| refused(format!("not an artifact of a Slurm run: {url}")))?;
        let runs = std::fs::canonicalize(&self.settings.runs_dir).map_err(unavailable)?;
        let path = std::fs::canonicalize(path)
            .map_err(|e| ClusterCallError::UnknownJob(format!("{url}: {e}")))?;
        if !path.starts_with(&runs) {
            return Err(refused(format!("{url} is outside the runs folder")));
        }
        let length = tokio::fs::metadata(&path).await.map_err(unavailable)?.len();
        if length > size_bytes {
            return Err(refused(format!(
                "{url} holds {length} bytes, more than the {size_bytes} reported"
            )));
        }
        tokio::fs::read(&path).await.map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gres_map_reads_our_gpu_types() {
        let map = parse_gres_map("a100-40gb=gpu:a100_40gb, h100-80gb=gpu:h100").unwrap();
        assert_eq!(map[&GpuType::A100_40gb], "gpu:a100_40gb");
        assert_eq!(map[&GpuType::H100_80gb], "gpu:h100");
        assert!(parse_gres_map("v100=gpu:v100").is_err());
        assert!(parse_gres_map("a100-40gb").is_err());
        assert!(parse_gres_map("").unwrap().is_empty());
    }

    #[test]
    fn keys_that_could_leave_the_runs_folder_are_refused() {
        assert!(check_key("0193a1f2-6c1e-7d2a-9f00-3b7c2e1d4a10-1").is_ok());
        assert!(check_key("../etc").is_err());
        assert!(check_key("a/b").is_err());
        assert!(check_key("").is_err());
    }
}
