"""SQL fragments for a job's stage times, shared by its writes (store/job_progress.py) and
its transitions (store/jobs.py)."""

from __future__ import annotations

from psycopg.types.json import Jsonb

# Close the running stage's timer: stage_durations[stage] += now - stage_started_at.
CLOSE_STAGE = """
    stage_durations = CASE WHEN stage IS NULL OR stage_started_at IS NULL THEN stage_durations
        ELSE jsonb_set(stage_durations, ARRAY[stage], to_jsonb(round((
            coalesce((stage_durations->>stage)::numeric, 0)
            + extract(epoch FROM clock_timestamp() - stage_started_at))::numeric, 3)))
        END"""


# Add seconds per key to stage_durations: stage_durations[k] += v for each (k, v) of the
# parameter (a JSON object). Every SET expression of an UPDATE reads the old row.
ADD_DURATIONS = """
    stage_durations = stage_durations || (
        SELECT coalesce(jsonb_object_agg(k, round(
            coalesce((stage_durations->>k)::numeric, 0) + v::numeric, 3)), '{}')
        FROM jsonb_each_text(%s::jsonb) AS t(k, v))"""


def rounded(durations: dict[str, float]) -> Jsonb:
    return Jsonb({k: round(v, 6) for k, v in durations.items()})
