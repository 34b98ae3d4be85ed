"""The FAISS folder gallery must never lose anyone: its index switch, refusal of foreign or
damaged galleries, doctor/repair of its files, crash safety and concurrent writers. What every
backend must do (round trips, per-person search, names, ids) is tests/test_gallery_contract.py.

Embeddings are random unit vectors, so no model is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faceid.errors import BadName, GalleryError
from faceid.gallery import FORMAT_VERSION, Gallery, validate_name

MODEL = "test-model-v1"
DIM = 128
ROOT = Path(__file__).resolve().parents[1]


def unit(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def near(v: np.ndarray, n: int, scale: float, seed: int) -> np.ndarray:
    x = v[None, :] + scale * np.random.default_rng(seed).normal(size=(n, v.shape[0]))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def open_gallery(path: Path, **kw) -> Gallery:
    return Gallery(path, model_id=MODEL, dim=DIM, **kw)


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_bytes())


def write_manifest(path: Path, data: dict) -> None:
    (path / "manifest.json").write_text(json.dumps(data))


def brute_force(x: np.ndarray, names: list[str], q: np.ndarray, k: int) -> list[tuple[str, int]]:
    """Reference answer: each person's closest embedding, people ranked by it."""
    d = ((x - q[None, :]) ** 2).sum(axis=1)
    best: dict[str, tuple[float, int]] = {}
    for i, (dist, name) in enumerate(zip(d, names)):
        if name not in best or dist < best[name][0]:
            best[name] = (float(dist), i)
    ranked = sorted(best.items(), key=lambda kv: kv[1][0])[:k]
    return [(name, i) for name, (_, i) in ranked]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


@pytest.fixture
def gallery_path(tmp_path: Path) -> Path:
    return tmp_path / "gallery"


@pytest.fixture
def enrolled(gallery_path: Path) -> tuple[Path, np.ndarray, list[str]]:
    """A gallery built in three writes, so older generations' files exist too."""
    x = unit(9, seed=1)
    names = ["alice"] * 3 + ["bob"] * 2 + ["Zoë Ångström"] * 2 + ["李小龍"] * 2
    g = open_gallery(gallery_path)
    g.add(x[:3], names[:3], ["a.jpg"] * 3)
    g.add(x[3:5], names[3:5], ["b.jpg"] * 2)
    g.add(x[5:], names[5:], ["c.jpg"] * 4)
    return gallery_path, x, names


EXPECTED_PEOPLE = {"alice": 3, "bob": 2, "Zoë Ångström": 2, "李小龍": 2}


# ------------------------------------------------------------------------------ round trip


@pytest.mark.parametrize(
    ("factory", "error"),
    [("NoSuchIndex", "cannot build"), ("IVF4096,Flat", "cannot train")],
)
def test_a_refused_first_write_leaves_no_folder_behind(
    gallery_path: Path, factory: str, error: str
) -> None:
    g = open_gallery(gallery_path, index_factory=factory)
    with pytest.raises(GalleryError, match=error) as refused:
        g.add(unit(3, seed=0), ["a", "b", "c"], ["", "", ""])
    assert ".cpp" not in str(refused.value)  # FAISS's reason, not where in FAISS it arose
    assert not gallery_path.exists()
    assert open_gallery(gallery_path).add(unit(1, seed=1), ["a"], [""]) == [0]


# ------------------------------------------------------------------------------ search


@pytest.mark.parametrize("factory", ["HNSW32", "IVF4,Flat"])
def test_other_index_factories_add_remove_and_search(gallery_path: Path, factory: str) -> None:
    x = unit(200, seed=17)
    names = [f"p{i % 20}" for i in range(200)]
    g = open_gallery(gallery_path, index_factory=factory)
    g.add(x, names, [""] * 200)
    assert manifest(gallery_path)["index_factory"] == factory
    assert g.remove("p3") == 10  # HNSW cannot delete in place: rebuilt from stored vectors
    hits = g.search(x[:40])
    keep = [i for i in range(40) if names[i] != "p3"]
    right = sum(hits[i][0].name == names[i] for i in keep)
    assert right >= 0.9 * len(keep)
    assert all(m.name != "p3" for h in hits for m in h)
    assert open_gallery(gallery_path).check() == []


# ------------------------------------------------------------------------------ index switch


