"""Follow a file batch to its end: the server's event stream, or polling where there is none.

Events (`GET /v1/events?batch_id=`) carry each job's status, stage and progress; the stream
replays the batch's history first and ends when no file is in progress. A dropped connection
resumes with `Last-Event-ID`. A server without the events endpoint (404) is polled instead:
the batch, and its jobs for stage and progress.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from prepshelf.client.http import check, iter_pages
from prepshelf.client.render import FileState

JOB_TO_FILE_STATUS = {
    "queued": "queued",
    "running": "running",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
_RECONNECTS = 10
_POLL_S = 0.5

OnChange = Callable[[FileState], None]


class EventsUnavailable(Exception):
    """The server has no events endpoint (an older prepshelf): poll instead."""


def apply_job(states: dict[str, FileState], job: dict[str, Any], on_change: OnChange) -> None:
    """Fold a job's status (an event's data or a job object) into its file's state."""
    state = states.get(job.get("file_id") or "")
    status = JOB_TO_FILE_STATUS.get(job.get("status") or "")
    if state is None or status is None:
        return
    progress = job.get("progress") or {}
    error = job.get("error") or None
    new = (
        status,
        job.get("stage"),
        int(progress.get("done") or 0),
        progress.get("total"),
        error.get("message") if isinstance(error, dict) else (str(error) if error else None),
        progress.get("unit"),
    )
    old = (state.status, state.stage, state.done, state.total, state.error, state.unit)
    if new == old or (state.final and status not in ("failed", "cancelled", "completed")):
        # A late or replayed event never moves a finished file back.
        return
    was_final = state.final
    state.status, state.stage, state.done, state.total, state.error, state.unit = new
    if not (was_final and state.final):
        on_change(state)


async def sse_frames(response: httpx.Response) -> AsyncIterator[tuple[str | None, str, str]]:
    """(id, event, data) for each event frame; comments and keep-alives are skipped."""
    event_id: str | None = None
    event, data = "message", list[str]()
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event_id, event, "\n".join(data)
            event, data = "message", []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            event_id = value
        elif name == "event":
            event = value
        elif name == "data":
            data.append(value)


async def follow_events(
    client: httpx.AsyncClient, batch_id: str, states: dict[str, FileState], on_change: OnChange
) -> None:
    """Read the batch's events until every file is final; reconnect (resuming) on a drop.

    The server ends the stream when the batch is done. A stream that ends, or breaks, while
    files are still open is resumed with Last-Event-ID, up to a bounded number of tries in a
    row without a new event; the caller's summary then asks the server directly.
    """
    last_id: str | None = None
    tries = 0
    while True:
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        try:
            async with client.stream(
                "GET",
                "/v1/events",
                params={"batch_id": batch_id},
                headers=headers,
                timeout=httpx.Timeout(30.0, read=None),
            ) as response:
                if response.status_code == 404 and last_id is None:
                    body = (await response.aread()).decode(errors="replace")
                    # An unknown route (no events endpoint) vs. an unknown batch.
                    if "file batch" not in body:
                        raise EventsUnavailable
                if not response.is_success:
                    await response.aread()
                    check(response)
                async for frame_id, _event, data in sse_frames(response):
                    last_id = frame_id or last_id
                    tries = 0
                    try:
                        payload = json.loads(data)
                    except ValueError:
                        continue
                    if isinstance(payload, dict):
                        apply_job(states, payload, on_change)
            if all(s.final for s in states.values()):
                return
        except httpx.TransportError:
            if tries >= _RECONNECTS:
                raise
        tries += 1
        if tries > _RECONNECTS:
            return
        await asyncio.sleep(min(5.0, 0.5 * tries))


async def poll(
    client: httpx.AsyncClient,
    store_id: str,
    batch_id: str,
    states: dict[str, FileState],
    on_change: OnChange,
) -> None:
    batch_path = f"/v1/vector_stores/{store_id}/file_batches/{batch_id}"
    while True:
        batch = check(await client.get(batch_path))
        async for job in iter_pages(client, "/v1/jobs", {"batch_id": batch_id, "order": "asc"}):
            apply_job(states, job, on_change)
        if batch["status"] != "in_progress":
            return
        await asyncio.sleep(_POLL_S)


async def follow(
    client: httpx.AsyncClient,
    store_id: str,
    batch_id: str,
    states: dict[str, FileState],
    on_change: OnChange,
) -> None:
    try:
        await follow_events(client, batch_id, states, on_change)
    except EventsUnavailable:
        await poll(client, store_id, batch_id, states, on_change)


async def final_files(
    client: httpx.AsyncClient, store_id: str, batch_id: str
) -> list[dict[str, Any]]:
    """The batch's files as the server has them now: the summary's source of truth."""
    path = f"/v1/vector_stores/{store_id}/file_batches/{batch_id}/files"
    return [f async for f in iter_pages(client, path, {"order": "asc"})]
