-- Shared rate limits towards upstreams (docs/upstreams.md, domain/admission.py): one sliding
-- log of the requests admitted to each upstream by every worker process. An entry keeps its
-- tokens (reserved at admission, corrected by the upstream's usage) while it is within the
-- window, and its concurrency slot until the request ends or `slot_until` passes (a worker
-- killed mid-call). Admissions for one upstream are serialised by a transaction-level
-- advisory lock; entries out of the window with no slot are deleted by the next admission.
CREATE TABLE IF NOT EXISTS upstream_admissions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    upstream text NOT NULL,
    admitted_at timestamptz NOT NULL,
    tokens bigint NOT NULL CHECK (tokens >= 0),
    slot_until timestamptz,              -- NULL once the request ended
    holder text NOT NULL DEFAULT ''      -- the worker that sent it, for operators
);
-- The window: counted and summed by range, walked newest first when a request must wait.
CREATE INDEX IF NOT EXISTS upstream_admissions_window
    ON upstream_admissions (upstream, admitted_at DESC, id DESC) INCLUDE (tokens);
-- The slots still held (a finished request's slot_until is NULL).
CREATE INDEX IF NOT EXISTS upstream_admissions_slots
    ON upstream_admissions (upstream, slot_until) WHERE slot_until IS NOT NULL;
