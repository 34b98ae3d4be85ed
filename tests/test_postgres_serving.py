"""Several `faceid serve` replicas and the CLI on one PostgreSQL gallery, as behind a load
balancer: what one replica enrolls, the others identify at once. Real processes, real HTTP, a
real PostgreSQL server (pg_server), the shipped model and the example photos.
"""

from __future__ import annotations

import concurrent.futures as cf

import httpx
import pytest

from faceid.gallery.locate import inspect
from tests.serving import PROBES, Server, faceid_cli, photo, upload

pytestmark = pytest.mark.slow


def test_serve_replicas_and_the_cli_share_one_postgresql_gallery(tmp_path, pg_url) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with Server(tmp_path / "a", gallery=pg_url) as a, Server(tmp_path / "b", gallery=pg_url) as b:

        def http_enroll(i: int) -> int:
            server = (a, b)[i % 2]
            with httpx.Client(base_url=server.url, timeout=120) as c:
                files = [upload(photo("Alvaro_Uribe", 1 + i % 2))]
                return c.post("/v1/enroll", data={"name": f"http {i}"}, files=files).status_code

        with cf.ThreadPoolExecutor(4) as pool:
            http = pool.map(http_enroll, range(4))
            cli = [
                faceid_cli(
                    "enroll",
                    str(photo("Carlos_Moya", 1 + i % 2)),
                    "--name",
                    "Carlos Moya",
                    "--gallery",
                    pg_url,
                )
                for i in range(2)
            ]
            assert list(http) == [200] * 4
        assert [c.returncode for c in cli] == [0, 0], [c.stderr for c in cli]

        expected = {**{f"http {i}": 1 for i in range(4)}, "Carlos Moya": 2}
        for server in (a, b):  # every replica sees every writer's enrollments
            with httpx.Client(base_url=server.url, timeout=120) as c:
                assert c.get("/v1/people").json()["people"] == expected
                r = c.post("/v1/identify", files=[upload(PROBES / "Carlos_Moya_0002.jpg")])
                assert r.status_code == 200, r.text
                assert r.json()["faces"][0]["name"] == "Carlos Moya"

        with httpx.Client(base_url=a.url, timeout=120) as c:  # a removal on one replica ...
            assert c.delete("/v1/people/Carlos%20Moya").status_code == 200
        with httpx.Client(base_url=b.url, timeout=120) as c:  # ... is seen by the other
            r = c.post("/v1/identify", files=[upload(PROBES / "Carlos_Moya_0002.jpg")])
            assert r.json()["faces"][0]["name"] != "Carlos Moya"
    assert inspect(pg_url)["people"] == {f"http {i}": 1 for i in range(4)}
