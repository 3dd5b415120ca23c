"""Cutting a batch's valid request lines into slices: the units embedded, written and
checkpointed together. A slice ends at `max_lines` lines or `max_inputs` inputs."""

from __future__ import annotations

from dataclasses import dataclass, field

from prepshelf.domain.batches import SlicePlan
from prepshelf.jobs.batch_lines import RequestLine
from prepshelf.pipeline.embedding_request import count_inputs


@dataclass
class SliceCutter:
    max_lines: int
    max_inputs: int
    slices: list[SlicePlan] = field(default_factory=list)
    _start: tuple[int, int] | None = None  # (line_no, offset) of the open slice's first line
    _lines: int = 0
    _inputs: int = 0

    def add(self, line: RequestLine) -> None:
        if self._start is None:
            self._start = (line.line_no, line.offset)
        self._lines += 1
        self._inputs += max(1, count_inputs(line.body.get("input")))
        if self._lines >= self.max_lines or self._inputs >= self.max_inputs:
            self.close()

    def close(self) -> None:
        if self._start is not None:
            no = len(self.slices)
            self.slices.append(SlicePlan(no, self._start[0], self._start[1], self._lines))
        self._start, self._lines, self._inputs = None, 0, 0
