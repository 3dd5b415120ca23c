"""Whether an upstream's answer has the shape its endpoint promises, and its error object.

An OpenAI-compatible server that answers 200 with something else (an HTML page from a proxy,
a truncated body, an object without `choices`, fewer vectors than inputs) is not answering
the request: the caller makes that the line's error instead of writing garbage as output.
The checks are the fields a client of the answer relies on, not the whole OpenAI schema:
servers add fields freely and leave optional ones out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prepshelf.domain.upstreams import Endpoint

_ERROR_FIELDS = ("message", "type", "param", "code")


def check_answer(
    endpoint: Endpoint, request: Mapping[str, Any], answer: Mapping[str, Any]
) -> str | None:
    """None when `answer` fits `endpoint`, else what is wrong with it (one short sentence)."""
    if endpoint == "/v1/chat/completions":
        return _choices(answer, lambda c: isinstance(c.get("message"), Mapping), "a message")
    if endpoint == "/v1/completions":
        return _choices(answer, lambda c: isinstance(c.get("text"), str), "a text")
    if endpoint == "/v1/embeddings":
        return _embeddings(request, answer)
    return _transcription(answer)


def error_object(raw: bytes) -> dict[str, Any] | None:
    """The OpenAI-shaped `{"error": {...}}` in an answer's body, reduced to its four fields
    (strings or null), or None when the body holds no such object."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return {"message": error, "type": None, "param": None, "code": None}
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    return {k: (None if error.get(k) is None else str(error[k])[:1000]) for k in _ERROR_FIELDS}


def _choices(answer: Mapping[str, Any], ok: Any, what: str) -> str | None:
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices:
        return "the answer has no `choices` list"
    if not all(isinstance(c, Mapping) and ok(c) for c in choices):
        return f"a choice in the answer has no {what}"
    return None


def _embeddings(request: Mapping[str, Any], answer: Mapping[str, Any]) -> str | None:
    data = answer.get("data")
    if not isinstance(data, list):
        return "the answer has no `data` list"
    raw_input = request.get("input")
    expected = (
        len(raw_input)
        if isinstance(raw_input, list) and raw_input and isinstance(raw_input[0], (str, list))
        else 1
    )
    if len(data) != expected:
        return f"the answer has {len(data)} embeddings for {expected} inputs"
    for item in data:
        vector = item.get("embedding") if isinstance(item, Mapping) else None
        if isinstance(vector, str):
            continue  # encoding_format=base64
        if not isinstance(vector, list) or not vector:
            return "an embedding in the answer is not a list of numbers"
        if not all(_is_number(x) for x in vector):
            return "an embedding in the answer is not a list of numbers"
    return None


def _transcription(answer: Mapping[str, Any]) -> str | None:
    if not isinstance(answer.get("text"), str):
        return "the answer has no `text`"
    segments = answer.get("segments")
    if segments is None:
        return None
    if not isinstance(segments, list):
        return "the answer's `segments` is not a list"
    for seg in segments:
        if not isinstance(seg, Mapping) or not isinstance(seg.get("text"), str):
            return "a segment in the answer has no text"
        start: Any = seg.get("start")
        end: Any = seg.get("end")
        if not (_is_number(start) and _is_number(end)):
            return "a segment in the answer has no start/end seconds"
        if not 0 <= float(start) <= float(end):
            return "a segment in the answer ends before it starts"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
