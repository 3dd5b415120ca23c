"""The worker's model queue: jobs asking while a call runs share the next call, each gets its
own vectors back, and an error reaches every job of its call and no other."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np

from prepshelf.jobs.model_queue import ModelQueue


class SlowEmbedder:
    """Vectors that say which text they are for; each call takes `delay_s`."""

    model_id, dimensions, max_input_tokens = "slow", 2, 254

    def __init__(self, delay_s: float = 0.05, fail_on: str | None = None) -> None:
        self.delay_s, self.fail_on = delay_s, fail_on
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            self.calls.append(list(texts))
        time.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError(f"model failed on {self.fail_on}")
        return np.array([[float(t.split("-")[1]), len(texts)] for t in texts], dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [1 for _ in texts]


def test_jobs_asking_during_a_call_share_the_next_one() -> None:
    model = SlowEmbedder()
    queue = ModelQueue(model, max_texts=256)  # type: ignore[arg-type]

    async def run() -> list[tuple[np.ndarray, dict[str, float]]]:
        first = asyncio.ensure_future(queue.embed(["t-0", "t-100"]))
        await asyncio.sleep(0.01)  # its call is running now
        rest = [queue.embed([f"t-{i}", f"t-{i + 100}"]) for i in range(1, 10)]
        return [await first, *await asyncio.gather(*rest)]

    results = asyncio.run(run())
    # The first job's call starts at once; the other nine wait for it and go in one call.
    assert [len(c) for c in model.calls] == [2, 18]
    for i, (vectors, timings) in enumerate(results):
        assert vectors[:, 0].tolist() == [i, i + 100]
        assert timings["embedding.model"] > 0 and timings["embedding.wait"] >= 0
    assert queue.calls == 2


def test_a_call_takes_at_most_max_texts_but_never_splits_a_job() -> None:
    model = SlowEmbedder()
    queue = ModelQueue(model, max_texts=5)  # type: ignore[arg-type]

    async def run() -> None:
        await asyncio.gather(*(queue.embed([f"t-{i}"] * 3) for i in range(4)))

    asyncio.run(run())
    assert [len(c) for c in model.calls] == [3, 3, 3, 3]


def test_an_error_reaches_the_jobs_of_its_call_only() -> None:
    model = SlowEmbedder(fail_on="t-7")
    queue = ModelQueue(model, max_texts=2)  # type: ignore[arg-type]

    async def run() -> list[object]:
        return await asyncio.gather(
            *(queue.embed([f"t-{i}"]) for i in range(1, 9)), return_exceptions=True
        )

    results = asyncio.run(run())
    failed = [i + 1 for i, r in enumerate(results) if isinstance(r, RuntimeError)]
    # All asked at once: calls [1, 2], [3, 4], [5, 6], [7, 8]; only 8 shared 7's call.
    assert failed == [7, 8]
    assert [len(c) for c in model.calls] == [2, 2, 2, 2]


def test_another_owners_request_rides_the_next_call_ahead_of_a_backlog() -> None:
    """One project's backlog of checkpoints does not fill the next calls before another
    project's single text: owners take turns within each call."""
    model = SlowEmbedder()
    queue = ModelQueue(model, max_texts=4)  # type: ignore[arg-type]

    async def run() -> None:
        first = asyncio.ensure_future(queue.embed(["t-0"], owner="big"))
        await asyncio.sleep(0.01)  # its call is running; everything below waits for the next
        backlog = [queue.embed([f"t-{i}", f"t-{i + 100}"], owner="big") for i in range(1, 5)]
        small = queue.embed(["t-999"], owner="small")
        await asyncio.gather(first, *backlog, small)

    asyncio.run(run())
    # FIFO would give [t-0], [1, 101, 2, 102], [3, 103, 4, 104], [999]: the small project's
    # text would wait for the whole backlog. Owners in turn (the one not served yet first)
    # put it in the second call.
    assert model.calls[1] == ["t-999", "t-1", "t-101"]
    assert sorted(t for call in model.calls for t in call) == sorted(
        ["t-0", "t-999", *(f"t-{i}" for i in range(1, 5)), *(f"t-{i + 100}" for i in range(1, 5))]
    )
    assert max(len(c) for c in model.calls) <= 4


def test_an_owner_not_served_yet_goes_first_even_behind_a_large_request() -> None:
    """A request larger than a call must not keep another project out: the owner served
    longest ago starts the next call."""
    model = SlowEmbedder()
    queue = ModelQueue(model, max_texts=4)  # type: ignore[arg-type]

    async def run() -> None:
        first = asyncio.ensure_future(queue.embed([f"t-{i}" for i in range(5)], owner="big"))
        await asyncio.sleep(0.01)
        backlog = [queue.embed([f"t-{i}" for i in range(k, k + 5)], owner="big") for k in (10, 20)]
        small = queue.embed(["t-999"], owner="small")
        await asyncio.gather(first, *backlog, small)

    asyncio.run(run())
    # First come would run [0-4], [10-14], [20-24], [999]; the small project goes second.
    assert model.calls[1] == ["t-999"]
    assert [len(c) for c in model.calls] == [5, 1, 5, 5]
