-- The reconciliation pass: when each failed job was checked against the cluster (once), and
-- a lease so two processes do not check the same job at once.
ALTER TABLE saga_jobs
    ADD COLUMN reconciled_at         timestamptz,
    ADD COLUMN reconcile_lease_until timestamptz;
