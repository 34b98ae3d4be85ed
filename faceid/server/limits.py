"""What keeps a small machine serving under load: a bounded pool for the face work, a body cap.

Face work is CPU-bound (detection, the encoder), so it runs in a few threads off the event
loop; dlib and the encoder release the GIL, so threads use the cores. Requests wait in a queue
of fixed length; when it is full the service answers 429 at once instead of letting latency
grow without bound, and the client can retry.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from starlette.exceptions import HTTPException

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
"""Request bodies above this many bytes are refused with 413."""


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the body crosses the limit; FastAPI passes HTTPExceptions
    through its body parsing, so the app's handler answers it as JSON 413."""

    def __init__(self) -> None:
        super().__init__(413, "the request body is too large")


class BodyLimit:
    """ASGI middleware: request bodies over `limit` bytes get a JSON 413.

    A declared Content-Length over the limit is refused before any byte is read; a body
    without one (chunked) is cut off where it crosses the limit. FastAPI's own max_body_size
    does the same but answers a declared oversize body in plain text, outside the service's
    JSON error shape.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers") or ():
            if key == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(send)
                return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Callable) -> None:
        body = json.dumps(
            {"error": {"code": "payload_too_large", "message": too_large_message(self.limit)}}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def too_large_message(limit: int) -> str:
    return f"the request body is over the {limit / 1_000_000:g} MB limit"
