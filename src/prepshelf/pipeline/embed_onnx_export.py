"""Export the local model to ONNX once (float32, or int8 by dynamic quantisation), cached in
the data dir, for the onnxruntime backends in embed_onnx.py.

Why not sentence-transformers' own `backend="onnx"`: it goes through optimum-onnx, whose only
release (0.1.0) needs transformers<4.58 while sentence-transformers 6 needs transformers>=5, so
the two cannot be installed together. The model is therefore exported with torch.onnx (the
torch.export-based exporter, which checks the batch and sequence axes symbolically rather than
tracing one example) and quantised with onnxruntime's own quantiser. The exported graph is the
whole SentenceTransformer — transformer, mean pooling, normalisation — so it cannot drift from
the packaged model's module list.

The export runs in a child process: a worker on an onnx backend then never imports torch
(hundreds of MB less per worker), and an exporter crash cannot take the worker down.
Workers starting together serialise on a lock file; the child writes into a temporary
directory that is renamed into place, so a reader sees either nothing or a whole model. The
directory name carries a fingerprint of the model files and of the tool versions: a changed
model or toolchain exports afresh instead of reusing a stale graph. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

OnnxVariant = Literal["onnx", "onnx-int8"]
MODEL_FILE = "model.onnx"
INFO_FILE = "export.json"
# Bump when the export or quantisation recipe changes: it is part of the fingerprint.
_RECIPE = 2
# Inputs in the order the exported graph takes them (token_type_ids only for BERT-style models).
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Sanity floors checked right after an export, on a few sentences: the float graph must be the
# torch model (measured: cosine 1.000000), the int8 one must still be close (measured ≈ 0.99).
_MIN_COS = {"onnx": 0.9999, "onnx-int8": 0.95}
_CHECK_TEXTS = (
    "How do I reset my password?",
    "The recipe calls for two cups of flour and an egg.",
    "Vector stores keep one embedding per chunk; chunks overlap by a few tokens so that a "
    "sentence cut at a boundary is still found whole in one of them.",
)


class OnnxExportError(RuntimeError):
    """The export or its check failed; the message carries the child's last output lines."""


def _tool_versions() -> dict[str, str]:
    names = ("torch", "onnxruntime", "onnx", "onnxscript", "sentence-transformers")
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def fingerprint(model_dir: Path) -> str:
    """Short hash of every file of the model and of the exporting tools' versions."""
    digest = hashlib.sha256(f"recipe={_RECIPE}\n".encode())
    digest.update(json.dumps(_tool_versions(), sort_keys=True).encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(model_dir)).encode())
        with path.open("rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()[:12]


def export_dir(cache_dir: Path, model_id: str, variant: OnnxVariant, model_dir: Path) -> Path:
    safe_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)
    return cache_dir / f"{safe_id}-{variant}-{fingerprint(model_dir)}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes, also if we die
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_exported(
    model_dir: Path,
    cache_dir: Path,
    model_id: str,
    variant: OnnxVariant,
    *,
    threads: int | None = None,
) -> Path:
    """Path of the cached `model.onnx` for `variant`, exporting it first if it is missing."""
    target = export_dir(cache_dir, model_id, variant, model_dir)
    if (target / MODEL_FILE).is_file():
        return target / MODEL_FILE
    source: Path | None = None
    if variant == "onnx-int8":
        # Quantised from the float export, which is kept: switching backends costs nothing.
        source = ensure_exported(model_dir, cache_dir, model_id, "onnx", threads=threads)
    with _locked(target.with_name(target.name + ".lock")):
        if (target / MODEL_FILE).is_file():  # another worker finished it while we waited
            return target / MODEL_FILE
        # Under the lock nobody else writes here: leftovers are from a process that died.
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.mkdir(parents=True)
        try:
            _run_child(model_dir, tmp, variant, source, threads)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target / MODEL_FILE


def _run_child(
    model_dir: Path, out: Path, variant: OnnxVariant, source: Path | None, threads: int | None
) -> None:
    cmd = [sys.executable, "-m", __name__, str(model_dir), str(out), "--variant", variant]
    if source is not None:
        cmd += ["--source", str(source)]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log.info("exporting %s to %s (once per model and data dir)", variant, out.parent)
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise OnnxExportError(f"ONNX export ({variant}) failed:\n{tail}")
    log.info("exported %s in %.1f s", variant, time.perf_counter() - started)


