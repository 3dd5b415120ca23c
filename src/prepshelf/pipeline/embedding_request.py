"""One /v1/embeddings request: validate the body, count its tokens, shape the answer.

Shared by the synchronous route and the batch worker, so a batch line and a direct call obey
the same rules and produce the same bytes. Pure: no API, no queue, no model (only tokenizer).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tokenizers

from prepshelf.errors import InvalidRequestError, NotFoundError, PayloadTooLargeError

ENCODINGS = ("float", "base64")


class ModelNotFoundError(NotFoundError):
    """The model does not exist or you do not have access to it."""

    code = "model_not_found"


class ContextLengthError(InvalidRequestError):
    """An input is longer than the model's window (we refuse rather than truncate)."""

    code = "context_length_exceeded"


@dataclass(frozen=True)
class EmbeddingLimits:
    model_ids: frozenset[str]  # names accepted in `model`
    dimensions: int
    max_input_tokens: int  # per input, special tokens excluded
    max_inputs: int
    max_total_tokens: int | None
    too_large_hint: str = ""  # appended to 413 messages


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    texts: list[str]
    token_counts: list[int]
    encoding_format: str

    @property
    def prompt_tokens(self) -> int:
        return sum(self.token_counts)


def count_inputs(raw: Any) -> int:
    """How many vectors `input` asks for, without tokenizing (0 when malformed)."""
    if isinstance(raw, str):
        return 1
    if isinstance(raw, list) and raw:
        return 1 if all(isinstance(x, int) for x in raw) else len(raw)
    return 0


def _texts(raw: Any, tokenizer: tokenizers.Tokenizer) -> tuple[list[str], list[int] | None]:
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
        return list(raw), None
    if all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
        raw = [raw]
    if not all(isinstance(x, list) and x for x in raw):
        raise bad
    vocab = tokenizer.get_vocab_size()
    texts, counts = [], []
    for i, ids in enumerate(raw):
        if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < vocab for t in ids):
            raise InvalidRequestError(
                f"Invalid 'input[{i}]': token ids must be integers in [0, {vocab})", param="input"
            )
        texts.append(tokenizer.decode(ids))
        counts.append(len(ids))
    return texts, counts


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
        raise ModelNotFoundError(
            f"The model `{model}` does not exist or you do not have access to it."
        )
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
        raise PayloadTooLargeError(
            f"Too many inputs: {n} (at most {limits.max_inputs} per request)."
            f"{limits.too_large_hint}",
            param="input",
        )
    texts, counts = _texts(body["input"], tokenizer)
    if counts is None:
        encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
        counts = [len(e.ids) for e in encodings]
    for i, count in enumerate(counts):
        if count > limits.max_input_tokens:
            raise ContextLengthError(
                f"This model's maximum context length is {limits.max_input_tokens} tokens, "
                f"however input[{i}] has {count} tokens. Shorten the input: prepshelf does not "
                "truncate, because a vector of a truncated text silently misrepresents it.",
                param="input",
            )
    total = sum(counts)
    if limits.max_total_tokens is not None and total > limits.max_total_tokens:
        raise PayloadTooLargeError(
            f"Too many tokens in one request: {total} (at most {limits.max_total_tokens})."
            f"{limits.too_large_hint}",
            param="input",
        )
    return EmbeddingRequest(model=model, texts=texts, token_counts=counts, encoding_format=encoding)


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        # OpenAI's format: the raw little-endian float32 bytes, base64-encoded.
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in np.asarray(vector, dtype=np.float32)]


def response_body(
    request: EmbeddingRequest, vectors: Sequence[np.ndarray] | np.ndarray
) -> dict[str, Any]:
    tokens = request.prompt_tokens
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": encode_vector(vec, request.encoding_format),
            }
            for i, vec in enumerate(vectors)
        ],
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
