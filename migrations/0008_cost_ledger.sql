-- The cost ledger read model: one row per ledger entry (JobCostAccrued), amounts exact to 6
-- fractional digits; billing_day is the UTC day the entry accrued.
CREATE TABLE rm_cost_ledger
(
    job_id      uuid           NOT NULL,
    entry_key   text           NOT NULL,
    user_id     uuid           NOT NULL,
    cost_type   text           NOT NULL,
    amount      numeric(20, 6) NOT NULL,
    rate        numeric(20, 6) NOT NULL,
    quantity    numeric(30, 10) NOT NULL,
    details     jsonb          NOT NULL,
    billing_day date           NOT NULL,
    accrued_at  timestamptz    NOT NULL,
    PRIMARY KEY (job_id, entry_key)
);
CREATE INDEX rm_cost_ledger_user_day ON rm_cost_ledger (user_id, billing_day);
