"""Embedders: the packaged all-MiniLM-L6-v2 model and the torch-free fake."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from prepshelf.pipeline.embed import Embedder, FakeEmbedder, LocalEmbedder, default_model_dir

CLOSE = ("How do I reset my password?", "I forgot my password and need to change it.")
FAR = "The recipe calls for two cups of flour and an egg."


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


def assert_unit_rows(vectors: np.ndarray, n: int, dims: int) -> None:
    assert vectors.shape == (n, dims)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def local() -> Iterator[LocalEmbedder]:
    yield LocalEmbedder(batch_size=8)


def test_import_does_not_load_torch() -> None:
    code = (
        "import prepshelf.pipeline.embed as e, sys\n"
        "x = e.LocalEmbedder(); x.count_tokens(['hi']); e.FakeEmbedder().embed(['hi'])\n"
        "assert x.dimensions == 384 and x.max_input_tokens == 254\n"
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_local_embedder_metadata(local: LocalEmbedder) -> None:
    embedder: Embedder = local
    assert embedder.model_id == "all-MiniLM-L6-v2"
    assert embedder.dimensions == 384
    assert embedder.max_input_tokens == 254
    assert embedder.count_tokens(["hello world", "", "unbelievably"]) == [2, 0, 5]


def test_local_embedder_vectors(local: LocalEmbedder) -> None:
    texts = [*CLOSE, FAR, CLOSE[0]]
    vectors = local.embed(texts)
    assert_unit_rows(vectors, 4, 384)
    assert local.max_input_tokens == 254  # unchanged once the model itself is loaded
    np.testing.assert_array_equal(vectors[0], vectors[3])
    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2]) + 0.2
    assert local.embed([]).shape == (0, 384)


def test_fake_embedder_is_deterministic_and_similarity_aware() -> None:
    fake = FakeEmbedder()
    docs = [
        "Postgres stores the vectors in a pgvector column.",
        "The vectors are stored in Postgres using pgvector.",
        "Bake the cake at 180 degrees for forty minutes.",
        "",
    ]
    vectors = fake.embed(docs)
    assert_unit_rows(vectors, 4, 384)
    np.testing.assert_array_equal(vectors, FakeEmbedder().embed(docs))
    assert cos(vectors[0], vectors[1]) > 0.5 > cos(vectors[0], vectors[2])
    query = fake.embed(["pgvector postgres"])[0]
    scores = vectors[:3] @ query
    assert scores.argmax() in (0, 1) and scores[2] < min(scores[0], scores[1])
    assert fake.count_tokens(["hello world"]) == [2]
    assert fake.embed([]).shape == (0, 384)


def test_default_model_dir_has_tokenizer() -> None:
    assert (default_model_dir() / "tokenizer.json").is_file()
