"""The fake embeddings vendor of the remote-embedder tests: `FakeUpstream` with a step script.

Each request to POST /v1/embeddings takes the next step of the script (then `default`):
"ok", "timeout" (answer only after `hang_s`), "malformed" (one vector too few), or an int
HTTP status with optional headers, e.g. (429, {"Retry-After": "2"}). Vectors are
deterministic (`fake_answers.vector_for`). New tests use `fake_upstream.FakeUpstream` and its
rules directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from support.fake_answers import vector_for
from support.fake_upstream import FakeUpstream, Rule

__all__ = ["Call", "FakeVendor", "Step", "vector_for"]

Step = str | int | tuple[int, dict[str, str]]


@dataclass
class Call:
    at: float  # time.monotonic() when the request arrived
    inputs: int
    answer: str  # the step that answered it, as str(step)


class FakeVendor(FakeUpstream):
    def __init__(self, dims: int = 8, *, hang_s: float = 3.0, delay_s: float = 0.0) -> None:
        super().__init__(dims=dims)
        self.hang_s = hang_s
        self.delay_s = delay_s

    def start(self) -> FakeVendor:
        super().start()
        return self

    def set(self, *steps: Step, default: Step = "ok") -> None:
        """Replace the script (and forget the calls so far)."""
        delay = self.delay_s
        self.reset()
        self.delay_s = delay
        self.add(*(self._rule(step, times=1) for step in steps))
        if default != "ok":
            self.add(self._rule(default, times=None))

    @property
    def calls(self) -> list[Call]:
        return [
            Call(r.arrived, r.inputs, r.rule or "ok")
            for r in self.records()
            if r.path == "/v1/embeddings"
        ]

    def _rule(self, step: Step, *, times: int | None) -> Rule:
        where = {"path": "/v1/embeddings", "times": times, "label": str(step)}
        if step == "ok":
            return Rule("none", **where)
        if step == "timeout":
            return Rule("hang", seconds=self.hang_s, **where)
        if step == "malformed":
            return Rule("short_embeddings", **where)
        status, headers = step if isinstance(step, tuple) else (int(step), {})
        return Rule("status", status=status, headers=headers, **where)
