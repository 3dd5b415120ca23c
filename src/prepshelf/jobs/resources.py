"""What every job of a worker process uses, built once when the process starts."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procrastinate

from prepshelf.jobs.fair_slots import FairSlots
from prepshelf.jobs.model_queue import ModelQueue
from prepshelf.jobs.upstreams import UpstreamClients
from prepshelf.jobs.whole_file_writes import WholeFileWriter
from prepshelf.pipeline.embed import Embedder
from prepshelf.settings import Settings
from prepshelf.store.blobs import BlobStore
from prepshelf.store.db import Pool


@dataclass
class WorkerResources:
    """Built once per worker process at start-up."""

    settings: Settings
    pool: Pool
    blobs: BlobStore
    embedder: Embedder
    model_dir: Path
    worker_name: str
    # One model call at a time per process: with several jobs in flight, the others parse and
    # write while the model runs, instead of splitting the cores between two model calls.
    model_lock: contextlib.AbstractContextManager[Any] = field(default_factory=threading.Lock)
    # Clients of the configured upstreams (chat, completions, transcription); None: none.
    upstreams: UpstreamClients | None = None
    # The local model's calls, shared by the jobs in flight (jobs/model_queue.py); None for
    # a remote embedder, which takes several calls at once.
    model_queue: ModelQueue | None = None
    # Files parsed at once (a parse may use much memory); more jobs than this can be in
    # flight, embedding and writing while others parse. A freed slot goes to the project
    # holding the fewest, so one project's backlog does not queue another's file behind it.
    parse_slots: FairSlots = field(default_factory=lambda: FairSlots(2))
    # The finishing writes of files embedded at once, grouped (jobs/whole_file_writes.py).
    whole_file_writes: WholeFileWriter = field(init=False)
    # The worker's queue: jobs that queue other jobs (an archive's members) defer through it.
    app: procrastinate.App | None = None

    def __post_init__(self) -> None:
        self.whole_file_writes = WholeFileWriter(self.pool)
