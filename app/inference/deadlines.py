"""Deadlines that cost a request answered quickly next to nothing.

`asyncio.timeout_at` puts a timer for the whole deadline (30 s by default) on the event
loop's heap. Nearly every request is answered long before, so at hundreds of requests a
second the heap fills with thousands of cancelled timers, and every push compares them in
Python. `LazyDeadline` starts its block without a timer of that length: one short timer
fires `check_after` seconds in, and only then, for a request still running, sets the real
deadline and calls `on_slow` (which starts the watch for a client that went away). A
request answered sooner pays for one short timer, set and cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

__all__ = ["CHECK_AFTER", "LazyDeadline"]

CHECK_AFTER = 0.1
"""Seconds a block runs before its deadline is armed and `on_slow` called. At the default
bound on requests in flight, nearly every prediction is answered sooner."""


class LazyDeadline:
    """An async context manager that raises `TimeoutError` in its block once the event
    loop's time passes `when`, like `asyncio.timeout_at`, with the timer armed late.

    Args:
        when: Event-loop time (`loop.time()`, seconds) the block must end by; None for no
            deadline (then only `on_slow` is scheduled).
        check_after: Seconds after entry at which the deadline is armed and `on_slow`
            runs; a deadline nearer than that is armed at entry.
        on_slow: Called once, in the event loop, if the block is still running
            `check_after` seconds after entry.

    Raises:
        TimeoutError: From `__aexit__`, when the deadline cancelled the block.
    """

    __slots__ = ("_on_slow", "_timeout", "_timer", "check_after", "when")

    def __init__(
        self, when: float | None, *, check_after: float = CHECK_AFTER, on_slow: Callable[[], None] | None = None
    ) -> None:
        self.when = when
        self.check_after = check_after
        self._on_slow = on_slow
        self._timeout = asyncio.timeout(None)
        self._timer: asyncio.TimerHandle | None = None

    def _check(self) -> None:
        self._timer = None
        self._timeout.reschedule(self.when)
        if self._on_slow is not None:
            self._on_slow()

    async def __aenter__(self) -> LazyDeadline:
        await self._timeout.__aenter__()
        loop = asyncio.get_running_loop()
        check_at = loop.time() + self.check_after
        if self.when is not None and self.when <= check_at:
            self._timeout.reschedule(self.when)
        elif self._on_slow is not None or self.when is not None:
            self._timer = loop.call_at(check_at, self._check)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._timeout.__aexit__(kind, error, traceback)
