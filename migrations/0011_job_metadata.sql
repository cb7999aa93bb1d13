-- A job's user-facing metadata (PATCH /api/jobs/{id}).
ALTER TABLE rm_jobs
    ADD COLUMN name        text,
    ADD COLUMN description text  NOT NULL DEFAULT '',
    ADD COLUMN tags        jsonb NOT NULL DEFAULT '[]';
