-- Validation results and purges in the datasets read model (filled from DatasetUploadConfirmed,
-- DatasetReady, DatasetValidationFailed and DatasetObjectPurged).
ALTER TABLE rm_datasets
    ADD COLUMN total_conversations bigint NOT NULL DEFAULT 0,
    ADD COLUMN tokenizer           text,
    ADD COLUMN error_count         bigint NOT NULL DEFAULT 0,
    ADD COLUMN warning_count       bigint NOT NULL DEFAULT 0,
    ADD COLUMN purged_at           timestamptz;

-- The purger's question: deleted, not purged yet, oldest first.
CREATE INDEX rm_datasets_purge_due ON rm_datasets (deleted_at)
    WHERE deleted_at IS NOT NULL AND purged_at IS NULL;
