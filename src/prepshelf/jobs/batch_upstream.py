"""One slice of an upstream /v1/batches job: its lines sent concurrently, each answer kept.

Every answer (or the line's own error) is recorded the moment it arrives
(`store/batch_answers.py`), so a slice run again after a kill -9 sends only the lines that had
no answer yet, and the output keeps one line per `custom_id`. A line whose upstream stays
unavailable after the client's retries, or whose turn at the shared rate limits is further
off than the job may wait, is not an error: the slice stops sending, lets the requests in
flight finish, and `UpstreamPaused` puts the job back on the shelf until then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prepshelf.domain.upstreams import Endpoint
from prepshelf.errors import InvalidRequestError, PrepshelfError
from prepshelf.jobs.batch_output import error_body, response_record
from prepshelf.jobs.upstreams import UpstreamClients
from prepshelf.pipeline.upstream_client import UpstreamResult
from prepshelf.store import batch_answers
from prepshelf.store.batch_answers import LineAnswer
from prepshelf.store.db import Pool


@dataclass(frozen=True)
class UpstreamLine:
    line_no: int
    custom_id: str
    body: Mapping[str, Any]


class UpstreamPaused(Exception):
    """The slice stopped sending: come back after `retry_after_s` (its answers so far stay)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _count(usage: Mapping[str, Any], *keys: str) -> int:
    for key in keys:
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return 0


def answered(line: UpstreamLine, result: UpstreamResult) -> LineAnswer:
    """The output line of an answer, or the error line of a request the upstream refused."""
    usage = result.body.get("usage") if result.outcome == "ok" else None
    usage = usage if isinstance(usage, Mapping) else {}
    return LineAnswer(
        line_no=line.line_no,
        custom_id=line.custom_id,
        is_error=result.outcome != "ok",
        record=response_record(line.custom_id, result.status_code, result.body),
        input_tokens=_count(usage, "prompt_tokens", "input_tokens"),
        output_tokens=_count(usage, "completion_tokens", "output_tokens"),
    )


def refused(line: UpstreamLine, problem: PrepshelfError) -> LineAnswer:
    """The error line of a request never sent (no such model, a body it cannot be)."""
    return LineAnswer(
        line_no=line.line_no,
        custom_id=line.custom_id,
        is_error=True,
        record=response_record(line.custom_id, problem.status_code, error_body(problem)),
        input_tokens=0,
        output_tokens=0,
    )


def _refusal(body: Mapping[str, Any]) -> PrepshelfError | None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        return InvalidRequestError("'model' must be a non-empty string", param="model")
    if body.get("stream"):
        return InvalidRequestError(
            "'stream' is not supported in a batch: each answer is written whole",
            param="stream",
        )
    return None


async def answer_slice(
    *,
    pool: Pool,
    clients: UpstreamClients,
    batch_id: str,
    slice_no: int,
    endpoint: Endpoint,
    lines: Sequence[UpstreamLine],
    concurrency: int,
    max_wait_s: float,
    on_answer: Callable[[LineAnswer], Awaitable[None]] | None = None,
) -> list[LineAnswer]:
    """Answer every line of the slice not answered yet; return all its answers in order.

    Raises UpstreamPaused when an upstream gave up or its limits are too far off; on
    cancellation (the worker stops) no new line is sent and the requests in flight finish.
    """
    async with pool.connection() as conn:
        kept = await batch_answers.slice_lines(conn, batch_id=batch_id, slice_no=slice_no)
    done = {r.line_no for r in kept}
    todo = [ln for ln in lines if ln.line_no not in done]
    gate = asyncio.Semaphore(concurrency)
    stop = asyncio.Event()
    paused: list[UpstreamResult] = []

    async def one(line: UpstreamLine) -> None:
        async with gate:
            if stop.is_set():
                return
            result = await _answer(clients, endpoint, line, max_wait_s)
            if isinstance(result, UpstreamResult):
                paused.append(result)
                stop.set()
                return
            async with pool.connection() as conn:
                await batch_answers.record_line(
                    conn, batch_id=batch_id, slice_no=slice_no, result=result
                )
            if on_answer is not None:
                await on_answer(result)

    tasks = [asyncio.ensure_future(one(line)) for line in todo]
    if tasks:
        try:
            await asyncio.wait(tasks)  # unlike gather, a cancelled wait leaves them running
        except asyncio.CancelledError:
            stop.set()  # nothing new is sent; the answers of requests in flight are kept
            await asyncio.wait(tasks)
            raise
        for task in tasks:
            task.result()  # a database error in a task is the slice's
    if paused:
        first = paused[0]
        error = first.body.get("error")
        message = error.get("message") if isinstance(error, Mapping) else None
        raise UpstreamPaused(
            str(message or "the upstream is unavailable"), max(first.retry_after_s or 0.0, 1.0)
        )
    async with pool.connection() as conn:
        return await batch_answers.slice_lines(conn, batch_id=batch_id, slice_no=slice_no)


async def _answer(
    clients: UpstreamClients, endpoint: Endpoint, line: UpstreamLine, max_wait_s: float
) -> LineAnswer | UpstreamResult:
    """The line's answer or error line; the client's result itself when it must wait."""
    problem = _refusal(line.body)
    if problem is not None:
        return refused(line, problem)
    try:
        client, request = clients.prepare(str(line.body["model"]), endpoint, line.body)
    except PrepshelfError as exc:
        return refused(line, exc)
    outcome = await client.call(request, max_wait_s=max_wait_s)
    if outcome.outcome in ("gave_up", "throttled"):
        return outcome
    return answered(line, outcome)
