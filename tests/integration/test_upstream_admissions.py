"""The shared admission log in PostgreSQL: exact window math on a virtual clock, slots that end
or expire (kill -9 included), and two worker processes hammering one limited upstream while
the upstream's own log shows no 60-second window over its rpm/tpm and no moment over its
max_concurrent."""

from __future__ import annotations

import asyncio
import heapq
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg.rows import dict_row

from prepshelf.domain.admission import Admission, ExceedsLimitError, Refusal
from prepshelf.domain.upstreams import RateLimits
from prepshelf.store import upstream_admissions as log
from support.fake_upstream import FakeUpstream, Rule, max_in_flight, max_in_window
from support.service import base_env

T = TypeVar("T")
T0 = datetime(2030, 1, 1, tzinfo=UTC)
WINDOW = 60.0
SUPPORT = Path(__file__).resolve().parent.parent / "support"


def run(database_url: str, step: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    async def main() -> T:
        conn = await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, row_factory=dict_row
        )
        async with conn:
            return await step(conn)

    return asyncio.run(main())


async def admit(
    conn: psycopg.AsyncConnection[Any],
    at: float | None,
    tokens: int,
    limits: RateLimits,
    *,
    upstream: str = "u",
    slot_s: float = 5.0,
) -> Admission | Refusal:
    return await log.try_admit(
        conn,
        upstream=upstream,
        limits=limits,
        tokens=tokens,
        window_s=WINDOW,
        slot_s=slot_s,
        holder="test",
        poll_s=0.5,
        now=None if at is None else T0 + timedelta(seconds=at),
    )


def test_rpm_wait_is_until_the_oldest_entry_leaves(database_url: str) -> None:
    limits = RateLimits(rpm=3, tpm=None, max_concurrent=None)

    async def step(conn: psycopg.AsyncConnection[Any]) -> None:
        for at in (0.0, 10.0, 20.0):
            assert isinstance(await admit(conn, at, 1, limits, upstream="rpm"), Admission)
        refusal = await admit(conn, 30.0, 1, limits, upstream="rpm")
        assert refusal == Refusal(30.0, ("rpm",))
        assert await admit(conn, 59.999, 1, limits, upstream="rpm") == Refusal(
            pytest.approx(0.001), ("rpm",)
        )
        assert isinstance(await admit(conn, 60.0, 1, limits, upstream="rpm"), Admission)
        # Now 10, 20 and 60 are in the window: the next room comes when 10 leaves.
        assert await admit(conn, 61.0, 1, limits, upstream="rpm") == Refusal(9.0, ("rpm",))

    run(database_url, step)


def test_tpm_wait_is_until_enough_tokens_leave(database_url: str) -> None:
    limits = RateLimits(rpm=None, tpm=100, max_concurrent=None)

    async def step(conn: psycopg.AsyncConnection[Any]) -> None:
        first = await admit(conn, 0.0, 50, limits, upstream="tpm")
        assert isinstance(first, Admission)
        await admit(conn, 10.0, 30, limits, upstream="tpm")
        await admit(conn, 20.0, 20, limits, upstream="tpm")
        # 40 more fit once the 50 at t=0 leaves; 90 only once all three have.
        assert await admit(conn, 30.0, 40, limits, upstream="tpm") == Refusal(30.0, ("tpm",))
        assert await admit(conn, 30.0, 90, limits, upstream="tpm") == Refusal(50.0, ("tpm",))
        assert isinstance(await admit(conn, 30.0, 0, limits, upstream="tpm"), Admission)
        with pytest.raises(ExceedsLimitError):
            await admit(conn, 30.0, 101, limits, upstream="tpm")
        # The upstream said the first call cost 10, not 50: room for 40 at once.
        await log.finish(conn, admission_id=first.id, tokens=10)
        assert isinstance(await admit(conn, 30.0, 40, limits, upstream="tpm"), Admission)

    run(database_url, step)


def test_slots_end_with_the_call_or_expire(database_url: str) -> None:
    limits = RateLimits(rpm=None, tpm=None, max_concurrent=1)

    async def step(conn: psycopg.AsyncConnection[Any]) -> None:
        held = await admit(conn, 0.0, 0, limits, upstream="slots", slot_s=100.0)
        assert isinstance(held, Admission)
        assert await admit(conn, 1.0, 0, limits, upstream="slots") == Refusal(
            0.5, ("max_concurrent",)
        )
        await log.finish(conn, admission_id=held.id, tokens=None)
        timed_out = await admit(conn, 2.0, 0, limits, upstream="slots", slot_s=100.0)
        assert isinstance(timed_out, Admission)
        # A timed-out call may still run upstream: its slot stays until it expires.
        await log.finish(conn, admission_id=timed_out.id, tokens=None, keep_slot=True)
        assert await admit(conn, 101.9, 0, limits, upstream="slots") == Refusal(
            pytest.approx(0.1), ("max_concurrent",)
        )
        assert isinstance(await admit(conn, 102.0, 0, limits, upstream="slots"), Admission)
        # Other upstreams never wait for this one.
        assert isinstance(await admit(conn, 102.0, 0, limits, upstream="other"), Admission)

    run(database_url, step)


