"""Micro-batching for the service: concurrent requests share one network call.

Request threads decode their uploads and hand the contract squares to a `MicroBatcher`. Each
of its `lanes` worker threads (one per concurrent network call the model runs well: one per
core on ONNX Runtime) takes the oldest request, waits up to `max_wait_ms` for more (up to
`max_batch` images in all), runs the network once and gives every request its own rows. The
queue of waiting requests is bounded: when it is full a request is refused at once
(`Overloaded`, answered 503 with Retry-After) instead of waiting without end.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)
Job = tuple[list[np.ndarray], "Future[np.ndarray]"]


@dataclass(frozen=True)
class Batching:
    """How the service groups requests: images per network call, how long the first request
    of a batch may wait for company, and how many requests may queue."""

    max_batch: int = 16
    max_wait_ms: float = 2.0
    max_queue: int = 64

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1 or self.max_wait_ms < 0:
            raise ValueError(f"invalid batching settings: {self}")


class Overloaded(Exception):  # noqa: N818 - answered as HTTP 503, not raised to users
    """The request queue is full; try again after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the service is busy; retry after {retry_after} s")
        self.retry_after = retry_after


class MicroBatcher:
    """Runs `run(squares) -> one value per square` over requests grouped into batches, on
    `lanes` worker threads (`run` must be safe to call from several threads at once)."""

    def __init__(
        self,
        run: Callable[[list[np.ndarray]], np.ndarray],
        settings: Batching | None = None,
        lanes: int = 1,
    ) -> None:
        self.run = run
        self.settings = settings or Batching()
        self._queue: queue.Queue[Job | None] = queue.Queue(self.settings.max_queue)
        self._seconds_per_image = 0.005  # running estimate, for Retry-After
        self.batches: deque[int] = deque(maxlen=1000)  # images per network call, recent last
        self._threads = [
            threading.Thread(target=self._loop, name=f"micro-batcher-{i}", daemon=True)
            for i in range(max(1, lanes))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, squares: list[np.ndarray]) -> np.ndarray:
        """The values for `squares`, computed in a shared batch; raises `Overloaded` at once
        when the queue is full, and whatever `run` raised for this batch."""
        future: Future[np.ndarray] = Future()
        try:
            self._queue.put_nowait((squares, future))
        except queue.Full:
            raise Overloaded(self.retry_after()) from None
        return future.result()

    def waiting(self) -> int:
        """How many requests wait in the queue now (none being run counts)."""
        return self._queue.qsize()

    def retry_after(self) -> int:
        """Whole seconds until the queue has likely drained (at least 1)."""
        waiting = self.settings.max_queue * self.settings.max_batch
        return max(1, round(waiting * self._seconds_per_image))

    def close(self) -> None:
        """Stop the workers after the requests already queued."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=10)

    def _collect(self, first: Job) -> tuple[list[Job], bool]:
        """`first` and whatever arrives within the wait, up to `max_batch` images."""
        jobs, images = [first], len(first[0])
        deadline = time.monotonic() + self.settings.max_wait_ms / 1000
        while images < self.settings.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            images += len(job[0])
        return jobs, False

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            squares = [sq for job_squares, _ in jobs for sq in job_squares]
            start = time.perf_counter()
            try:
                values = np.asarray(self.run(squares))
            except Exception as exc:  # every waiting request gets the error, the loop goes on
                log.exception("batch of %d images failed", len(squares))
                for _, future in jobs:
                    future.set_exception(exc)
                continue
            elapsed = (time.perf_counter() - start) / len(squares)
            self._seconds_per_image = 0.8 * self._seconds_per_image + 0.2 * elapsed
            self.batches.append(len(squares))
            offset = 0
            for job_squares, future in jobs:
                future.set_result(values[offset : offset + len(job_squares)])
                offset += len(job_squares)
