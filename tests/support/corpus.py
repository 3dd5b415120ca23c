"""Where the shared dev corpus lives (never copied into the repo), and what it expects."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

CORPUS = Path(
    os.environ.get("PREPSHELF_CORPUS_DIR")
    or Path(__file__).resolve().parents[3] / "shared" / "corpus" / "dev"
)
needs_corpus = pytest.mark.skipif(
    not (CORPUS / "MANIFEST.tsv").is_file(), reason=f"dev corpus not found at {CORPUS}"
)
ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz")


def manifest() -> list[dict[str, str]]:
    with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def good_files(*, archives: bool = False) -> list[Path]:
    return sorted(
        CORPUS / row["path"]
        for row in manifest()
        if not row["path"].startswith("bad/") and (archives or not row["path"].endswith(ARCHIVES))
    )


def bad_files(*, archives: bool = False) -> list[Path]:
    return sorted(
        CORPUS / row["path"]
        for row in manifest()
        if row["path"].startswith("bad/") and (archives or not row["path"].endswith(ARCHIVES))
    )
