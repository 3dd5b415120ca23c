"""When a schedule is due: a cron expression read in an IANA time zone (croniter, zoneinfo).

Five fields (minute hour day month weekday), or six with seconds last (as procrastinate
writes them), or croniter's aliases (`@daily`, `@hourly`, ...). Due times are whole seconds,
so "the next due time after now" is the next one after now rounded down to its second. When
clocks go back, a time inside the repeated hour is due twice (once per UTC instant); when
they go forward, a time inside the skipped hour is due at the first instant after the gap.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from croniter import croniter

from prepshelf.errors import InvalidRequestError

MAX_CRON_CHARS = 128
MAX_COUNTED_DUE_TIMES = 10_000  # a catch-up counts missed due times up to this many
_GAPS_CHECKED = 16


@dataclass(frozen=True)
class DueTimes:
    """The due times a run stands for: `count` of them, the last one `last`."""

    first: datetime
    last: datetime
    count: int


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zone(timezone: str) -> ZoneInfo:
    if timezone not in _zones():
        raise InvalidRequestError(
            f"Unknown time zone {timezone[:64]!r}; use an IANA name such as 'UTC' or "
            "'Europe/Berlin'",
            param="timezone",
        )
    return ZoneInfo(timezone)


def _floor(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def next_due(cron: str, timezone: str, after: datetime) -> datetime:
    """The first due time strictly after `after`, in UTC."""
    start = _floor(after).astimezone(zone(timezone))
    due: datetime = croniter(cron, start).get_next(datetime)
    return due.astimezone(UTC)


def due_between(cron: str, timezone: str, first: datetime, now: datetime) -> DueTimes:
    """Every due time from `first` (itself due) up to `now`: one run stands for all of them."""
    tz = zone(timezone)
    last: datetime = croniter(cron, (_floor(now) + timedelta(seconds=1)).astimezone(tz)).get_prev(
        datetime
    )
    last = max(last.astimezone(UTC), first)
    count = 1
    walker = croniter(cron, first.astimezone(tz))
    while count < MAX_COUNTED_DUE_TIMES:
        due: datetime = walker.get_next(datetime)
        if due.astimezone(UTC) > last:
            break
        count += 1
    return DueTimes(first=first, last=last, count=count)


def validate(cron: str, timezone: str, *, min_interval_s: float, now: datetime) -> datetime:
    """Check a schedule's cron and time zone; return its first due time after `now`.

    Refused (400): unknown zones, expressions croniter cannot read, expressions that are never
    due, and expressions due more often than `min_interval_s` (an operator's setting).
    """
    if len(cron) > MAX_CRON_CHARS or not cron.strip():
        raise InvalidRequestError(f"'cron' must be 1 to {MAX_CRON_CHARS} characters", param="cron")
    zone(timezone)
    if not croniter.is_valid(cron):
        raise InvalidRequestError(
            f"Invalid cron expression {cron!r}: expected 5 fields (minute hour day month "
            "weekday), 6 with seconds last, or an alias such as '@daily'",
            param="cron",
        )
    try:
        walker = croniter(cron, _floor(now).astimezone(zone(timezone)))
        dues = [walker.get_next(datetime).astimezone(UTC) for _ in range(_GAPS_CHECKED)]
    except (ValueError, OverflowError) as exc:  # croniter's errors are ValueErrors
        raise InvalidRequestError(
            f"Cron expression {cron!r} is never due ({exc})", param="cron"
        ) from exc
    shortest = min((b - a).total_seconds() for a, b in itertools.pairwise(dues))
    if shortest < min_interval_s:
        raise InvalidRequestError(
            f"Cron expression {cron!r} is due every {shortest:g} s; this server allows at "
            f"most one run per {min_interval_s:g} s (PREPSHELF_SCHEDULE_MIN_INTERVAL_S)",
            param="cron",
        )
    return dues[0]
