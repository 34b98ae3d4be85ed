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
    """Six photos of two people over HTTP, alternating between two replicas, while the CLI
    enrolls two photos of a third person: every replica then sees and identifies all of it."""
    over_http = [
        (person, p)
        for person in ("Alvaro_Uribe", "Amelie_Mauresmo")
        for p in [photo(person, 1), photo(person, 2), PROBES / f"{person}_0002.jpg"]
    ]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with Server(tmp_path / "a", gallery=pg_url) as a, Server(tmp_path / "b", gallery=pg_url) as b:

        def http_enroll(i: int) -> tuple[int, str]:
            person, path = over_http[i]
            with httpx.Client(base_url=(a, b)[i % 2].url, timeout=120) as c:
                r = c.post("/v1/enroll", data={"name": person}, files=[upload(path)])
                return r.status_code, r.text

        with cf.ThreadPoolExecutor(3) as pool:
            http = pool.map(http_enroll, range(len(over_http)))
            cli = [
                faceid_cli(
                    "enroll",
                    str(photo("Carlos_Moya", n)),
                    "--name",
                    "Carlos_Moya",
                    "--gallery",
                    pg_url,
                )
                for n in (1, 2)
            ]
            http = list(http)
        assert [c for c, _ in http] == [200] * 6, http
        assert [c.returncode for c in cli] == [0, 0], [c.stderr for c in cli]

        expected = {"Alvaro_Uribe": 3, "Amelie_Mauresmo": 3, "Carlos_Moya": 2}
        for server in (a, b):  # every replica sees every writer's enrollments
            with httpx.Client(base_url=server.url, timeout=120) as c:
                assert c.get("/v1/people").json()["people"] == expected
                r = c.post("/v1/identify", files=[upload(PROBES / "Carlos_Moya_0002.jpg")])
                assert r.status_code == 200, r.text
                assert r.json()["faces"][0]["name"] == "Carlos_Moya"

        with httpx.Client(base_url=a.url, timeout=120) as c:  # a removal on one replica ...
            assert c.delete("/v1/people/Carlos_Moya").status_code == 200
        with httpx.Client(base_url=b.url, timeout=120) as c:  # ... is seen by the other
            r = c.post("/v1/identify", files=[upload(PROBES / "Carlos_Moya_0002.jpg")])
            assert r.json()["faces"][0]["name"] != "Carlos_Moya"
    assert inspect(pg_url)["people"] == {"Alvaro_Uribe": 3, "Amelie_Mauresmo": 3}
