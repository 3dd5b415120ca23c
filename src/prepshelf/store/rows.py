"""Rows read back as the typed objects of `domain/`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def typed(cls: type[T], row: Mapping[str, Any], **given: Any) -> T:
    """`cls` (a dataclass) from the row's columns of the same names; `given` supplies the
    fields a row does not hold as one column (nested objects, derived values)."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    return cls(**{n: given[n] if n in given else row[n] for n in names})
