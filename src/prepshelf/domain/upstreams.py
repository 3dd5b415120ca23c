"""Upstreams: the OpenAI-compatible servers that answer for models prepshelf does not run itself.

An *upstream* is one server (vLLM, SGLang, llama.cpp, Ollama, TEI, a faster-whisper server, a
hosted vendor) reached at a base URL with an optional key, and the limits prepshelf keeps
towards it. A *model* is a name clients use (in a batch line's `model`, or to transcribe
media) and the upstream that answers for it, on the endpoints it is configured for.

The configuration document (TOML or JSON, see `docs/upstreams.md`) reads::

    [upstreams.gpu1]                       # the upstream's name: letters, digits, - _ .
    base_url = "http://gpu1:8000/v1"       # what you would give the openai SDK
    api_key_env = "GPU1_KEY"               # or api_key = "..." (a file you keep private)
    endpoints = ["/v1/chat/completions", "/v1/completions"]   # default for its models
    rpm = 600                              # requests in any 60-second window
    tpm = 400000                           # tokens (prompt + completion) in any 60 s
    max_concurrent = 16                    # requests in flight at once (default 8)
    timeout_s = 300                        # one request, start to last byte
    retries = 5                            # further tries after a transient fault
    models = ["llama-3.1-8b", "qwen2.5-7b"]   # served with the upstream's endpoints

    [upstreams.speech]
    base_url = "http://gpu2:8000/v1"

    [upstreams.speech.models."whisper-large-v3"]        # or a table per model
    endpoints = ["/v1/audio/transcriptions"]
    upstream_model = "Systran/faster-whisper-large-v3"   # the name sent upstream

(TOML allows one form per upstream: `models = [...]` or `[upstreams.NAME.models."ID"]` tables.)

`parse_upstreams` validates such a mapping and returns an `UpstreamConfig`; every problem is
reported at once, each with its path (`upstreams.gpu1.rpm: Input should be greater than 0`).
Keys are `SecretStr`: they print as `**********` and are read only to build the
Authorization header. Nothing here reads a file or the environment: the caller passes both in
(`prepshelf.upstream_config` does).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from prepshelf.errors import InvalidRequestError

Endpoint = Literal[
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/audio/transcriptions"
]
ENDPOINTS: tuple[Endpoint, ...] = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/audio/transcriptions",
)
ModelKind = Literal["chat", "completion", "embedding", "transcription"]
# A model's kind is its first endpoint in this order (a chat model may also serve completions).
KIND_OF: dict[Endpoint, ModelKind] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completion",
    "/v1/embeddings": "embedding",
    "/v1/audio/transcriptions": "transcription",
}

DEFAULT_MAX_CONCURRENT = 8
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MODEL_ID = re.compile(r"^[^\s\x00-\x1f\x7f]{1,200}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UpstreamConfigError(ValueError):
    """The upstream configuration is not valid; `problems` lists each, with its path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source, self.problems = source, problems
        where = f" ({source})" if source else ""
        super().__init__(f"invalid upstream configuration{where}: " + "; ".join(problems))


class ModelNotServedError(InvalidRequestError):
    """No configured model of that name serves that endpoint (OpenAI's 404 model_not_found)."""

    status_code = 404
    code = "model_not_found"


@dataclass(frozen=True)
class RateLimits:
    """What one upstream may receive from all of prepshelf together (every worker, every job).

    `rpm` requests and `tpm` tokens in any 60-second window, `max_concurrent` requests in
    flight at once; None means no limit of that kind.
    """

    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = DEFAULT_MAX_CONCURRENT


@dataclass(frozen=True)
class Upstream:
    name: str  # the configuration's name for it; shown to operators, never to API clients
    base_url: str  # e.g. http://gpu1:8000/v1, no trailing slash; never shown to API clients
    api_key: SecretStr | None  # sent as "Authorization: Bearer …"; never logged or returned
    limits: RateLimits
    timeout_s: float  # one request, from sending to the answer's last byte
    retries: int  # further tries after a transient fault (so retries + 1 calls at most)
    backoff_base_s: float
    backoff_max_s: float
    default_max_tokens: int  # completion tokens reserved for a request that names no limit

    def url(self, endpoint: Endpoint) -> str:
        """The full URL of `endpoint` ("/v1/…") on this upstream (base_url ends in /v1)."""
        return self.base_url + endpoint.removeprefix("/v1")


