//! Inference engines as Slurm jobs: each engine of a deployment is a batch job named
//! `brightrun-serve-<engine name>` that runs the engine's server on whichever node Slurm
//! picks. The job picks a free port on its node, writes where it answers
//! (`http://<node address>:<port>/v1`) to `<name>.address` in the deployment's folder (on
//! the filesystem `serve` and the nodes share, as the training runs'), then execs the
//! server. A job that ends is an engine that exited.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::report::is_terminal;
use super::rest::{JobDescription, JobSubmission};
use super::{shell_quote, SlurmRest, SlurmSettings};

/// The name prefix of every engine job.
pub const ENGINE_JOB_PREFIX: &str = "brightrun-serve-";

/// How often an engine's job state is read while it serves.
const WATCH_EVERY: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct SlurmServing {
    rest: SlurmRest,
    partition: Option<String>,
    cpus_per_task: u32,
    /// Where deployments' folders live: under the runs folder the nodes share.
    root: PathBuf,
}

/// An engine's Slurm job. Dropping it cancels the job.
pub struct SlurmEngine {
    pub job_id: u64,
    alive: Arc<AtomicBool>,
    watcher: tokio::task::AbortHandle,
    rest: SlurmRest,
}

impl std::fmt::Debug for SlurmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlurmEngine")
            .field("job_id", &self.job_id)
            .field("alive", &self.is_running())
            .finish()
    }
}

impl SlurmEngine {
    /// Whether the job still runs, as its last state read said.
    pub fn is_running(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

impl Drop for SlurmEngine {
    fn drop(&mut self) {
        self.watcher.abort();
        let (rest, id) = (self.rest.clone(), self.job_id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = rest.cancel(id).await {
                    tracing::warn!(slurm_job = id, error = %err, "an engine's Slurm job was not cancelled");
                }
            });
        }
    }
}

impl SlurmServing {
    pub fn new(settings: &SlurmSettings) -> SlurmServing {
        SlurmServing {
            rest: settings.rest(),
            partition: settings.partition.clone(),
            cpus_per_task: settings.cpus_per_task,
            root: settings.runs_dir.join("deployments"),
        }
    }

    /// The folder deployments live in, shared with the nodes.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The batch script of an engine named `name`: a free port on the node, the address
    /// written where `serve` reads it, then the server (`program args... --host --port`).
    fn script(program: &Path, args: &[String], name: &str, folder: &Path) -> String {
        let folder = shell_quote(&folder.to_string_lossy());
        let program = shell_quote(&program.to_string_lossy());
        let args: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        let address = shell_quote(&format!("{name}.address"));
        let written = shell_quote(&format!("{name}.address.tmp"));
        format!(
            "#!/bin/bash\n\
             # A BrightRun inference engine (written by the Slurm adapter).\n\
             set -eu\n\
             cd {folder}\n\
             host=$(hostname -i | awk '{{print $1}}')\n\
             port=$({program} -c 'import socket; s = socket.socket(); s.bind((\"\", 0)); print(s.getsockname()[1])')\n\
             printf 'http://%s:%s/v1' \"$host\" \"$port\" > {written}\n\
             mv {written} {address}\n\
             exec {program} {} --host \"$host\" --port \"$port\"\n",
            args.join(" ")
        )
    }

    /// Submits the engine `name` (its server: `program args...`), its log in
    /// `folder/<log>`, and waits until the job runs and says where it answers, within
    /// `within`. Answers the job and its base URL; `ready` then says when it answers.
    pub async fn start(
        &self,
        program: &Path,
        args: &[String],
        name: &str,
        folder: &Path,
        log: &str,
        within: Duration,
    ) -> Result<(SlurmEngine, String), String> {
        let address = folder.join(format!("{name}.address"));
        let _ = std::fs::remove_file(&address);
        let log = folder.join(log).to_string_lossy().into_owned();
        let submission = JobSubmission {
            script: Self::script(program, args, name, folder),
            job: JobDescription {
                name: format!("{ENGINE_JOB_PREFIX}{name}"),
                comment: format!("BrightRun inference engine {name}"),
                partition: self.partition.clone(),
                gres: None,
                time_limit: None,
                current_working_directory: folder.to_string_lossy().into_owned(),
                standard_output: log.clone(),
                standard_error: log,
                environment: BTreeMap::from([
                    ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
                    ("HOME".into(), folder.to_string_lossy().into_owned()),
                    ("PYTHONUNBUFFERED".into(), "1".into()),
                ]),
                requeue: false,
                cpus_per_task: self.cpus_per_task,
            },
        };
        let job_id = self
            .rest
            .submit(&submission)
            .await
            .map_err(|e| format!("Slurm refused the engine's job: {e:?}"))?;
        let alive = Arc::new(AtomicBool::new(true));
        let watcher = tokio::spawn(watch(self.rest.clone(), job_id, alive.clone()));
        let engine = SlurmEngine {
            job_id,
            alive,
            watcher: watcher.abort_handle(),
            rest: self.rest.clone(),
        };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(url) = std::fs::read_to_string(&address) {
                return Ok((engine, url.trim().to_string()));
            }
            if !engine.is_running() {
                return Err(format!(
                    "the engine's Slurm job {job_id} ended before it served"
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the engine's Slurm job {job_id} did not start within {within:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The engine jobs still queued or running whose name starts with
    /// `brightrun-serve-<prefix>`: their ids.
    async fn queued(&self, prefix: &str) -> Result<Vec<u64>, String> {
        let name = format!("{ENGINE_JOB_PREFIX}{prefix}");
        let jobs = self.rest.jobs().await.map_err(|e| format!("{e:?}"))?;
        Ok(jobs
            .into_iter()
            .filter(|j| j.name.starts_with(&name) && !is_terminal(&j.job_state))
            .map(|j| j.job_id)
            .collect())
    }

    /// Cancels every engine job of the deployment `deployment_id` (an earlier process's).
    pub async fn cancel_all(&self, deployment_id: &str) -> Result<(), String> {
        for job in self.queued(deployment_id).await? {
            match self.rest.cancel(job).await {
                Ok(()) | Err(application::cluster::ClusterCallError::UnknownJob(_)) => {}
                Err(e) => return Err(format!("{e:?}")),
            }
        }
        Ok(())
    }
}

/// Reads the job's state until it ends (or Slurm forgets it), then says so.
async fn watch(rest: SlurmRest, job_id: u64, alive: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        match rest.job(job_id).await {
            Ok(Some(job)) if !is_terminal(&job.job_state) => continue,
            Ok(_) => break,
            // Slurm cannot be asked now: the engine is taken to run until it can.
            Err(_) => continue,
        }
    }
    alive.store(false, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_quotes_every_argument_and_writes_the_address_before_it_serves() {
        let script = SlurmServing::script(
            Path::new("/venv/bin/python"),
            &[
                "-m".into(),
                "llama_cpp.server".into(),
                "--model_alias".into(),
                "it's".into(),
            ],
            "dep-1",
            Path::new("/runs/deployments/dep-1"),
        );
        assert!(script.contains("cd '/runs/deployments/dep-1'"));
        assert!(script.contains("'it'\\''s'"));
        let written = script
            .find("mv 'dep-1.address.tmp' 'dep-1.address'")
            .unwrap();
        let served = script
            .find("exec '/venv/bin/python' '-m' 'llama_cpp.server'")
            .unwrap();
        assert!(written < served);
        assert!(script.ends_with("--host \"$host\" --port \"$port\"\n"));
    }
}
