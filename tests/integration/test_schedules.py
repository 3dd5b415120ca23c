"""Schedules across a cluster: two `prepshelf api` and two `prepshelf worker` processes.

A schedule due every two seconds fires exactly once per due time: its runs' due times are
distinct, each a due time of the cron, consecutive runs cover every due time between them
exactly once (a run that started late stands for the ones it covers), and a schedule never
has two runs at once. With every worker stopped, due times pile up; when a worker returns
they become exactly one catch-up run. "Run now" through one API while a run is queued is
refused through the other. Then the API's refusals and the schedule's own life (update,
pause, resume, delete) over HTTP.

No assertion is about timing: the test waits (bounded) for runs to appear, then checks their
due times and the catch-up counts recorded by the workers against the cron.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from support.cluster import Cluster, SpreadClient
from support.runs import FINAL
from support.service import stop_processes

EVERY_S = 2
CRON = f"* * * * * */{EVERY_S}"  # seconds last: due at every even second


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sync-root")
    (root / "note.txt").write_text("A short note about tide tables and harbour pilots.")
    return root


@pytest.fixture(scope="module")
def cluster(
    database_url: str, folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    c = Cluster(
        database_url,
        tmp_path_factory.mktemp("cluster"),
        apis=2,
        workers=2,
        extra_env={
            "PREPSHELF_SCHEDULE_SCAN_INTERVAL_S": "1",
            "PREPSHELF_SCHEDULE_MIN_INTERVAL_S": "1",
            "PREPSHELF_SYNC_ROOTS": str(folder),
            "PREPSHELF_RUN_POLL_INTERVAL_S": "1",
            "PREPSHELF_TORCH_THREADS": "1",
        },
    )
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture(scope="module")
def client(cluster: Cluster) -> Iterator[SpreadClient]:
    spread = cluster.client()
    try:
        yield spread
    finally:
        spread.close()


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


def _runs(cluster: Cluster, schedule_id: str) -> list[dict[str, Any]]:
    """The schedule's runs as stored (database timestamps, full precision)."""
    with cluster.db() as db:
        return db.execute(
            """SELECT id, status, scheduled_for, params, created_at, started_at, finished_at
               FROM jobs WHERE schedule_id = %s ORDER BY created_at""",
            [schedule_id],
        ).fetchall()


