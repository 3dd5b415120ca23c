"""A worker process's upstream clients, each behind the rate gate every process shares.

Built once per worker process (`UpstreamClients.build`, then kept in the worker's resources)
and closed when it stops. A job asks `prepare(model_id, endpoint, body)` for the client and
the request, then `client.call(request)`; the gate makes every try wait its turn in the
shared admission log (`store/upstream_admissions.py`), sleeping between looks with no
database connection held.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from prepshelf.domain.admission import WINDOW_S, Admission, Refusal
from prepshelf.domain.upstreams import Endpoint, Upstream, UpstreamConfig
from prepshelf.pipeline.upstream_client import AudioFile, UpstreamClient, UpstreamRequest
from prepshelf.settings import Settings
from prepshelf.store import upstream_admissions
from prepshelf.store.db import Pool

_WAKE_JITTER_S = 0.05  # waiters told the same instant do not all look at once


class SharedRateGate:
    """The RateGate of one upstream over the shared admission log."""

    def __init__(
        self,
        pool: Pool,
        upstream: Upstream,
        *,
        holder: str,
        guard_s: float,
        slot_margin_s: float,
        poll_s: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._pool = pool
        self._upstream = upstream
        self._holder = holder
        self._window_s = WINDOW_S + guard_s
        self._slot_s = upstream.timeout_s + slot_margin_s
        self._poll_s = poll_s
        self._sleep = sleep

    async def admit(self, tokens: int, *, max_wait_s: float | None = None) -> Admission | Refusal:
        """Admission for a request of `tokens`, waiting as long as it takes; a Refusal only
        when the next wait would end past `max_wait_s` from now."""
        deadline = None if max_wait_s is None else time.monotonic() + max_wait_s
        while True:
            async with self._pool.connection() as conn:
                verdict = await upstream_admissions.try_admit(
                    conn,
                    upstream=self._upstream.name,
                    limits=self._upstream.limits,
                    tokens=tokens,
                    window_s=self._window_s,
                    slot_s=self._slot_s,
                    holder=self._holder,
                    poll_s=self._poll_s,
                )
            if isinstance(verdict, Admission):
                return verdict
            if deadline is not None and time.monotonic() + verdict.wait_s > deadline:
                return verdict
            await self._sleep(verdict.wait_s + random.uniform(0, _WAKE_JITTER_S))

    async def finish(self, admission: Admission, *, tokens: int | None, keep_slot: bool) -> None:
        async with self._pool.connection() as conn:
            await upstream_admissions.finish(
                conn, admission_id=admission.id, tokens=tokens, keep_slot=keep_slot
            )


class UpstreamClients:
    """One client per configured upstream, and the routing from a model to its client."""

    def __init__(self, config: UpstreamConfig, clients: Mapping[str, UpstreamClient]) -> None:
        self.config = config
        self._clients = dict(clients)

    @classmethod
    def build(
        cls,
        config: UpstreamConfig,
        *,
        pool: Pool,
        settings: Settings,
        holder: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> UpstreamClients:
        """Clients for every upstream of `config`, their gates on `pool`; `holder` names
        this worker process in the admission log."""
        clients = {
            up.name: UpstreamClient(
                up,
                gate=SharedRateGate(
                    pool,
                    up,
                    holder=holder,
                    guard_s=settings.upstream_rate_guard_s,
                    slot_margin_s=settings.upstream_slot_margin_s,
                    poll_s=settings.upstream_poll_s,
                ),
                transport=transport,
            )
            for up in config.upstreams
        }
        return cls(config, clients)

    def prepare(
        self,
        model_id: str,
        endpoint: Endpoint,
        body: Mapping[str, Any],
        *,
        audio: AudioFile | None = None,
    ) -> tuple[UpstreamClient, UpstreamRequest]:
        """The client and the request for `body` (its `model` becomes the upstream's name for
        it). Raises ModelNotServedError when no upstream serves `model_id` on `endpoint`."""
        model, upstream = self.config.route(model_id, endpoint)
        request = UpstreamRequest(
            endpoint=endpoint,
            body={**body, "model": model.upstream_model},
            model_id=model_id,
            audio=audio,
        )
        return self._clients[upstream.name], request

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients.values()))
