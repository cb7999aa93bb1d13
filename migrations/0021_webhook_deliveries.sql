-- Cluster webhook deliveries seen, by signature (t=<unix>,v1=<hmac>): a replay of one within
-- its five minutes of validity is refused. Rows older than any valid signature are dropped.
CREATE TABLE cluster_webhook_deliveries
(
    signature   text PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);
