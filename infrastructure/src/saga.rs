//! Running the training saga on Postgres.
//!
//! - `SagaFeeder`: a durable subscription that keeps `saga_jobs` in step with Job events
//!   (created → submit; retry scheduled → submit the next attempt after a backoff; cancelled →
//!   cancel; completed or failed → done), in one transaction with its checkpoint.
//! - `run_driver`: claims due rows with a lease (`FOR UPDATE SKIP LOCKED`, so several
//!   processes share the jobs and each job is driven by one at a time), runs one saga step per
//!   row, and writes back the next phase and deadline. The deadlines are the durable timers.
//! - `run_reconciler`: checks each job our side failed (within a day) once against the
//!   cluster; a cluster job that still runs or completed is recovered and driven to its end.

use std::sync::Arc;
use std::time::Duration;

use application::saga::{Next, Phase, Reconciliation, SagaEntry, TrainingSaga};
use async_trait::async_trait;
use cqrs_es::Aggregate;
use domain::dataset::DatasetFormat;
use domain::ids::{DatasetId, JobId, ModelId, UserId};
use domain::job::config::JobConfiguration;
use domain::job::{Job, JobEvent};
use domain::model::Model;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::event_log::{Interest, StoredEvent};
use crate::event_store::EventStore;
use crate::parking::{fold_batch, fold_retry, Fold, Parking};
use crate::subscription::Subscriber;

pub const FEEDER_SUBSCRIPTION: &str = "saga.training";

pub struct SagaFeeder {
    /// First retry waits this long, doubling with each retry.
    retry_backoff: Duration,
    parking: Parking,
}

impl SagaFeeder {
    pub fn new(retry_backoff: Duration, park_after: u32) -> SagaFeeder {
        SagaFeeder {
            retry_backoff,
            parking: Parking::new(FEEDER_SUBSCRIPTION, park_after),
        }
    }
}

#[async_trait]
impl Fold for SagaFeeder {
    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        if event.aggregate_type == <Job as Aggregate>::TYPE {
            feed(conn, event.decode()?, self.retry_backoff).await?;
        }
        Ok(())
    }

    fn interest(&self) -> Interest {
        Interest::aggregates(&[<Job as Aggregate>::TYPE])
    }
}

