"""Load: 8 concurrent clients x 200 mixed requests (identify, verify, enroll) against a real
server on loopback. No 5xx, no request refused with the default queue, and every enrollment
answered 200 is in the gallery afterwards. Latency percentiles and requests/s are printed and
written to test-artefacts/load.json; they are a report, not a pass mark (speed is measured by
scripts/benchmark.py)."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from faceid.server.load import Request, run, summary
from tests.serving import PROBES, ROOT, Server, photo

pytestmark = pytest.mark.slow

CLIENTS, REQUESTS = 8, 200


def _file(field: str, path) -> tuple[str, tuple[str, bytes, str]]:
    return field, (path.name, path.read_bytes(), "image/jpeg")


def plan(client: int, i: int) -> Request:
    """60 % identify, 30 % verify, 10 % enroll (a new name each time), interleaved."""
    probes = sorted(PROBES.glob("*.jpg"))
    step = i % 10
    if step == 9:
        person = ("Alvaro_Uribe", "Carlos_Moya", "Amelie_Mauresmo")[(client + i) % 3]
        return Request(
            "enroll",
            "POST",
            "/v1/enroll",
            # The same faces under new names: allowed explicitly.
            data={"name": f"load c{client} r{i}", "allow_duplicates": "true"},
            files=[_file("photo", photo(person, 1 + i % 2))],
        )
    if step in (6, 7, 8):
        a, b = probes[(client + i) % 4], probes[(client + i + 1) % 4]
        return Request(
            "verify", "POST", "/v1/verify", files=[_file("photo_a", a), _file("photo_b", b)]
        )
    return Request(
        "identify", "POST", "/v1/identify", files=[_file("photo", probes[(client + i) % 4])]
    )


def test_eight_clients_of_mixed_requests_get_no_5xx_and_lose_no_enrollment(tmp_path):
    with Server(tmp_path) as server:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            for person in ("Alvaro_Uribe", "Carlos_Moya"):
                files = [_file("photo", photo(person, 1))]
                assert c.post("/v1/enroll", data={"name": person}, files=files).is_success
        results, wall = run(server.url, plan, clients=CLIENTS, requests=REQUESTS, deadline=1200)
        report = summary(results, wall)
        with httpx.Client(base_url=server.url, timeout=120) as c:
            people = c.get("/v1/people").json()["people"]
        assert server.alive()

    artefacts = os.environ.get("FACEID_TEST_ARTEFACTS") or ROOT / "test-artefacts"
    os.makedirs(artefacts, exist_ok=True)
    with open(os.path.join(artefacts, "load.json"), "w") as fh:
        json.dump(report, fh, indent=1)
    print(
        f"\nload: {report['requests']} requests in {report['wall_s']} s, "
        f"{report['req_per_s']} req/s, p50 {report['p50_ms']} ms, p95 {report['p95_ms']} ms, "
        f"p99 {report['p99_ms']} ms, statuses {report['statuses']}"
    )

    assert len(results) == CLIENTS * REQUESTS  # the deadline was not needed
    statuses = {r.status for r in results}
    assert statuses == {200}, report["statuses"]  # no 5xx, no 429, no dropped connection
    enrolled = [r.request.data["name"] for r in results if r.kind == "enroll"]
    assert len(enrolled) == CLIENTS * REQUESTS // 10
    assert all(people.get(name) == 1 for name in enrolled)  # no lost enrollment
    named = [r.body["faces"][0]["name"] for r in results if r.kind == "identify"]
    assert set(named) <= {"Alvaro_Uribe", "Carlos_Moya", "unknown"} | set(enrolled)
