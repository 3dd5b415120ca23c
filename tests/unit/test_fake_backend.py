"""PREPSHELF_LOCAL_BACKEND=fake: the suite's model for tests that are not about embedding.
It must load no model anywhere (worker or API), serve under the model's name and width, keep
its own cache entries, and still rank texts that share words above those that do not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prepshelf.pipeline.embed import embedding_cache_model
from prepshelf.pipeline.embedders import build_embedder, query_embedder_factory
from prepshelf.settings import Settings


def test_fake_backend_serves_under_the_models_name_and_window(tmp_path: Path) -> None:
    embedder = build_embedder(Settings(data_dir=tmp_path, local_backend="fake"))
    assert (embedder.model_id, embedder.dimensions, embedder.max_input_tokens) == (
        "all-MiniLM-L6-v2",
        384,
        254,
    )
    # Never mixed with the real model's vectors in the embedding cache.
    assert embedding_cache_model("all-MiniLM-L6-v2", embedder) == "all-MiniLM-L6-v2+fake"
    docs = ["parental leave policy for new parents", "quarterly revenue grew in europe"]
    vectors = embedder.embed(docs)
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    query = embedder.embed(["how long is parental leave"])[0]
    assert float(vectors[0] @ query) > float(vectors[1] @ query) + 0.2
    # Past the window the text is cut, as the real model cuts it.
    long = "alpha " * 300
    np.testing.assert_array_equal(
        embedder.embed([long]), embedder.embed([long + " omega beta gamma"])
    )


def test_only_the_torch_backend_uses_the_query_embedders_own_model(tmp_path: Path) -> None:
    assert query_embedder_factory(Settings(data_dir=tmp_path)) is None
    factory = query_embedder_factory(Settings(data_dir=tmp_path, local_backend="fake"))
    assert factory is not None
    assert factory().embed(["a search"]).shape == (1, 384)


def test_the_fake_backend_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from prepshelf.pipeline.embedders import build_embedder, query_embedder_factory\n"
        "from prepshelf.settings import Settings\n"
        f"s = Settings(data_dir={str(tmp_path)!r}, local_backend='fake')\n"
        "build_embedder(s).embed(['hello'])\n"
        "query_embedder_factory(s)().embed(['hello'])\n"
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_prepshelf_embedder_fake_is_shorthand_for_the_fake_local_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREPSHELF_EMBEDDER", "fake")
    settings = Settings(data_dir=tmp_path)
    assert (settings.embedder, settings.local_backend) == ("local", "fake")
    monkeypatch.setenv("PREPSHELF_EMBEDDER", "remote")
    assert Settings(data_dir=tmp_path).local_backend == "torch"


def test_unrelated_texts_score_above_zero_so_a_search_finds_something(tmp_path: Path) -> None:
    embedder = build_embedder(Settings(data_dir=tmp_path, local_backend="fake"))
    doc, *questions = embedder.embed(
        ["Tide tables give high and low water times."]
        + [f"question {i} about tides" for i in range(200)]
    )
    scores = np.asarray(questions) @ doc
    assert scores.min() > 0.0
    assert scores.max() < 0.5  # only the baseline and collisions: no shared word piece
