"""One gallery contract, checked on every backend: a FAISS folder and PostgreSQL (a real server
with pgvector, started by the `pg_server` fixture; these tests fail, never skip, without it).

Embeddings are random unit vectors, so no model is needed. Behaviours only one backend has (the
folder's files, manifest and crash recovery) stay in tests/test_gallery.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceid.errors import BadName, GalleryError, NotEnrolled, UsageError
from faceid.gallery import Match
from faceid.gallery.locate import inspect, open_for_doctor, open_gallery
from faceid.gallery.transfer import copy_gallery
from tests.test_gallery import DIM, MODEL, brute_force, near, unit

BACKENDS = ["folder", "postgres"]


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a new, empty gallery of each backend lives."""
    if request.param == "folder":
        return tmp_path / "gallery"
    return request.getfixturevalue("pg_url")


def at(location: Path | str, **kw):
    return open_gallery(location, model_id=MODEL, dim=DIM, **kw)


def created(location: Path | str) -> bool:
    """Whether anything exists yet: a folder at all, or faceid's tables in the database."""
    return Path(location).exists() if isinstance(location, Path) else inspect(location)["exists"]


# ------------------------------------------------------------------------------ round trip


def test_nothing_is_created_until_the_first_write(location) -> None:
    g = at(location)
    assert not g.exists and not g
    assert len(g) == 0 and g.people() == {} and g.entries() == []
    assert g.search(unit(2, seed=0)) == [[], []]
    assert g.check() == [] and g.repair() == []
    with pytest.raises(NotEnrolled):
        g.remove("alice")
    with pytest.raises(NotEnrolled):
        g.rename("alice", "bob")
    assert not created(location)