@dataclass(frozen=True)
class UpstreamModel:
    id: str  # the name clients use
    upstream: str  # Upstream.name
    upstream_model: str  # the name sent upstream in the body's `model`
    endpoints: tuple[Endpoint, ...]  # in ENDPOINTS order
    dimensions: int | None = None  # embedding models: the vector size, when configured

    @property
    def kind(self) -> ModelKind:
        return KIND_OF[self.endpoints[0]]


@dataclass(frozen=True)
class UpstreamConfig:
    upstreams: tuple[Upstream, ...] = ()
    models: tuple[UpstreamModel, ...] = ()
    source: str = ""  # where it came from, for messages: "" when nothing is configured
    _by_id: dict[str, UpstreamModel] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, Upstream] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {m.id: m for m in self.models})
        object.__setattr__(self, "_by_name", {u.name: u for u in self.upstreams})

    def model(self, model_id: str) -> UpstreamModel | None:
        return self._by_id.get(model_id)

    def upstream(self, name: str) -> Upstream:
        return self._by_name[name]

    def models_for(self, endpoint: Endpoint) -> tuple[UpstreamModel, ...]:
        return tuple(m for m in self.models if endpoint in m.endpoints)

    def route(self, model_id: str, endpoint: Endpoint) -> tuple[UpstreamModel, Upstream]:
        """The model and the upstream that answer `endpoint` for `model_id`.

        Raises ModelNotServedError (404 model_not_found, param "model") naming the models that
        do serve `endpoint`, so a batch line or a request says what it could have asked for.
        """
        model = self._by_id.get(model_id)
        if model is None or endpoint not in model.endpoints:
            served = ", ".join(f"`{m.id}`" for m in self.models_for(endpoint)) or "none"
            raise ModelNotServedError(
                f"The model `{model_id}` is not served for {endpoint}. "
                f"Models configured for {endpoint}: {served} (GET /v1/models lists them).",
                param="model",
            )
        return model, self._by_name[model.upstream]


# --- the document's schema (validated with pydantic, then turned into the types above) ----

_PositiveInt = Annotated[int, Field(gt=0)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class _ModelSpec(_Spec):
    endpoints: list[Endpoint] | None = Field(default=None, min_length=1)
    upstream_model: str | None = Field(default=None, min_length=1, max_length=200)
    dimensions: _PositiveInt | None = None


class _UpstreamSpec(_Spec):
    base_url: str
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    endpoints: list[Endpoint] | None = Field(default=None, min_length=1)
    models: dict[str, _ModelSpec] = Field(min_length=1)
    rpm: _PositiveInt | None = None
    tpm: _PositiveInt | None = None
    max_concurrent: _PositiveInt | None = DEFAULT_MAX_CONCURRENT
    timeout_s: float = Field(default=300.0, gt=0, le=24 * 3600)
    retries: int = Field(default=5, ge=0, le=20)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    default_max_tokens: _PositiveInt = 1024

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an http:// or https:// URL with a host, e.g. http://gpu1:8000/v1"
            )
        if parts.username or parts.password:
            raise ValueError("must not hold credentials: give the key in api_key_env or api_key")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        return value.rstrip("/")

    @field_validator("models", mode="before")
    @classmethod
    def _models_list(cls, value: Any) -> Any:
        """`models = ["a", "b"]` is short for a table of models with the upstream's defaults."""
        if not isinstance(value, list):
            return value
        if not value:
            raise ValueError("must name at least one model")
        if not all(isinstance(m, str) for m in value):
            raise ValueError("must be a list of model names or a table of models")
        twice = sorted({m for m in value if value.count(m) > 1})
        if twice:
            raise ValueError(f"lists {', '.join(twice)} more than once")
        return {m: {} for m in value}

    @field_validator("api_key_env")
    @classmethod
    def _check_env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("must be the name of an environment variable, e.g. VLLM_API_KEY")
        return value