async fn feed(
    conn: &mut PgConnection,
    event: JobEvent,
    retry_backoff: Duration,
) -> anyhow::Result<()> {
    match event {
        JobEvent::JobCreated(e) => {
            sqlx::query(
                "INSERT INTO saga_jobs (job_id, user_id, dataset_id, dataset_name, dataset_format, \
                   parent_model_id, configuration, total_steps, time_limit_seconds, phase, attempt, due_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'submit', 1, now()) ON CONFLICT DO NOTHING",
            )
            .bind(e.job_id.0)
            .bind(e.user_id.0)
            .bind(e.dataset_id.0)
            .bind(&e.dataset_name)
            .bind(e.dataset_format.map(DatasetFormat::as_str))
            .bind(e.parent_model_id.map(|m| m.0))
            .bind(Json(&e.configuration))
            .bind(i64::try_from(e.estimate.total_steps)?)
            .bind(i64::try_from(e.estimate.duration.time_limit_seconds())?)
            .execute(&mut *conn)
            .await?;
        }
        JobEvent::JobRetryScheduled(e) => {
            let wait = retry_backoff.as_millis() as i64
                * (1i64 << (e.retry_count.saturating_sub(1)).min(10));
            sqlx::query(
                "UPDATE saga_jobs SET phase = 'submit', attempt = $2, cluster_job_id = NULL, cursor = NULL, \
                   due_at = now() + $3 * interval '1 millisecond', updated_at = now() \
                 WHERE job_id = $1 AND attempt < $2 AND phase <> 'done'",
            )
            .bind(e.job_id.0)
            .bind(i32::try_from(e.retry_count + 1)?)
            .bind(wait)
            .execute(&mut *conn)
            .await?;
        }
        JobEvent::JobCancelled(e) => {
            sqlx::query(
                "UPDATE saga_jobs SET phase = 'cancel', due_at = now(), updated_at = now() \
                 WHERE job_id = $1 AND phase <> 'done'",
            )
            .bind(e.job_id.0)
            .execute(&mut *conn)
            .await?;
        }
        JobEvent::JobRecoveredFromCluster(e) => {
            sqlx::query(
                "UPDATE saga_jobs SET phase = 'poll', attempt = $2, cluster_job_id = $3, cursor = NULL, \
                   due_at = now(), reconciled_at = now(), updated_at = now() \
                 WHERE job_id = $1 AND phase IN ('done', 'wait')",
            )
            .bind(e.job_id.0)
            .bind(i32::try_from(e.attempt.max(1))?)
            .bind(&e.cluster_job_id)
            .execute(&mut *conn)
            .await?;
        }
        JobEvent::JobCompleted(e) => done(conn, e.job_id).await?,
        JobEvent::JobFailed(e) => {
            done(conn, e.job_id).await?;
            // Each failure is checked against the cluster once by the reconciliation pass.
            sqlx::query("UPDATE saga_jobs SET reconciled_at = NULL WHERE job_id = $1")
                .bind(e.job_id.0)
                .execute(&mut *conn)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

async fn done(conn: &mut PgConnection, job: JobId) -> anyhow::Result<()> {
    sqlx::query("UPDATE saga_jobs SET phase = 'done', updated_at = now() WHERE job_id = $1 AND phase <> 'cancel'")
        .bind(job.0)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[async_trait]
impl Subscriber for SagaFeeder {
    fn name(&self) -> &str {
        FEEDER_SUBSCRIPTION
    }

    async fn run_batch(&self, pool: &PgPool) -> anyhow::Result<usize> {
        fold_batch(pool, self, &self.parking, 500).await
    }

    async fn retry(&self, pool: &PgPool, event: &StoredEvent) -> anyhow::Result<()> {
        fold_retry(pool, self, &self.parking, event).await
    }
}

/// Records a webhook delivery by its signature; answers whether it is the first (a replay of
/// the same delivery is not). Deliveries older than any signature may be are forgotten.
pub async fn record_webhook_delivery(pool: &PgPool, signature: &str) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "WITH forgotten AS (DELETE FROM cluster_webhook_deliveries WHERE received_at < now() - interval '15 minutes') \
         INSERT INTO cluster_webhook_deliveries (signature) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(signature)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// How often the driver looks for due rows.
    pub tick: Duration,
    pub lease: Duration,
    /// Jobs driven at once by this process.
    pub concurrency: usize,
    /// Wait after a failed step.
    pub error_backoff: Duration,
}

#[derive(sqlx::FromRow)]
struct Row {
    job_id: Uuid,
    user_id: Uuid,
    dataset_id: Uuid,
    dataset_name: String,
    dataset_format: Option<String>,
    parent_model_id: Option<Uuid>,
    configuration: Json<JobConfiguration>,
    total_steps: i64,
    time_limit_seconds: Option<i64>,
    phase: String,
    attempt: i32,
    cluster_job_id: Option<String>,
    cursor: Option<String>,
}

impl Row {
    fn entry(self) -> Option<SagaEntry> {
        Some(SagaEntry {
            job_id: JobId(self.job_id),
            user_id: UserId(self.user_id),
            dataset_id: DatasetId(self.dataset_id),
            dataset_name: self.dataset_name,
            dataset_format: self
                .dataset_format
                .as_deref()
                .and_then(DatasetFormat::parse),
            parent_model_id: self.parent_model_id.map(ModelId),
            configuration: self.configuration.0,
            total_steps: self.total_steps.max(1) as u64,
            time_limit_seconds: self.time_limit_seconds.map(|s| s.max(60) as u64),
            phase: Phase::parse(&self.phase)?,
            attempt: self.attempt.max(1) as u32,
            cluster_job_id: self.cluster_job_id,
            cursor: self.cursor,
        })
    }
}

type Saga = TrainingSaga<EventStore<Job>, EventStore<Model>>;

/// Drives due saga rows until `shutdown`: up to `concurrency` steps at once, each in a task of
/// its own (a slow job never holds up the others), new rows claimed as slots free up.
pub async fn run_driver(
    pool: PgPool,
    saga: Arc<Saga>,
    options: DriverOptions,
    shutdown: CancellationToken,
) {
    let owner = format!("driver-{}", Uuid::now_v7().simple());
    let slots = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
    loop {
        let free = slots.available_permits();
        match claim(&pool, &options, &owner, free).await {
            Ok(entries) => {
                metrics::gauge!("brightrun_saga_jobs_in_flight")
                    .set((options.concurrency.max(1) - free + entries.len()) as f64);
                for entry in entries {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let (pool, saga, owner, options) =
                        (pool.clone(), saga.clone(), owner.clone(), options.clone());
                    tokio::spawn(async move {
                        step_one(&pool, &saga, &options, &owner, entry).await;
                        drop(permit);
                    });
                }
            }
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "saga claim failed; will retry")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(options.tick) => {}
        }
    }
}

/// Leases up to `limit` due rows to `owner`.
async fn claim(
    pool: &PgPool,
    options: &DriverOptions,
    owner: &str,
    limit: usize,
) -> anyhow::Result<Vec<SagaEntry>> {
    if limit == 0 {
        return Ok(vec![]);
    }
    let rows: Vec<Row> = sqlx::query_as(
        "UPDATE saga_jobs SET lease_owner = $1, lease_until = now() + $2 * interval '1 millisecond' \
         WHERE job_id IN ( \
           SELECT job_id FROM saga_jobs \
           WHERE phase NOT IN ('done', 'wait') AND due_at <= now() \
             AND (lease_until IS NULL OR lease_until < now()) \
           ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING job_id, user_id, dataset_id, dataset_name, dataset_format, parent_model_id, configuration, \
           total_steps, time_limit_seconds, phase, attempt, cluster_job_id, cursor",
    )
    .bind(owner)
    .bind(options.lease.as_millis() as i64)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(Row::entry).collect())
}

/// Runs one step and records its outcome; a step longer than the lease is abandoned (its
/// effects are idempotent, and another driver may take the job over).
async fn step_one(
    pool: &PgPool,
    saga: &Saga,
    options: &DriverOptions,
    owner: &str,
    entry: SagaEntry,
) {
    let result = match tokio::time::timeout(options.lease, saga.step(&entry)).await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!(
            "the step took longer than the lease ({:?})",
            options.lease
        )),
    };
    let written = match result {
        Ok(next) => save(pool, owner, &entry, &next).await,
        Err(err) => {
            tracing::warn!(job_id = %entry.job_id, phase = entry.phase.as_str(), error = %format!("{err:#}"), "saga step failed; will retry");
            sqlx::query(
                "UPDATE saga_jobs SET lease_owner = NULL, lease_until = NULL, last_error = $3, \
                   due_at = now() + $4 * interval '1 millisecond', updated_at = now() \
                 WHERE job_id = $1 AND lease_owner = $2",
            )
            .bind(entry.job_id.0)
            .bind(owner)
            .bind(format!("{err:#}"))
            .bind(options.error_backoff.as_millis() as i64)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(Into::into)
        }
    };
    if let Err(err) = written {
        tracing::warn!(job_id = %entry.job_id, error = %format!("{err:#}"), "cannot record a saga step; its lease will expire");
    }
}

