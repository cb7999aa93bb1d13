//! Job command service: estimate, create, cancel, and the commands the saga (or a test
//! driving a job by hand) sends, plus telemetry appended to the job's keyed streams.

use std::sync::Arc;

use async_trait::async_trait;
use cqrs_es::{AggregateContext, CqrsFramework, EventStore};
use domain::dataset::Actor;
use domain::ids::{DatasetId, JobId, ModelId};
use domain::job::config::JobRequest;
use domain::job::estimate::Rates;
use domain::job::telemetry::TelemetryEvent;
use domain::job::{
    plan, CheckpointForJob, CreateJob, DatasetForJob, Job, JobCommand, JobError, ParentForJob, Plan,
};

use crate::datasets::Receipt;
use crate::{AppError, Clock, CommandContext, LogPositions};

/// The datasets as a job needs them (read from the datasets read model).
#[async_trait]
pub trait DatasetLookup: Send + Sync {
    /// The dataset with its owner and figures; `None` when unknown or deleted.
    async fn for_job(&self, dataset: DatasetId) -> anyhow::Result<Option<DatasetForJob>>;

    /// The model a job would retrain from, with its owner and base model; `None` when
    /// unknown or deleted.
    async fn parent_for_job(&self, model: ModelId) -> anyhow::Result<Option<ParentForJob>>;

    /// The checkpoint `checkpoint` of the job `job` a new job would continue, with its
    /// job's owner and adapter shape; `None` when unknown.
    async fn checkpoint_for_job(
        &self,
        job: JobId,
        checkpoint: &str,
    ) -> anyhow::Result<Option<CheckpointForJob>>;
}

/// Appends telemetry at its natural key; answers false when that key was already recorded.
#[async_trait]
pub trait TelemetryStore: Send + Sync {
    async fn append(&self, event: &TelemetryEvent, ctx: &CommandContext) -> anyhow::Result<bool>;

    /// Appends every event at once (one round trip where the store can); answers how many
    /// were new.
    async fn append_all(
        &self,
        events: &[TelemetryEvent],
        ctx: &CommandContext,
    ) -> anyhow::Result<u64> {
        let mut new = 0;
        for event in events {
            new += u64::from(self.append(event, ctx).await?);
        }
        Ok(new)
    }
}

pub struct NewJob {
    pub dataset_id: DatasetId,
    pub request: JobRequest,
    pub parent_model_id: Option<ModelId>,
    /// The checkpoint (job, checkpoint id) the job continues.
    pub from_checkpoint: Option<(JobId, String)>,
    /// The job's name; `None`: named after its dataset.
    pub name: Option<String>,
    pub labels: domain::job::labels::JobLabels,
}

pub struct JobCommands<ES: EventStore<Job>> {
    cqrs: CqrsFramework<Job, ES>,
    store: ES,
    datasets: Arc<dyn DatasetLookup>,
    telemetry: Arc<dyn TelemetryStore>,
    positions: Arc<dyn LogPositions>,
    clock: Arc<dyn Clock>,
    rates: Rates,
}

impl<ES: EventStore<Job>> JobCommands<ES> {
    /// `store` reads jobs (the same events the framework writes).
    pub fn new(
        cqrs: CqrsFramework<Job, ES>,
        store: ES,
        datasets: Arc<dyn DatasetLookup>,
        telemetry: Arc<dyn TelemetryStore>,
        positions: Arc<dyn LogPositions>,
        clock: Arc<dyn Clock>,
        rates: Rates,
    ) -> Self {
        Self {
            cqrs,
            store,
            datasets,
            telemetry,
            positions,
            clock,
            rates,
        }
    }

    pub fn rates(&self) -> &Rates {
        &self.rates
    }

    /// What a job on this dataset with this request would be and cost (nothing is stored).
    pub async fn estimate(
        &self,
        ctx: &CommandContext,
        dataset_id: DatasetId,
        request: &JobRequest,
    ) -> Result<Plan, AppError<JobError>> {
        let dataset = self.lookup(dataset_id).await?;
        plan(
            ctx.user_id,
            dataset_id,
            dataset.as_ref(),
            request,
            &self.rates,
        )
        .map_err(AppError::Rejected)
    }