class _DocumentSpec(_Spec):
    upstreams: dict[str, _UpstreamSpec]


def parse_upstreams(
    data: Any,
    *,
    source: str,
    environ: Mapping[str, str],
    reserved_model_ids: Collection[str] = (),
) -> UpstreamConfig:
    """Validate a configuration document (already read from TOML/JSON) into an UpstreamConfig.

    `environ` resolves `api_key_env`; `reserved_model_ids` are names already served otherwise
    (the local embedding model), which a configured model may not take. Raises
    UpstreamConfigError listing every problem with its path.
    """
    try:
        doc = _DocumentSpec.model_validate(data)
    except ValidationError as exc:
        raise UpstreamConfigError(source, [_describe(e) for e in exc.errors()]) from None
    problems: list[str] = []
    upstreams: list[Upstream] = []
    models: list[UpstreamModel] = []
    owner: dict[str, str] = {}
    for name, spec in doc.upstreams.items():
        where = f"upstreams.{name}"
        if not _NAME.match(name):
            problems.append(f"{where}: the name must be 1-64 letters, digits, '-', '_' or '.'")
        key = _resolve_key(spec, where, environ, problems)
        if spec.backoff_max_s < spec.backoff_base_s:
            problems.append(f"{where}.backoff_max_s: must not be below backoff_base_s")
        upstreams.append(
            Upstream(
                name=name,
                base_url=spec.base_url,
                api_key=key,
                limits=RateLimits(spec.rpm, spec.tpm, spec.max_concurrent),
                timeout_s=spec.timeout_s,
                retries=spec.retries,
                backoff_base_s=spec.backoff_base_s,
                backoff_max_s=spec.backoff_max_s,
                default_max_tokens=spec.default_max_tokens,
            )
        )
        for model_id, mspec in spec.models.items():
            mwhere = f"{where}.models.{model_id}"
            if not _MODEL_ID.match(model_id):
                problems.append(f"{mwhere}: a model name is 1-200 characters without spaces")
            elif model_id in reserved_model_ids:
                problems.append(f"{mwhere}: `{model_id}` is the local embedding model's name")
            elif model_id in owner:
                other = owner[model_id]
                problems.append(f"{mwhere}: `{model_id}` is also served by upstreams.{other}")
            owner.setdefault(model_id, name)
            endpoints = mspec.endpoints or spec.endpoints
            if not endpoints:
                problems.append(
                    f"{mwhere}: no endpoints: set `endpoints` on the model or on its upstream "
                    f"(any of {', '.join(ENDPOINTS)})"
                )
                continue
            if mspec.dimensions is not None and "/v1/embeddings" not in endpoints:
                problems.append(f"{mwhere}.dimensions: only for models serving /v1/embeddings")
            models.append(
                UpstreamModel(
                    id=model_id,
                    upstream=name,
                    upstream_model=mspec.upstream_model or model_id,
                    endpoints=tuple(e for e in ENDPOINTS if e in endpoints),
                    dimensions=mspec.dimensions,
                )
            )
    if problems:
        raise UpstreamConfigError(source, problems)
    return UpstreamConfig(tuple(upstreams), tuple(models), source)


def _resolve_key(
    spec: _UpstreamSpec, where: str, environ: Mapping[str, str], problems: list[str]
) -> SecretStr | None:
    if spec.api_key is not None and spec.api_key_env is not None:
        problems.append(f"{where}: give api_key or api_key_env, not both")
        return None
    if spec.api_key_env is not None:
        value = environ.get(spec.api_key_env, "").strip()
        if not value:
            problems.append(
                f"{where}.api_key_env: the environment variable {spec.api_key_env} is not set "
                "or empty"
            )
            return None
        return SecretStr(value)
    if spec.api_key is not None and not spec.api_key.get_secret_value().strip():
        problems.append(f"{where}.api_key: is empty (leave it out for an upstream without a key)")
        return None
    return spec.api_key


def _describe(error: Any) -> str:
    """One pydantic error as "path: message", never echoing the input (it may be a key)."""
    path = ".".join(str(part) for part in error["loc"]) or "(document)"
    return f"{path}: {str(error['msg']).removeprefix('Value error, ')}"
