-- Models read model (from ModelRegistered), and each job's ledger split by cost type.
CREATE TABLE rm_models
(
    id              uuid PRIMARY KEY,
    user_id         uuid           NOT NULL,
    job_id          uuid           NOT NULL,
    dataset_id      uuid           NOT NULL,
    name            text           NOT NULL,
    description     text           NOT NULL DEFAULT '',
    version         text           NOT NULL,
    status          text           NOT NULL,
    parent_model_id uuid,
    base_model      text           NOT NULL,
    configuration   jsonb          NOT NULL,
    quality         jsonb          NOT NULL,
    training        jsonb          NOT NULL,
    artifacts       jsonb          NOT NULL,
    size_bytes      bigint         NOT NULL,
    final_cost      numeric(20, 2) NOT NULL,
    deleted_at      timestamptz,
    created_at      timestamptz    NOT NULL,
    updated_at      timestamptz    NOT NULL
);
CREATE INDEX rm_models_owner ON rm_models (user_id, created_at DESC);

ALTER TABLE rm_jobs
    ADD COLUMN compute_cost       numeric(20, 6) NOT NULL DEFAULT 0,
    ADD COLUMN storage_cost       numeric(20, 6) NOT NULL DEFAULT 0,
    ADD COLUMN data_transfer_cost numeric(20, 6) NOT NULL DEFAULT 0;
