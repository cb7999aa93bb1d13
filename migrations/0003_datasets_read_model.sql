-- Read model of datasets, built by the `datasets` projector from Dataset events only
-- (every value, timestamps included, comes from the events, so a replay reproduces it).
CREATE TABLE rm_datasets
(
    id                         uuid PRIMARY KEY,
    user_id                    uuid        NOT NULL,
    name                       text        NOT NULL,
    description                text        NOT NULL,
    format                     text        NOT NULL,
    status                     text        NOT NULL,
    training_ready             boolean     NOT NULL DEFAULT false,
    total_training_pairs       bigint      NOT NULL DEFAULT 0,
    total_validation_pairs     bigint      NOT NULL DEFAULT 0,
    total_tokens               bigint      NOT NULL DEFAULT 0,
    avg_turns_per_conversation double precision NOT NULL DEFAULT 0,
    avg_tokens_per_turn        double precision NOT NULL DEFAULT 0,
    file_size                  bigint      NOT NULL,
    file_name                  text        NOT NULL,
    s3_key                     text        NOT NULL,
    s3_bucket                  text        NOT NULL,
    uploaded_at                timestamptz,
    processed_at               timestamptz,
    validated_at               timestamptz,
    error_message              text,
    sample_conversations       jsonb       NOT NULL DEFAULT '[]',
    full_statistics            jsonb,
    validation_errors          jsonb       NOT NULL DEFAULT '[]',
    validation_warnings        jsonb       NOT NULL DEFAULT '[]',
    deleted_at                 timestamptz,
    created_at                 timestamptz NOT NULL,
    updated_at                 timestamptz NOT NULL,
    version                    bigint      NOT NULL
);
CREATE INDEX rm_datasets_owner ON rm_datasets (user_id, created_at DESC);
