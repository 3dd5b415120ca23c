"""One /v1/embeddings request: validate the body, plan what the model embeds, shape the answer.

Shared by the synchronous route and the batch worker, so a batch line and a direct call obey
the same rules and produce the same bytes. Pure: no API, no queue, no model (only tokenizers).

Rules, as OpenAI's: at most `max_inputs` inputs (2,048) and `max_total_tokens` tokens
(300,000) per request, counted as sent (token-id arrays by their length, strings in the
model's tokens). Token-id arrays are read with the vocabulary `token_ids` names (cl100k_base,
what OpenAI-shaped clients send, or the model's own). An input longer than the model's window
is split, truncated or refused as `long_input` says (`embedding_plan.py`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import tokenizers

from prepshelf.errors import InvalidRequestError, NotFoundError
from prepshelf.pipeline import cl100k
from prepshelf.pipeline.embedding_plan import InputPlan, LongInput, plan_input

ENCODINGS = ("float", "base64")
TokenIds = Literal["cl100k_base", "model"]


class ModelNotFoundError(NotFoundError):
    """The model does not exist or you do not have access to it."""

    code = "model_not_found"


class TooManyTokensError(InvalidRequestError):
    """More tokens in one request than allowed (OpenAI's type and code)."""

    error_type = "max_tokens_per_request"
    code = "max_tokens_per_request"


@dataclass(frozen=True)
class EmbeddingLimits:
    model_ids: frozenset[str]  # names accepted in `model`
    dimensions: int
    max_input_tokens: int  # the model's window per piece, special tokens excluded
    max_inputs: int
    max_total_tokens: int | None
    too_large_hint: str = ""  # appended to the too-many messages
    token_ids: TokenIds = "cl100k_base"
    long_input: LongInput = "split"


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    inputs: list[InputPlan]
    encoding_format: str
    request_tokens: int  # as counted against max_total_tokens

    @property
    def prompt_tokens(self) -> int:
        """What was embedded (a truncated input counts its first window only)."""
        return sum(plan.tokens for plan in self.inputs)

    @property
    def texts(self) -> list[str]:
        """Every piece the model embeds, input by input."""
        return [piece for plan in self.inputs for piece in plan.pieces]


def count_inputs(raw: Any) -> int:
    """How many vectors `input` asks for, without tokenizing (0 when malformed)."""
    if isinstance(raw, str):
        return 1
    if isinstance(raw, list) and raw:
        return 1 if all(isinstance(x, int) for x in raw) else len(raw)
    return 0


def model_not_found(model: str, served: Iterable[str]) -> ModelNotFoundError:
    names = ", ".join(f"`{m}`" for m in sorted(served))
    return ModelNotFoundError(
        f"The model `{model}` does not exist or you do not have access to it. "
        f"This server serves: {names} (GET /v1/models lists them).",
        param="model",
    )


def check_unicode(text: str, *, param: str, where: str = "") -> None:
    """JSON may carry lone surrogates (`"\\ud800"`); they are no text a tokenizer can read."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"Invalid '{where or param}': not valid Unicode ({exc.reason} at position {exc.start})",
            param=param,
        ) from None


def _is_id(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _decode_ids(
    ids: list[int], index: int, tokenizer: tokenizers.Tokenizer, token_ids: TokenIds
) -> str:
    if token_ids == "cl100k_base":
        return cl100k.decode(ids, index=index)
    vocab = tokenizer.get_vocab_size()
    if not all(0 <= t < vocab for t in ids):
        raise InvalidRequestError(
            f"Invalid 'input[{index}]': token ids must be integers in [0, {vocab}) "
            "(PREPSHELF_EMBEDDINGS_TOKEN_IDS=model: ids of the served model's vocabulary)",
            param="input",
        )
    return str(tokenizer.decode(ids))


def _texts(
    raw: Any, tokenizer: tokenizers.Tokenizer, token_ids: TokenIds
) -> tuple[list[str], list[int] | None]:
    """Strings as given; token-id arrays decoded (their counts are their lengths)."""
    bad = InvalidRequestError(
        "'input' must be a string, an array of strings, an array of token ids, "
        "or an array of token-id arrays",
        param="input",
    )
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise bad
    if all(isinstance(x, str) for x in raw):
        for i, text in enumerate(raw):
            if not text:
                raise InvalidRequestError(
                    f"Invalid 'input[{i}]': empty string; every input must be non-empty",
                    param="input",
                )
            check_unicode(text, param="input", where=f"input[{i}]")
        return list(raw), None
    if all(_is_id(x) for x in raw):
        raw = [raw]
    if not all(isinstance(x, list) and x and all(_is_id(t) for t in x) for x in raw):
        raise bad
    texts = [_decode_ids(ids, i, tokenizer, token_ids) for i, ids in enumerate(raw)]
    return texts, [len(ids) for ids in raw]


def parse_request(
    body: Any, *, limits: EmbeddingLimits, tokenizer: tokenizers.Tokenizer
) -> EmbeddingRequest:
    """Validate a request body as OpenAI does; raise a PrepshelfError naming the parameter."""
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("you must provide a model parameter", param="model")
    if model not in limits.model_ids:
        raise model_not_found(model, limits.model_ids)
    encoding = body.get("encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise InvalidRequestError(
            f"Invalid 'encoding_format' {encoding!r}; expected 'float' or 'base64'",
            param="encoding_format",
        )
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or dims != limits.dimensions):
        raise InvalidRequestError(
            f"Invalid 'dimensions' {dims!r}: this model produces {limits.dimensions}-dimensional "
            f"embeddings and cannot shorten them; omit 'dimensions' or pass {limits.dimensions}",
            param="dimensions",
        )
    if "input" not in body:
        raise InvalidRequestError("'input' is a required property", param="input")
    n = count_inputs(body["input"])
    if n > limits.max_inputs:
        raise InvalidRequestError(
            f"Invalid 'input': {n} inputs, at most {limits.max_inputs} per request."
            f"{limits.too_large_hint}",
            param="input",
        )
    texts, sent_counts = _texts(body["input"], tokenizer, limits.token_ids)
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    counts = sent_counts or [len(e.ids) for e in encodings]
    plans = [
        plan_input(text, enc, window=limits.max_input_tokens, policy=limits.long_input, index=i)
        for i, (text, enc) in enumerate(zip(texts, encodings, strict=True))
    ]
    total = sum(counts)
    if limits.max_total_tokens is not None and total > limits.max_total_tokens:
        raise TooManyTokensError(
            f"Requested {total} tokens, max {limits.max_total_tokens} tokens per request."
            f"{limits.too_large_hint}",
            param="input",
        )
    return EmbeddingRequest(
        model=model, inputs=plans, encoding_format=encoding, request_tokens=total
    )


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        # OpenAI's format: the raw little-endian float32 bytes, base64-encoded.
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in np.asarray(vector, dtype=np.float32)]


def _embedding_object(index: int, vector: np.ndarray, encoding_format: str) -> dict[str, Any]:
    return {
        "object": "embedding",
        "index": index,
        "embedding": encode_vector(vector, encoding_format),
    }


def _usage(request: EmbeddingRequest) -> dict[str, int]:
    tokens = request.prompt_tokens
    return {"prompt_tokens": tokens, "total_tokens": tokens}


def response_body(
    request: EmbeddingRequest, vectors: Sequence[np.ndarray] | np.ndarray
) -> dict[str, Any]:
    """The answer for one vector per input (the batch worker's form)."""
    return {
        "object": "list",
        "data": [
            _embedding_object(i, vec, request.encoding_format) for i, vec in enumerate(vectors)
        ],
        "model": request.model,
        "usage": _usage(request),
    }


def render_response(request: EmbeddingRequest, vectors: Iterable[tuple[int, np.ndarray]]) -> bytes:
    """The same answer as JSON bytes, each vector encoded as soon as it arrives, so the
    caller never holds the numeric vectors of the whole request at once."""
    parts = [
        json.dumps(_embedding_object(i, vec, request.encoding_format), separators=(",", ":"))
        for i, vec in vectors
    ]
    tail = json.dumps({"model": request.model, "usage": _usage(request)}, separators=(",", ":"))
    return ('{"object":"list","data":[' + ",".join(parts) + "]," + tail[1:]).encode()
