-- A checkpoint's adapter is copied into our bucket when the cluster offers it: its key, size
-- and checksum. A checkpoint the cluster kept no file for has none of them.
ALTER TABLE rm_job_checkpoints
    ALTER COLUMN s3_key DROP NOT NULL,
    ADD COLUMN size_bytes bigint,
    ADD COLUMN sha256 text;
