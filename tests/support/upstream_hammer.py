"""One "worker process" sending chat requests to an upstream through the shared rate gate.

    python tests/support/upstream_hammer.py DATABASE_URL MODEL COUNT SIZE LABEL

Reads the upstream configuration from PREPSHELF_UPSTREAMS (as a worker does), builds the
per-process clients (`UpstreamClients.build`) and sends COUNT requests, up to 6 at once (more
than any test's max_concurrent, so the gate has to hold some back). SIZE "big" or "small"
picks long or short prompts. Prints one JSON line: every result's outcome and tries, and how
often the gate refused for each limit.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from typing import Any

from prepshelf.jobs.upstreams import UpstreamClients
from prepshelf.settings import Settings
from prepshelf.store import upstream_admissions
from prepshelf.store.db import open_pool
from prepshelf.upstream_config import load_upstreams

_WORDS = ("the", "river", "carried", "stones", "past", "the", "old", "mill", "at", "dusk")


def prompt(label: str, index: int, size: str) -> str:
    words = 270 if size == "big" else 3
    body = " ".join(_WORDS[(index + k) % len(_WORDS)] for k in range(words))
    return f"{label}-{index}: {body}"


async def main(url: str, model: str, count: int, size: str, label: str) -> dict[str, Any]:
    refused: collections.Counter[str] = collections.Counter()
    real_try_admit = upstream_admissions.try_admit

    async def counting_try_admit(*args: Any, **kwargs: Any) -> Any:
        verdict = await real_try_admit(*args, **kwargs)
        for limit in getattr(verdict, "blocked_by", ()):
            refused[limit] += 1
        return verdict

    upstream_admissions.try_admit = counting_try_admit  # type: ignore[assignment]
    settings = Settings(upstream_poll_s=0.2)
    pool = await open_pool(url, min_size=1, max_size=3)
    clients = UpstreamClients.build(
        load_upstreams(settings), pool=pool, settings=settings, holder=label
    )
    at_once = asyncio.Semaphore(6)

    async def one(index: int) -> dict[str, Any]:
        body = {
            "messages": [{"role": "user", "content": prompt(label, index, size)}],
            "max_tokens": 40,
        }
        client, request = clients.prepare(model, "/v1/chat/completions", body)
        async with at_once:
            result = await client.call(request)
        return {"outcome": result.outcome, "tries": result.record.tries, "tokens": result.tokens}

    try:
        results = await asyncio.gather(*(one(i) for i in range(count)))
    finally:
        await clients.aclose()
        await pool.close()
    return {"label": label, "results": results, "refused": dict(refused)}


if __name__ == "__main__":
    url, model, count, size, label = sys.argv[1:6]
    print(json.dumps(asyncio.run(main(url, model, int(count), size, label))), flush=True)
