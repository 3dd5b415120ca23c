"""Request rules shared by /v1/embeddings and batch lines (tokenizer only, no model)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from prepshelf.errors import InvalidRequestError
from prepshelf.pipeline.embed import default_model_dir
from prepshelf.pipeline.embedding_plan import ContextLengthError
from prepshelf.pipeline.embedding_request import (
    EmbeddingLimits,
    ModelNotFoundError,
    TooManyTokensError,
    count_inputs,
    encode_vector,
    parse_request,
    response_body,
)
from prepshelf.pipeline.tokenizer import load_tokenizer

LIMITS = EmbeddingLimits(
    model_ids=frozenset({"m"}),
    dimensions=384,
    max_input_tokens=254,
    max_inputs=4,
    max_total_tokens=50,
    too_large_hint=" Use /v1/batches.",
    token_ids="model",  # the served model's own ids; cl100k_base: tests/unit/test_long_inputs.py
    long_input="error",
)


@pytest.fixture(scope="module")
def tok():  # type: ignore[no-untyped-def]
    return load_tokenizer(default_model_dir())


def test_string_and_list_inputs_count_tokens(tok) -> None:  # type: ignore[no-untyped-def]
    one = parse_request({"model": "m", "input": "hello world"}, limits=LIMITS, tokenizer=tok)
    assert one.texts == ["hello world"] and one.prompt_tokens == one.request_tokens == 2
    many = parse_request({"model": "m", "input": ["a b", "c"]}, limits=LIMITS, tokenizer=tok)
    assert many.prompt_tokens == 3 and many.encoding_format == "float"


def test_token_id_arrays_are_decoded(tok) -> None:  # type: ignore[no-untyped-def]
    ids = tok.encode("hello world", add_special_tokens=False).ids
    req = parse_request({"model": "m", "input": ids}, limits=LIMITS, tokenizer=tok)
    assert req.texts == ["hello world"] and req.request_tokens == len(ids)
    req = parse_request({"model": "m", "input": [ids, ids[:1]]}, limits=LIMITS, tokenizer=tok)
    assert req.texts == ["hello world", "hello"]
    with pytest.raises(InvalidRequestError):
        parse_request({"model": "m", "input": [10**9]}, limits=LIMITS, tokenizer=tok)


@pytest.mark.parametrize(
    ("body", "error", "param"),
    [
        ({"input": "x"}, InvalidRequestError, "model"),
        ({"model": "nope", "input": "x"}, ModelNotFoundError, "model"),
        ({"model": "m"}, InvalidRequestError, "input"),
        ({"model": "m", "input": ""}, InvalidRequestError, "input"),
        ({"model": "m", "input": []}, InvalidRequestError, "input"),
        ({"model": "m", "input": [1.5]}, InvalidRequestError, "input"),
        (
            {"model": "m", "input": "x", "encoding_format": "hex"},
            InvalidRequestError,
            "encoding_format",
        ),
        ({"model": "m", "input": "x", "dimensions": 128}, InvalidRequestError, "dimensions"),
        ({"model": "m", "input": ["x"] * 5}, InvalidRequestError, "input"),
        ({"model": "m", "input": ["word " * 30, "word " * 30]}, TooManyTokensError, "input"),
        ({"model": "m", "input": [[1, True]]}, InvalidRequestError, "input"),
        ({"model": "m", "input": ["ok", "a\ud800b"]}, InvalidRequestError, "input"),
        ({"model": "m", "input": "word " * 300}, ContextLengthError, "input"),
    ],
)
def test_refusals_name_the_parameter(tok, body, error, param) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as info:
        parse_request(body, limits=LIMITS, tokenizer=tok)
    assert info.value.param == param
    if error is TooManyTokensError:
        # OpenAI's words, status, type and code; and where large work should go.
        assert info.value.message.startswith("Requested 60 tokens, max 50 tokens per request")
        assert info.value.status_code == 400 and info.value.code == "max_tokens_per_request"
        assert info.value.error_type == "max_tokens_per_request"
    if body.get("input") == ["x"] * 5:
        assert info.value.status_code == 400 and "at most 4 per request" in info.value.message
    if error in (TooManyTokensError,) or body.get("input") == ["x"] * 5:
        assert "/v1/batches" in info.value.message
    if error is ModelNotFoundError:
        assert info.value.status_code == 404 and info.value.code == "model_not_found"
        assert "`m`" in info.value.message and "/v1/models" in info.value.message


def test_dimensions_equal_to_the_model_is_accepted(tok) -> None:  # type: ignore[no-untyped-def]
    body = {"model": "m", "input": "x", "dimensions": 384}
    assert parse_request(body, limits=LIMITS, tokenizer=tok).texts == ["x"]


def test_count_inputs() -> None:
    assert count_inputs("a") == 1
    assert count_inputs([1, 2, 3]) == 1
    assert count_inputs([[1], [2]]) == 2
    assert count_inputs(["a", "b", "c"]) == 3
    assert count_inputs(None) == 0


def test_base64_is_little_endian_float32_of_the_float_form(tok) -> None:  # type: ignore[no-untyped-def]
    vec = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    raw = encode_vector(vec, "base64")
    assert isinstance(raw, str)
    decoded = np.frombuffer(base64.b64decode(raw), dtype="<f4")
    assert np.array_equal(decoded, np.asarray(encode_vector(vec, "float"), dtype=np.float32))
    req = parse_request({"model": "m", "input": ["a", "b"]}, limits=LIMITS, tokenizer=tok)
    body = response_body(req, np.stack([vec, vec]))
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
