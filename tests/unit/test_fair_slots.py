"""Fair slots: a freed slot goes to the owner holding the fewest, so one project's backlog of
files waiting to parse does not hold up another project's file."""

from __future__ import annotations

import asyncio

import pytest

from prepshelf.jobs.fair_slots import FairSlots


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_freed_slot_goes_to_the_owner_holding_fewest() -> None:
    async def run() -> list[str]:
        slots = FairSlots(2)
        order: list[str] = []
        release = {name: asyncio.Event() for name in ("a1", "a2", "a3", "a4", "b1")}

        async def job(name: str) -> None:
            async with slots.hold(name[0]):
                order.append(name)
                await release[name].wait()

        tasks = [asyncio.ensure_future(job(n)) for n in ("a1", "a2", "a3", "a4")]
        await _settle()
        tasks.append(asyncio.ensure_future(job("b1")))  # asks last, behind a3 and a4
        await _settle()
        assert order == ["a1", "a2"] and slots.held("a") == 2
        release["a1"].set()
        await _settle()
        release["b1"].set()
        for name in ("a2", "a3", "a4"):
            release[name].set()
        await asyncio.gather(*tasks)
        return order

    # A semaphore would hand a1's slot to a3 (first come); b holds none, so it goes first.
    assert asyncio.run(run()) == ["a1", "a2", "b1", "a3", "a4"]


def test_among_equals_first_come_first_served() -> None:
    async def run() -> list[str]:
        slots = FairSlots(1)
        order: list[str] = []

        async def job(owner: str, name: str) -> None:
            async with slots.hold(owner):
                order.append(name)
                await asyncio.sleep(0)

        await asyncio.gather(*(job(o, n) for o, n in (("a", "1"), ("b", "2"), ("c", "3"))))
        return order

    assert asyncio.run(run()) == ["1", "2", "3"]


def test_a_waiter_cancelled_leaves_no_slot_taken() -> None:
    async def run() -> None:
        slots = FairSlots(1)
        gate = asyncio.Event()

        async def holder() -> None:
            async with slots.hold("a"):
                await gate.wait()

        first = asyncio.ensure_future(holder())
        await _settle()
        waiting = asyncio.ensure_future(holder())
        await _settle()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        gate.set()
        await first
        # Both slots' worth of bookkeeping is back: a new holder gets in at once.
        async with slots.hold("b"):
            assert slots.held("b") == 1 and slots.held("a") == 0

    asyncio.run(asyncio.wait_for(run(), 5))


def test_a_slot_granted_to_a_cancelled_waiter_passes_on() -> None:
    async def run() -> None:
        slots = FairSlots(1)
        gate = asyncio.Event()
        got: list[str] = []
        waiters: list[asyncio.Future[None]] = []

        async def holder(owner: str) -> None:
            async with slots.hold(owner):
                got.append(owner)
                await gate.wait()

        async def first() -> None:
            async with slots.hold("a"):
                got.append("a")
                await gate.wait()
            # Same step as the release that granted b its slot: b has not run yet.
            waiters[0].cancel()

        owner_a = asyncio.ensure_future(first())
        await _settle()
        waiters += [asyncio.ensure_future(holder("b")), asyncio.ensure_future(holder("c"))]
        await _settle()
        gate.set()
        await owner_a
        with pytest.raises(asyncio.CancelledError):
            await waiters[0]
        await waiters[1]
        assert got == ["a", "c"] and slots.held("b") == 0

    asyncio.run(asyncio.wait_for(run(), 5))
