-- The training saga's durable state and timers: one row per job, fed from Job events by the
-- `saga.training` subscription, claimed by drivers with a lease (one driver per job at a time).
CREATE TABLE saga_jobs
(
    job_id          uuid PRIMARY KEY,
    user_id         uuid        NOT NULL,
    dataset_id      uuid        NOT NULL,
    dataset_name    text        NOT NULL,
    parent_model_id uuid,
    configuration   jsonb       NOT NULL,
    total_steps     bigint      NOT NULL,
    phase           text        NOT NULL,
    attempt         integer     NOT NULL,
    cluster_job_id  text,
    cursor          text,
    due_at          timestamptz NOT NULL,
    lease_owner     text,
    lease_until     timestamptz,
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX saga_jobs_due ON saga_jobs (due_at) WHERE phase NOT IN ('done', 'wait');
