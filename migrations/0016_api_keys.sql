-- API keys as their owner lists them (the read model of ApiKey events; no secret, no hash),
-- and when each was last used: a usage figure the authenticating request writes (at most
-- once a minute), kept beside the read model so a replay keeps it.
CREATE TABLE rm_api_keys (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    name text NOT NULL,
    prefix text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX rm_api_keys_user ON rm_api_keys (user_id, created_at DESC);

CREATE TABLE api_key_usage (
    key_id uuid PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);
