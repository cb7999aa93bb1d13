-- The wall-clock limit a cluster job gets (from the job's estimate), passed with each submission.
ALTER TABLE saga_jobs ADD COLUMN time_limit_seconds bigint;