def test_add_search_people_remove_rename_round_trip_persists_across_instances(location) -> None:
    x = unit(4, seed=2)
    g = at(location)
    ids = g.add(x, ["alice", "alice", "bob", "carol"], ["1.jpg", "2.jpg", "3.jpg", "4.jpg"])
    assert len(set(ids)) == 4 and ids == sorted(ids)
    assert g.exists and len(g) == 4 and g

    fresh = at(location)
    assert fresh.people() == {"alice": 2, "bob": 1, "carol": 1}
    entries = fresh.entries()
    assert [e["source"] for e in entries] == ["1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    assert [e["id"] for e in entries] == ids
    assert all(e["added"].endswith("+00:00") for e in entries)
    hits = fresh.search(x[2])
    assert hits == [[Match("bob", hits[0][0].distance, ids[2])]] and hits[0][0].distance < 1e-5

    assert at(location).remove("alice") == 2
    assert at(location).rename("bob", "robert") == 1
    fresh = at(location)
    assert fresh.people() == {"carol": 1, "robert": 1}
    assert fresh.search(x[2])[0][0].name == "robert"
    assert g.people() == {"carol": 1, "robert": 1}  # the first object sees other writers too
    assert fresh.check() == []


def test_rename_onto_an_existing_person_merges_them(location) -> None:
    g = at(location)
    x = unit(3, seed=3)
    g.add(x, ["Jon", "John", "John"], ["a", "b", "c"])
    assert g.rename("Jon", "John") == 1
    assert g.people() == {"John": 3}
    assert g.rename("John", "John") == 3
    assert g.search(x[0])[0][0].name == "John"
    with pytest.raises(NotEnrolled):
        g.rename("Jon", "Jonathan")
    with pytest.raises(NotEnrolled):
        g.remove("Jon")
    assert g.check() == []


def test_rename_without_merge_refuses_an_enrolled_name_inside_the_write(location) -> None:
    g = at(location)
    x = unit(3, seed=5)
    g.add(x, ["Jon", "John", "John"], ["a", "b", "c"])
    with pytest.raises(UsageError, match="already enrolled .2 photo") as refused:
        g.rename("Jon", "John", merge=False)
    assert refused.value.params == ("merge",)
    assert g.people() == {"John": 2, "Jon": 1}
    assert g.rename("Jon", "Jonathan", merge=False) == 1
    assert g.rename("Jonathan", "Jonathan", merge=False) == 1
    assert g.check() == []


def test_names_are_stored_normalised(location) -> None:
    g = at(location)
    g.add(unit(1, seed=4), ["  Zoe\u0308 "], ["a"])  # combining diaeresis, padded
    assert g.people() == {"Zoë": 1}
    assert g.remove("Zoë") == 1


def test_ids_are_never_reused_after_removal(location) -> None:
    g = at(location)
    ids = g.add(unit(3, seed=5), ["a", "b", "c"], ["", "", ""])
    g.remove("c")
    assert g.add(unit(1, seed=6), ["d"], [""])[0] > max(ids)


def test_add_rejects_bad_input_without_writing(location) -> None:
    g = at(location)
    x = unit(2, seed=7)
    with pytest.raises(ValueError):
        g.add(x, ["a"], ["s"])  # one name for two embeddings
    with pytest.raises(ValueError):
        g.add(x[:, :64], ["a", "b"], ["s", "t"])  # wrong dimension
    with pytest.raises(ValueError):
        g.add(x * 3, ["a", "b"], ["s", "t"])  # not L2-normalised
    with pytest.raises(ValueError):
        g.add(np.full((1, DIM), np.nan, np.float32), ["a"], ["s"])
    with pytest.raises(BadName):
        g.add(x, ["a", "b/c"], ["s", "t"])
    assert g.add(x[:0], [], []) == []
    assert not created(location)


def test_a_write_that_fails_part_way_stores_nothing_of_it(location) -> None:
    g = at(location)
    x = unit(3, seed=30)
    g.add(x[:1], ["anna"], ["a"])
    with pytest.raises(NotEnrolled):
        g.rename("nobody", "anna")
    with pytest.raises(NotEnrolled):
        g.remove("nobody")
    assert g.people() == {"anna": 1} and g.check() == []


# ------------------------------------------------------------------------------ search


def test_search_scores_each_person_by_their_closest_embedding(location) -> None:
    q = unit(1, seed=8)[0]
    alice = np.concatenate([near(q, 1, 0.05, seed=9), near(-q, 4, 0.1, seed=10)])
    bob = near(q, 3, 0.03, seed=11)
    x = np.concatenate([alice, bob])
    g = at(location)
    ids = g.add(x, ["alice"] * 5 + ["bob"] * 3, [""] * 8)

    hits = g.search(q, k=2)[0]
    d = ((x - q) ** 2).sum(axis=1)
    assert [m.name for m in hits] == ["bob", "alice"]
    assert hits[0].id == ids[int(np.argmin(d[5:])) + 5]
    assert hits[1].id == ids[0]
    assert hits[1].distance == pytest.approx(d[0], abs=1e-5)
    assert hits[0].distance == pytest.approx(d[5:].min(), abs=1e-5)


def test_search_returns_k_people_not_k_embeddings(location) -> None:
    """One person with many close embeddings must not crowd the others out of the top k."""
    q = unit(1, seed=12)[0]
    x = np.concatenate([near(q, 120, 0.01, seed=13), unit(6, seed=14)])
    names = ["crowd"] * 120 + [f"p{i}" for i in range(6)]
    g = at(location)
    ids = g.add(x, names, [""] * len(names))

    for pool in (1, 5, 50):  # pool=1 forces the widening fallback
        hits = g.search(q, k=4, per_person_pool=pool)[0]
        assert len(hits) == 4 and len({m.name for m in hits}) == 4
        assert [(m.name, m.id) for m in hits] == [
            (n, ids[i]) for n, i in brute_force(x, names, q, 4)
        ]
    assert len(g.search(q, k=50)[0]) == 7  # never more people than exist


def test_search_agrees_with_brute_force(location) -> None:
    x = unit(300, seed=15)
    names = [f"person{i % 40}" for i in range(300)]
    g = at(location)
    ids = g.add(x, names, [""] * 300)
    queries = unit(25, seed=16)
    for q, hits in zip(queries, g.search(queries, k=5, per_person_pool=2)):
        assert [(m.name, m.id) for m in hits] == [
            (n, ids[i]) for n, i in brute_force(x, names, q, 5)
        ]
        assert all(a.distance <= b.distance for a, b in zip(hits, hits[1:]))


def test_an_approximate_index_adds_removes_and_searches(location) -> None:
    x = unit(200, seed=17)
    names = [f"p{i % 20}" for i in range(200)]
    g = at(location, index_factory="HNSW32")
    g.add(x, names, [""] * 200)
    assert "hnsw" in inspect(location)["index_factory"].lower()
    assert g.remove("p3") == 10
    hits = g.search(x[:40])
    keep = [i for i in range(40) if names[i] != "p3"]
    assert sum(hits[i][0].name == names[i] for i in keep) >= 0.9 * len(keep)
    assert all(m.name != "p3" for h in hits for m in h)
    assert at(location).check() == []


def test_the_write_that_crosses_auto_switch_builds_the_approximate_index(location) -> None:
    x = unit(120, seed=18)
    names = [f"p{i % 12}" for i in range(120)]
    g = at(location, auto_switch=50)
    g.add(x[:50], names[:50], [""] * 50)
    assert g.switched is None and inspect(location)["index_factory"] == "Flat"
    g.add(x[50:], names[50:], [""] * 70)
    assert g.switched is not None and "hnsw" in g.switched.lower()
    assert "hnsw" in inspect(location)["index_factory"].lower()
    assert inspect(location)["auto_switch"] == 50
    assert [h[0].name for h in at(location).search(x)] == names


# ------------------------------------------------------------------------------ identity


def test_a_gallery_of_another_model_is_refused(location) -> None:
    at(location).add(unit(1, seed=19), ["a"], [""])
    with pytest.raises(GalleryError, match="model"):
        open_gallery(location, model_id="another-model", dim=DIM)
    with pytest.raises(GalleryError, match="64-d"):
        open_gallery(location, model_id=MODEL, dim=64)
    assert inspect(location)["model_id"] == MODEL


def test_inspect_and_the_doctor_need_no_model(location) -> None:
    assert inspect(location)["exists"] is False
    at(location).add(unit(3, seed=20), ["a", "b", "b"], ["", "", ""])
    info = inspect(location)
    assert info["exists"] and info["count"] == 3 and info["people"] == {"a": 1, "b": 2}
    assert info["model_id"] == MODEL and info["dim"] == DIM
    doctor = open_for_doctor(location)
    assert doctor.check() == [] and doctor.repair() == []


def test_export_returns_entries_and_their_embeddings_row_for_row(location) -> None:
    x = unit(5, seed=21)
    g = at(location)
    g.add(x, ["a", "b", "c", "d", "e"], ["1", "2", "3", "4", "5"])
    g.remove("c")
    entries, vectors = at(location).export()
    assert [e["name"] for e in entries] == ["a", "b", "d", "e"]
    assert np.allclose(vectors, x[[0, 1, 3, 4]], atol=1e-6)


# ------------------------------------------------------------------------------ copying


@pytest.mark.parametrize("direction", ["folder->postgres", "postgres->folder"])
def test_copy_moves_a_gallery_between_backends_without_re_encoding(
    direction: str, tmp_path: Path, pg_url: str
) -> None:
    folder = tmp_path / "gallery"
    source, destination = (folder, pg_url) if direction == "folder->postgres" else (pg_url, folder)
    x = unit(30, seed=22)
    names = [f"p{i % 7}" for i in range(30)]
    at(source).add(x, names, [f"{i}.jpg" for i in range(30)])
    done = copy_gallery(source, destination)
    assert done["faces"] == 30 and done["people"] == 7 and done["model_id"] == MODEL

    src_entries, src_vectors = at(source).export()
    dst_entries, dst_vectors = at(destination).export()
    strip = [{k: e[k] for k in ("name", "source", "added")} for e in src_entries]
    assert [{k: e[k] for k in ("name", "source", "added")} for e in dst_entries] == strip
    assert np.array_equal(src_vectors, dst_vectors)  # the same float32 values, not re-encoded
    queries = unit(10, seed=23)
    assert [[m.name for m in h] for h in at(destination).search(queries, k=3)] == [
        [m.name for m in h] for h in at(source).search(queries, k=3)
    ]
    with pytest.raises(GalleryError, match="already holds"):  # copying twice would double
        copy_gallery(source, destination)


def test_copy_refuses_a_destination_of_another_model(tmp_path: Path, pg_url: str) -> None:
    at(tmp_path / "g").add(unit(2, seed=24), ["a", "b"], ["", ""])
    open_gallery(pg_url, model_id="another-model", dim=DIM).add(unit(1, seed=25), ["c"], [""])
    with pytest.raises(GalleryError, match="different models"):
        copy_gallery(tmp_path / "g", pg_url)
    assert inspect(pg_url)["people"] == {"c": 1}
    with pytest.raises(GalleryError, match="no gallery"):
        copy_gallery(tmp_path / "none", pg_url)
