"""Terminal output: rich tables and progress bars on a TTY, plain tab-separated lines otherwise.

Plain mode (CI logs, pipes) never draws, never wraps and never needs a terminal width: one
line per fact, so `grep` and `cut` work on it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

FINAL = ("completed", "failed", "cancelled")


@dataclass
class FileState:
    """What the client knows about one file of the batch it watches."""

    name: str
    file_id: str | None = None
    status: str = "queued"  # queued | running | completed | failed | cancelled | upload_failed
    stage: str | None = None
    done: int = 0
    total: int | None = None
    error: str | None = None
    unit: str | None = None  # what done/total count: chunks, or pages while OCR reads a scan
    reused: bool = False  # failed before with the same bytes: attached again, not uploaded

    @property
    def final(self) -> bool:
        return self.status in (*FINAL, "upload_failed")


class Output:
    def __init__(self, stream: TextIO | None = None, *, rich: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.rich = self.stream.isatty() if rich is None else rich
        self._console: Any = None
        reconfigure = getattr(self.stream, "reconfigure", None)
        if not self.rich and reconfigure is not None:
            reconfigure(errors="replace")  # a pipe with a narrow encoding must not crash us

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)
        return self._console

    def line(self, text: str = "") -> None:
        if self.rich:
            self.console.print(text, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> None:
        cells = [["" if v is None else str(v) for v in row] for row in rows]
        if not self.rich:
            if title:
                print(f"# {title}", file=self.stream)
            print("\t".join(columns), file=self.stream)
            for row in cells:
                print(
                    "\t".join(c.replace("\t", " ").replace("\n", " ") for c in row),
                    file=self.stream,
                )
            self.stream.flush()
            return
        from rich.table import Table

        table = Table(title=title or None)
        for name in columns:
            table.add_column(name, overflow="fold")
        for row in cells:
            table.add_row(*row)
        self.console.print(table)


class IngestView(Protocol):
    def __enter__(self) -> IngestView: ...
    def __exit__(self, *exc: object) -> None: ...
    def uploaded(self, state: FileState) -> None: ...
    def watching(self, states: Sequence[FileState]) -> None: ...
    def changed(self, state: FileState) -> None: ...


class PlainIngestView:
    """One line per upload and per file that reaches a final state."""

    def __init__(self, out: Output, total: int) -> None:
        self.out, self.total = out, total
        self._uploaded = 0
        self._finished = 0

    def __enter__(self) -> PlainIngestView:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def uploaded(self, state: FileState) -> None:
        self._uploaded += 1
        what = f"upload failed: {state.error}" if state.status == "upload_failed" else state.file_id
        done = "failed before, sent again" if state.reused else "uploaded"
        self.out.line(f"[{self._uploaded}/{self.total}] {done} {state.name}: {what}")

    def watching(self, states: Sequence[FileState]) -> None:
        self._finished = sum(1 for s in states if s.final)
        self.out.line(f"processing {len(states)} file(s)")

    def changed(self, state: FileState) -> None:
        if not state.final:
            return
        self._finished += 1
        tail = f": {state.error}" if state.error else ""
        self.out.line(f"[{self._finished}/{self.total}] {state.status} {state.name}{tail}")


class RichIngestView:
    """An overall bar plus a bar per file (only the active files' bars for big batches)."""

    SHOW_ALL = 20

    def __init__(self, out: Output, total: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.total = total
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out.console,
            transient=False,
        )
        self._overall = self.progress.add_task("uploading", total=total)
        self._bars: dict[str, Any] = {}
        self._show_all = total <= self.SHOW_ALL

    def __enter__(self) -> RichIngestView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def uploaded(self, state: FileState) -> None:
        self.progress.advance(self._overall)
        if state.status == "upload_failed":
            self.progress.console.print(f"[red]upload failed[/red] {state.name}: {state.error}")

    def watching(self, states: Sequence[FileState]) -> None:
        done = sum(1 for s in states if s.final)
        self.progress.reset(self._overall, total=self.total, completed=done)
        self.progress.update(self._overall, description="[bold]all files")
        if self._show_all:
            for state in states:
                if state.file_id and not state.final:
                    self._bar(state)

    def _bar(self, state: FileState) -> Any:
        key = state.file_id or state.name
        if key not in self._bars:
            self._bars[key] = self.progress.add_task(state.name, total=None)
        return self._bars[key]

    def changed(self, state: FileState) -> None:
        key = state.file_id or state.name
        if state.final:
            self.progress.advance(self._overall)
            if key in self._bars or self._show_all:
                bar = self._bar(state)
                mark = {"completed": "[green]✓", "failed": "[red]✗"}.get(state.status, "[yellow]-")
                total = state.total or 1
                self.progress.update(
                    bar, description=f"{mark} {state.name}", total=total, completed=total
                )
                if not self._show_all:
                    self.progress.remove_task(bar)
                    del self._bars[key]
            if state.status == "failed":
                self.progress.console.print(f"[red]failed[/red] {state.name}: {state.error}")
            return
        if state.status == "running" or self._show_all:
            bar = self._bar(state)
            unit = f" · {state.unit}" if state.unit and state.total else ""
            stage = f" [dim]{state.stage}{unit}[/dim]" if state.stage else ""
            self.progress.update(
                bar, description=f"{state.name}{stage}", total=state.total, completed=state.done
            )


def ingest_view(out: Output, total: int) -> IngestView:
    return RichIngestView(out, total) if out.rich else PlainIngestView(out, total)
