"""The admission rule's pure part: which limits block a request and how long it waits."""

from __future__ import annotations

import pytest

from prepshelf.domain.admission import (
    ExceedsLimitError,
    Refusal,
    WindowUsage,
    check_fits,
    judge,
)
from prepshelf.domain.upstreams import RateLimits


def _usage(**kw: object) -> WindowUsage:
    values: dict[str, object] = {
        "requests": 0,
        "tokens": 0,
        "in_flight": 0,
        "request_room_in_s": None,
        "token_room_in_s": None,
        "slot_end_in_s": None,
    }
    values.update(kw)
    return WindowUsage(**values)  # type: ignore[arg-type]


LIMITS = RateLimits(rpm=10, tpm=1000, max_concurrent=2)


def test_room_on_every_limit_admits() -> None:
    usage = _usage(requests=9, tokens=900, in_flight=1)
    assert judge(LIMITS, usage, 100, poll_s=0.5) is None
    assert judge(RateLimits(None, None, None), _usage(requests=10**6), 10**6, poll_s=0.5) is None


def test_each_limit_blocks_with_its_own_wait() -> None:
    rpm = judge(LIMITS, _usage(requests=10, request_room_in_s=12.5), 1, poll_s=0.5)
    assert rpm == Refusal(12.5, ("rpm",))
    tpm = judge(LIMITS, _usage(tokens=950, token_room_in_s=3.0), 51, poll_s=0.5)
    assert tpm == Refusal(3.0, ("tpm",))
    # A slot is waited for in polls, never past the earliest slot's expiry.
    assert judge(LIMITS, _usage(in_flight=2, slot_end_in_s=40.0), 1, poll_s=0.5) == Refusal(
        0.5, ("max_concurrent",)
    )
    assert judge(LIMITS, _usage(in_flight=2, slot_end_in_s=0.2), 1, poll_s=0.5) == Refusal(
        0.2, ("max_concurrent",)
    )


def test_several_blocking_limits_wait_for_the_last_of_them() -> None:
    usage = _usage(
        requests=10, tokens=1000, in_flight=2, request_room_in_s=5.0, token_room_in_s=20.0
    )
    refusal = judge(LIMITS, usage, 10, poll_s=0.5)
    assert refusal == Refusal(20.0, ("rpm", "tpm", "max_concurrent"))


def test_a_request_larger_than_the_whole_tpm_is_never_admitted() -> None:
    check_fits(LIMITS, 1000)
    with pytest.raises(ExceedsLimitError, match="needs about 1001 tokens; the limit is 1000"):
        check_fits(LIMITS, 1001)
    with pytest.raises(ExceedsLimitError):
        judge(LIMITS, _usage(), 5000, poll_s=0.5)
