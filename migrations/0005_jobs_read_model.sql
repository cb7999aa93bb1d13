-- Read models of training jobs, built by the `jobs` projector from Job events and the job's
-- telemetry streams (job_metrics, job_progress, job_logs). Every value comes from events.
CREATE TABLE rm_jobs
(
    id                      uuid PRIMARY KEY,
    user_id                 uuid             NOT NULL,
    dataset_id              uuid             NOT NULL,
    dataset_name            text             NOT NULL,
    status                  text             NOT NULL,
    current_stage           text             NOT NULL,
    preset_id               text             NOT NULL,
    base_model              text             NOT NULL,
    hyperparameters         jsonb            NOT NULL,
    gpu_config              jsonb            NOT NULL,
    options                 jsonb            NOT NULL,
    estimate                jsonb            NOT NULL,
    progress                double precision NOT NULL DEFAULT 0,
    current_epoch           integer,
    total_epochs            integer          NOT NULL,
    current_step            bigint,
    total_steps             bigint           NOT NULL,
    current_metrics         jsonb,
    last_metric_step        bigint,
    started_at              timestamptz,
    completed_at            timestamptz,
    estimated_completion_at timestamptz,
    -- The exact ledger sum (6 fractional digits); the API rounds it half-even to cents.
    current_cost            numeric(20, 6)   NOT NULL DEFAULT 0,
    estimated_total_cost    numeric(20, 2)   NOT NULL,
    final_cost              numeric(20, 2),
    refund_amount           numeric(20, 2),
    error_code              text,
    error_message           text,
    retry_count             integer          NOT NULL DEFAULT 0,
    cluster_job_id          text,
    artifact_id             uuid,
    parent_model_id         uuid,
    created_at              timestamptz      NOT NULL,
    updated_at              timestamptz      NOT NULL
);
CREATE INDEX rm_jobs_owner ON rm_jobs (user_id, created_at DESC);
CREATE INDEX rm_jobs_dataset_active ON rm_jobs (dataset_id) WHERE status IN ('queued', 'initializing', 'running');

CREATE TABLE rm_job_metrics
(
    job_id          uuid             NOT NULL,
    step            bigint           NOT NULL,
    epoch           integer          NOT NULL,
    training_loss   double precision NOT NULL,
    validation_loss double precision,
    learning_rate   double precision NOT NULL,
    gradient_norm   double precision,
    throughput      double precision,
    gpu_utilization double precision,
    recorded_at     timestamptz      NOT NULL,
    PRIMARY KEY (job_id, step)
);

CREATE TABLE rm_job_checkpoints
(
    job_id        uuid             NOT NULL,
    checkpoint_id text             NOT NULL,
    step          bigint           NOT NULL,
    epoch         integer          NOT NULL,
    loss          double precision NOT NULL,
    s3_key        text             NOT NULL,
    created_at    timestamptz      NOT NULL,
    PRIMARY KEY (job_id, checkpoint_id)
);

CREATE TABLE rm_job_logs
(
    job_id    uuid        NOT NULL,
    idx       bigint      NOT NULL,
    level     text        NOT NULL,
    message   text        NOT NULL,
    logged_at timestamptz NOT NULL,
    PRIMARY KEY (job_id, idx)
);
