"""Parse time of the dev corpus's largest documents, in process and in the parse sandbox.

The unit tests only check that these documents parse in full; how long it takes is measured
here, where a noisy machine cannot fail a build. Prints seconds per document (best of
`--reps`) and the sandbox's share on top of the in-process parse.

    python bench/parse_large.py [--reps 3]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from prepshelf.pipeline.parse import ParsedDocument, parse_file
from prepshelf.pipeline.sandbox import parse_in_subprocess, shutdown_sandbox
from support.corpus import CORPUS

DOCUMENTS = ["handbook-872p.docx", "pdf2image-memory-error-test-400p.pdf"]
LIMIT = 3072 * 1024 * 1024


def _best(reps: int, parse: Callable[[], ParsedDocument]) -> tuple[float, int]:
    times, chars = [], 0
    for _ in range(reps):
        started = time.perf_counter()
        chars = len(parse().text)
        times.append(time.perf_counter() - started)
    return min(times), chars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print(f"{'document':42} {'chars':>9} {'in process':>11} {'sandbox':>9} {'ratio':>6}")
    try:
        for name in DOCUMENTS:
            path = CORPUS / name
            direct, chars = _best(args.reps, functools.partial(parse_file, path, name))
            boxed, _ = _best(
                args.reps,
                functools.partial(
                    parse_in_subprocess, path, name, timeout_s=300, memory_limit_bytes=LIMIT
                ),
            )
            print(f"{name:42} {chars:9,} {direct:10.2f}s {boxed:8.2f}s {boxed / direct:5.2f}x")
    finally:
        shutdown_sandbox()


if __name__ == "__main__":
    main()
