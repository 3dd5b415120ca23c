"""Chat batches against the fake upstream: request lines, the upstream configuration, and
reading a batch's results through the official SDK (tests/integration and tests/faults)."""

from __future__ import annotations

import hashlib
import io
import json
import time
from typing import Any

from support.fake_upstream import FakeUpstream

MODEL = "llama-fake"
FINAL = {"completed", "failed", "expired", "cancelled"}


def upstream_config(url: str, *, rpm: int, max_concurrent: int) -> dict[str, Any]:
    return {
        "upstreams": {
            "gpu": {
                "base_url": url,
                "endpoints": ["/v1/chat/completions", "/v1/completions"],
                "rpm": rpm,
                "max_concurrent": max_concurrent,
                "timeout_s": 20,
                "retries": 4,
                "backoff_base_s": 0.2,
                "backoff_max_s": 2,
                "models": [MODEL],
            }
        }
    }


def messages(i: int, tag: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{tag} ticket {i}: summarise the customer's issue"}]


def chat_line(i: int, tag: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": f"{tag}-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": MODEL, "messages": messages(i, tag), "max_tokens": 30, **body},
    }


def create(client: Any, lines: list[dict[str, Any]], endpoint: str = "/v1/chat/completions") -> Any:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    f = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h")


def wait(client: Any, batch_id: str, timeout_s: float = 240, until: Any = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if (until or (lambda b: b.status in FINAL))(batch):
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} did not get there: {batch}")


def lines_of(client: Any, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines() if x]


def sends(fake: FakeUpstream, line: dict[str, Any]) -> int:
    """How many times the fake received this line's request (bodies are unique per line)."""
    body = json.dumps(line["body"], separators=(",", ":")).encode()
    digest = hashlib.sha256(body).hexdigest()
    return sum(1 for r in fake.records() if r.body_sha256 == digest)
