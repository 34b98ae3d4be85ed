"""Prometheus metrics of one worker process: requests, latencies, queue depth.

Each app gets its own registry, so several apps in one process (tests) do not collide. With
`--workers N` each worker reports its own figures; scrape them as separate targets or run one
worker per port.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# The *_created series double the output and no dashboard reads them.
disable_created_metrics()

# Face work takes tens of milliseconds to seconds on a small CPU.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_depth: Callable[[], float], in_progress: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "faceid_requests",
            "HTTP requests answered, by route and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "faceid_request_seconds",
            "Time from request to response, by route.",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.work = Histogram(
            "faceid_work_seconds",
            "Time spent in the face pipeline (after the queue), by route.",
            ["route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        queue = Gauge(
            "faceid_queue_depth", "Requests waiting for a worker thread.", registry=self.registry
        )
        queue.set_function(queue_depth)
        running = Gauge(
            "faceid_work_in_progress",
            "Requests running or waiting in the face pipeline.",
            registry=self.registry,
        )
        running.set_function(in_progress)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
