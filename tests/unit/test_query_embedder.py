"""The front desk's query model: nothing heavy at import, loaded in the background after
start, and a request that arrives during the load waits for it instead of failing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from prepshelf.api.query_embedder import QueryEmbedder
from prepshelf.pipeline.embed import FakeEmbedder, default_model_dir


def test_building_the_app_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from prepshelf.api.app import create_app\n"
        "from prepshelf.settings import Settings\n"
        "create_app(Settings(database_url='postgresql://127.0.0.1:1/x', "
        f"data_dir={str(tmp_path)!r}))\n"
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class SlowFactory:
    """Builds a fake embedder only when told to: a model load that takes as long as we like."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self) -> FakeEmbedder:
        assert self.release.wait(30)
        return FakeEmbedder()


def test_a_request_during_the_load_waits_for_the_model() -> None:
    factory = SlowFactory()
    embedder = QueryEmbedder(default_model_dir(), factory=factory, model_id="fake")
    assert embedder.status()["status"] == "not_loaded"
    loader = embedder.start_loading()
    assert embedder.status() == {"model": "fake", "status": "loading"}

    async def search() -> np.ndarray:
        task = asyncio.create_task(embedder.embed(["a query"]))
        await asyncio.sleep(0.2)
        assert not task.done()  # waiting for the model, not failed
        factory.release.set()
        return await task

    vectors = asyncio.run(search())
    loader.result(10)
    assert vectors.shape[0] == 1
    status = embedder.status()
    assert status["status"] == "ready" and status["load_s"] >= 0


def test_a_failed_load_is_reported_and_tried_again() -> None:
    calls = []

    def broken() -> FakeEmbedder:
        calls.append(1)
        raise RuntimeError("model files missing")

    embedder = QueryEmbedder(default_model_dir(), factory=broken, model_id="fake")
    embedder.start_loading().result(10)
    status = embedder.status()
    assert status["status"] == "failed" and "model files missing" in status["error"]
    with pytest.raises(RuntimeError):
        embedder.embed_blocking(["q"])
    assert len(calls) == 2  # the next request tries again
