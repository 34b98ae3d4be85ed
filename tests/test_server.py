"""`faceid serve` over real HTTP: a uvicorn process on a loopback port, called with httpx."""

from __future__ import annotations

import concurrent.futures as cf
import json
import re

import httpx
import pytest

from tests.serving import PROBES, Server, faceid_cli, photo, upload

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server(tmp_path_factory.mktemp("serve")) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def enrolled(client):
    for person in ("Alvaro_Uribe", "Carlos_Moya"):
        files = [upload(photo(person, 1)), upload(photo(person, 2))]
        r = client.post("/v1/enroll", data={"name": person.replace("_", " ")}, files=files)
        assert r.status_code == 200, r.text
        assert len(r.json()["enrolled"]) == 2
    return client


def test_health_names_the_model_and_the_gallery_size(client):
    h = client.get("/v1/health").json()
    assert h["status"] == "ok"
    assert re.fullmatch(r"faceid-[0-9a-f]{12}", h["model_id"])
    assert h["uptime_s"] >= 0 and h["auth"] == "none (loopback only)"


def test_enrolled_people_are_listed(enrolled):
    r = enrolled.get("/v1/people").json()
    assert r["people"] == {"Alvaro Uribe": 2, "Carlos Moya": 2} and r["count"] == 2
    assert enrolled.get("/v1/health").json()["faces"] == 4


def test_identify_names_an_enrolled_person_with_box_distance_and_threshold(enrolled):
    r = enrolled.post("/v1/identify", files=[upload(PROBES / "Carlos_Moya_0002.jpg")])
    assert r.status_code == 200, r.text
    (face,) = r.json()["faces"]
    assert face["name"] == "Carlos Moya"
    assert face["distance"] <= face["threshold"]
    left, top, right, bottom = face["box"]
    assert 0 <= left < right <= 250 and 0 <= top < bottom <= 250  # LFW photos are 250 x 250
    assert set(r.json()["timings_ms"]) == {"queue", "work"}


def test_a_stranger_is_unknown_and_top_k_lists_the_nearest(enrolled):
    r = enrolled.post(
        "/v1/identify", files=[upload(PROBES / "Adrien_Brody_0001.jpg")], data={"top_k": "2"}
    )
    (face,) = r.json()["faces"]
    assert face["name"] == "unknown" and face["distance"] > face["threshold"]
    assert {m["name"] for m in face["matches"]} == {"Alvaro Uribe", "Carlos Moya"}
    assert face["matches"][0]["distance"] <= face["matches"][1]["distance"]


def test_identify_chooses_its_threshold_by_fpir_and_says_so(enrolled):
    probe = [upload(PROBES / "Carlos_Moya_0002.jpg")]
    default = enrolled.post("/v1/identify", files=probe).json()["faces"][0]
    strict = enrolled.post("/v1/identify", files=probe, data={"fpir": "0.001"}).json()["faces"][0]
    assert default["rule"]["kind"] == strict["rule"]["kind"] == "fpir"
    assert default["rule"]["fpir"] == 0.01 and strict["rule"]["fpir"] == 0.001
    assert strict["threshold"] <= default["threshold"]
    assert abs(default["threshold"] - default["rule"]["threshold"]) < 1e-5


def test_verify_answers_same_and_different_with_the_threshold(client):
    same = client.post(
        "/v1/verify",
        files=[
            upload(photo("Alvaro_Uribe", 1), "photo_a"),
            upload(PROBES / "Alvaro_Uribe_0002.jpg", "photo_b"),
        ],
    ).json()
    other = client.post(
        "/v1/verify",
        files=[
            upload(PROBES / "Alvaro_Uribe_0002.jpg", "photo_a"),
            upload(PROBES / "Adrien_Brody_0001.jpg", "photo_b"),
        ],
    ).json()
    assert same["same"] is True and same["distance"] <= same["threshold"]
    assert other["same"] is False and other["distance"] > other["threshold"]


