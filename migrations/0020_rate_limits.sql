-- Rate limits held across instances (issue 18): one counter per key (class, and the caller
-- or the client address) per fixed window. Unlogged: counters lost in a crash only forgive a
-- window, and they cost no WAL.
CREATE UNLOGGED TABLE rate_limit_hits
(
    key          text        NOT NULL,
    window_start timestamptz NOT NULL,
    hits         bigint      NOT NULL DEFAULT 1,
    PRIMARY KEY (key, window_start)
);

-- Failed logins are throttled per client address as well as per e-mail.
ALTER TABLE login_failures ADD COLUMN address text;
CREATE INDEX login_failures_address ON login_failures (address, failed_at);
