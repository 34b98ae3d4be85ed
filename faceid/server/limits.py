"""What keeps a small machine serving under load: a bounded pool for the face work.

Face work is CPU-bound (detection, the encoder), so it runs in a few threads off the event
loop; dlib and the encoder release the GIL, so threads use the cores. Requests wait in a queue
of fixed length; when it is full the service answers 429 at once instead of letting latency
grow without bound, and the client can retry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Busy(Exception):
    """The work queue is full: answered as 429 with Retry-After."""


class WorkPool:
    """`threads` workers and at most `queue` requests waiting for one."""

    def __init__(self, threads: int, queue: int) -> None:
        self.threads = threads
        self.capacity = threads + queue
        self.pending = 0  # running + waiting; touched only on the event loop
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="faceid-work")

    async def run(self, fn: Callable[..., T], *args: Any) -> tuple[T, float, float]:
        """Run fn(*args) in the pool: (result, seconds queued, seconds working)."""
        if self.pending >= self.capacity:
            raise Busy(f"the service is busy ({self.pending} requests in progress); retry shortly")
        self.pending += 1
        submitted = time.perf_counter()
        started: list[float] = []

        def job() -> T:
            started.append(time.perf_counter())
            return fn(*args)

        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, job)
        finally:
            self.pending -= 1
        done = time.perf_counter()
        start = started[0] if started else submitted
        return result, start - submitted, done - start

    @property
    def waiting(self) -> int:
        return max(0, self.pending - self.threads)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


DEFAULT_MAX_BODY = 20_000_000
"""Request bodies above this many bytes are refused with 413 (FastAPI's max_body_size)."""