def test_embed_returns_a_unit_vector_of_the_model(client):
    r = client.post("/v1/embed", files=[upload(photo("Amelie_Mauresmo", 1))]).json()
    assert r["dim"] == len(r["embedding"]) == 128
    assert abs(sum(v * v for v in r["embedding"]) - 1) < 1e-3
    assert r["model_id"] == client.get("/v1/health").json()["model_id"]


def test_rename_and_remove_people(client):
    files = [upload(photo("Amelie_Mauresmo", 1))]
    data = {"name": "Amelie", "allow_duplicates": "true"}
    assert client.post("/v1/enroll", data=data, files=files).status_code == 200
    r = client.patch("/v1/people/Amelie", json={"name": "Amélie Mauresmo"})
    assert r.status_code == 200 and r.json()["embeddings"] == 1
    assert client.get("/v1/people").json()["people"]["Amélie Mauresmo"] == 1
    r = client.delete("/v1/people/Am%C3%A9lie%20Mauresmo")
    assert r.status_code == 200 and r.json()["embeddings"] == 1
    assert "Amélie Mauresmo" not in client.get("/v1/people").json()["people"]
    gone = client.delete("/v1/people/Amelie")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_enrolled"


def test_rename_onto_an_enrolled_name_needs_merge_and_a_duplicate_is_refused(enrolled):
    files = [upload(photo("Amelie_Mauresmo", 2))]
    assert enrolled.post("/v1/enroll", data={"name": "Ame"}, files=files).status_code == 200
    again = enrolled.post("/v1/enroll", data={"name": "Ame"}, files=files)
    assert again.status_code == 409 and again.json()["error"]["code"] == "duplicate", again.text
    r = enrolled.patch("/v1/people/Ame", json={"name": "Carlos Moya"})
    assert r.status_code == 400 and "merge" in r.json()["error"]["message"]
    r = enrolled.patch("/v1/people/Ame", json={"name": "Carlos Moya", "merge": True})
    assert r.status_code == 200 and enrolled.get("/v1/people").json()["people"]["Carlos Moya"] == 3
    assert enrolled.delete("/v1/people/Carlos%20Moya").status_code == 200
    for p in (photo("Carlos_Moya", 1), photo("Carlos_Moya", 2)):  # as the module had it
        assert enrolled.post(
            "/v1/enroll", data={"name": "Carlos Moya"}, files=[upload(p)]
        ).is_success


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"files": [("photo", ("x.jpg", b"not an image", "image/jpeg"))]}, 422, "bad_image"),
        ({"files": [upload(PROBES / "Adrien_Brody_0001.jpg", "picture")]}, 400, "bad_request"),
        ({"data": {"top_k": "2"}}, 415, "unsupported_media_type"),
        (
            {"files": [upload(PROBES / "Adrien_Brody_0001.jpg")], "data": {"top_k": "0"}},
            400,
            "bad_request",
        ),
        ({"json": {"photo": "a.jpg"}}, 415, "unsupported_media_type"),
        (
            {"files": [upload(PROBES / "Adrien_Brody_0001.jpg")], "data": {"fpir": "1.5"}},
            400,
            "bad_request",
        ),
    ],
)
def test_bad_requests_get_a_json_error_and_a_4xx(client, request_kwargs, status, code):
    r = client.post("/v1/identify", **request_kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "Traceback" not in r.text


def test_a_photo_without_a_face_is_a_422_naming_the_upload(client, tmp_path):
    from PIL import Image

    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (120, 130, 140)).save(blank)
    r = client.post(
        "/v1/identify", files=[("photo", ("wall.png", blank.read_bytes(), "image/png"))]
    )
    assert r.status_code == 422
    assert r.json()["error"] == {"code": "no_face", "message": "wall.png: no face found"}


def test_unknown_routes_and_methods_answer_json(client):
    assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"
    r = client.get("/v1/identify")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_docs_work_offline_from_local_assets(client):
    html = client.get("/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/") for a in assets), assets  # nothing from a CDN
    for a in assets:
        assert client.get(a).status_code == 200, a
    spec = client.get("/openapi.json").json()
    assert {"/v1/enroll", "/v1/verify", "/v1/identify", "/v1/embed", "/v1/people"} <= set(
        spec["paths"]
    )


