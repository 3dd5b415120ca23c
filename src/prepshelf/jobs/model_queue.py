"""One local-model call at a time per worker process, each carrying every waiting job's texts.

A file of one paragraph is one chunk: embedded alone, the model runs a batch of one, and
most of its time is per-call overhead (tokenizer, tensors, threads) rather than arithmetic.
Jobs in flight therefore hand their texts to this queue instead of calling the model: while
a call runs, the texts of the jobs that ask meanwhile wait, and the next call takes them all
(up to `max_texts`), so many small files share model batches as one large file's chunks do.
A job alone waits for nothing: its call starts at once.

Each caller gets its own vectors, in its order, and the model time its texts cost (their
share of the call); an error in a call is raised to every job whose texts were in it.

A call takes the waiting texts owner by owner (a project), one request of each in turn,
starting with the owner served longest ago: one project's backlog of checkpoints fills a
call only after every other project's request went in, so another project's small file
rides the very next call instead of waiting for the backlog. Calls stay short (`max_texts`,
64 by default: the model batches 32 at a time inside a call anyway), because every text in
a call waits for the whole call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prepshelf.pipeline.embed import Embedder


@dataclass
class _Ask:
    texts: Sequence[str]
    asked: float
    owner: str
    done: asyncio.Future[tuple[np.ndarray, dict[str, float]]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ModelQueue:
    def __init__(
        self,
        embedder: Embedder,
        *,
        max_texts: int,
        lock: contextlib.AbstractContextManager[Any] | None = None,
    ) -> None:
        self._embedder = embedder
        self._max_texts = max(1, max_texts)
        self._lock = lock if lock is not None else contextlib.nullcontext()
        self._waiting: list[_Ask] = []
        self._drainer: asyncio.Task[None] | None = None
        # Its own thread: a model call never waits for a free thread behind parses and writes.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.calls = 0  # model calls made (for tests and benchmarks)
        self._served: dict[str, int] = {}  # owner -> the last call that took its texts

    async def embed(
        self, texts: Sequence[str], *, owner: str = ""
    ) -> tuple[np.ndarray, dict[str, float]]:
        """The texts' vectors and timings: `embedding.wait` (queued behind other calls) and
        `embedding.model` (this caller's share of the model's time)."""
        ask = _Ask(texts, time.perf_counter(), owner)
        self._waiting.append(ask)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await asyncio.shield(ask.done)  # a cancelled job leaves the call to the others

    async def _drain(self) -> None:
        while self._waiting:
            taken = self._take()
            texts = [t for ask in taken for t in ask.texts]
            started = time.perf_counter()
            try:
                loop = asyncio.get_running_loop()
                vectors = await loop.run_in_executor(self._thread, self._call, texts)
            except Exception as exc:  # every job in the call sees the model's error
                for ask in taken:
                    if not ask.done.done():
                        ask.done.set_exception(exc)
                continue
            spent = time.perf_counter() - started
            at = 0
            for ask in taken:
                n = len(ask.texts)
                timings = {
                    "embedding.model": spent * n / max(1, len(texts)),
                    "embedding.wait": started - ask.asked,
                }
                if not ask.done.done():
                    ask.done.set_result((vectors[at : at + n], timings))
                at += n

    def _take(self) -> list[_Ask]:
        """The next call's requests: owners in turn, up to `max_texts` (always at least one)."""
        queued: dict[str, deque[_Ask]] = {}
        for ask in self._waiting:  # dicts keep the order owners first asked in
            queued.setdefault(ask.owner, deque()).append(ask)
        # Served longest ago first (never: first of all); among equals, first asked first.
        order = sorted(queued, key=lambda owner: self._served.get(owner, -1))
        turns = {owner: queued[owner] for owner in order}
        taken: list[_Ask] = []
        count = 0
        while turns:
            for owner in list(turns):
                asks = turns[owner]
                if taken and count + len(asks[0].texts) > self._max_texts:
                    del turns[owner]  # its next request waits for the next call
                    continue
                ask = asks.popleft()
                taken.append(ask)
                count += len(ask.texts)
                if not asks:
                    del turns[owner]
        for ask in taken:
            self._served[ask.owner] = self.calls
        if len(self._served) > 10_000:  # owners come and go: forget the oldest
            for owner in sorted(self._served, key=self._served.__getitem__)[:5_000]:
                del self._served[owner]
        chosen = {id(ask) for ask in taken}
        self._waiting = [ask for ask in self._waiting if id(ask) not in chosen]
        return taken

    def _call(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            self.calls += 1
            return np.asarray(self._embedder.embed(texts))
