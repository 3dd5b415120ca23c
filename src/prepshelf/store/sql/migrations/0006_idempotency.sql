-- Idempotency-Key: one row per (project, key). The primary key is the lock that keeps two
-- concurrent duplicates from both creating; `response` stays NULL while the first is in flight.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    project_id   text NOT NULL,
    key          text NOT NULL,
    endpoint     text NOT NULL,
    fingerprint  text NOT NULL,
    status_code  int,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (project_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expires ON idempotency_keys (expires_at);