def test_metrics_are_prometheus_text(enrolled):
    enrolled.post("/v1/identify", files=[upload(PROBES / "Carlos_Moya_0002.jpg")])
    r = enrolled.get("/v1/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    assert re.search(
        r'^faceid_requests_total\{method="POST",route="/v1/identify",status="200"\} [1-9]',
        r.text,
        re.M,
    )
    assert "faceid_request_seconds_bucket" in r.text and "faceid_queue_depth" in r.text


def test_the_page_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>faceid</title>" in page.text
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
        assert client.get(asset).status_code == 200
    assert "http" not in re.sub(r"<a href=[^>]*>", "", page.text).split("<body>")[1]


# -- access control -------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keyed")
    keys = {}
    for name, role in (("reader", "read"), ("writer", "write")):
        r = faceid_cli(
            "keys", "add", name, "--role", role, "--keys", str(tmp / "keys.json"), "--json"
        )
        assert r.returncode == 0, r.stderr
        keys[role] = json.loads(r.stdout)["key"]
    with Server(tmp) as s:
        yield s, keys


def test_keys_are_stored_hashed(keyed):
    server, keys = keyed
    stored = server.keys.read_text()
    assert keys["read"] not in stored and keys["write"] not in stored
    assert oct(server.keys.stat().st_mode & 0o777) == "0o600"
    listed = faceid_cli("keys", "list", "--keys", str(server.keys))
    assert "reader\tread" in listed.stdout and keys["read"] not in listed.stdout


def test_write_endpoints_need_a_write_key(keyed):
    server, keys = keyed
    files = [upload(photo("Carlos_Moya", 1))]
    with httpx.Client(base_url=server.url, timeout=120) as c:
        assert c.get("/v1/people").status_code == 401
        assert c.get("/v1/people", headers={"X-API-Key": "fid_wrong"}).status_code == 401
        assert c.get("/v1/people", headers={"X-API-Key": keys["read"]}).status_code == 200
        r = c.post(
            "/v1/enroll", data={"name": "C"}, files=files, headers={"X-API-Key": keys["read"]}
        )
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        r = c.post(
            "/v1/enroll", data={"name": "C"}, files=files, headers={"X-API-Key": keys["write"]}
        )
        assert r.status_code == 200
        assert c.get("/v1/health").json()["auth"] == "api keys"
    assert keys["write"] not in server.output and keys["read"] not in server.output


def test_a_removed_key_is_refused_from_the_next_request(keyed):
    server, keys = keyed
    r = faceid_cli("keys", "add", "temp", "--role", "read", "--keys", str(server.keys), "--json")
    temp = json.loads(r.stdout)["key"]
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.get("/v1/people", headers={"X-API-Key": temp}).status_code == 200
        assert faceid_cli("keys", "remove", "temp", "--keys", str(server.keys)).returncode == 0
        assert c.get("/v1/people", headers={"X-API-Key": temp}).status_code == 401


def test_without_keys_the_service_refuses_to_listen_beyond_loopback(tmp_path):
    r = faceid_cli("serve", "--host", "0.0.0.0", "--keys", str(tmp_path / "none.json"))
    assert r.returncode == 2
    assert "no API keys" in r.stderr and "Traceback" not in r.stderr


# -- load shedding and shared galleries --------------------------------------------------


def test_a_full_queue_answers_429_at_once_and_the_rest_are_served(tmp_path):
    probe = upload(PROBES / "Carlos_Moya_0002.jpg")
    with Server(tmp_path, "--threads", "1", "--queue", "0") as server:

        def call(_):
            with httpx.Client(base_url=server.url, timeout=120) as c:
                r = c.post("/v1/embed", files=[probe])
                return r.status_code, r.elapsed.total_seconds(), r.json()

        with cf.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(call, range(12)))
    codes = [c for c, _, _ in results]
    assert set(codes) <= {200, 429} and codes.count(200) >= 1 and codes.count(429) >= 1, codes
    busy = [(t, body) for c, t, body in results if c == 429]
    assert all(body["error"]["code"] == "busy" for _, body in busy)
    assert min(t for t, _ in busy) < 0.5  # refused at once, not after waiting


