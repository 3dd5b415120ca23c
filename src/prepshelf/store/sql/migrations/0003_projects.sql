-- Projects own every object; API keys belong to one project and are stored only as hashes.
-- Objects keep `project_id` as text: the pre-existing project is the row with id 'default'.
CREATE TABLE IF NOT EXISTS projects (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO projects (id, name) VALUES ('default', 'default') ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS api_keys (
    id            text PRIMARY KEY,
    project_id    text NOT NULL REFERENCES projects (id),
    name          text,
    key_hash      text NOT NULL UNIQUE,  -- sha256 hex of the key (keys are 256-bit random)
    prefix        text NOT NULL,         -- the first characters, for telling keys apart
    is_admin      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_order ON api_keys (created_at, id);