def searched_index(g: Gallery):
    """The tuned FAISS index a gallery object searches (its cached snapshot's)."""
    import faiss

    return faiss.downcast_index(g._read_state().index.index)


def test_the_write_that_crosses_auto_switch_rebuilds_an_approximate_index(
    gallery_path: Path,
) -> None:
    x = unit(80, seed=30)
    names = [f"p{i % 16}" for i in range(80)]
    g = open_gallery(gallery_path, auto_switch=50)
    g.add(x[:50], names[:50], [""] * 50)  # 50 is not above the switch
    assert manifest(gallery_path)["index_factory"] == "Flat" and g.switched is None
    g.add(x[50:60], names[50:60], [""] * 10)
    data = manifest(gallery_path)
    assert data["index_factory"] == "HNSW32" and data["auto_switch"] == 50
    assert g.switched == "HNSW32"

    # Every reader (one that never heard of the policy too) uses the recorded factory, and the
    # rebuilt index holds exactly the stored embeddings under their ids.
    fresh = Gallery(gallery_path, model_id=MODEL, dim=DIM)
    assert fresh.check() == []
    hits = fresh.search(x[:60])
    assert [h[0].id for h in hits] == list(range(60))
    assert searched_index(fresh).hnsw.efSearch == 64  # chosen by size

    # It stays approximate: more adds go into the HNSW index, removal rebuilds it as HNSW.
    fresh.add(x[60:], names[60:], [""] * 20)
    assert fresh.remove("p0") == 5
    assert manifest(gallery_path)["index_factory"] == "HNSW32"
    assert fresh.switched is None and fresh.check() == []
    assert Gallery.inspect(gallery_path)["auto_switch"] == 50


def test_the_recorded_switch_applies_to_later_writers_until_changed(gallery_path: Path) -> None:
    x = unit(120, seed=31)
    names = [f"p{i}" for i in range(120)]
    open_gallery(gallery_path, auto_switch=50).add(x[:10], names[:10], [""] * 10)
    # An explicit 0 is recorded and turns the switch off...
    open_gallery(gallery_path, auto_switch=0).add(x[10:60], names[10:60], [""] * 50)
    assert manifest(gallery_path)["index_factory"] == "Flat"
    assert manifest(gallery_path)["auto_switch"] == 0
    # ...a later size turns it back on, and a writer passing nothing keeps what is recorded.
    open_gallery(gallery_path, auto_switch=100).add(x[60:70], names[60:70], [""] * 10)
    assert manifest(gallery_path)["index_factory"] == "Flat"
    open_gallery(gallery_path).add(x[70:], names[70:], [""] * 50)
    data = manifest(gallery_path)
    assert data["index_factory"] == "HNSW32" and data["auto_switch"] == 100


def test_one_add_past_the_switch_on_a_new_gallery_switches_at_once(gallery_path: Path) -> None:
    x = unit(60, seed=32)
    g = open_gallery(gallery_path, auto_switch=50, approx_factory="IVF4,Flat")
    g.add(x, [f"p{i}" for i in range(60)], [""] * 60)
    assert manifest(gallery_path)["index_factory"] == "IVF4,Flat"
    assert searched_index(open_gallery(gallery_path)).nprobe == 4  # 1/16 of lists, at least 8, <= 4
    assert [h[0].id for h in g.search(x)] == list(range(60))
    assert g.check() == []


def test_pinned_index_params_are_recorded_and_applied(gallery_path: Path) -> None:
    x = unit(60, seed=33)
    g = open_gallery(gallery_path, auto_switch=50, index_params="efSearch=200")
    g.add(x, [f"p{i}" for i in range(60)], [""] * 60)
    assert manifest(gallery_path)["index_params"] == "efSearch=200"
    assert searched_index(g).hnsw.efSearch == 200
    assert searched_index(open_gallery(gallery_path)).hnsw.efSearch == 200


@pytest.mark.parametrize(
    ("policy", "error"),
    [
        ({"approx_factory": "NotAFactory"}, "cannot build index factory"),
        ({"index_params": "nprobe=4"}, "cannot apply index parameters"),
    ],
)
def test_a_switch_that_cannot_be_built_refuses_the_write_and_changes_nothing(
    gallery_path: Path, policy: dict, error: str
) -> None:
    x = unit(60, seed=34)
    open_gallery(gallery_path).add(x[:40], ["a"] * 40, [""] * 40)
    before = (gallery_path / "manifest.json").read_bytes()
    with pytest.raises(GalleryError, match=error):
        open_gallery(gallery_path, auto_switch=50, **policy).add(x[40:], ["b"] * 20, [""] * 20)
    assert (gallery_path / "manifest.json").read_bytes() == before
    assert open_gallery(gallery_path).check() == []


