-- Models: deployment, the stored archive; the ledger also holds download entries (model
-- events); the budget watcher's own state (spend per user and month, checks to run).
ALTER TABLE rm_models
    ADD COLUMN deployed_at timestamptz,
    ADD COLUMN deployment  jsonb,
    ADD COLUMN archive     jsonb;
CREATE INDEX rm_models_parent ON rm_models (parent_model_id) WHERE parent_model_id IS NOT NULL;
CREATE INDEX rm_models_deploying ON rm_models ((deployment ->> 'status')) WHERE deployment IS NOT NULL;

ALTER TABLE rm_cost_ledger
    ADD COLUMN model_id uuid;

-- One row per ledger entry the watcher has counted (a redelivered entry counts once).
CREATE TABLE budget_spend_entries
(
    job_id    uuid           NOT NULL,
    entry_key text           NOT NULL,
    user_id   uuid           NOT NULL,
    month     text           NOT NULL,
    amount    numeric(20, 6) NOT NULL,
    PRIMARY KEY (job_id, entry_key)
);
CREATE INDEX budget_spend_entries_month ON budget_spend_entries (user_id, month);

-- The outbox: months whose spend changed and must be checked against the budget.
CREATE TABLE budget_checks
(
    user_id uuid   NOT NULL,
    month   text   NOT NULL,
    version bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (user_id, month)
);
