-- Subscribers are woken by the service once an append has committed (event_store::Wakeup),
-- not by a NOTIFY inside the appending transaction: that one held Postgres's notify lock
-- through the commit's WAL flush, so concurrent commands never shared a flush.
DROP TRIGGER events_appended ON events;
DROP FUNCTION notify_events_appended();
