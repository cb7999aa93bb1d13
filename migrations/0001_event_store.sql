-- Event store: the postgres-es table plus the global-log columns.
--
-- postgres-es inserts only its own seven columns; the rest are filled by defaults inside the
-- same transaction, so every event gets a global position, the id of the transaction that
-- wrote it (readers gate on it, see infrastructure/src/event_log), an event id and a time.

-- UUID v7 (time-ordered) for event ids; PostgreSQL 15 has no built-in generator.
CREATE FUNCTION uuid_generate_v7() RETURNS uuid AS $$
BEGIN
  RETURN encode(
    set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
              PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
              FROM 1 FOR 6),
      52, 1), 53, 1),
    'hex')::uuid;
END
$$ LANGUAGE plpgsql VOLATILE;

CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid                         NOT NULL DEFAULT uuid_generate_v7(),
    recorded_at     timestamptz                  NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- The global log is read in (transaction_id, global_position) order.
CREATE UNIQUE INDEX events_global_order ON events (transaction_id, global_position);
CREATE UNIQUE INDEX events_event_id ON events (event_id);

-- Present because postgres-es names it; snapshot mode is not used (it applies events twice).
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Wake subscribers when events commit (NOTIFY is delivered at commit, once per statement).
CREATE FUNCTION notify_events_appended() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('brightrun_events', '');
  RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_appended AFTER INSERT ON events
  FOR EACH STATEMENT EXECUTE FUNCTION notify_events_appended();

-- Durable subscriptions (projections, relay, saga): how far each has read the global log.
CREATE TABLE subscription_checkpoints
(
    name            text PRIMARY KEY,
    transaction_id  xid8        NOT NULL DEFAULT '0',
    global_position bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
