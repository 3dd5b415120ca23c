"""Worker memory during /v1/batches of growing size: it must not grow with the batch.

Runs the real service (embedded PostgreSQL, `prepshelf api`, one `prepshelf worker`) with the
remote embedder pointed at a fast fake OpenAI-compatible vendor on loopback, so the figure
measures prepshelf's own streaming (input read, slices, output written), not the model.

    python bench/batch_memory.py [--lines 20000 200000] [--dims 64]

Prints, per batch size: wall time, lines/s, the worker's RSS before and at its peak, and the
output file's size. Figures are for context on a noisy machine; the ratio that matters is the
peak growth of the largest batch against the smallest.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.fake_vendor import FakeVendor
from support.postgres import TestPostgres
from support.service import Service

MODEL = "bench-embedder"


def _input(n: int) -> bytes:
    out = io.StringIO()
    for i in range(n):
        body = {"model": MODEL, "input": f"line {i} of the batch", "encoding_format": "base64"}
        out.write(
            json.dumps(
                {"custom_id": f"c{i}", "method": "POST", "url": "/v1/embeddings", "body": body}
            )
            + "\n"
        )
    return out.getvalue().encode()


def _sample_peak(pid: int, stop: threading.Event, peak: list[int]) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], proc.memory_info().rss)
        except psutil.Error:
            return
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--dims", type=int, default=64)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="prepshelf-bench-"))
    vendor = FakeVendor(dims=args.dims)
    vendor.start()
    pg = TestPostgres(root).start()
    svc = Service(
        pg.new_database(),
        root / "svc",
        workers=1,
        extra_env={
            "PREPSHELF_EMBEDDER": "remote",
            "PREPSHELF_REMOTE_EMBED_URL": vendor.url,
            "PREPSHELF_REMOTE_EMBED_MODEL": MODEL,
            "PREPSHELF_REMOTE_EMBED_DIMENSIONS": str(args.dims),
            "PREPSHELF_REMOTE_EMBED_BATCH_SIZE": "512",
        },
    )
    try:
        svc.start()
        client = svc.openai()
        worker = psutil.Process(svc.workers[0].pid)
        print(
            f"{'lines':>9} {'seconds':>8} {'lines/s':>8} {'rss MB':>7} {'peak MB':>8} "
            f"{'growth MB':>10} {'output MB':>10}"
        )
        growth = {}
        for n in args.lines:
            data = _input(n)
            upload = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
            before = worker.memory_info().rss
            peak = [before]
            stop = threading.Event()
            sampler = threading.Thread(target=_sample_peak, args=(worker.pid, stop, peak))
            sampler.start()
            t0 = time.perf_counter()
            batch = client.batches.create(
                input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h"
            )
            while batch.status not in ("completed", "failed", "expired", "cancelled"):
                time.sleep(0.5)
                batch = client.batches.retrieve(batch.id)
            seconds = time.perf_counter() - t0
            stop.set()
            sampler.join()
            assert batch.status == "completed", batch
            out_mb = client.files.retrieve(batch.output_file_id).bytes / 1e6
            growth[n] = (peak[0] - before) / 1e6
            print(
                f"{n:>9} {seconds:>8.1f} {n / seconds:>8.0f} {before / 1e6:>7.0f} "
                f"{peak[0] / 1e6:>8.0f} {growth[n]:>10.1f} {out_mb:>10.1f}"
            )
        small, large = min(growth), max(growth)
        print(
            f"peak growth, {large} lines against {small}: {growth[large]:.1f} MB vs "
            f"{growth[small]:.1f} MB ({large // small}x the lines)"
        )
    finally:
        svc.stop()
        pg.stop()
        vendor.stop()


if __name__ == "__main__":
    main()
