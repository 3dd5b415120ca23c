-- One row per `prepshelf worker` process, beaten while it runs (procrastinate's own
-- procrastinate_workers has one row per sub-worker and no name, so it cannot count processes).
-- /readyz and the prepshelf_live_workers metric count the rows with a recent heartbeat.
CREATE TABLE IF NOT EXISTS worker_processes (
    name         text PRIMARY KEY,          -- host:pid, as in jobs.worker
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    sub_workers  integer NOT NULL,          -- procrastinate workers it runs (one per queue)
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS worker_processes_heartbeat ON worker_processes (heartbeat_at);