@pytest.mark.parametrize(
    "kw",
    [
        {"auto_switch": -1},
        {"auto_switch": 1.5},
        {"approx_factory": ""},
        {"approx_factory": "IDMap,Flat"},
    ],
)
def test_bad_index_policies_are_refused_up_front(gallery_path: Path, kw: dict) -> None:
    with pytest.raises(ValueError):
        open_gallery(gallery_path, **kw)


@pytest.mark.parametrize(
    ("key", "value"), [("auto_switch", "50"), ("auto_switch", -5), ("approx_factory", 7)]
)
def test_a_malformed_index_policy_in_the_manifest_is_corruption(
    enrolled, key: str, value: object
) -> None:
    path, _, _ = enrolled
    data = manifest(path)
    data[key] = value
    write_manifest(path, data)
    with pytest.raises(GalleryError, match=key):
        len(open_gallery(path))


def test_a_cached_reader_sees_every_commit_of_other_writers(gallery_path: Path) -> None:
    """Readers skip re-reading an unchanged manifest; same-size commits must still show."""
    x = unit(4, seed=35)
    reader = open_gallery(gallery_path)
    open_gallery(gallery_path).add(x[:2], ["anna", "bert"], ["", ""])
    assert reader.people() == {"anna": 1, "bert": 1}
    for old, new in (("anna", "anne"), ("anne", "anna"), ("bert", "bart")):
        size = (gallery_path / "manifest.json").stat().st_size
        open_gallery(gallery_path).rename(old, new)
        assert (gallery_path / "manifest.json").stat().st_size == size
        assert new in reader.people() and old not in reader.people()
    assert reader.search(x[1])[0][0].name == "bart"


# ------------------------------------------------------------------------------ refusals


def test_model_id_mismatch_is_refused(enrolled) -> None:
    path, _, _ = enrolled
    with pytest.raises(GalleryError) as err:
        Gallery(path, model_id="other-model", dim=DIM)
    assert MODEL in str(err.value) and "other-model" in str(err.value)


def test_dimension_mismatch_is_refused(enrolled) -> None:
    path, _, _ = enrolled
    with pytest.raises(GalleryError, match="128-d"):
        Gallery(path, model_id=MODEL, dim=64)


def test_unknown_format_version_is_refused_naming_the_file(enrolled) -> None:
    path, _, _ = enrolled
    data = manifest(path)
    data["format_version"] = FORMAT_VERSION + 1
    write_manifest(path, data)
    with pytest.raises(GalleryError, match="manifest.json"):
        open_gallery(path)
    with pytest.raises(GalleryError, match="format version"):
        Gallery.inspect(path)


def test_repair_does_not_touch_a_gallery_from_a_newer_format(enrolled) -> None:
    path, _, _ = enrolled
    g = open_gallery(path)  # opened just before a newer faceid rewrote the gallery
    data = manifest(path)
    data["format_version"] = FORMAT_VERSION + 1
    write_manifest(path, data)
    before = {p.name: p.read_bytes() for p in path.iterdir() if p.name != ".lock"}
    assert any("format version" in p for p in g.check())
    with pytest.raises(GalleryError, match="format version"):
        g.repair()
    assert {p.name: p.read_bytes() for p in path.iterdir() if p.name != ".lock"} == before


# ------------------------------------------------------------------------------ damage and repair


def _current(path: Path, kind: str) -> Path:
    return path / manifest(path)[f"{kind}_file"]


def truncate_index(path: Path) -> str:
    f = _current(path, "index")
    f.write_bytes(f.read_bytes()[:100])
    return f.name


def delete_index(path: Path) -> str:
    f = _current(path, "index")
    f.unlink()
    return f.name


def bad_json_manifest(path: Path) -> str:
    (path / "manifest.json").write_text('{"format_version": 1, "entries": [')
    return "manifest.json"


def count_mismatch_manifest(path: Path) -> str:
    data = manifest(path)
    data["count"] += 1
    write_manifest(path, data)
    return "manifest.json"


