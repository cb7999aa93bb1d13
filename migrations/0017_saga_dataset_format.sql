-- The saga tells the cluster how to read the dataset (JobCreated.datasetFormat; NULL for jobs
-- created before formats were named: the trainer then recognises each line's format).
ALTER TABLE saga_jobs ADD COLUMN dataset_format text;
