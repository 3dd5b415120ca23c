"""A small server-sent-events reader for tests (httpx streaming, one frame at a time)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Frame:
    id: int | None = None
    event: str | None = None
    data: dict[str, Any] | None = None
    comments: list[str] = field(default_factory=list)


def frames(response: httpx.Response) -> Iterator[Frame]:
    """Yield each frame (events and comment-only frames) until the server ends the stream."""
    current, lines = Frame(), 0
    for line in response.iter_lines():
        if line == "":
            if lines:
                yield current
            current, lines = Frame(), 0
            continue
        lines += 1
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "":
            current.comments.append(value)
        elif name == "id":
            current.id = int(value)
        elif name == "event":
            current.event = value
        elif name == "data":
            current.data = json.loads(value)


def events(response: httpx.Response) -> Iterator[Frame]:
    """Only the frames that carry an event."""
    return (f for f in frames(response) if f.id is not None)
