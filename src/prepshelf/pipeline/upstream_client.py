"""Calls to one OpenAI-compatible upstream, each through the shared rate gate, with retries.

One `UpstreamClient` per upstream per worker process, built once (it holds an httpx
connection pool). `call()` sends one request (a batch line, a transcription segment) and always
returns an `UpstreamResult`; it raises only when the caller is cancelled or the gate's
database fails. Every try, retries included, is first admitted by the gate (the upstream
counts every request it receives, so every try counts against its limits).

How an answer is judged (the rules of `http_retry`):

- 2xx with the shape the endpoint promises: `ok`; the upstream's `usage` corrects the
  tokens reserved at admission.
- timeout (the whole request, `timeout_s`, first byte to last), connection error, 408/425/
  429/5xx: tried again after `backoff_delay` (exponential, jittered, never sooner than the
  upstream's Retry-After), up to `retries` more times; then `gave_up`, with the last fault
  and Retry-After, so the job can put the work back on the shelf instead of failing it.
- any other 4xx: `failed`, with the upstream's own OpenAI-shaped error when it sent one.
- 2xx that is not JSON, or JSON without the endpoint's shape: `failed` with status 502
  (`upstream_bad_response`): a server that answers nonsense will not answer better next time.
- more tokens than the upstream's tpm allows in a whole minute: `failed` with status 400
  (`request_too_large`), without sending anything.
- the gate would make the call wait longer than `max_wait_s`: `throttled`, with the wait, so
  a job can give its worker to other work meanwhile.

Error messages name the model as the caller knows it, never the upstream's URL; the key is
scrubbed from anything an upstream echoes. `CallRecord` says what the call went through
(tries, retries, last status and error, time waiting for the gate and backing off).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from prepshelf import __version__
from prepshelf.domain.admission import Admission, ExceedsLimitError, Refusal, check_fits
from prepshelf.domain.upstreams import Endpoint, Upstream
from prepshelf.pipeline.http_retry import backoff_delay, is_transient_status, parse_retry_after
from prepshelf.pipeline.token_estimate import estimate_tokens, usage_tokens
from prepshelf.pipeline.upstream_answers import check_answer, error_object

Outcome = Literal["ok", "failed", "gave_up", "throttled"]
MAX_ANSWER_BYTES = 64 * 1024 * 1024
_TEXT_FORMATS = frozenset({"text", "srt", "vtt"})
_CONNECT_TIMEOUT_S = 10.0


class RateGate(Protocol):
    """Admission to one upstream's shared limits (jobs/upstreams.py: SharedRateGate)."""

    async def admit(self, tokens: int, *, max_wait_s: float | None) -> Admission | Refusal:
        """Wait (holding no database connection) until admitted; a Refusal only when the
        wait would pass `max_wait_s`."""
        ...

    async def finish(self, admission: Admission, *, tokens: int | None, keep_slot: bool) -> None:
        """Record the request's real tokens (None keeps the reservation) and free its slot."""
        ...


@dataclass(frozen=True)
class AudioFile:
    path: Path  # read anew for every try
    filename: str
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class UpstreamRequest:
    endpoint: Endpoint
    body: Mapping[str, Any]  # the JSON body, or a transcription's form fields
    model_id: str  # the model as the client named it (messages use this name)
    audio: AudioFile | None = None  # /v1/audio/transcriptions only


@dataclass(frozen=True)
class CallRecord:
    tries: int = 0  # requests sent to the upstream
    retries: int = 0  # tries after the first
    last_status: int | None = None  # HTTP status of the last fault (None: no answer at all)
    last_error: str | None = None  # the last fault, retried or final (None: none happened)
    gate_wait_s: float = 0.0  # time waiting for the shared limits
    backoff_s: float = 0.0  # time sleeping between tries


@dataclass(frozen=True)
class UpstreamResult:
    outcome: Outcome
    status_code: int  # 200; the upstream's status; 502 bad answer; 504 no answer; 429 throttled
    body: dict[str, Any]  # the answer (text formats as {"text": …}), else {"error": {…}}
    tokens: int  # what the limiter finally holds for the call (usage, else the estimate)
    record: CallRecord
    retry_after_s: float | None = None  # gave_up/throttled: come back no sooner than this


@dataclass(frozen=True)
class _Fault:
    message: str
    status: int | None  # the upstream's status, 502 for a bad answer; None: no answer
    transient: bool
    retry_after_s: float | None = None
    raw: bytes = b""  # the answer's body, when there was one