def test_load_shows_what_an_upstream_took_in_the_last_minute(database_url: str) -> None:
    limits = RateLimits(rpm=None, tpm=None, max_concurrent=None)

    async def step(conn: psycopg.AsyncConnection[Any]) -> log.UpstreamLoad:
        first = await admit(conn, None, 30, limits, upstream="load")
        await admit(conn, None, 12, limits, upstream="load", slot_s=600)
        assert isinstance(first, Admission)
        await log.finish(conn, admission_id=first.id, tokens=20)
        return await log.load(conn, upstream="load")

    assert run(database_url, step) == log.UpstreamLoad("load", 2, 32, 1)


def test_entries_that_no_longer_count_are_deleted(database_url: str) -> None:
    limits = RateLimits(rpm=100, tpm=None, max_concurrent=None)

    async def step(conn: psycopg.AsyncConnection[Any]) -> int:
        for i in range(20):
            done = await admit(conn, float(i), 1, limits, upstream="prune", slot_s=1000.0)
            assert isinstance(done, Admission)
            if i % 2:
                await log.finish(conn, admission_id=done.id, tokens=1)
        await admit(conn, 500.0, 1, limits, upstream="prune")
        cur = await conn.execute(
            "SELECT count(*) AS n FROM upstream_admissions WHERE upstream = 'prune'"
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["n"])

    # The 10 still holding a slot and the new one stay; the 10 finished ones are gone.
    assert run(database_url, step) == 11


