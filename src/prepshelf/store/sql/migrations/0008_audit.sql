-- Audit trail of mutating API calls (written after the response, by a background task).
CREATE TABLE IF NOT EXISTS audit_events (
    id           text PRIMARY KEY,
    project_id   text NOT NULL,
    actor        text NOT NULL,
    method       text NOT NULL,
    route        text NOT NULL,
    object_id    text,
    path_params  jsonb NOT NULL DEFAULT '{}',
    status_code  int NOT NULL,
    request_id   text,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS audit_events_project_order ON audit_events (project_id, created_at, id);