def delete_manifest(path: Path) -> str:
    (path / "manifest.json").unlink()
    return "manifest.json"


def swap_in_older_index(path: Path) -> str:
    """A valid index of an older generation with a matching digest: only the ids disagree."""
    data = manifest(path)
    older = path / f"index-{data['generation'] - 1}.faiss"
    raw = older.read_bytes()
    (path / data["index_file"]).write_bytes(raw)
    data["index_sha256"] = hashlib.sha256(raw).hexdigest()
    write_manifest(path, data)
    return "disagree"


def delete_vectors(path: Path) -> str:
    _current(path, "vectors").unlink()
    return "vectors-"


def corrupt_vectors(path: Path) -> str:
    f = _current(path, "vectors")
    f.write_bytes(b"\x93NUMPY garbage")
    return "vectors-"


@pytest.mark.parametrize(
    "damage",
    [
        truncate_index,
        delete_index,
        bad_json_manifest,
        count_mismatch_manifest,
        delete_manifest,
        swap_in_older_index,
        delete_vectors,
        corrupt_vectors,
    ],
)
def test_damage_is_named_reported_by_check_and_repaired_without_losing_people(
    enrolled, damage
) -> None:
    path, x, names = enrolled
    needle = damage(path)
    reads_fail = damage not in (delete_vectors, corrupt_vectors)  # searches never read vectors
    if reads_fail:
        with pytest.raises(GalleryError) as err:
            open_gallery(path).people()
        message = str(err.value)
        assert needle in message and "\n" not in message
        assert "doctor --repair" in message
    g = open_gallery(path)
    problems = g.check()
    assert problems and any(needle in p for p in problems)
    if not reads_fail:
        with pytest.raises(GalleryError, match="vectors-"):
            g.add(unit(1, seed=99), ["eve"], [""])  # no new writes on top of damage

    actions = g.repair()
    assert actions and all(isinstance(a, str) and "\n" not in a for a in actions)

    fresh = open_gallery(path)
    assert fresh.check() == []
    assert fresh.people() == EXPECTED_PEOPLE
    hits = fresh.search(x)
    assert [h[0].name for h in hits] == names
    assert all(h[0].distance < 1e-5 for h in hits)
    assert fresh.repair() == []  # healthy now: nothing to do
    fresh.add(unit(1, seed=100), ["eve"], ["e.jpg"])  # and writable again
    assert open_gallery(path).people()["eve"] == 1


@pytest.mark.parametrize("damage", [bad_json_manifest, delete_manifest, truncate_index])
def test_doctor_opens_a_damaged_gallery_without_knowing_the_model(enrolled, damage) -> None:
    path, x, names = enrolled
    damage(path)
    g = Gallery.open_for_doctor(path)
    assert g.model_id == MODEL and g.dim == DIM
    assert g.check()
    assert g.repair()
    assert g.check() == []
    assert open_gallery(path).people() == EXPECTED_PEOPLE


def test_doctor_reports_but_never_repairs_a_gallery_of_another_format(enrolled) -> None:
    path, _, _ = enrolled
    data = manifest(path)
    data["format_version"] = FORMAT_VERSION + 1
    write_manifest(path, data)
    g = Gallery.open_for_doctor(path)
    assert any("format version" in p for p in g.check())
    with pytest.raises(GalleryError, match="format version"):
        g.repair()


def test_repair_drops_only_what_is_truly_unrecoverable(enrolled) -> None:
    """Vectors of older enrolments survive in older generations' files; only the newest
    write's vectors are really gone, and repair says whose."""
    path, x, names = enrolled
    data = manifest(path)
    (path / data["index_file"]).unlink()
    (path / data["vectors_file"]).unlink()
    g = open_gallery(path)
    actions = g.repair()
    lost = {"Zoë Ångström", "李小龍"}  # added by the last write, whose files are gone
    dropped = [a for a in actions if a.startswith("dropped")]
    assert len(dropped) == 2 and all(any(repr(n) in a for n in lost) for a in dropped)
    assert open_gallery(path).people() == {"alice": 3, "bob": 2}
    assert open_gallery(path).check() == []


def test_repair_refuses_when_no_manifest_can_be_recovered(enrolled) -> None:
    path, _, _ = enrolled
    bad_json_manifest(path)
    for backup in path.glob("manifest-*.json"):
        backup.unlink()
    before = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    g = open_gallery(path)
    assert any("manifest.json" in p for p in g.check())
    with pytest.raises(GalleryError, match="cannot be recovered"):
        g.repair()
    after = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == {k: v for k, v in before.items() if k != ".lock"}


