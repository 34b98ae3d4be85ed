"""The `faceid` commands, unchanged, on a postgresql:// gallery (a real server, pg_server), with
real LFW photos and the tiny model: enroll, identify, verify, list, remove, rename, doctor,
FACEID_GALLERY, and `faceid gallery copy` between a folder and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PEOPLE, FaceIDRun, Run


@pytest.fixture
def gallery(pg_url: str) -> str:
    """Overrides conftest's folder: every faceid_run of these tests uses PostgreSQL."""
    return pg_url


def ok(run: Run, code: int = 0) -> Run:
    assert run.code == code, run
    run.assert_no_traceback()
    return run


def test_every_gallery_command_works_unchanged_on_postgresql(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], gallery: str
) -> None:
    first, second, third = PEOPLE
    run = faceid_run("list", "--json")  # nothing there yet: the folder's rule, and its words
    assert run.code == 1 and run.json()["kind"] == "NoGallery", run
    assert f"no gallery at {gallery}" in run.stderr
    for person in PEOPLE:
        ok(faceid_run("enroll", photos[person][0], "--name", person, "--allow-duplicates"))
    args = ("enroll", photos[third][1], "--name", "Ami", "--allow-duplicates", "--json")
    data = ok(faceid_run(*args)).json()
    assert data["gallery"] == gallery and data["enrolled"][0]["name"] == "Ami"
    listed = ok(faceid_run("list", "--json")).json()["people"]
    assert listed == {first: 1, second: 1, third: 1, "Ami": 1}

    hit = ok(faceid_run("identify", photos[second][0], "--json")).json()["faces"][0]
    assert hit["name"] == second and hit["distance"] == pytest.approx(0, abs=1e-5)
    top = ok(faceid_run("identify", photos[second][0], "--top-k", "3", "--json"))
    assert len({m["name"] for m in top.json()["faces"][0]["matches"]}) == 3
    same = photos[first][0]
    assert ok(faceid_run("verify", same, same, "--json")).json()["same"] is True

    merged = faceid_run("rename", "Ami", third, "--merge", "--json")
    assert ok(merged).json()["embeddings"] == 1
    assert ok(faceid_run("remove", first, "--json")).json()["embeddings"] == 1
    assert ok(faceid_run("list", "--json")).json()["people"] == {second: 1, third: 2}
    run = faceid_run("remove", first)
    assert run.code == 1 and run.stderr.startswith("faceid: error:"), run
    doctor = ok(faceid_run("doctor", "--json")).json()
    assert doctor["healthy"] is True and doctor["problems"] == []


def test_faceid_gallery_may_name_a_database(
    tiny_model: Path, face: Path, pg_url: str, fast_cpu: None
) -> None:
    from click.testing import CliRunner

    from faceid.cli import main
    from faceid.gallery.locate import inspect

    env = {"FACEID_GALLERY": pg_url, "FACEID_DEBUG": None}
    args = ["enroll", str(face), "--name", "Ann", "--model", str(tiny_model)]
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert inspect(pg_url)["people"] == {"Ann": 1}


def test_an_unreachable_database_is_one_error_line(faceid_run: FaceIDRun, face: Path) -> None:
    from faceid.gallery.local_postgres import free_port

    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    run = faceid_run("identify", face, gallery=nowhere)
    assert run.code == 1, run
    run.assert_no_traceback()
    assert run.stderr_lines == [run.stderr_lines[0]] and "cannot connect" in run.stderr


def test_gallery_copy_goes_both_ways_and_refuses_another_models_gallery(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tmp_path: Path, pg_url: str
) -> None:
    folder = tmp_path / "folder"
    for person in PEOPLE:
        args = ("enroll", photos[person][0], "--name", person, "--allow-duplicates")
        ok(faceid_run(*args, gallery=folder))
    data = ok(faceid_run("gallery", "copy", folder, pg_url, "--json", model=None, gallery=None))
    assert data.json()["faces"] == 3
    probe = photos[PEOPLE[2]][0]
    hit = ok(faceid_run("identify", probe, "--json", gallery=pg_url)).json()["faces"][0]
    assert hit["name"] == PEOPLE[2]

    back = tmp_path / "back"
    text = ok(faceid_run("gallery", "copy", pg_url, back, model=None, gallery=None)).stdout
    assert "copied 3 embedding(s) of 3 people" in text
    assert ok(faceid_run("list", "--json", gallery=back)).json()["count"] == 3

    from faceid.gallery.locate import open_gallery
    from tests.test_gallery import unit

    other = tmp_path / "other"
    open_gallery(other, model_id="another-model", dim=128).add(unit(1, seed=0), ["X"], [""])
    run = faceid_run("gallery", "copy", folder, other, model=None, gallery=None)
    assert run.code == 1 and "different models" in run.stderr, run
    run.assert_no_traceback()
