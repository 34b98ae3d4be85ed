"""The `serve` section of scripts/benchmark.py: `faceid serve` under load, and its overhead.

Starts `faceid serve` as a user would (its own process, loopback port) on a gallery of the
example people, then measures
- identify requests/s and latency percentiles with --serve-clients concurrent clients, each
  sending its next request when the previous one is answered (faceid.server.load);
- the service's overhead at one client: the same identify over HTTP against the Python API
  called in-process (`FaceID.identify(path)`), alternating one call of each so that a change in
  the machine's load hits both alike; medians of --serve-requests calls each.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROBES = ROOT / "examples" / "probes"
TARGET_OVERHEAD = 0.15


def _start(gallery: Path, keys: Path, model: Path | None, device: str) -> tuple[Any, str]:
    import httpx

    from faceid.server.load import die_with_parent, free_port

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "faceid.cli",
        "serve",
        "--port",
        str(port),
        "--gallery",
        str(gallery),
        "--keys",
        str(keys),
        "--device",
        device,
        "--log-level",
        "warning",
    ]
    if model is not None:
        cmd += ["--model", str(model)]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=die_with_parent
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"faceid serve exited: {proc.stderr.read().decode()}")
        try:
            if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("faceid serve did not start within 120 s")


def measure_serve(model: Path | None, device: str, clients: int, requests: int, log: Any) -> dict:
    import httpx

    from faceid import FaceID
    from faceid.server.load import Request, run, summary

    probes = sorted(PROBES.glob("*.jpg"))
    with tempfile.TemporaryDirectory(prefix="faceid-bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        gallery = tmp / "gallery"
        fid = FaceID(gallery=gallery, model=model, device=device)
        fid.enroll_paths([ROOT / "examples" / "people"], workers=1)
        faces = sum(fid.people().values())
        proc, url = _start(gallery, tmp / "no-keys.json", model, device)
        try:
            files = {p: [("photo", (p.name, p.read_bytes(), "image/jpeg"))] for p in probes}

            def plan(client: int, i: int) -> Request:
                p = probes[(client + i) % len(probes)]
                return Request("identify", "POST", "/v1/identify", files=files[p])

            log(f"serve: warm-up, then {clients} clients x {requests} identify requests")
            run(url, plan, clients=clients, requests=5)
            results, wall = run(url, plan, clients=clients, requests=requests)
            concurrent = summary(results, wall)
            bad = {s: n for s, n in concurrent["statuses"].items() if s != "200"}

            log(f"serve: one client, {requests} identify calls over HTTP and in-process")
            http_s, inproc_s, work_s = [], [], []
            with httpx.Client(base_url=url, timeout=120) as c:
                for p in probes:  # warm both paths
                    c.post("/v1/identify", files=files[p])
                    fid.identify(p)
                for i in range(requests):
                    p = probes[i % len(probes)]
                    start = time.perf_counter()
                    r = c.post("/v1/identify", files=files[p])
                    http_s.append(time.perf_counter() - start)
                    r.raise_for_status()
                    work_s.append(r.json()["timings_ms"]["work"] / 1000)
                    start = time.perf_counter()
                    fid.identify(p)
                    inproc_s.append(time.perf_counter() - start)
        finally:
            proc.terminate()
            proc.wait(30)
    http_ms = statistics.median(http_s) * 1000
    inproc_ms = statistics.median(inproc_s) * 1000
    return {
        "clients": clients,
        "requests_per_client": requests,
        "gallery_faces": faces,
        "concurrent": concurrent,
        "errors": bad,
        "one_client": {
            "http_ms": round(http_ms, 2),
            "server_work_ms": round(statistics.median(work_s) * 1000, 2),
            "in_process_ms": round(inproc_ms, 2),
            "overhead": round(http_ms / inproc_ms - 1, 4),
        },
    }


def render_serve(s: dict, table: Any) -> list[str]:
    c, one = s["concurrent"], s["one_client"]
    return [
        "",
        f"## Service (`faceid serve`, identify, gallery of {s['gallery_faces']} faces)",
        "",
        table(
            ["clients", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "non-200"],
            [
                [
                    s["clients"],
                    c["requests"],
                    c["req_per_s"],
                    c["p50_ms"],
                    c["p95_ms"],
                    c["p99_ms"],
                    sum(s["errors"].values()),
                ]
            ],
        ),
        "",
        table(
            [
                "one client",
                "HTTP round trip ms",
                "server work ms",
                "Python API in-process ms",
                "overhead",
            ],
            [
                [
                    "median",
                    one["http_ms"],
                    one["server_work_ms"],
                    one["in_process_ms"],
                    f"{one['overhead'] * 100:.1f} %",
                ]
            ],
        ),
    ]


def serve_target(s: dict) -> dict:
    o = s["one_client"]["overhead"]
    return {
        "target": f"service overhead <= {TARGET_OVERHEAD * 100:g} % per identify at one client",
        "measured": f"{o * 100:.1f} %",
        "verdict": "met" if o <= TARGET_OVERHEAD else "not met",
    }
