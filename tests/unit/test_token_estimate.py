"""Token estimates before a call and the usage read after it.

The fake upstream counts its `usage` with its own code (tests/support/fake_answers.py), so an
estimate that equals it for OpenAI-shaped requests is checked against an independent count.
"""

from __future__ import annotations

import random

from prepshelf.pipeline.token_estimate import (
    IMAGE_PART_TOKENS,
    count_text,
    estimate_tokens,
    prompt_tokens,
    usage_tokens,
)
from support import fake_answers

_WORDS = ["river", "Straße", "東京", "🙂", "<|endoftext|>", "data", "\n", "x" * 40, "42"]


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 30)))


def test_chat_prompt_tokens_match_the_upstreams_own_count() -> None:
    rng = random.Random(7)
    for _ in range(200):
        messages = [
            {"role": rng.choice(["system", "user", "assistant"]), "content": _text(rng)}
            for _ in range(rng.randint(1, 5))
        ]
        if rng.random() < 0.3:
            messages[0]["name"] = "alice"
        body = {"model": "m", "messages": messages}
        assert prompt_tokens("/v1/chat/completions", body) == fake_answers.chat_prompt_tokens(
            messages
        )


def test_chat_reserves_the_completion_it_allows() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    prompt = prompt_tokens("/v1/chat/completions", body)
    assert prompt == 3 + 3 + count_text("user") + count_text("hello")
    chat = "/v1/chat/completions"
    assert estimate_tokens(chat, body, default_max_tokens=500) == prompt + 500
    assert estimate_tokens(chat, {**body, "max_tokens": 20}, default_max_tokens=500) == prompt + 20
    newer = {**body, "max_tokens": 20, "max_completion_tokens": 7, "n": 3}
    assert estimate_tokens(chat, newer, default_max_tokens=500) == prompt + 21
    # Nonsense limits fall back to the default rather than reserving nothing.
    odd = {**body, "max_tokens": -4, "n": "two"}
    assert estimate_tokens(chat, odd, default_max_tokens=500) == prompt + 500


def test_chat_parts_tools_and_images_are_counted() -> None:
    parts = [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    body = {
        "messages": [{"role": "user", "content": parts}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    plain = prompt_tokens("/v1/chat/completions", {"messages": [{"role": "user", "content": ""}]})
    total = prompt_tokens("/v1/chat/completions", body)
    assert total > plain + count_text("describe") + IMAGE_PART_TOKENS


def test_completions_count_every_prompt_form() -> None:
    endpoint = "/v1/completions"
    assert prompt_tokens(endpoint, {"prompt": "hello world"}) == count_text("hello world")
    assert prompt_tokens(endpoint, {"prompt": ["a", "b c"]}) == count_text("a") + count_text("b c")
    assert prompt_tokens(endpoint, {"prompt": [1, 2, 3]}) == 3
    assert prompt_tokens(endpoint, {"prompt": [[1, 2], [3]]}) == 3
    two = {"prompt": ["a", "b"], "max_tokens": 10, "n": 2, "best_of": 3}
    assert estimate_tokens(endpoint, two, default_max_tokens=99) == 2 + 10 * 3 * 2


def test_embeddings_count_inputs_and_reserve_no_completion() -> None:
    endpoint = "/v1/embeddings"
    assert estimate_tokens(endpoint, {"input": "a b"}, default_max_tokens=99) == count_text("a b")
    assert estimate_tokens(endpoint, {"input": [[5, 6, 7], "x"]}, default_max_tokens=9) == 3 + 1
    assert estimate_tokens("/v1/audio/transcriptions", {"model": "w"}, default_max_tokens=9) == 0


def test_any_shape_is_counted_never_refused() -> None:
    for body in (
        {},
        {"messages": None},
        {"messages": "hi"},
        {"messages": [1, None, {"x": [1]}]},
        {"prompt": {"weird": True}},
        {"input": None},
        {"messages": [{"content": 5}]},
    ):
        for endpoint in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            assert estimate_tokens(endpoint, body, default_max_tokens=1) >= 0  # type: ignore[arg-type]


def test_usage_is_read_in_every_shape_servers_send() -> None:
    assert (
        usage_tokens({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
        == 7
    )
    assert usage_tokens({"usage": {"prompt_tokens": 3, "completion_tokens": 4}}) == 7
    assert usage_tokens({"usage": {"input_tokens": 5, "output_tokens": 1, "type": "tokens"}}) == 6
    assert usage_tokens({"usage": {"type": "duration", "seconds": 12}}) is None
    assert usage_tokens({"usage": None}) is None
    assert usage_tokens({"usage": {"total_tokens": True}}) is None
    assert usage_tokens({}) is None and usage_tokens([]) is None
