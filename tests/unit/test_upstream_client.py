"""The upstream client against the fake OpenAI-compatible upstream on loopback: every outcome
(ok, retried, failed, gave up, throttled), what the gate is told, and what the record says."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from prepshelf.domain.admission import Admission, Refusal
from prepshelf.domain.upstreams import ModelNotServedError, RateLimits, Upstream, parse_upstreams
from prepshelf.jobs.upstreams import UpstreamClients
from prepshelf.pipeline.upstream_client import (
    AudioFile,
    UpstreamClient,
    UpstreamRequest,
    UpstreamResult,
)
from support import fake_answers
from support.fake_upstream import FakeUpstream, Rule
from support.service import free_port

KEY = "sk-upstream-secret-1234"
CHAT = "/v1/chat/completions"


@dataclass
class RecordingGate:
    """A gate that admits everything (or refuses) and remembers what it was told."""

    refuse_with: Refusal | None = None
    admitted: list[int] = field(default_factory=list)
    finished: list[tuple[int, int | None, bool]] = field(default_factory=list)

    async def admit(self, tokens: int, *, max_wait_s: float | None) -> Admission | Refusal:
        if self.refuse_with is not None:
            return self.refuse_with
        self.admitted.append(tokens)
        now = datetime.now(UTC)
        return Admission(len(self.admitted), "u", tokens, now, now)

    async def finish(self, admission: Admission, *, tokens: int | None, keep_slot: bool) -> None:
        self.finished.append((admission.id, tokens, keep_slot))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=["llama", "whisper", "bge"], api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeUpstream) -> None:
    fake.reset()


def _upstream(url: str, **kw: Any) -> Upstream:
    options: dict[str, Any] = {
        "name": "fake",
        "base_url": url,
        "api_key": SecretStr(KEY),
        "limits": RateLimits(rpm=None, tpm=10_000, max_concurrent=4),
        "timeout_s": 2.0,
        "retries": 3,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "default_max_tokens": 256,
    }
    options.update(kw)
    return Upstream(**options)


def _call(
    upstream: Upstream,
    request: UpstreamRequest,
    gate: RecordingGate | None = None,
    sleeps: list[float] | None = None,
    **kw: Any,
) -> UpstreamResult:
    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    async def run() -> UpstreamResult:
        client = UpstreamClient(upstream, gate=gate, sleep=sleep)
        try:
            return await client.call(request, **kw)
        finally:
            await client.aclose()

    return asyncio.run(run())


def _chat(content: str, **body: Any) -> UpstreamRequest:
    messages = [{"role": "user", "content": content}]
    return UpstreamRequest(CHAT, {"model": "llama", "messages": messages, **body}, "llama-8b")


def test_success_returns_the_answer_and_corrects_the_reservation(fake: FakeUpstream) -> None:
    gate = RecordingGate()
    result = _call(_upstream(fake.url), _chat("Label: great product", max_tokens=50), gate)
    assert result.outcome == "ok" and result.status_code == 200
    text, _ = fake_answers.completion_text("user: Label: great product", 50)
    assert result.body["choices"][0]["message"]["content"] == text
    record = fake.records()[0]
    assert record.authorization == f"Bearer {KEY}" and record.status == 200
    # Reserved prompt + max_tokens; then the upstream's usage, and the slot freed.
    assert gate.admitted == [record.prompt_tokens + 50]
    assert gate.finished == [(1, record.tokens, False)] and result.tokens == record.tokens
    assert result.record.tries == 1 and result.record.retries == 0


def test_429_then_500_are_retried_honouring_retry_after(fake: FakeUpstream) -> None:
    fake.add(
        Rule("status", status=429, headers={"Retry-After": "7"}, contains="retry me"),
        Rule("status", status=500, contains="retry me"),
    )
    gate, sleeps = RecordingGate(), []
    result = _call(_upstream(fake.url), _chat("retry me"), gate, sleeps)
    assert result.outcome == "ok"
    assert [r.status for r in fake.records()] == [429, 500, 200]
    assert sleeps[0] >= 7.0 and sleeps[1] < 7.0  # Retry-After is a floor, then our own backoff
    assert result.record.tries == 3 and result.record.retries == 2
    assert result.record.last_status == 500 and "scripted 500" in str(result.record.last_error)
    # Every try was admitted; refusals cost no tokens, a 5xx keeps its reservation.
    assert len(gate.admitted) == 3
    assert [(t, keep) for _, t, keep in gate.finished][:2] == [(0, False), (None, False)]


def test_a_hanging_upstream_times_out_holds_its_slot_and_is_retried(fake: FakeUpstream) -> None:
    fake.add(Rule("hang", seconds=4.0, contains="slowpoke"))
    gate = RecordingGate()
    result = _call(_upstream(fake.url, timeout_s=0.5), _chat("slowpoke"), gate, [])
    assert result.outcome == "ok" and result.record.tries == 2
    assert (
        result.record.last_error == "no answer within 0.5 s" and result.record.last_status is None
    )
    # The timed-out try may still run upstream: its slot stays held (to its expiry).
    assert gate.finished[0] == (1, None, True)


def test_a_slow_trickle_past_the_timeout_counts_as_a_timeout(fake: FakeUpstream) -> None:
    fake.add(Rule("slow", seconds=0.3, contains="trickle", times=None))
    result = _call(_upstream(fake.url, timeout_s=1.0, retries=1), _chat("trickle"), None, [])
    assert result.outcome == "gave_up" and result.status_code == 504
    assert result.body["error"]["code"] == "upstream_unavailable"
    assert "failed 2 times; last: no answer within 1 s" in result.body["error"]["message"]
    assert len(fake.records()) == 2


def test_a_slow_trickle_within_the_timeout_is_an_answer(fake: FakeUpstream) -> None:
    fake.add(Rule("slow", seconds=0.05, contains="patience"))
    assert _call(_upstream(fake.url), _chat("patience")).outcome == "ok"


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("not_json", "not JSON: <html>"),
        ("truncated_json", "not JSON"),
        ("wrong_shape", "the answer has no `choices` list"),
    ],
)
def test_answers_without_the_promised_shape_fail_the_line_at_once(
    fake: FakeUpstream, kind: str, problem: str
) -> None:
    fake.add(Rule(kind, contains="garbage"))
    result = _call(_upstream(fake.url), _chat("garbage"), None, [])
    assert result.outcome == "failed" and result.status_code == 502
    error = result.body["error"]
    assert error["code"] == "upstream_bad_response" and error["type"] == "server_error"
    assert problem in error["message"] and "`llama-8b`" in error["message"]
    assert fake.url not in error["message"]
    assert len(fake.records()) == 1  # not retried


def test_client_errors_pass_the_upstreams_own_error_through(fake: FakeUpstream) -> None:
    request = UpstreamRequest(CHAT, {"model": "no-such", "messages": []}, "mine")
    result = _call(_upstream(fake.url), request, None, [])
    assert result.outcome == "failed" and result.status_code == 404
    assert result.body == {
        "error": {
            "message": "The model `no-such` does not exist.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }
    assert len(fake.records()) == 1


def test_a_wrong_key_is_the_lines_error_and_the_key_is_never_echoed(fake: FakeUpstream) -> None:
    wrong = _upstream(fake.url, api_key=SecretStr("sk-wrong-key-5678"))
    result = _call(wrong, _chat("echo"), None, [])
    assert result.outcome == "failed" and result.status_code == 401
    assert result.body["error"]["code"] == "invalid_api_key"
    assert "sk-wrong-key-5678" not in json.dumps(result.body)


def test_an_upstream_echoing_the_key_has_it_scrubbed() -> None:
    def echo_auth(request: httpx.Request) -> httpx.Response:
        auth = request.headers["authorization"]
        return httpx.Response(400, json={"error": {"message": f"bad key {auth}", "type": "x"}})

    async def run() -> UpstreamResult:
        upstream = _upstream("http://mock/v1")
        client = UpstreamClient(upstream, transport=httpx.MockTransport(echo_auth))
        try:
            return await client.call(_chat("x"))
        finally:
            await client.aclose()

    result = asyncio.run(run())
    assert result.outcome == "failed" and KEY not in json.dumps(result.body)
    assert result.body["error"]["message"] == "bad key Bearer ***"


def test_transient_faults_past_the_retries_give_up_with_retry_after(fake: FakeUpstream) -> None:
    fake.add(Rule("status", status=429, headers={"Retry-After": "30"}, times=None))
    sleeps: list[float] = []
    result = _call(_upstream(fake.url, retries=2), _chat("busy"), RecordingGate(), sleeps)
    assert result.outcome == "gave_up" and result.status_code == 429
    assert result.retry_after_s == 30.0 and sleeps == [30.0, 30.0]
    assert result.record.tries == 3 and result.record.backoff_s == 60.0
    assert len(fake.records()) == 3


def test_an_unreachable_upstream_gives_up_and_costs_no_tokens() -> None:
    gate = RecordingGate()
    result = _call(_upstream(f"http://127.0.0.1:{free_port()}/v1", retries=1), _chat("x"), gate, [])
    assert result.outcome == "gave_up" and result.status_code == 504
    assert "cannot connect" in str(result.record.last_error)
    assert [t for _, t, _ in gate.finished] == [0, 0] and result.tokens == 0


def test_a_request_over_the_whole_tpm_is_refused_without_sending(fake: FakeUpstream) -> None:
    small = _upstream(fake.url, limits=RateLimits(tpm=100))
    result = _call(small, _chat("hi", max_tokens=500), RecordingGate())
    assert result.outcome == "failed" and result.status_code == 400
    assert result.body["error"]["code"] == "request_too_large"
    assert "at most 100 tokens a minute" in result.body["error"]["message"]
    assert fake.records() == []


def test_a_gate_refusal_past_max_wait_is_throttled_without_sending(fake: FakeUpstream) -> None:
    gate = RecordingGate(refuse_with=Refusal(42.5, ("rpm",)))
    result = _call(_upstream(fake.url), _chat("hi"), gate, max_wait_s=5)
    assert result.outcome == "throttled" and result.status_code == 429
    assert result.retry_after_s == 42.5 and "(rpm)" in result.body["error"]["message"]
    assert fake.records() == [] and result.record.tries == 0


def test_completions_and_embeddings(fake: FakeUpstream) -> None:
    up = _upstream(fake.url)
    request = UpstreamRequest("/v1/completions", {"model": "llama", "prompt": ["a", "b"]}, "l")
    result = _call(up, request)
    assert result.outcome == "ok" and len(result.body["choices"]) == 2
    request = UpstreamRequest("/v1/embeddings", {"model": "bge", "input": ["x", "y", "z"]}, "b")
    result = _call(up, request)
    assert result.outcome == "ok" and len(result.body["data"]) == 3
    fake.add(Rule("short_embeddings"))
    result = _call(up, request, None, [])
    assert result.outcome == "failed"
    assert "the answer has 2 embeddings for 3 inputs" in result.body["error"]["message"]


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "tone.flac"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=300:duration=12",
         "-ac", "1", "-ar", "16000", str(path)],
        check=True,
    )  # fmt: skip
    return path


def test_transcription_uploads_the_audio_and_reads_verbose_json(
    fake: FakeUpstream, audio: Path
) -> None:
    body = {"model": "whisper", "response_format": "verbose_json", "language": "en"}
    file = AudioFile(audio, "segment-00000.flac", "audio/flac")
    request = UpstreamRequest("/v1/audio/transcriptions", body, "whisper", file)
    result = _call(_upstream(fake.url), request, RecordingGate())
    assert result.outcome == "ok"
    expected = fake_answers.transcript_for(audio.read_bytes())
    assert result.body["text"] == fake_answers.transcript_text(expected)
    assert [(s["start"], s["end"]) for s in result.body["segments"]] == [
        (0.0, 5.0),
        (5.0, 10.0),
        (10.0, 12.0),
    ]
    assert result.tokens == 0  # audio is not metered in tokens
    text = _call(_upstream(fake.url), UpstreamRequest(
        "/v1/audio/transcriptions", {**body, "response_format": "text"}, "whisper", file
    ))  # fmt: skip
    assert text.outcome == "ok" and text.body == {"text": fake_answers.transcript_text(expected)}


def test_clients_route_a_model_and_rename_it_for_its_upstream(fake: FakeUpstream) -> None:
    config = parse_upstreams(
        {
            "upstreams": {
                "gpu": {
                    "base_url": fake.url,
                    "endpoints": ["/v1/chat/completions"],
                    "models": {"llama-8b": {"upstream_model": "llama"}},
                }
            }
        },
        source="test",
        environ={},
    )
    client = UpstreamClient(config.upstreams[0])
    clients = UpstreamClients(config, {"gpu": client})
    chosen, request = clients.prepare(
        "llama-8b", CHAT, {"model": "llama-8b", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert chosen is client and request.body["model"] == "llama" and request.model_id == "llama-8b"
    with pytest.raises(ModelNotServedError, match="`llama-8b`"):
        clients.prepare("llama-8b", "/v1/embeddings", {"input": "x"})
    asyncio.run(clients.aclose())
