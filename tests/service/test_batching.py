"""The dynamic batcher: ordering, size and timeout limits, errors, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from functools import partial

import numpy as np
import pytest

from app.errors import UnsupportedImage
from app.inference.batching import DynamicBatcher


class Recorder:
    """A batch function that doubles its input and records each batch size."""

    def __init__(self, delay: float = 0.0, fail_on: float | None = None) -> None:
        self.sizes: list[int] = []
        self.delay = delay
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.sizes.append(len(batch))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and (batch == self.fail_on).any():
            raise ValueError("poisoned input")
        return batch * 2


async def _with_batcher(recorder: Recorder, body, **options):  # type: ignore[no-untyped-def]
    batcher = DynamicBatcher(recorder, **options)
    await batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.stop()


def test_results_come_back_in_order_to_their_callers() -> None:
    recorder = Recorder()

    async def body(batcher: DynamicBatcher) -> list[tuple[np.ndarray, np.ndarray]]:
        return await asyncio.gather(*(batcher.submit(np.array([float(i)])) for i in range(50)))

    results = asyncio.run(_with_batcher(recorder, body, max_batch_size=8, batch_timeout_ms=20))
    assert [(float(row[0]), float(inputs[0])) for row, inputs in results] == [(2.0 * i, i) for i in range(50)]
    assert sum(recorder.sizes) == 50


def test_inputs_queued_as_functions_are_made_in_the_batchers_thread() -> None:
    recorder = Recorder()
    loop_thread = threading.get_ident()
    made_in: list[int] = []

    def make(value: float) -> np.ndarray:
        made_in.append(threading.get_ident())
        return np.array([value])

    async def body(batcher: DynamicBatcher) -> list[tuple[np.ndarray, np.ndarray]]:
        return await asyncio.gather(*(batcher.submit(partial(make, float(i))) for i in range(6)))

    results = asyncio.run(_with_batcher(recorder, body, max_batch_size=8, batch_timeout_ms=50))
    assert [(float(row[0]), float(inputs[0])) for row, inputs in results] == [(2.0 * i, i) for i in range(6)]
    assert recorder.sizes == [6]
    assert len(made_in) == 6 and loop_thread not in made_in


def test_an_input_whose_function_fails_fails_alone() -> None:
    recorder = Recorder()

    def broken() -> np.ndarray:
        raise UnsupportedImage("the image data is truncated or corrupt")

    async def body(batcher: DynamicBatcher) -> list[object]:
        submitted = [np.array([1.0]), broken, partial(np.array, [3.0])]
        return await asyncio.gather(*(batcher.submit(x) for x in submitted), return_exceptions=True)

    results = asyncio.run(_with_batcher(recorder, body, max_batch_size=8, batch_timeout_ms=50))
    assert isinstance(results[1], UnsupportedImage)
    assert [float(results[index][0][0]) for index in (0, 2)] == [2.0, 6.0]  # type: ignore[index]
    assert recorder.sizes == [2]


def test_concurrent_requests_are_batched_up_to_max_size() -> None:
    recorder = Recorder()

    async def body(batcher: DynamicBatcher) -> None:
        await asyncio.gather(*(batcher.submit(np.zeros(3)) for _ in range(20)))

    asyncio.run(_with_batcher(recorder, body, max_batch_size=8, batch_timeout_ms=50))
    assert recorder.sizes == [8, 8, 4]


def test_under_steady_load_a_batch_takes_at_most_half_of_those_in_flight() -> None:
    recorder = Recorder()

    async def body(batcher: DynamicBatcher) -> None:
        await asyncio.gather(*(batcher.submit(np.zeros(3)) for _ in range(16)))  # no load before: one batch
        await asyncio.gather(*(batcher.submit(np.zeros(3)) for _ in range(12)))  # 16 were in flight: 8 at most

    asyncio.run(_with_batcher(recorder, body, max_batch_size=32, batch_timeout_ms=50))
    assert recorder.sizes == [16, 8, 4]


def test_a_lone_request_runs_at_once() -> None:
    recorder = Recorder()

    async def body(batcher: DynamicBatcher) -> float:
        started = time.perf_counter()
        await batcher.submit(np.zeros(2))
        return time.perf_counter() - started

    elapsed = asyncio.run(_with_batcher(recorder, body, max_batch_size=32, batch_timeout_ms=500))
    assert recorder.sizes == [1]
    assert elapsed < 0.4  # nothing else was on its way, so it did not wait the 500 ms


def test_a_batch_waits_for_requests_on_their_way() -> None:
    recorder = Recorder()

    async def body(batcher: DynamicBatcher) -> None:
        async def slow_request() -> np.ndarray:
            with batcher.arriving():
                await asyncio.sleep(0.05)  # still being read and preprocessed
            return await batcher.submit(np.zeros(2))

        await asyncio.gather(batcher.submit(np.zeros(2)), slow_request())

    asyncio.run(_with_batcher(recorder, body, max_batch_size=32, batch_timeout_ms=500))
    assert recorder.sizes == [2]


def test_a_batch_stops_waiting_once_it_holds_more_than_are_on_their_way() -> None:
    recorder = Recorder()

    async def body(batcher: DynamicBatcher) -> float:
        with batcher.arriving():  # one announced, never submitted; three already here
            started = time.perf_counter()
            await asyncio.gather(*(batcher.submit(np.zeros(2)) for _ in range(3)))
            return time.perf_counter() - started

    elapsed = asyncio.run(_with_batcher(recorder, body, max_batch_size=32, batch_timeout_ms=500))
    assert recorder.sizes == [3]
    assert elapsed < 0.4  # the model runs these three while the loop prepares the fourth


def test_a_lone_request_waits_at_most_the_timeout() -> None:
    recorder = Recorder()

    async def body(batcher: DynamicBatcher) -> float:
        with batcher.arriving():  # announced, but never submitted
            started = time.perf_counter()
            await batcher.submit(np.zeros(2))
            return time.perf_counter() - started

    elapsed = asyncio.run(_with_batcher(recorder, body, max_batch_size=32, batch_timeout_ms=30))
    assert recorder.sizes == [1]
    assert 0.025 <= elapsed < 1.0


def test_requests_after_the_timeout_go_in_the_next_batch() -> None:
    recorder = Recorder()

    async def body(batcher: DynamicBatcher) -> None:
        with batcher.arriving():
            first = asyncio.ensure_future(batcher.submit(np.zeros(1)))
            await asyncio.sleep(0.1)
        await asyncio.gather(first, batcher.submit(np.zeros(1)))

    asyncio.run(_with_batcher(recorder, body, max_batch_size=32, batch_timeout_ms=10))
    assert recorder.sizes == [1, 1]


def test_an_error_in_one_item_fails_only_that_request() -> None:
    recorder = Recorder(fail_on=-1.0)

    async def body(batcher: DynamicBatcher) -> list[object]:
        inputs = [np.array([1.0]), np.array([-1.0]), np.array([3.0])]
        return await asyncio.gather(*(batcher.submit(x) for x in inputs), return_exceptions=True)

    results = asyncio.run(_with_batcher(recorder, body, max_batch_size=8, batch_timeout_ms=50))
    assert float(results[0][0][0]) == 2.0  # type: ignore[index]
    assert isinstance(results[1], ValueError)
    assert float(results[2][0][0]) == 6.0  # type: ignore[index]


def test_a_mismatched_shape_fails_only_that_request() -> None:
    def model(batch: np.ndarray) -> np.ndarray:
        if batch.shape[1:] != (2,):
            raise ValueError(f"expected inputs of shape (2,), got {batch.shape[1:]}")
        return batch + 1

    async def body() -> list[object]:
        batcher = DynamicBatcher(model, max_batch_size=8, batch_timeout_ms=50)
        await batcher.start()
        inputs = [np.zeros(2), np.zeros(5), np.zeros(2)]
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs), return_exceptions=True)
        await batcher.stop()
        return results

    results = asyncio.run(body())
    assert isinstance(results[1], ValueError)
    assert results[0][0].tolist() == [1.0, 1.0] and results[2][0].tolist() == [1.0, 1.0]  # type: ignore[index]


def test_a_cancelled_waiting_request_is_dropped_from_its_batch() -> None:
    recorder = Recorder(delay=0.05)

    async def body(batcher: DynamicBatcher) -> tuple[np.ndarray, np.ndarray]:
        blocker = asyncio.ensure_future(batcher.submit(np.array([0.0])))  # occupies the model
        await asyncio.sleep(0.01)
        doomed = asyncio.ensure_future(batcher.submit(np.array([1.0])))
        survivor = asyncio.ensure_future(batcher.submit(np.array([2.0])))
        await asyncio.sleep(0.01)
        doomed.cancel()
        await blocker
        return await survivor

    row, _ = asyncio.run(_with_batcher(recorder, body, max_batch_size=8, batch_timeout_ms=1))
    assert float(row[0]) == 4.0
    assert recorder.sizes == [1, 1]


def test_submit_before_start_is_an_error() -> None:
    batcher = DynamicBatcher(Recorder())
    with pytest.raises(RuntimeError, match="not started"):
        asyncio.run(batcher.submit(np.zeros(1)))


def test_max_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DynamicBatcher(Recorder(), max_batch_size=0)
