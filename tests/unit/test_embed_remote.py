"""The remote embedder against httpx.MockTransport: batching, retries, Retry-After, errors."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from prepshelf.errors import FileProcessingError, TransientError
from prepshelf.pipeline.embed_remote import RemoteEmbedder, parse_retry_after

URL = "http://vendor.test/v1"
DIMS = 4


def _ok(request: httpx.Request) -> httpx.Response:
    texts = json.loads(request.content)["input"]
    data = [
        {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0, float(i)]}
        for i, t in enumerate(texts)
    ]
    return httpx.Response(200, json={"object": "list", "data": data})


def _embedder(handler, sleeps: list[float] | None = None, **kw) -> RemoteEmbedder:  # type: ignore[no-untyped-def]
    opts = {"retries": 3, "batch_size": 2, "concurrency": 2, "backoff_base_s": 0.01}
    opts.update(kw)
    return RemoteEmbedder(
        base_url=URL,
        model="m",
        dimensions=DIMS,
        max_input_tokens=100,
        api_key="sk-secret-key",
        transport=httpx.MockTransport(handler),
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
        **opts,
    )


def test_batches_keep_order_and_normalise() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer sk-secret-key"
        assert request.url == f"{URL}/embeddings"
        sizes.append(len(json.loads(request.content)["input"]))
        return _ok(request)

    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    out = _embedder(handler).embed(texts)
    assert sorted(sizes) == [1, 2, 2]
    assert out.shape == (5, DIMS) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # Row i belongs to text i: the first component grows with the text's length.
    assert list(np.argsort(out[:, 0] / out[:, 1])) == [0, 1, 2, 3, 4]


def test_retries_429_honouring_retry_after_then_succeeds() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "7"}, text="slow down"),
            httpx.Response(503, text="busy"),
        ]
    )
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or _ok(request)

    emb = _embedder(handler, sleeps, batch_size=10)
    assert emb.embed(["x"]).shape == (1, DIMS)
    assert sleeps[0] >= 7.0 and sleeps[1] < 7.0
    report = emb.last_report
    assert report is not None and report.retries == 2 and report.last_status == 503


def test_timeouts_and_connection_errors_are_retried_then_transient() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused") if calls % 2 else httpx.ReadTimeout("slow")

    with pytest.raises(TransientError) as info:
        _embedder(handler, retries=2).embed(["x"])
    assert calls == 3
    assert "failed after 3 attempts" in info.value.message and URL in info.value.message


def test_429_after_last_retry_carries_retry_after() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "12"})

    with pytest.raises(TransientError) as info:
        _embedder(handler, retries=1).embed(["x"])
    assert info.value.retry_after_s == 12.0  # type: ignore[attr-defined]
    assert "429" in info.value.message


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(401, json={"error": {"message": "bad key"}}),
        httpx.Response(400, json={"error": {"message": "too long"}}),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0, 2.0]}]}),
        httpx.Response(200, json={"data": []}),
    ],
)
def test_permanent_faults_are_not_retried(answer: httpx.Response) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return answer

    with pytest.raises(FileProcessingError) as info:
        _embedder(handler).embed(["x"])
    assert not isinstance(info.value, TransientError)
    assert calls == 1
    assert info.value.code == "server_error"
    assert f"{URL}/embeddings" in info.value.message and "attempt 1" in info.value.message
    assert str(answer.status_code) in info.value.message
    assert "sk-secret-key" not in info.value.message


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
