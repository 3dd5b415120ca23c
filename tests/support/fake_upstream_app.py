"""The fake upstream's web app: routes, scripted faults, deterministic answers, the log.

See `fake_upstream.py` for how tests run it; `fake_answers.py` for what it answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from support import fake_answers as answers

FAULT_KINDS = frozenset(
    {"none", "status", "hang", "slow", "not_json", "truncated_json", "wrong_shape"}
    | {"short_embeddings"}
)


@dataclass
class Rule:
    kind: str  # one of FAULT_KINDS
    path: str | None = None  # e.g. "/v1/chat/completions"; None = any
    contains: str | None = None  # a substring of the raw request body; None = any
    model: str | None = None
    times: int | None = 1  # matching requests it applies to; None = every one
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0  # hang: delay before answering; slow: between pieces
    label: str = ""  # how the log names it (default: the kind, or the status)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        self.label = self.label or (str(self.status) if self.kind == "status" else self.kind)


@dataclass
class Record:
    seq: int
    path: str
    model: str | None
    arrived: float
    finished: float | None = None
    status: int = 0
    rule: str | None = None  # the label of the rule that applied
    prompt_tokens: int = 0
    completion_tokens: int = 0
    inputs: int = 0  # embedding inputs
    body_sha256: str = ""
    authorization: str | None = None

    @property
    def tokens(self) -> int:
        """What the upstream served: prompt + completion of a 200 answer, else 0."""
        return self.prompt_tokens + self.completion_tokens if self.status == 200 else 0


class FakeState:
    def __init__(self, models: list[str] | None, api_key: str | None, dims: int) -> None:
        self.models, self.api_key, self.dims = models, api_key, dims
        self.delay_s = 0.0  # added before every normal answer
        self.rules: list[Rule] = []
        self.log: list[Record] = []
        self.lock = threading.Lock()

    def arrive(
        self, path: str, raw: bytes, model: str | None, auth: str | None
    ) -> tuple[Record, Rule | None]:
        text = raw.decode("utf-8", errors="replace")
        with self.lock:
            record = Record(
                seq=len(self.log) + 1,
                path=path,
                model=model,
                arrived=time.monotonic(),
                body_sha256=hashlib.sha256(raw).hexdigest(),
                authorization=auth,
            )
            self.log.append(record)
            for rule in self.rules:
                if rule.times is not None and rule.times <= 0:
                    continue
                if (
                    (rule.path is None or rule.path == path)
                    and (rule.model is None or rule.model == model)
                    and (rule.contains is None or rule.contains in text)
                ):
                    if rule.times is not None:
                        rule.times -= 1
                    record.rule = rule.label
                    return record, rule
        return record, None


# --- the server -------------------------------------------------------------------------


def _error(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    kind = (
        "rate_limit_error"
        if status == 429
        else "invalid_request_error"
        if status < 500
        else "server_error"
    )
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def build_app(state: FakeState) -> Starlette:
    async def models(request: Request) -> Response:
        auth = request.headers.get("authorization")
        if state.api_key is not None and auth != f"Bearer {state.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
            for m in state.models or []
        ]
        return JSONResponse({"object": "list", "data": data})

    async def post(request: Request) -> Response:
        path = request.url.path
        multipart = path == "/v1/audio/transcriptions"
        if multipart:
            async with request.form() as form:  # closes the upload's spooled file
                upload = form.get("file")
                audio = await upload.read() if hasattr(upload, "read") else b""
                fields = {k: v for k, v in form.items() if isinstance(v, str)}
            raw, body = audio, dict(fields)
        else:
            raw = await request.body()
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        model = body.get("model") if isinstance(body, dict) else None
        record, rule = state.arrive(
            path,
            raw,
            model if isinstance(model, str) else None,
            request.headers.get("authorization"),
        )
        response = await _answer(state, record, rule, path, body, raw if multipart else b"")
        if not isinstance(response, StreamingResponse):
            record.finished = time.monotonic()
        return response

    async def log(request: Request) -> Response:
        with state.lock:
            return JSONResponse([{**asdict(r), "tokens": r.tokens} for r in state.log])

    async def add_rules(request: Request) -> Response:
        rules = [Rule(**r) for r in await request.json()]
        with state.lock:
            state.rules.extend(rules)
        return JSONResponse({"added": len(rules)})

    async def reset(request: Request) -> Response:
        with state.lock:
            state.rules.clear()
            state.log.clear()
            state.delay_s = float((await request.json() or {}).get("delay_s", 0.0))
        return JSONResponse({"reset": True})

    endpoints = [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/audio/transcriptions",
    ]
    return Starlette(
        routes=[Route(p, post, methods=["POST"]) for p in endpoints]
        + [
            Route("/v1/models", models, methods=["GET"]),
            Route("/_fake/log", log, methods=["GET"]),
            Route("/_fake/rules", add_rules, methods=["POST"]),
            Route("/_fake/reset", reset, methods=["POST"]),
        ]
    )


async def _answer(
    state: FakeState, record: Record, rule: Rule | None, path: str, body: Any, audio: bytes
) -> Response:
    if state.api_key is not None and record.authorization != f"Bearer {state.api_key}":
        record.status = 401
        return _error(401, "Incorrect API key provided.", "invalid_api_key")
    if rule is not None and rule.kind == "status":
        record.status = rule.status
        return _error(rule.status, f"scripted {rule.status}", None, rule.headers)
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        record.status = 400
        return _error(400, "the body must be a JSON object with a model", "invalid_request")
    if state.models is not None and body["model"] not in state.models:
        record.status = 404
        return _error(404, f"The model `{body['model']}` does not exist.", "model_not_found")
    if rule is not None and rule.kind == "hang":
        await asyncio.sleep(rule.seconds)
    if state.delay_s:
        await asyncio.sleep(state.delay_s)
    kind = rule.kind if rule is not None else "none"
    if kind == "not_json":
        record.status = 200
        return Response(
            b"<html><body>502 Bad Gateway (proxy)</body></html>", media_type="text/html"
        )
    if kind == "wrong_shape":
        record.status = 200
        return JSONResponse({"id": "x", "object": "unknown", "result": "no fields you expect"})
    try:
        payload = _payload(state, record, path, body, audio, short=kind == "short_embeddings")
    except (TypeError, ValueError, KeyError) as exc:
        record.status = 400
        return _error(400, f"bad request: {exc}", "invalid_request")
    record.status = 200
    if isinstance(payload, str):
        return PlainTextResponse(payload)
    raw = json.dumps(payload).encode()
    if kind == "truncated_json":
        return Response(raw[: len(raw) // 2], media_type="application/json")
    if body.get("stream") and path in ("/v1/chat/completions", "/v1/completions"):
        return _sse(record, payload, body, rule.seconds if kind == "slow" else 0.0)
    if kind == "slow":
        return StreamingResponse(
            _trickle(record, raw, rule.seconds if rule else 0.0), media_type="application/json"
        )
    return Response(raw, media_type="application/json")


async def _trickle(record: Record, raw: bytes, pause_s: float) -> AsyncIterator[bytes]:
    step = max(1, len(raw) // 8)
    for i in range(0, len(raw), step):
        yield raw[i : i + step]
        await asyncio.sleep(pause_s)
    record.finished = time.monotonic()


def _sse(
    record: Record, payload: dict[str, Any], body: dict[str, Any], pause_s: float
) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        chat = payload["object"] == "chat.completion"
        for choice in payload["choices"]:
            text = choice["message"]["content"] if chat else choice["text"]
            for word in text.split(" "):
                delta = {"index": choice["index"], "finish_reason": None}
                delta.update({"delta": {"content": word + " "}} if chat else {"text": word + " "})
                chunk = {
                    "id": payload["id"],
                    "object": payload["object"] + ".chunk",
                    "model": payload["model"],
                    "choices": [delta],
                }
                yield f"data: {json.dumps(chunk)}\n\n".encode()
                await asyncio.sleep(pause_s)
        if (body.get("stream_options") or {}).get("include_usage"):
            tail = {
                "id": payload["id"],
                "object": payload["object"] + ".chunk",
                "choices": [],
                "usage": payload["usage"],
            }
            yield f"data: {json.dumps(tail)}\n\n".encode()
        yield b"data: [DONE]\n\n"
        record.finished = time.monotonic()

    return StreamingResponse(events(), media_type="text/event-stream")


def _payload(
    state: FakeState, record: Record, path: str, body: dict[str, Any], audio: bytes, *, short: bool
) -> dict[str, Any] | str:
    model = body["model"]
    if path == "/v1/chat/completions":
        messages = body["messages"]
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        text, finish = answers.completion_text(answers.chat_prompt_text(messages), limit)
        n = int(body.get("n") or 1)
        record.prompt_tokens = answers.chat_prompt_tokens(messages)
        record.completion_tokens = answers.tokens(text) * n
        choices = [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            for i in range(n)
        ]
        return _completion(record, "chat.completion", model, choices)
    if path == "/v1/completions":
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        choices = []
        for p in prompts:
            text, finish = answers.completion_text(str(p), body.get("max_tokens"))
            record.prompt_tokens += answers.tokens(p) if isinstance(p, str) else len(p)
            record.completion_tokens += answers.tokens(text)
            choices.append({"index": len(choices), "text": text, "finish_reason": finish})
        return _completion(record, "text_completion", model, choices)
    if path == "/v1/embeddings":
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if inputs and isinstance(inputs[0], int):
            inputs = [inputs]
        record.inputs = len(inputs)
        record.prompt_tokens = sum(
            answers.tokens(t) if isinstance(t, str) else len(t) for t in inputs
        )
        keep = inputs[:-1] if short else inputs
        data = [
            {"object": "embedding", "index": i, "embedding": answers.vector_for(str(t), state.dims)}
            for i, t in enumerate(keep)
        ]
        usage = {"prompt_tokens": record.prompt_tokens, "total_tokens": record.prompt_tokens}
        return {"object": "list", "data": data, "model": model, "usage": usage}
    return answers.transcription_answer(audio, body)


def _completion(
    record: Record, kind: str, model: str, choices: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": f"cmpl-{record.seq}",
        "object": kind,
        "created": 0,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "total_tokens": record.prompt_tokens + record.completion_tokens,
        },
    }
