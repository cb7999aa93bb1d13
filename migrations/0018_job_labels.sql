-- A job's suffix (part of its fine-tuned model's name, ft:<base>:<suffix>:<id>) and the
-- client's metadata pairs, as JobCreated records them.
ALTER TABLE rm_jobs ADD COLUMN suffix text;
ALTER TABLE rm_jobs ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';