def test_simulated_clients_never_exceed_any_window(database_url: str) -> None:
    """Eight clients on a virtual clock, each doing what the gate does (ask, sleep the wait,
    ask again); the log of admissions is then checked window by window. A wait is exact: a
    client that comes back when told, with nobody admitted meanwhile, is admitted."""
    limits = RateLimits(rpm=25, tpm=3000, max_concurrent=4)
    rng = random.Random(16)
    # (tokens reserved, tokens really used, duration) per client
    work = [
        [(r, rng.randint(0, r), rng.uniform(0.2, 5.0)) for r in rng.choices(range(400), k=15)]
        for _ in range(8)
    ]
    refused: dict[str, int] = {}

    async def step(conn: psycopg.AsyncConnection[Any]) -> list[tuple[int, int, int]]:
        events: list[tuple[float, int, str, Any]] = [(0.0, c, "ask", None) for c in range(8)]
        heapq.heapify(events)
        next_job = [0] * 8
        told: dict[int, int] = {}  # client -> admissions so far when it was told to wait
        done: list[tuple[int, int, int]] = []  # (admitted, ended in µs; tokens used)
        while events:
            now, client, kind, payload = heapq.heappop(events)
            if kind == "end":
                admission, used = payload
                await log.finish(conn, admission_id=admission.id, tokens=used)
                # The log's own time in whole microseconds (no float rounding at the edges).
                micro = timedelta(microseconds=1)
                started = (admission.admitted_at - T0) // micro
                ended = min((admission.slot_until - T0) // micro, round(now * 1e6))
                done.append((started, ended, used))
                next_job[client] += 1
                if next_job[client] < len(work[client]):
                    heapq.heappush(events, (now, client, "ask", None))
                continue
            reserved, used, duration = work[client][next_job[client]]
            verdict = await admit(conn, now, reserved, limits, upstream="sim", slot_s=duration)
            admitted_so_far = len(done) + sum(1 for e in events if e[2] == "end")
            if told.pop(client, None) == admitted_so_far:
                assert isinstance(verdict, Admission), (now, verdict)
            if isinstance(verdict, Refusal):
                for limit in verdict.blocked_by:
                    refused[limit] = refused.get(limit, 0) + 1
                if "max_concurrent" not in verdict.blocked_by:
                    told[client] = admitted_so_far
                    if verdict.wait_s > 0.001:  # and not a moment sooner:
                        async with conn.transaction(force_rollback=True):
                            sooner = now + verdict.wait_s - 0.001
                            early = await admit(conn, sooner, reserved, limits, upstream="sim")
                            assert isinstance(early, Refusal), (now, verdict, early)
                heapq.heappush(events, (now + verdict.wait_s, client, "ask", None))
            else:
                heapq.heappush(events, (now + duration, client, "end", (verdict, used)))
        return done

    done = run(database_url, step)
    assert len(done) == 8 * 15
    starts = sorted(done)
    for i, (start, _, _) in enumerate(starts):
        window = [d for d in starts[i:] if d[0] < start + 60_000_000]
        assert len(window) <= limits.rpm
        assert sum(used for _, _, used in window) <= limits.tpm
    for start, _, _ in starts:
        running = [d for d in done if d[0] <= start < d[1]]
        assert len(running) <= limits.max_concurrent
    # Every limit was reached at some point, so every one of them was put to the test.
    assert set(refused) == {"rpm", "tpm", "max_concurrent"}, refused


def test_a_killed_worker_frees_its_slot_when_the_slot_expires(database_url: str) -> None:
    """A process takes the only slot (3 s) and is killed -9 mid-call: the slot is not leaked."""
    holder = (
        "import asyncio, psycopg, sys\n"
        "from prepshelf.domain.upstreams import RateLimits\n"
        "from prepshelf.store import upstream_admissions as log\n"
        "async def main():\n"
        "    conn = await psycopg.AsyncConnection.connect(sys.argv[1], autocommit=True)\n"
        "    a = await log.try_admit(conn, upstream='killed', limits=RateLimits(None, None, 1),\n"
        "        tokens=0, window_s=60, slot_s=3.0, holder='doomed', poll_s=0.5)\n"
        "    print(type(a).__name__, flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder, database_url],
        env=base_env(PYTHONPATH=os.environ.get("PYTHONPATH", "")),
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:  # closes its pipe
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "Admission"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    limits = RateLimits(rpm=None, tpm=None, max_concurrent=1)

    async def step(conn: psycopg.AsyncConnection[Any]) -> list[Refusal]:
        refusals: list[Refusal] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            verdict = await admit(conn, None, 0, limits, upstream="killed")
            if isinstance(verdict, Admission):
                return refusals
            refusals.append(verdict)
            await asyncio.sleep(verdict.wait_s)
        raise AssertionError("the dead worker's slot never came back")

    refusals = run(database_url, step)
    assert refusals and all(r.blocked_by == ("max_concurrent",) for r in refusals)


# --- two worker processes against the fake upstream ------------------------------------

LIMITS = RateLimits(rpm=8, tpm=1500, max_concurrent=3)
PER_PROCESS = 5  # requests; with the 3 scripted faults, 13 tries: two windows' worth


@pytest.fixture()
def limited_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=["llama"]) as fake:
        fake.delay_s = 0.3
        yield fake


def test_two_processes_never_push_the_upstream_past_its_limits(
    database_url: str, limited_upstream: FakeUpstream
) -> None:
    fake = limited_upstream
    # Faults on the small requests: every try counts against the limits, retries included.
    fake.add(
        Rule("status", status=429, headers={"Retry-After": "1"}, contains="small-1:", times=1),
        Rule("status", status=429, headers={"Retry-After": "1"}, contains="small-3:", times=1),
        Rule("status", status=500, contains="small-4:", times=1),
    )
    config = {
        "upstreams": {
            "limited": {
                "base_url": fake.url,
                "endpoints": ["/v1/chat/completions"],
                "rpm": LIMITS.rpm,
                "tpm": LIMITS.tpm,
                "max_concurrent": LIMITS.max_concurrent,
                "timeout_s": 30,
                "backoff_base_s": 0.2,
                "models": ["llama"],
            }
        }
    }
    env = base_env(
        PYTHONPATH=os.environ.get("PYTHONPATH", ""), PREPSHELF_UPSTREAMS=json.dumps(config)
    )
    hammer = [
        sys.executable,
        str(SUPPORT / "upstream_hammer.py"),
        database_url,
        "llama",
        str(PER_PROCESS),
    ]
    procs = [
        subprocess.Popen([*hammer, size, size], env=env, stdout=subprocess.PIPE, text=True)
        for size in ("big", "small")
    ]
    try:
        outputs = [json.loads(p.communicate(timeout=400)[0]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = [r for out in outputs for r in out["results"]]
    assert [r["outcome"] for r in results] == ["ok"] * 2 * PER_PROCESS, outputs
    records = fake.records()
    assert len(records) == 2 * PER_PROCESS + 3 == sum(r["tries"] for r in results)
    most_requests, most_tokens = max_in_window(records, 60.0)
    assert most_requests <= LIMITS.rpm
    assert most_tokens <= LIMITS.tpm
    assert max_in_flight(records) <= LIMITS.max_concurrent
    # Sent all at once, the same work would break both window limits: the gate held it back.
    assert len(records) > LIMITS.rpm and sum(r.tokens for r in records) > LIMITS.tpm
    refused = [limit for out in outputs for limit in out["refused"]]
    assert "max_concurrent" in refused and {"rpm", "tpm"} & set(refused), outputs
    print(
        f"\nfake saw: {most_requests} requests and {most_tokens} tokens in its busiest 60 s, "
        f"{max_in_flight(records)} at once; gate refusals: {[o['refused'] for o in outputs]}"
    )
