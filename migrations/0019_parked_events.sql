-- Events a subscription failed on (issue 18: a poison event does not stop the world).
--
-- A subscription that fails on an event while what it needs answers counts the attempt here;
-- after `SUBSCRIPTION_PARK_AFTER` attempts the event is parked: the subscription moves past
-- it and goes on. `brightrun parked list` shows the parked ones, `brightrun parked retry`
-- asks the subscription's leader to handle them again (out of order). A failing event that
-- later succeeds (the failure was passing after all) loses its row.
CREATE TABLE event_failures
(
    subscription       text        NOT NULL,
    event_id           uuid        NOT NULL,
    global_position    bigint      NOT NULL,
    aggregate_type     text        NOT NULL,
    aggregate_id       text        NOT NULL,
    event_type         text        NOT NULL,
    attempts           integer     NOT NULL DEFAULT 1,
    last_error         text        NOT NULL,
    first_failed_at    timestamptz NOT NULL DEFAULT now(),
    last_failed_at     timestamptz NOT NULL DEFAULT now(),
    parked_at          timestamptz,
    retry_requested_at timestamptz,
    resolved_at        timestamptz,
    PRIMARY KEY (subscription, event_id)
);

-- What a leader looks for on its lease checks, and what `parked list` reads.
CREATE INDEX event_failures_parked ON event_failures (subscription, global_position)
    WHERE parked_at IS NOT NULL AND resolved_at IS NULL;
