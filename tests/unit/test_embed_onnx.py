"""The onnxruntime backends of the local model: same vectors as torch (float) or close (int8),
exported once into a cache dir, offline, safely when several workers start together."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from prepshelf.pipeline import embed_onnx_export
from prepshelf.pipeline.embed import LocalEmbedder, embedding_cache_model
from prepshelf.pipeline.embed_onnx import OnnxEmbedder
from prepshelf.pipeline.embedders import build_embedder
from prepshelf.settings import Settings

TEXTS = [
    "How do I reset my password?",
    "I forgot my password and need to change it.",
    "The recipe calls for two cups of flour and an egg.",
    "Vector stores keep one embedding per chunk, and chunks overlap by a few tokens.",
    "Überprüfung der Ergebnisse: 12 % weniger Fehler seit März.",
    "word " * 400,  # past the 256-token window: truncated exactly like sentence-transformers
]
# Measured on these texts: float ≥ 0.9999997, int8 ≥ 0.989 (mean ≈ 0.994); the floors leave
# room for other CPUs' kernels without letting a broken export through.
MIN_COS = {"onnx": 0.9999, "onnx-int8": 0.98}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # Any attempt to reach a hub would fail fast on this closed port.
    saved = {k: os.environ.get(k) for k in ("HF_ENDPOINT", "HF_HUB_OFFLINE")}
    os.environ.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_OFFLINE="1")
    yield tmp_path_factory.mktemp("models")
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return LocalEmbedder(batch_size=4).embed(TEXTS)


@pytest.mark.parametrize("variant", ["onnx", "onnx-int8"])
def test_vectors_match_torch(variant: str, cache_dir: Path, torch_vectors: np.ndarray) -> None:
    embedder = OnnxEmbedder(cache_dir=cache_dir, variant=variant, batch_size=4)  # type: ignore[arg-type]
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cos = (vectors * torch_vectors).sum(axis=1)
    assert cos.min() > MIN_COS[variant], cos
    # What search needs: the paraphrase is still far nearer than the unrelated sentence.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    # Order is kept although batches run longest first. One text alone gives the same float
    # vector; int8 scales activations per batch, so its vectors move a little with neighbours.
    alone = embedder.embed([TEXTS[2]])[0]
    if variant == "onnx":
        np.testing.assert_allclose(alone, vectors[2], atol=1e-5)
    assert alone @ vectors[2] > MIN_COS[variant]
    assert embedder.embed([]).shape == (0, 384)
    assert embedder.model_id == "all-MiniLM-L6-v2" and embedder.max_input_tokens == 254


def test_export_is_cached(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    OnnxEmbedder(cache_dir=cache_dir, variant="onnx-int8").load()  # exported by now

    def no_export(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(embed_onnx_export, "_run_child", no_export)
    embedder = OnnxEmbedder(cache_dir=cache_dir, variant="onnx-int8")
    assert embedder.embed(["hello"]).shape == (1, 384)
    assert embedder.onnx_path is not None and embedder.onnx_path.is_relative_to(cache_dir)
    names = sorted(p.name for p in cache_dir.iterdir() if p.is_dir())
    assert [n.rsplit("-", 1)[0] for n in names] == [
        "all-MiniLM-L6-v2-onnx",
        "all-MiniLM-L6-v2-onnx-int8",
    ]


def test_runtime_needs_no_torch(cache_dir: Path) -> None:
    OnnxEmbedder(cache_dir=cache_dir, variant="onnx").load()  # exported here, if not yet
    code = (
        "import sys, pathlib\n"
        "from prepshelf.pipeline.embed_onnx import OnnxEmbedder\n"
        f"e = OnnxEmbedder(cache_dir=pathlib.Path({str(cache_dir)!r}), variant='onnx')\n"
        "assert e.embed(['hi']).shape == (1, 384)\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_concurrent_starts_export_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    calls: list[Path] = []
    # The export finishes only once all four starts have reached the lock, so three of them
    # really wait on it (no sleep that a slow machine could outlast).
    arrived = threading.Semaphore(0)
    real_locked = embed_onnx_export._locked

    @contextlib.contextmanager
    def counted_lock(path: Path) -> Iterator[None]:
        arrived.release()
        with real_locked(path):
            yield

    def export_after_all_arrived(model_dir: Path, out: Path, *args: object) -> None:
        calls.append(out)
        for _ in range(4):
            assert arrived.acquire(timeout=30), "not every start reached the lock"
        (out / embed_onnx_export.MODEL_FILE).write_bytes(b"graph")

    monkeypatch.setattr(embed_onnx_export, "_locked", counted_lock)
    monkeypatch.setattr(embed_onnx_export, "_run_child", export_after_all_arrived)
    results: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                embed_onnx_export.ensure_exported(model_dir, tmp_path / "cache", "m", "onnx")
            )
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1 and len(results) == 4
    assert results[0].read_bytes() == b"graph"
    assert not list((tmp_path / "cache").glob(".*tmp-*"))  # the temporary dir was renamed


def test_failed_export_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")

    def broken_export(model_dir: Path, out: Path, *args: object) -> None:
        (out / "partial").write_bytes(b"x")
        raise embed_onnx_export.OnnxExportError("boom")

    monkeypatch.setattr(embed_onnx_export, "_run_child", broken_export)
    with pytest.raises(embed_onnx_export.OnnxExportError):
        embed_onnx_export.ensure_exported(model_dir, tmp_path / "cache", "m", "onnx")
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".lock"]


def test_settings_choose_the_backend(tmp_path: Path) -> None:
    torch_backend = build_embedder(Settings(data_dir=tmp_path))
    assert type(torch_backend) is LocalEmbedder
    int8 = build_embedder(Settings(data_dir=tmp_path, local_backend="onnx-int8", torch_threads=1))
    assert isinstance(int8, OnnxEmbedder) and int8.variant == "onnx-int8"
    assert int8.cache_dir == tmp_path / "models" and int8.threads == 1
    # One model id on the store whatever the backend; only int8 has its own cache entries.
    assert int8.model_id == torch_backend.model_id
    assert embedding_cache_model("m", torch_backend) == "m"
    assert embedding_cache_model("m", OnnxEmbedder(cache_dir=tmp_path, variant="onnx")) == "m"
    assert embedding_cache_model("m", int8) == "m+onnx-int8"