# --- the child process -------------------------------------------------------------------


def _export_float(model_dir: Path, out: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    # Eager attention: the same arithmetic as the default SDPA path, but SDPA exports with
    # Where/IsNaN masking ops that took ~15 % of the int8 graph's time (plain MatMul/Softmax
    # here; measured 1.65 → 1.40 CPU-s per 32 × 256 batch, float unchanged).
    model = SentenceTransformer(
        str(model_dir),
        device="cpu",
        local_files_only=True,
        model_kwargs={"attn_implementation": "eager"},
    ).eval()
    features = model.preprocess(list(_CHECK_TEXTS))
    names = [n for n in _INPUTS if isinstance(features.get(n), torch.Tensor)]

    class SentenceEmbedding(torch.nn.Module):
        """Tensors in, `sentence_embedding` out: the exporter needs plain tensor arguments."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            feats: dict[str, Any] = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "modality": "text",
            }
            if token_type_ids is not None:
                feats["token_type_ids"] = token_type_ids
            return self.model(feats)["sentence_embedding"]

    batch = torch.export.Dim("batch")
    seq = torch.export.Dim("seq", max=int(model.max_seq_length or 512))
    with torch.no_grad():
        torch.onnx.export(
            SentenceEmbedding().eval(),
            tuple(features[n] for n in names),
            str(out / MODEL_FILE),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamo=True,
            external_data=False,  # one file (≈ 90 MB) is simpler to cache than weights beside
            dynamic_shapes=tuple({0: batch, 1: seq} for _ in names),
        )
        expected = model.encode(list(_CHECK_TEXTS), normalize_embeddings=True)
    _check(out / MODEL_FILE, features, names, np.asarray(expected), "onnx")


def _quantise(source: Path, out: Path) -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel int8 weights on the weight MatMuls only (the attention-score MatMuls have no
    # constant input and stay float). Per-tensor weights measured cosine 0.93 against the float
    # model (worst 0.81); per-channel 0.994 (worst 0.986) at the same speed.
    quantize_dynamic(
        source,
        out / MODEL_FILE,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QInt8,
    )
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    feeds = _check_feeds(source.parent)
    expected = session.run(None, feeds)[0]
    _check(out / MODEL_FILE, feeds, list(feeds), expected, "onnx-int8")


def _check_feeds(float_dir: Path) -> dict[str, np.ndarray]:
    """The float export's own check inputs, so that int8 is compared on the same tokens."""
    info = json.loads((float_dir / INFO_FILE).read_text())
    return {k: np.asarray(v, dtype=np.int64) for k, v in info["check_inputs"].items()}


def _check(
    path: Path, features: Any, names: Sequence[str], expected: np.ndarray, variant: OnnxVariant
) -> None:
    import onnxruntime as ort

    feeds = {n: np.asarray(features[n], dtype=np.int64) for n in names}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, feeds)[0]
    cos = (got * expected).sum(axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
    )
    if got.shape != expected.shape or float(cos.min()) < _MIN_COS[variant]:
        raise OnnxExportError(f"{variant} export check failed: cosine {cos.tolist()}")
    info = {
        "variant": variant,
        "versions": _tool_versions(),
        "check_min_cosine": float(cos.min()),
        "check_inputs": {n: feeds[n].tolist() for n in names},
    }
    (path.parent / INFO_FILE).write_text(json.dumps(info, indent=1))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export the embedding model to ONNX (internal)")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path, help="empty directory to write model.onnx into")
    parser.add_argument("--variant", choices=["onnx", "onnx-int8"], default="onnx")
    parser.add_argument("--source", type=Path, help="float model.onnx to quantise (int8)")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    if args.variant == "onnx":
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        _export_float(args.model_dir, args.out)
    else:
        if args.source is None:
            parser.error("--source is required for onnx-int8")
        _quantise(args.source, args.out)


if __name__ == "__main__":
    main()