@dataclass(frozen=True)
class _Try:
    answer: dict[str, Any] | None = None
    fault: _Fault | None = None
    spent: int | None = None  # tokens the try cost; None: unknown, the reservation stays
    keep_slot: bool = False


class UpstreamClient:
    def __init__(
        self,
        upstream: Upstream,
        *,
        gate: RateGate | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.upstream = upstream
        self._gate = gate
        self._sleep = sleep
        self._secret = upstream.api_key.get_secret_value() if upstream.api_key else None
        headers = {"User-Agent": f"prepshelf/{__version__}"}
        if self._secret:
            headers["Authorization"] = f"Bearer {self._secret}"
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(
                upstream.timeout_s, connect=min(_CONNECT_TIMEOUT_S, upstream.timeout_s)
            ),
            limits=httpx.Limits(max_connections=upstream.limits.max_concurrent or 100),
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def estimate(self, request: UpstreamRequest) -> int:
        """Tokens the request reserves at admission (see token_estimate)."""
        return estimate_tokens(
            request.endpoint, request.body, default_max_tokens=self.upstream.default_max_tokens
        )

    async def call(
        self,
        request: UpstreamRequest,
        *,
        max_wait_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> UpstreamResult:
        """Send `request`, retrying transient faults; see the module's docstring."""
        tokens = self.estimate(request)
        record = CallRecord()
        try:
            check_fits(self.upstream.limits, tokens)
        except ExceedsLimitError as exc:
            return self._failed(
                400,
                _error(
                    f"This request to `{request.model_id}` needs about {exc.tokens} tokens "
                    f"(prompt plus the completion it allows); its upstream takes at most "
                    f"{exc.tpm} tokens a minute. Lower max_tokens or shorten the input.",
                    "invalid_request_error",
                    "request_too_large",
                ),
                tokens,
                record,
            )
        attempt = 0
        while True:
            attempt += 1
            admission: Admission | None = None
            if self._gate is not None:
                started = time.monotonic()
                verdict = await self._gate.admit(tokens, max_wait_s=max_wait_s)
                record = _bump(record, gate_wait_s=time.monotonic() - started)
                if isinstance(verdict, Refusal):
                    return self._throttled(request, verdict, tokens, record)
                admission = verdict
            record = _bump(record, tries=1, retries=1 if attempt > 1 else 0)
            result = await self._try(request, admission, headers)
            used = tokens if result.spent is None else result.spent
            if result.answer is not None:
                return UpstreamResult("ok", 200, result.answer, used, record)
            fault = result.fault
            assert fault is not None
            record = replace(record, last_status=fault.status, last_error=fault.message)
            if not fault.transient:
                status = fault.status or 502
                return self._failed(status, self._error_body(request, fault), used, record)
            if attempt > self.upstream.retries:
                return UpstreamResult(
                    "gave_up",
                    fault.status or 504,
                    _error(
                        f"The upstream of `{request.model_id}` failed {attempt} times; "
                        f"last: {fault.message}",
                        "server_error",
                        "upstream_unavailable",
                    ),
                    used,
                    record,
                    fault.retry_after_s,
                )
            delay = backoff_delay(
                attempt,
                base_s=self.upstream.backoff_base_s,
                max_s=self.upstream.backoff_max_s,
                retry_after_s=fault.retry_after_s,
            )
            record = _bump(record, backoff_s=delay)
            await self._sleep(delay)

    # --- one try ---------------------------------------------------------------------

    async def _try(
        self,
        request: UpstreamRequest,
        admission: Admission | None,
        headers: Mapping[str, str] | None,
    ) -> _Try:
        """One request; its admission ends here, whatever happens (cancellation included)."""
        result = _Try(keep_slot=True)  # until we know the call ended, it may run upstream
        try:
            result = await self._exchange(request, headers)
            return result
        finally:
            if admission is not None and self._gate is not None:
                await asyncio.shield(
                    self._gate.finish(admission, tokens=result.spent, keep_slot=result.keep_slot)
                )

    async def _exchange(self, request: UpstreamRequest, headers: Mapping[str, str] | None) -> _Try:
        try:
            async with asyncio.timeout(self.upstream.timeout_s):
                status, raw, retry_after = await self._send(request, headers)
        except (TimeoutError, httpx.TimeoutException):
            # It may still be running upstream: its slot stays held until it expires.
            fault = _Fault(f"no answer within {self.upstream.timeout_s:g} s", None, True)
            return _Try(fault=fault, keep_slot=True)
        except httpx.ConnectError as exc:
            fault = _Fault(f"cannot connect ({type(exc).__name__})", None, True)
            return _Try(fault=fault, spent=0)  # it never arrived
        except httpx.TransportError as exc:
            return _Try(fault=_Fault(f"connection failed ({type(exc).__name__})", None, True))
        except _TooLarge:
            return _Try(fault=_Fault("the answer is larger than 64 MiB", 502, False))
        if status >= 400:
            # A refusal costs the upstream no tokens; a 5xx may have done the work.
            message = f"HTTP {status}: {self._scrub(_error_text(raw))}"
            fault = _Fault(message, status, is_transient_status(status), retry_after, raw)
            return _Try(fault=fault, spent=0 if status < 500 else None)
        if not 200 <= status < 300:
            return _Try(fault=_Fault(f"unexpected HTTP {status}", 502, False))
        answer, problem = _decode(request, raw)
        if answer is None:
            return _Try(fault=_Fault(self._scrub(problem or "no answer"), 502, False))
        return _Try(answer=answer, spent=usage_tokens(answer))

    async def _send(
        self, request: UpstreamRequest, headers: Mapping[str, str] | None
    ) -> tuple[int, bytes, float | None]:
        url = self.upstream.url(request.endpoint)
        extra = dict(headers or {})
        if request.audio is None:
            stream = self._http.stream("POST", url, json=dict(request.body), headers=extra)
            return await _read(stream)
        fields = {k: _form_value(v) for k, v in request.body.items()}
        with request.audio.path.open("rb") as fh:
            files = {"file": (request.audio.filename, fh, request.audio.content_type)}
            stream = self._http.stream("POST", url, data=fields, files=files, headers=extra)
            return await _read(stream)

    # --- results ---------------------------------------------------------------------

    def _error_body(self, request: UpstreamRequest, fault: _Fault) -> dict[str, Any]:
        upstream_error = error_object(fault.raw)
        if upstream_error is not None:
            message = self._scrub(str(upstream_error.get("message") or fault.message))
            return {"error": {**upstream_error, "message": message}}
        if fault.status == 502:
            return _error(
                f"The upstream of `{request.model_id}` answered badly: {fault.message}",
                "server_error",
                "upstream_bad_response",
            )
        return _error(
            f"The upstream of `{request.model_id}` refused the request: {fault.message}",
            "invalid_request_error",
            None,
        )

    @staticmethod
    def _failed(
        status: int, body: dict[str, Any], tokens: int, record: CallRecord
    ) -> UpstreamResult:
        return UpstreamResult("failed", status, body, tokens, record)

    @staticmethod
    def _throttled(
        request: UpstreamRequest, refusal: Refusal, tokens: int, record: CallRecord
    ) -> UpstreamResult:
        limits = ", ".join(refusal.blocked_by)
        body = _error(
            f"The upstream of `{request.model_id}` is at its limits ({limits}); "
            f"room again in {refusal.wait_s:.1f} s",
            "rate_limit_error",
            "rate_limit_exceeded",
        )
        return UpstreamResult("throttled", 429, body, tokens, record, refusal.wait_s)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


class _TooLarge(Exception):
    pass


async def _read(stream: Any) -> tuple[int, bytes, float | None]:
    """Status, body (at most MAX_ANSWER_BYTES) and Retry-After of one streamed answer."""
    async with stream as resp:
        parts: list[bytes] = []
        size = 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise _TooLarge()
            parts.append(chunk)
        return resp.status_code, b"".join(parts), parse_retry_after(resp.headers.get("retry-after"))


def _decode(request: UpstreamRequest, raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The answer as a dict, or why it is not one the endpoint promises."""
    if request.endpoint == "/v1/audio/transcriptions" and (
        request.body.get("response_format") in _TEXT_FORMATS
    ):
        try:
            return {"text": raw.decode("utf-8")}, None
        except UnicodeDecodeError:
            return None, "the transcript is not UTF-8 text"
    try:
        answer = json.loads(raw)
    except (ValueError, RecursionError):
        return None, f"not JSON: {_error_text(raw)}"
    if not isinstance(answer, dict):
        return None, f"a JSON {type(answer).__name__}, not an object"
    problem = check_answer(request.endpoint, request.body, answer)
    return (None, problem) if problem else (answer, None)


def _error_text(raw: bytes) -> str:
    error = error_object(raw)
    if error is not None and error.get("message"):
        return str(error["message"])[:300]
    text = raw.decode("utf-8", errors="replace").strip().replace("\n", " ")
    return text[:200] or "(empty body)"


def _error(message: str, error_type: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _form_value(value: Any) -> str | list[str]:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


def _bump(record: CallRecord, **add: float) -> CallRecord:
    return replace(record, **{k: getattr(record, k) + v for k, v in add.items()})