def test_repair_recounts_a_manifest_whose_only_damage_is_the_count(enrolled) -> None:
    path, _, _ = enrolled
    count_mismatch_manifest(path)
    for backup in path.glob("manifest-*.json"):
        backup.unlink()
    g = open_gallery(path)
    assert any("count" in p for p in g.check())
    assert any("recomputed" in a for a in g.repair())
    assert open_gallery(path).people() == EXPECTED_PEOPLE
    assert open_gallery(path).check() == []


def test_a_missing_backup_manifest_is_reported_and_restored(enrolled) -> None:
    path, _, _ = enrolled
    backup = path / f"manifest-{manifest(path)['generation']}.json"
    backup.unlink()
    g = open_gallery(path)
    assert g.people() == EXPECTED_PEOPLE  # reads do not need it
    assert any(backup.name in p for p in g.check())
    assert g.repair()
    assert open_gallery(path).check() == []
    assert (path / f"manifest-{manifest(path)['generation']}.json").is_file()


def test_a_lost_manifest_is_not_mistaken_for_an_empty_gallery(enrolled) -> None:
    path, _, _ = enrolled
    delete_manifest(path)
    g = open_gallery(path)
    with pytest.raises(GalleryError, match="manifest.json is missing"):
        g.add(unit(1, seed=21), ["eve"], [""])  # must not start a new gallery over the old one
    with pytest.raises(GalleryError, match="manifest.json is missing"):
        g.remove("alice")
    with pytest.raises(GalleryError, match="manifest.json is missing"):
        Gallery.inspect(path)