    pub async fn create(
        &self,
        ctx: &CommandContext,
        new: NewJob,
    ) -> Result<Receipt<JobId>, AppError<JobError>> {
        let job_id = JobId::new_v7();
        let dataset = self.lookup(new.dataset_id).await?;
        let parent = match new.parent_model_id {
            Some(model) => self
                .datasets
                .parent_for_job(model)
                .await
                .map_err(|e| AppError::Internal(format!("{e:#}")))?,
            None => None,
        };
        let checkpoint = match &new.from_checkpoint {
            Some((job, checkpoint)) if domain::job::is_checkpoint_id(checkpoint) => self
                .datasets
                .checkpoint_for_job(*job, checkpoint)
                .await
                .map_err(|e| AppError::Internal(format!("{e:#}")))?,
            _ => None,
        };
        let command = JobCommand::Create(Box::new(CreateJob {
            job_id,
            user_id: ctx.user_id,
            dataset_id: new.dataset_id,
            dataset,
            request: new.request,
            rates: self.rates.clone(),
            parent_model_id: new.parent_model_id,
            parent,
            from_checkpoint: new.from_checkpoint,
            checkpoint,
            name: new.name,
            labels: new.labels,
            created_at: self.clock.now(),
        }));
        crate::appended::on_fresh(job_id, self.execute(ctx, job_id, command)).await
    }

    pub async fn cancel(
        &self,
        ctx: &CommandContext,
        job_id: JobId,
        is_admin: bool,
    ) -> Result<Receipt<JobId>, AppError<JobError>> {
        let command = JobCommand::Cancel {
            actor: Actor {
                user_id: ctx.user_id,
                is_admin,
            },
            at: self.clock.now(),
        };
        self.execute(ctx, job_id, command).await
    }

    /// Changes the job's name, description or tags (never its configuration).
    pub async fn update_metadata(
        &self,
        ctx: &CommandContext,
        job_id: JobId,
        is_admin: bool,
        name: Option<String>,
        description: Option<String>,
        tags: Option<Vec<String>>,
    ) -> Result<Receipt<JobId>, AppError<JobError>> {
        let command = JobCommand::UpdateMetadata {
            actor: Actor {
                user_id: ctx.user_id,
                is_admin,
            },
            name,
            description,
            tags,
            at: self.clock.now(),
        };
        self.execute(ctx, job_id, command).await
    }

    /// The job as its events fold (`None` when it does not exist).
    pub async fn load(&self, job_id: JobId) -> Result<Option<Job>, AppError<JobError>> {
        let mut context = self.store.load_aggregate(&job_id.to_string()).await?;
        let job = context.aggregate().clone();
        Ok(job.owner().is_some().then_some(job))
    }

    /// Records a metric point, progress report or log line while the job is under way.
    /// Answers whether it was new (false: a repeat, or the job is not running).
    pub async fn record_telemetry(
        &self,
        ctx: &CommandContext,
        event: TelemetryEvent,
    ) -> Result<bool, AppError<JobError>> {
        let job = event.job_id();
        Ok(self.record_telemetry_all(ctx, job, vec![event]).await? == 1)
    }

    /// Records a batch of `job`'s telemetry (a status report's points, progress and logs)
    /// with one load of the job and one append; answers how many were new (0 when the job
    /// is not running). A batch naming another job is refused whole.
    pub async fn record_telemetry_all(
        &self,
        ctx: &CommandContext,
        job: JobId,
        events: Vec<TelemetryEvent>,
    ) -> Result<u64, AppError<JobError>> {
        let events = events
            .into_iter()
            .map(|e| match e.check() {
                Ok(e) if e.job_id() == job => Ok(e),
                Ok(_) => Err(AppError::Rejected(JobError::NotFound)),
                Err(e) => Err(AppError::Rejected(e.into())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let Some(loaded) = self.load(job).await? else {
            return Err(AppError::Rejected(JobError::NotFound));
        };
        if events.is_empty() || !loaded.accepts_telemetry() {
            return Ok(0);
        }
        self.telemetry
            .append_all(&events, ctx)
            .await
            .map_err(|e| AppError::Internal(format!("{e:#}")))
    }

    /// Any command, at the clock's time where the command carries one (saga and tests).
    pub async fn execute(
        &self,
        ctx: &CommandContext,
        job_id: JobId,
        command: JobCommand,
    ) -> Result<Receipt<JobId>, AppError<JobError>> {
        let repeatable = command.is_repeatable();
        crate::execute(
            &self.cqrs,
            &*self.positions,
            ctx,
            job_id,
            command,
            repeatable,
        )
        .await
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    async fn lookup(
        &self,
        dataset_id: DatasetId,
    ) -> Result<Option<DatasetForJob>, AppError<JobError>> {
        self.datasets
            .for_job(dataset_id)
            .await
            .map_err(|e| AppError::Internal(format!("{e:#}")))
    }
}