/// Writes the step's outcome, unless an event changed the row meanwhile (then the event's
/// phase stands); the lease is released either way.
async fn save(pool: &PgPool, owner: &str, entry: &SagaEntry, next: &Next) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE saga_jobs SET phase = $3, cluster_job_id = $4, cursor = $5, \
           due_at = now() + $6 * interval '1 millisecond', last_error = NULL, updated_at = now() \
         WHERE job_id = $1 AND lease_owner = $2 AND phase = $7 AND attempt = $8",
    )
    .bind(entry.job_id.0)
    .bind(owner)
    .bind(next.phase.as_str())
    .bind(&next.cluster_job_id)
    .bind(&next.cursor)
    .bind(next.after.as_millis() as i64)
    .bind(entry.phase.as_str())
    .bind(entry.attempt as i32)
    .execute(pool)
    .await?;
    sqlx::query(
        "UPDATE saga_jobs SET lease_owner = NULL, lease_until = NULL WHERE job_id = $1 AND lease_owner = $2",
    )
    .bind(entry.job_id.0)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every `interval`, checks the jobs failed within the last day that were not checked yet.
pub async fn run_reconciler(
    pool: PgPool,
    saga: Arc<Saga>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match reconcile_failed(&pool, &saga).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                recovered = n,
                "reconciliation recovered jobs the cluster still had"
            ),
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "reconciliation pass failed; will retry")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// One pass: answers how many jobs it recovered.
pub async fn reconcile_failed(pool: &PgPool, saga: &Saga) -> anyhow::Result<usize> {
    #[derive(sqlx::FromRow)]
    struct Candidate {
        #[sqlx(flatten)]
        row: Row,
        last_cluster_job: String,
    }
    let candidates: Vec<Candidate> = sqlx::query_as(
        "UPDATE saga_jobs s SET reconcile_lease_until = now() + interval '5 minutes' \
         FROM rm_jobs j \
         WHERE s.job_id = j.id AND s.job_id IN ( \
           SELECT s2.job_id FROM saga_jobs s2 JOIN rm_jobs j2 ON j2.id = s2.job_id \
           WHERE j2.status = 'failed' AND j2.cluster_job_id IS NOT NULL AND s2.reconciled_at IS NULL \
             AND j2.completed_at > now() - interval '1 day' \
             AND (s2.reconcile_lease_until IS NULL OR s2.reconcile_lease_until < now()) \
           LIMIT 50 FOR UPDATE OF s2 SKIP LOCKED) \
         RETURNING s.job_id, s.user_id, s.dataset_id, s.dataset_name, s.dataset_format, s.parent_model_id, s.configuration, \
           s.total_steps, s.time_limit_seconds, s.phase, s.attempt, s.cluster_job_id, s.cursor, j.cluster_job_id AS last_cluster_job",
    )
    .fetch_all(pool)
    .await?;
    let mut recovered = 0;
    for candidate in candidates {
        let cluster_job = candidate.last_cluster_job;
        let Some(entry) = candidate.row.entry() else {
            continue;
        };
        let outcome = saga.reconcile(&entry, &cluster_job).await?;
        let sql = match outcome {
            Reconciliation::TryLater => {
                "UPDATE saga_jobs SET reconcile_lease_until = NULL WHERE job_id = $1"
            }
            Reconciliation::Agrees | Reconciliation::Recovered => {
                "UPDATE saga_jobs SET reconciled_at = now(), reconcile_lease_until = NULL WHERE job_id = $1"
            }
        };
        sqlx::query(sql).bind(entry.job_id.0).execute(pool).await?;
        if outcome == Reconciliation::Recovered {
            recovered += 1;
        }
    }
    Ok(recovered)
}

/// Moves the next status read of the job running as `cluster_job_id` to now (a cluster
/// webhook's only effect: the status read stays the truth). How many saga rows woke.
pub async fn wake_cluster_job(pool: &PgPool, cluster_job_id: &str) -> sqlx::Result<u64> {
    let woken = sqlx::query(
        "UPDATE saga_jobs SET due_at = now(), updated_at = now() \
         WHERE cluster_job_id = $1 AND phase = 'poll' AND due_at > now()",
    )
    .bind(cluster_job_id)
    .execute(pool)
    .await?;
    Ok(woken.rows_affected())
}