def test_a_reader_that_missed_the_manifest_of_a_gallery_created_meanwhile_sees_no_gallery(
    enrolled, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lock-free read finds no manifest.json; before it looks for orphans a writer creates
    # the gallery and commits generation 1: the read came before the creation, not damage.
    from faceid.gallery import store

    path, _, _ = enrolled
    real_read = store.Gallery._read_manifest

    def missed(self, cache):
        raise FileNotFoundError(self._manifest_path)

    g = open_gallery(path)
    monkeypatch.setattr(store.Gallery, "_read_manifest", missed)
    assert g._read_state() is None  # nothing raised: the manifest is there now
    monkeypatch.setattr(store.Gallery, "_read_manifest", real_read)
    assert g.people() == EXPECTED_PEOPLE


def test_leftovers_of_a_crashed_writer_are_harmless_and_cleaned_up(enrolled) -> None:
    path, _, _ = enrolled
    gen = manifest(path)["generation"]
    (path / f"index-{gen + 1}.faiss").write_bytes(b"half written")
    (path / ".manifest.json.123.abcd.tmp").write_bytes(b"{")
    g = open_gallery(path)
    assert g.people() == EXPECTED_PEOPLE
    assert g.check() == []
    g.add(unit(1, seed=18), ["eve"], [""])
    left = sorted(os.listdir(path))
    assert not any(n.endswith(".tmp") for n in left)
    gens = {int(n.split("-")[1].split(".")[0]) for n in left if n[0] in "imv" and "-" in n}
    assert len(gens) == 2  # current and previous generation only
    assert open_gallery(path).people()["eve"] == 1


def test_manifests_and_vectors_are_plain_data_never_pickle(enrolled) -> None:
    path, x, _ = enrolled
    data = manifest(path)
    assert data["format_version"] == FORMAT_VERSION and data["model_id"] == MODEL
    assert data["count"] == len(data["entries"]) == 9
    assert set(data["entries"][0]) == {"id", "name", "source", "added"}
    for backup in path.glob("manifest-*.json"):
        json.loads(backup.read_bytes())
    vectors = np.load(path / data["vectors_file"], allow_pickle=False)
    assert vectors["id"].tolist() == list(range(9))
    np.testing.assert_allclose(vectors["vector"], x, atol=1e-7)
    for f in path.iterdir():
        assert not f.read_bytes().startswith(b"\x80")  # pickle protocol 2+ opcode


def test_inspect_reads_the_manifest_without_importing_faiss(enrolled, tmp_path: Path) -> None:
    path, _, _ = enrolled
    script = textwrap.dedent(
        f"""
        import sys
        from faceid.gallery import Gallery
        info = Gallery.inspect({str(path)!r})
        empty = Gallery.inspect({str(tmp_path / "nothing")!r})
        assert "faiss" not in sys.modules, "inspect imported faiss"
        print(info["model_id"], info["count"], sorted(info["people"].items()), empty["exists"])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=subprocess_env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    expected = f"{MODEL} 9 {sorted(EXPECTED_PEOPLE.items())} False"
    assert out.stdout.strip() == expected


# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Alice", "Alice"),
        ("  Bob Smith\t", "Bob Smith"),
        ("Zoë Ångström", "Zoë Ångström"),
        ("Zoe\u0308", "Zoë"),  # NFC
        ("李小龍", "李小龍"),
        ("O'Brien-Núñez", "O'Brien-Núñez"),
        ("x" * 200, "x" * 200),
    ],
)
def test_validate_name_accepts_and_normalises(raw: str, clean: str) -> None:
    assert validate_name(raw) == clean


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "\t\n", "x" * 201, "a\x00b", "line\nbreak", "bell\x07", "a\u200bb", "a/b", "a\\b"],
)
def test_validate_name_rejects(raw: str) -> None:
    with pytest.raises(BadName) as err:
        validate_name(raw)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------ manifest parser


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def parser_gallery(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("parser") / "gallery"
    g = open_gallery(path)
    g.add(unit(3, seed=19), ["a", "b", "b"], ["x", "y", "z"])
    return path, manifest(path)


def _mutations(valid: dict) -> st.SearchStrategy[bytes]:
    keys = sorted(valid)
    entry_keys = ["id", "name", "source", "added"]

    def replace_field(kv: tuple[str, object]) -> dict:
        return {**valid, kv[0]: kv[1]}

    def drop_field(key: str) -> dict:
        return {k: v for k, v in valid.items() if k != key}

    def replace_entry_field(args: tuple[int, str, object]) -> dict:
        pos, key, value = args
        entries = [dict(e) for e in valid["entries"]]
        entries[pos % len(entries)][key] = value
        return {**valid, "entries": entries}

    dicts = st.one_of(
        st.tuples(st.sampled_from(keys), json_values).map(replace_field),
        st.sampled_from(keys).map(drop_field),
        st.tuples(st.integers(0, 10), st.sampled_from(entry_keys), json_values).map(
            replace_entry_field
        ),
        st.dictionaries(st.text(max_size=10), json_values),
    )
    as_json = dicts.map(lambda d: json.dumps(d).encode())
    top_level = json_values.map(lambda v: json.dumps(v).encode())
    truncated = st.just(json.dumps(valid)[:-7].encode())
    return st.one_of(as_json, top_level, st.binary(max_size=200), truncated)


def test_manifest_parser_gives_a_valid_load_or_gallery_error_never_anything_else(
    parser_gallery,
) -> None:
    path, valid = parser_gallery
    q = unit(1, seed=20)

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(_mutations(valid))
    def run(raw: bytes) -> None:
        (path / "manifest.json").write_bytes(raw)
        try:
            g = open_gallery(path)
            assert isinstance(g.check(), list)
            people = g.people()
            assert len(g) == sum(people.values())
            g.search(q, k=2)
        except GalleryError as exc:
            assert "\n" not in str(exc)
        try:
            Gallery.inspect(path)
        except GalleryError:
            pass

    run()


# ------------------------------------------------------------------------------ processes

CRASH_WRITER = """
import sys
import numpy as np
from faceid.gallery import Gallery

path, model = sys.argv[1], sys.argv[2]
def vec(i, j):
    v = np.random.default_rng(1000 * i + j).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)
g = Gallery(path, model_id=model)
i = sum(1 for name in g.people() if name.startswith("p"))
print("ready", flush=True)
while True:
    g.add(np.stack([vec(i, 0), vec(i, 1)]), [f"p{i}", f"p{i}"], [f"{i}a.jpg", f"{i}b.jpg"])
    g.add(vec(i, 9)[None], ["tmp"], ["t.jpg"])
    g.rename("tmp", "tmp2")
    g.remove("tmp2")
    i += 1
"""


def _vec(i: int, j: int) -> np.ndarray:
    v = np.random.default_rng(1000 * i + j).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def test_sigkill_during_writes_leaves_a_state_before_or_after_some_write(
    gallery_path: Path,
) -> None:
    rnd = random.Random(1234)
    env = subprocess_env()
    progress = 0
    deadline = time.monotonic() + 35
    for _ in range(15):
        if time.monotonic() > deadline:
            break
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASH_WRITER, str(gallery_path), MODEL],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rnd.uniform(0.02, 0.4))
        proc.kill()
        proc.wait()
        proc.stdout.close()
        err = proc.stderr.read() if proc.stderr else ""
        assert "Traceback" not in err, err

        g = open_gallery(gallery_path)
        people = g.people()
        ps = {n for n in people if n.startswith("p")}
        assert ps == {f"p{i}" for i in range(len(ps))}, sorted(people)
        assert set(people) - ps <= {"tmp", "tmp2"}
        assert all(people[n] == 2 for n in ps)
        assert len(ps) >= progress
        progress = len(ps)
        assert g.check() == []
        if ps:
            queries = np.stack([_vec(i, j) for i in range(len(ps)) for j in (0, 1)])
            hits = g.search(queries)
            assert [h[0].name for h in hits] == [f"p{i // 2}" for i in range(2 * len(ps))]
            assert all(h[0].distance < 1e-5 for h in hits)
    assert progress >= 3  # the writers really did write between kills


CONCURRENT_WRITER = """
import os, sys, time
import numpy as np
from faceid.gallery import Gallery

path, model, k, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
g = Gallery(path, model_id=model)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
for j in range(3):
    v = np.random.default_rng(100 * k + j).normal(size=128).astype(np.float32)
    g.add((v / np.linalg.norm(v))[None], [f"w{k}"], [f"w{k}-{j}.jpg"])
"""

CONCURRENT_READER = """
import os, sys, time
import numpy as np
from faceid.gallery import Gallery

path, model, go, stop = sys.argv[1:5]
queries = []
for k in range(8):
    v = np.random.default_rng(100 * k).normal(size=128).astype(np.float32)
    queries.append(v / np.linalg.norm(v))
queries = np.stack(queries)
shared = Gallery(path, model_id=model)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
reads, last = 0, 0
while not os.path.exists(stop):
    g = shared if reads % 2 else Gallery(path, model_id=model)
    n1 = len(g)
    people = g.people()
    n2 = len(g)
    total = sum(people.values())
    assert last <= n1 <= total <= n2, (last, n1, total, n2)
    assert set(people) <= {f"w{k}" for k in range(8)} and max(people.values(), default=0) <= 3
    hits = g.search(queries, k=8)
    for k, h in enumerate(hits):
        assert len({m.name for m in h}) == len(h) >= min(8, len(people))
        assert all(a.distance <= b.distance for a, b in zip(h, h[1:]))
        if f"w{k}" in people:
            assert h[0].name == f"w{k}" and h[0].distance < 1e-5, (k, h[0])
    last = n2
    reads += 1
print("reads", reads, "last", last, flush=True)
"""


def test_concurrent_writers_all_survive_and_readers_see_consistent_states(
    gallery_path: Path, tmp_path: Path
) -> None:
    env = subprocess_env()
    go, stop = tmp_path / "go", tmp_path / "stop"
    common = dict(env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_WRITER, str(gallery_path), MODEL, str(k), str(go)],
            **common,
        )
        for k in range(8)
    ]
    reader = subprocess.Popen(
        [sys.executable, "-c", CONCURRENT_READER, str(gallery_path), MODEL, str(go), str(stop)],
        **common,
    )
    try:
        for p in [*writers, reader]:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        go.touch()
        for p in writers:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        time.sleep(0.2)  # let the reader see the final state too
        stop.touch()
        out, err = reader.communicate(timeout=60)
        assert reader.returncode == 0, err
        reads = int(out.split()[1])
        assert reads > 0
    finally:
        for p in [*writers, reader]:
            if p.poll() is None:
                p.kill()
                p.wait()

    g = open_gallery(gallery_path)
    assert g.people() == {f"w{k}": 3 for k in range(8)}
    assert len(g) == 24 and g.check() == []
    assert sorted(e["id"] for e in g.entries()) == list(range(24))


def test_names_with_zero_width_joiners_are_accepted():
    from faceid.gallery import validate_name

    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # ZWNJ inside a Persian word
    assert validate_name(persian) == persian
