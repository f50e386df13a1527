"""`LazyDeadline`: a deadline like `asyncio.timeout_at`, armed only for a block still running."""

from __future__ import annotations

import asyncio

import pytest

from app.inference.deadlines import LazyDeadline


def test_a_block_past_its_deadline_raises_timeout_error() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with LazyDeadline(loop.time() + 0.05, check_after=0.01):
                await asyncio.sleep(1)

    asyncio.run(body())


def test_a_deadline_nearer_than_the_check_is_armed_at_once() -> None:
    async def body() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            async with LazyDeadline(started + 0.02, check_after=10):
                await asyncio.sleep(1)
        return loop.time() - started

    assert asyncio.run(body()) < 0.5


def test_a_deadline_already_past_cancels_before_the_first_wait_returns() -> None:
    reached = []

    async def body() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with LazyDeadline(loop.time() - 1):
                await asyncio.sleep(0)
                reached.append(True)

    asyncio.run(body())
    assert not reached


def test_on_slow_runs_once_for_a_slow_block_and_never_for_a_fast_one() -> None:
    calls: list[str] = []

    async def body() -> int:
        loop = asyncio.get_running_loop()
        async with LazyDeadline(None, check_after=0.01, on_slow=lambda: calls.append("fast")):
            await asyncio.sleep(0)
        async with LazyDeadline(loop.time() + 5, check_after=0.01, on_slow=lambda: calls.append("slow")):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.03)  # a timer left behind by the fast block would fire here
        return sum(not timer.cancelled() for timer in loop._scheduled)  # type: ignore[attr-defined]

    pending = asyncio.run(body())
    assert calls == ["slow"]
    assert pending == 0


def test_a_cancellation_from_outside_is_not_taken_for_the_deadline() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()

        async def guarded() -> None:
            async with LazyDeadline(loop.time() + 5, check_after=0.01):
                await asyncio.sleep(1)

        task = asyncio.create_task(guarded())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(body())
