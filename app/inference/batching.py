"""Dynamic batching: stack requests that arrive together into one model call.

As in TensorFlow Serving and Triton, the first request of a batch waits at most
`batch_timeout_ms` for others; a batch closes at `max_batch_size` images or at the
timeout, runs in one call off the event loop, and each caller gets its own row back.
An input may also be queued as the function that makes it (a small upload's decoding and
preprocessing), which the batcher's thread runs just before the batch it joins.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["DynamicBatcher", "Input"]

RunBatch = Callable[[np.ndarray], np.ndarray]
Input = np.ndarray | Callable[[], np.ndarray]
"""One input without batch axis, or a blocking function that returns it."""
ObserveBatch = Callable[[int, float, list[float]], None]
"""Called after each model call with (images, seconds of the call, seconds each input waited)."""


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class _Pending:
    inputs: Input
    future: asyncio.Future[tuple[np.ndarray, np.ndarray]] = field(repr=False)
    queued_at: float = 0.0


class DynamicBatcher:
    """Collects single inputs into batches for a blocking batch function.

    Args:
        run_batch: Blocking function from a stacked batch (N, *input_shape) to outputs
            (N, ...); run in the batcher's own worker thread(s), off the event loop.
        max_batch_size: Most inputs per call.
        batch_timeout_ms: Longest wait after the first input of a batch, in ms.
        max_concurrent_batches: Batches run at the same time; with 2, the next batch is
            formed and started while the previous one still runs (pipelining).
        name: Used in log messages.
        observe: Called after each model call with its size, duration and queue waits
            (metrics); None for none.

    Use inside a running event loop: `await batcher.start()`, `await batcher.submit(x)`,
    `await batcher.stop()`. The batches are run by a single background task, so the
    model is never called twice at once; callers that are cancelled while waiting are
    dropped from their batch.

    An input queued as a function is made in the batcher's thread right before the batch
    it joins runs, one after another with the others of that batch: a 28x28 upload's
    decoding and MNIST preprocessing cost less CPU there, where their code and data stay
    in the caches, than between other work on the event loop, whose CPU is the limit under
    load (docs/performance.md).
    An input whose function raises fails alone; the rest of its batch runs.

    Requests still being read or preprocessed can announce themselves with
    `with batcher.arriving():`. A batch waits for more inputs only while at least as
    many are on their way as it already holds: a lone request (concurrency 1) runs at
    once instead of paying the timeout.

    Under steady load the model and the event loop work as a two-stage pipeline: the
    model runs one batch while the loop answers the previous one and reads the next. The
    stages balance only if batches are about equal, so a batch takes at most half of the
    inputs seen in flight (waiting or on their way) since the previous batch closed; left
    alone, a split such as 3 and 13 of 16 repeats forever, and the loop idles while the
    13 run (`benchmarks/run.py`; docs/performance.md gives the measured effect). A burst
    with no load before it is not split.
    """

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch_size: int = 32,
        batch_timeout_ms: float = 2.0,
        max_concurrent_batches: int = 1,
        name: str = "model",
        observe: ObserveBatch | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.batch_timeout = batch_timeout_ms / 1000.0
        self.max_concurrent_batches = max(1, max_concurrent_batches)
        self.name = name
        self.observe = observe
        self.batches_run = 0
        self.on_the_way = 0
        self.waiting = 0
        self._peak_in_flight = 0
        self._previous_peak: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: collections.deque[_Pending] = collections.deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the background task that forms and runs batches."""
        if self._task is None:
            self._executor = ThreadPoolExecutor(self.max_concurrent_batches, thread_name_prefix=f"model-{self.name}")
            self._pending = collections.deque()
            self._task = asyncio.create_task(self._serve(), name=f"batcher-{self.name}")

    async def stop(self, *, drain_seconds: float = 0.0) -> None:
        """Stop the background task once the inputs waiting are answered, or after
        `drain_seconds`; inputs still waiting then fail with CancelledError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_seconds
        while self._task is not None and (self._pending or self.waiting) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._pending:
            self._pending.popleft().future.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @contextlib.contextmanager
    def arriving(self, count: int = 1) -> Iterator[None]:
        """Mark `count` inputs as on their way (being read or preprocessed) until exit."""
        self.on_the_way += count
        try:
            yield
        finally:
            self.on_the_way -= count

    async def submit(self, inputs: Input) -> tuple[np.ndarray, np.ndarray]:
        """Queue one input (without batch axis), or the function that makes it, and wait
        for its output row.

        Returns:
            The output row and the input (as the function returned it).

        Raises:
            RuntimeError: The batcher is not started.
            Exception: Whatever the input's function or the batch function raised for it.
        """
        if self._task is None:
            raise RuntimeError(f"batcher {self.name} is not started")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[np.ndarray, np.ndarray]] = loop.create_future()
        self._pending.append(_Pending(inputs, future, loop.time()))
        self.waiting += 1
        self._peak_in_flight = max(self._peak_in_flight, self.waiting + self.on_the_way)
        if self._wakeup is not None:
            _resolve(self._wakeup)
        try:
            return await future
        finally:
            self.waiting -= 1

    async def _wait(self, timeout: float | None) -> None:
        """Sleep until an input is submitted or `timeout` seconds pass (None: no limit).

        One future and one timer, cheaper than `asyncio.wait_for` on a queue.
        """
        loop = asyncio.get_running_loop()
        self._wakeup = loop.create_future()
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, _resolve, self._wakeup)
        try:
            await self._wakeup
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

    async def _collect(self) -> list[_Pending]:
        """Wait for a first input, then gather more until full, timed out, or fewer on the way than taken."""
        while not self._pending:
            await self._wait(None)
        limit = self.max_batch_size
        if self._previous_peak is not None:
            limit = min(limit, max(1, -(-self._previous_peak // 2)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_timeout
        batch: list[_Pending] = []
        while True:
            while self._pending and len(batch) < limit:
                batch.append(self._pending.popleft())
            remaining = deadline - loop.time()
            if len(batch) >= limit or remaining <= 0 or self.on_the_way < len(batch):
                break
            await self._wait(remaining)
        self._previous_peak, self._peak_in_flight = self._peak_in_flight, self.waiting + self.on_the_way
        return [pending for pending in batch if not pending.future.done()]

    async def _serve(self) -> None:
        """Form batches one after another; run up to `max_concurrent_batches` at once."""
        slots = asyncio.Semaphore(self.max_concurrent_batches)
        running: set[asyncio.Task[None]] = set()

        async def run_and_release(batch: list[_Pending]) -> None:
            try:
                await self._run(batch)
            finally:
                slots.release()

        try:
            while True:
                await slots.acquire()
                batch = await self._collect()
                if not batch:
                    slots.release()
                    continue
                task = asyncio.create_task(run_and_release(batch))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()

    def _make_and_run(
        self, batch: list[_Pending]
    ) -> tuple[list[Exception | None], list[np.ndarray], np.ndarray, float]:
        """In the batcher's thread: make the inputs queued as functions, then run the batch
        function on every input made.

        Returns:
            Each input's error (None if it was made), the inputs made, in order, their
            outputs (empty if none was made), and the seconds of the batch function's call.
        """
        errors: list[Exception | None] = []
        made: list[np.ndarray] = []
        for pending in batch:
            try:
                inputs = pending.inputs() if callable(pending.inputs) else pending.inputs
            except Exception as failure:
                errors.append(failure)
                continue
            pending.inputs = inputs  # a retry one by one (`_run`) does not make it again
            errors.append(None)
            made.append(inputs)
        if not made:
            return errors, made, np.empty(0), 0.0
        started = time.perf_counter()
        outputs = self.run_batch(np.stack(made))
        return errors, made, outputs, time.perf_counter() - started

    async def _run(self, batch: list[_Pending]) -> None:
        """Run one batch; if the batch function fails, run its inputs one by one so only
        the bad one fails."""
        loop = asyncio.get_running_loop()
        taken = loop.time()
        try:
            errors, made, outputs, seconds = await loop.run_in_executor(self._executor, self._make_and_run, batch)
        except Exception as error:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(error)
                return
            logger.warning("batch of %d on %s failed (%s); retrying one by one", len(batch), self.name, error)
            for pending in batch:
                await self._run([pending])
            return
        answered = []
        for pending, failure in zip(batch, errors, strict=True):
            if failure is None:
                answered.append(pending)
            elif not pending.future.done():
                pending.future.set_exception(failure)
        if not made:
            return
        self.batches_run += 1
        if self.observe is not None:
            self.observe(len(made), seconds, [taken - pending.queued_at for pending in answered])
        for pending, inputs, row in zip(answered, made, outputs, strict=True):
            if not pending.future.done():
                pending.future.set_result((row, inputs))