def test_the_cli_and_the_service_enroll_into_one_gallery_at_once(tmp_path):
    """Six photos of two people over HTTP (three at a time) while the CLI enrolls three photos
    of a third person, one process after another: all nine are in the gallery."""
    over_http = [
        (person, p)
        for person in ("Alvaro_Uribe", "Amelie_Mauresmo")
        for p in [photo(person, 1), photo(person, 2), PROBES / f"{person}_0002.jpg"]
    ]
    by_cli = [photo("Carlos_Moya", 1), photo("Carlos_Moya", 2), PROBES / "Carlos_Moya_0002.jpg"]
    with Server(tmp_path) as server:

        def http_enroll(item):
            person, path = item
            with httpx.Client(base_url=server.url, timeout=120) as c:
                r = c.post("/v1/enroll", data={"name": person}, files=[upload(path)])
                return r.status_code, r.text

        with cf.ThreadPoolExecutor(3) as pool:
            http = pool.map(http_enroll, over_http)
            cli = [
                faceid_cli(
                    "enroll", str(p), "--name", "Carlos_Moya", "--gallery", str(server.gallery)
                )
                for p in by_cli
            ]
            http = list(http)
        assert [c for c, _ in http] == [200] * 6, http
        assert [c.returncode for c in cli] == [0, 0, 0], [c.stderr for c in cli]
        with httpx.Client(base_url=server.url) as c:
            people = c.get("/v1/people").json()["people"]
    assert people == {"Alvaro_Uribe": 3, "Amelie_Mauresmo": 3, "Carlos_Moya": 3}


def test_several_worker_processes_serve_one_gallery(tmp_path):
    with Server(tmp_path, "--workers", "2") as server:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            files = [upload(photo("Carlos_Moya", 1))]
            assert c.post("/v1/enroll", data={"name": "Carlos Moya"}, files=files).is_success
            # Whichever worker answers, it reads the gallery the other one may have written.
            for _ in range(4):
                r = c.post("/v1/identify", files=[upload(PROBES / "Carlos_Moya_0002.jpg")])
                assert r.json()["faces"][0]["name"] == "Carlos Moya"


def test_a_key_name_cannot_be_added_twice_nor_a_missing_one_removed(tmp_path):
    keys = str(tmp_path / "keys.json")
    assert faceid_cli("keys", "add", "k", "--role", "read", "--keys", keys).returncode == 0
    again = faceid_cli("keys", "add", "k", "--role", "write", "--keys", keys)
    assert again.returncode == 2 and "exists" in again.stderr
    missing = faceid_cli("keys", "remove", "nobody", "--keys", keys)
    assert missing.returncode == 2 and "no key named" in missing.stderr


def test_a_gallery_of_another_model_stops_the_start_with_one_line(tmp_path, tiny_model):
    gallery = str(tmp_path / "other")
    made = faceid_cli(
        "enroll",
        str(photo("Carlos_Moya", 1)),
        "--name",
        "C",
        "--gallery",
        gallery,
        "--model",
        str(tiny_model),
    )
    assert made.returncode == 0, made.stderr
    r = faceid_cli("serve", "--gallery", gallery, "--keys", str(tmp_path / "k.json"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("faceid: error: ")
    assert "Traceback" not in r.stderr


def _preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(
        url + "/v1/identify",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        timeout=30,
    )


def test_cors_is_off_by_default_and_on_for_the_origins_given(server, tmp_path):
    assert "access-control-allow-origin" not in _preflight(server.url, "http://app.example").headers
    with Server(tmp_path, "--cors-origin", "http://app.example") as cors:
        allowed = _preflight(cors.url, "http://app.example")
        assert allowed.headers["access-control-allow-origin"] == "http://app.example"
        other = _preflight(cors.url, "http://elsewhere.example")
        assert "access-control-allow-origin" not in other.headers
