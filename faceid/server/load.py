"""A closed-loop load generator for `faceid serve`: N clients, each sending its requests one
after another, with latency percentiles and throughput.

Used by the load test (tests/test_server_load.py) and by `scripts/benchmark.py --sections
serve`, so both measure the same way. Bounded by construction: a fixed number of requests, a
per-request timeout and an overall deadline after which clients stop sending.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    """One request of a plan: what to send, and a label to group results by."""

    kind: str
    method: str
    path: str
    data: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, tuple[str, bytes, str]]] = field(default_factory=list)


@dataclass
class Result:
    kind: str
    status: int  # 0: no answer (connection error or timeout)
    seconds: float
    request: Request
    body: Any = None


def run(
    url: str,
    plan: Callable[[int, int], Request],
    *,
    clients: int,
    requests: int,
    timeout: float = 120.0,
    deadline: float = 900.0,
    headers: dict[str, str] | None = None,
) -> tuple[list[Result], float]:
    """Each of `clients` threads sends plan(client, i) for i < `requests`, waiting for each
    answer before the next. Returns every result and the wall time in seconds."""
    import httpx

    results: list[Result] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline

    def client(c: int) -> None:
        with httpx.Client(base_url=url, timeout=timeout, headers=headers) as session:
            for i in range(requests):
                if time.monotonic() > stop_at:
                    return
                req = plan(c, i)
                start = time.perf_counter()
                try:
                    r = session.request(req.method, req.path, data=req.data, files=req.files)
                    status, body = r.status_code, _json(r)
                except httpx.TransportError as exc:
                    status, body = 0, str(exc)
                seconds = time.perf_counter() - start
                with lock:
                    results.append(Result(req.kind, status, seconds, req, body))

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - start


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """For subprocess.Popen(preexec_fn=...): on Linux the child gets SIGTERM when the process
    that started it dies, so a killed benchmark or test run leaves no server behind."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between order statistics."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def summary(results: list[Result], wall: float) -> dict:
    """Requests/s, latency percentiles in ms, status counts: overall and per kind."""

    def stats(rows: list[Result]) -> dict:
        ms = sorted(r.seconds * 1000 for r in rows)
        return {
            "requests": len(rows),
            "req_per_s": round(len(rows) / wall, 2) if wall else None,
            "p50_ms": round(percentile(ms, 50), 1) if ms else None,
            "p95_ms": round(percentile(ms, 95), 1) if ms else None,
            "p99_ms": round(percentile(ms, 99), 1) if ms else None,
            "statuses": dict(sorted(Counter(str(r.status) for r in rows).items())),
        }

    kinds = sorted({r.kind for r in results})
    return {
        "wall_s": round(wall, 2),
        **stats(results),
        "by_kind": {k: stats([r for r in results if r.kind == k]) for k in kinds},
    }
