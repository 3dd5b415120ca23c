-- Retrieval evaluations: an eval set (questions and what counts as a right answer), its runs
-- against a vector store with one or more search settings ("testing criteria"), and each
-- run's per-question output items. Shapes follow OpenAI's Evals API where they fit.
CREATE TABLE IF NOT EXISTS evals (
    id                  text PRIMARY KEY,
    project_id          text NOT NULL,
    name                text,
    vector_store_id     text,             -- the store runs search unless a run names another
    data_source_config  jsonb NOT NULL,   -- where the questions came from, how many
    testing_criteria    jsonb NOT NULL,   -- the search settings compared side by side
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS evals_project_order ON evals (project_id, created_at, id);

-- Questions are fixed when the eval is created, so every run of it is comparable.
CREATE TABLE IF NOT EXISTS eval_questions (
    eval_id   text NOT NULL REFERENCES evals (id) ON DELETE CASCADE,
    item_no   int NOT NULL,
    item      jsonb NOT NULL,
    PRIMARY KEY (eval_id, item_no)
);

-- A run's status is its job's (queued, running, ...); the row holds what the run measured.
-- `store_fingerprint` / `settings_fingerprint` say what was searched with what, so a chart can
-- mark the runs where either changed since the run before.
CREATE TABLE IF NOT EXISTS eval_runs (
    id                            text PRIMARY KEY,
    eval_id                       text NOT NULL REFERENCES evals (id) ON DELETE CASCADE,
    project_id                    text NOT NULL,
    name                          text,
    vector_store_id               text NOT NULL,
    testing_criteria              jsonb NOT NULL,
    metadata                      jsonb NOT NULL DEFAULT '{}',
    embedding_model               text,
    store_files                   int,
    store_fingerprint             text,
    settings_fingerprint          text,
    store_changed                 boolean,
    settings_changed              boolean,
    result_counts                 jsonb,
    per_testing_criteria_results  jsonb,
    created_at                    timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at                  timestamptz
);
CREATE INDEX IF NOT EXISTS eval_runs_order ON eval_runs (eval_id, created_at, id);
CREATE INDEX IF NOT EXISTS eval_runs_completed ON eval_runs (completed_at)
    WHERE completed_at IS NOT NULL;

-- One row per question of a run: pass, fail or error, and per testing criterion the rank of
-- the first right answer, the scores and the top hits. Written in checkpoints: a run picked
-- up again continues at the first question without a row.
CREATE TABLE IF NOT EXISTS eval_run_items (
    id          text PRIMARY KEY,
    run_id      text NOT NULL REFERENCES eval_runs (id) ON DELETE CASCADE,
    item_no     int NOT NULL,
    status      text NOT NULL CHECK (status IN ('pass', 'fail', 'error')),
    results     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (run_id, item_no)
);

ALTER TABLE jobs ADD COLUMN IF NOT EXISTS eval_run_id text
    REFERENCES eval_runs (id) ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS jobs_eval_run ON jobs (eval_run_id) WHERE eval_run_id IS NOT NULL;
