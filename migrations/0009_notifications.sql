-- Notifications read model (built from events by the `notifications` projector; ids derived
-- from the source event, so a replay rebuilds the same rows) and the users' read marks, which
-- are user state, not a projection: a replay keeps them.
CREATE TABLE rm_notifications
(
    id         uuid PRIMARY KEY,
    user_id    uuid        NOT NULL,
    type       text        NOT NULL,
    priority   text        NOT NULL,
    title      text        NOT NULL,
    message    text        NOT NULL,
    action_url text        NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX rm_notifications_user ON rm_notifications (user_id, created_at DESC);

CREATE TABLE notification_reads
(
    notification_id uuid PRIMARY KEY,
    user_id         uuid        NOT NULL,
    read_at         timestamptz NOT NULL
);
