"""Cron expressions in time zones: validation, next due time, catch-up counting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prepshelf.domain import cron
from prepshelf.errors import InvalidRequestError

NOW = datetime(2024, 1, 15, 12, 0, 30, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "zone", "param"),
    [
        ("not cron", "UTC", "cron"),
        ("61 * * * *", "UTC", "cron"),
        ("", "UTC", "cron"),
        ("0 0 31 2 *", "UTC", "cron"),  # never due
        ("* * * * *", "UTC", "cron"),  # every minute: more often than allowed below
        ("0 3 * * *", "Mars/Olympus", "timezone"),
        ("0 3 * * *", "../../etc/passwd", "timezone"),
        ("0 3 * * *" + " " * 200, "UTC", "cron"),
    ],
)
def test_refused_with_the_field_named(expr: str, zone: str, param: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        cron.validate(expr, zone, min_interval_s=120, now=NOW)
    assert err.value.param == param


def test_first_due_time_in_the_schedules_zone() -> None:
    # 03:00 in Berlin is 02:00 UTC in January.
    first = cron.validate("0 3 * * *", "Europe/Berlin", min_interval_s=60, now=NOW)
    assert first == datetime(2024, 1, 16, 2, 0, tzinfo=UTC)
    assert cron.validate("@daily", "UTC", min_interval_s=60, now=NOW) == datetime(
        2024, 1, 16, tzinfo=UTC
    )
    # Six fields: seconds last (as procrastinate writes them).
    assert cron.validate("* * * * * */5", "UTC", min_interval_s=5, now=NOW) == datetime(
        2024, 1, 15, 12, 0, 35, tzinfo=UTC
    )


def test_next_due_is_strictly_after_now_to_the_second() -> None:
    on_the_second = datetime(2024, 1, 15, 12, 0, 30, tzinfo=UTC)
    assert cron.next_due("* * * * * *", "UTC", on_the_second) == on_the_second + timedelta(
        seconds=1
    )
    assert cron.next_due("* * * * * *", "UTC", NOW) == on_the_second + timedelta(seconds=1)


def test_summer_time_moves_the_utc_instant() -> None:
    june = datetime(2024, 6, 15, 12, tzinfo=UTC)
    assert cron.next_due("0 3 * * *", "Europe/Berlin", june) == datetime(
        2024, 6, 16, 1, 0, tzinfo=UTC
    )


def test_missed_due_times_are_counted_for_one_catch_up_run() -> None:
    first = datetime(2024, 1, 15, 11, 0, tzinfo=UTC)
    times = cron.due_between("*/10 * * * *", "UTC", first, NOW)
    # 11:00, 11:10, ..., 12:00: seven due times, the last at 12:00.
    assert times.count == 7 and times.last == datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
    assert times.first == first
    only = cron.due_between("*/10 * * * *", "UTC", datetime(2024, 1, 15, 12, tzinfo=UTC), NOW)
    assert only.count == 1 and only.last == only.first


def test_a_long_downtime_is_counted_up_to_a_bound() -> None:
    first = NOW - timedelta(days=30)
    times = cron.due_between("* * * * * *", "UTC", first, NOW)
    assert times.count == cron.MAX_COUNTED_DUE_TIMES
    assert times.last == NOW.replace(microsecond=0)