def _wait(predicate: Any, what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _idle(cluster: Cluster, schedule_id: str) -> bool:
    return all(r["status"] in FINAL for r in _runs(cluster, schedule_id))


def _check_once_per_due_time(runs: list[dict[str, Any]]) -> int:
    """Every due time from the first run's to the last's is stood for by exactly one run;
    returns how many due times they cover."""
    timed = [r for r in runs if r["scheduled_for"] is not None]
    dues = [r["scheduled_for"] for r in timed]
    assert len(set(dues)) == len(dues), "two runs for one due time"
    assert dues == sorted(dues)
    covered = 0
    previous: datetime | None = None
    for run in timed:
        due: datetime = run["scheduled_for"]
        assert due.microsecond == 0 and due.second % EVERY_S == 0, f"{due} is not a due time"
        catch_up = run["params"]["catch_up"]
        first = datetime.fromisoformat(catch_up["first_due_at"])
        assert catch_up["due_times"] == (due - first) // timedelta(seconds=EVERY_S) + 1
        if previous is not None:
            assert first == previous + timedelta(seconds=EVERY_S), (previous, first)
        covered += catch_up["due_times"]
        previous = due
    # Never two runs at once: each run was created after the one before had ended.
    for before, after in itertools.pairwise(runs):
        assert before["finished_at"] is not None and after["created_at"] >= before["finished_at"]
    return covered


def test_fires_once_per_due_time_and_catches_up_once(
    cluster: Cluster, client: SpreadClient, folder: Path
) -> None:
    store = _ok(client.request("POST", "/v1/vector_stores", json={"name": "tides"}))
    schedule = _ok(
        client.request(
            "POST",
            "/v1/schedules",
            json={
                "kind": "source_sync",
                "cron": CRON,
                "timezone": "Asia/Kolkata",  # a half-hour offset changes nothing for seconds
                "params": {"vector_store_id": store["id"], "source": str(folder)},
            },
        )
    )
    sid = schedule["id"]
    _wait(lambda: len(_runs(cluster, sid)) >= 6, "six runs")
    _ok(client.request("POST", f"/v1/schedules/{sid}/pause"))
    _wait(lambda: _idle(cluster, sid), "the last run to end")
    runs = _runs(cluster, sid)
    assert {r["status"] for r in runs} == {"succeeded"}, runs
    covered = _check_once_per_due_time(runs)
    assert covered >= len(runs) >= 6
    first_report = _ok(client.request("GET", f"/v1/jobs/{runs[0]['id']}"))["result"]
    assert first_report["counts"]["added"] == 1
    assert all(
        _ok(client.request("GET", f"/v1/jobs/{r['id']}"))["result"]["counts"]["unchanged"] == 1
        for r in runs[1:]
    )
    assert all(n > 0 for n in client.used.values())  # both APIs served the test

    # Downtime: no worker runs while due times pass; "run now" queues one run, and a second
    # "run now" through the other API is refused while it waits.
    stop_processes(cluster.workers)
    resumed = _ok(client.request("POST", f"/v1/schedules/{sid}/resume"))
    assert resumed["status"] == "active" and resumed["next_run_at"] is not None
    manual = _ok(client.request("POST", f"/v1/schedules/{sid}/run"))
    assert manual["status"] == "queued" and manual["schedule_id"] == sid
    again = client.request("POST", f"/v1/schedules/{sid}/run")
    assert again.status_code == 409 and manual["id"] in again.json()["error"]["message"]
    time.sleep(4 * EVERY_S)  # let several due times pass with nobody to run them
    before = len(runs)
    cluster.workers.append(cluster._spawn("worker", "worker-late"))

    def caught_up() -> bool:
        later = _runs(cluster, sid)[before:]
        return any(r["scheduled_for"] is not None and r["status"] in FINAL for r in later)

    _wait(caught_up, "the catch-up run")
    _ok(client.request("POST", f"/v1/schedules/{sid}/pause"))
    _wait(lambda: _idle(cluster, sid), "the last run to end")
    later = _runs(cluster, sid)[before:]
    assert later[0]["id"] == manual["id"] and later[0]["scheduled_for"] is None
    catch_up = later[1]["params"]["catch_up"]
    # One run for every due time missed while the workers were down.
    assert catch_up["due_times"] >= 3, later[1]
    assert datetime.fromisoformat(catch_up["first_due_at"]).timestamp() == resumed["next_run_at"]
    _check_once_per_due_time(later)
    assert {r["status"] for r in later} == {"succeeded"}

    listed = _ok(client.request("GET", f"/v1/schedules/{sid}/runs", params={"limit": 100}))
    assert {j["id"] for j in listed["data"]} == {r["id"] for r in _runs(cluster, sid)}
    assert all(j["kind"] == "source_sync" and j["schedule_id"] == sid for j in listed["data"])


def test_schedule_life_and_refusals(client: SpreadClient) -> None:
    store = _ok(client.request("POST", "/v1/vector_stores", json={"name": "evals"}))
    evaluation = _ok(
        client.request(
            "POST",
            "/v1/evals",
            json={
                "data_source_config": {
                    "type": "items",
                    "items": [{"question": "tide tables", "expected_filenames": ["note.txt"]}],
                },
                "vector_store_id": store["id"],
            },
        )
    )

    def create(**changes: Any) -> Any:
        body = {"kind": "eval_run", "cron": "0 3 * * *", "params": {"eval_id": evaluation["id"]}}
        return client.request("POST", "/v1/schedules", json={**body, **changes})

    for changes, status, param in [
        ({"cron": "61 * * * *"}, 400, "cron"),
        ({"cron": "* * * * * */0"}, 400, "cron"),
        ({"cron": "0 0 30 2 *"}, 400, "cron"),
        ({"timezone": "Nowhere/City"}, 400, "timezone"),
        ({"kind": "reindex"}, 400, None),
        ({"params": {}}, 400, "params.eval_id"),
        ({"params": {"eval_id": "eval_nope"}}, 404, "params.eval_id"),
        ({"params": {"eval_id": evaluation["id"], "vector_store_id": "vs_nope"}}, 404, None),
    ]:
        response = create(**changes)
        assert response.status_code == status, (changes, response.text)
        if param is not None:
            assert response.json()["error"]["param"] == param, response.text

    schedule = _ok(create(name="nightly", timezone="America/New_York", metadata={"a": "b"}))
    sid = schedule["id"]
    assert schedule["object"] == "schedule" and schedule["catch_up"] == "once"
    assert schedule["params"] == {"eval_id": evaluation["id"], "vector_store_id": None}
    # 03:00 in New York is 07:00 or 08:00 UTC.
    assert (schedule["next_run_at"] // 3600) % 24 in (7, 8)
    assert _ok(client.request("GET", f"/v1/schedules/{sid}"))["name"] == "nightly"
    listed = _ok(client.request("GET", "/v1/schedules", params={"kind": "eval_run"}))
    assert sid in {s["id"] for s in listed["data"]}

    updated = _ok(client.request("POST", f"/v1/schedules/{sid}", json={"cron": "30 4 * * 1"}))
    assert updated["cron"] == "30 4 * * 1" and updated["next_run_at"] != schedule["next_run_at"]
    assert updated["name"] == "nightly" and updated["metadata"] == {"a": "b"}
    refused = client.request("POST", f"/v1/schedules/{sid}", json={"params": {"eval_id": 3}})
    assert refused.status_code in (400, 404)

    paused = _ok(client.request("POST", f"/v1/schedules/{sid}/pause"))
    assert paused["status"] == "paused" and paused["next_run_at"] is None
    # Run now works while paused, as a run of the schedule.
    job = _ok(client.request("POST", f"/v1/schedules/{sid}/run"))
    assert job["kind"] == "eval_run" and job["schedule_id"] == sid and job["eval_run_id"]
    _wait(lambda: _ok(client.request("GET", f"/v1/jobs/{job['id']}"))["status"] in FINAL, "the run")
    assert _ok(client.request("GET", f"/v1/jobs/{job['id']}"))["status"] == "succeeded"
    run = _ok(client.request("GET", f"/v1/evals/{evaluation['id']}/runs/{job['eval_run_id']}"))
    assert run["schedule_id"] == sid and run["status"] == "completed"
    resumed = _ok(client.request("POST", f"/v1/schedules/{sid}/resume"))
    assert resumed["status"] == "active" and resumed["next_run_at"] > time.time()

    # Deleting the eval takes its schedules with it.
    _ok(client.request("DELETE", f"/v1/evals/{evaluation['id']}"))
    assert client.request("GET", f"/v1/schedules/{sid}").status_code == 404
    assert _ok(client.request("GET", f"/v1/jobs/{job['id']}"))["schedule_id"] is None
    gone = client.request("DELETE", f"/v1/schedules/{sid}")
    assert gone.status_code == 404
