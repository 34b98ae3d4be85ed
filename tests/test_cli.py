"""Pin the `faceid` command line: every command, its exit codes, its --json documents and what
it does to the gallery.

The model is the untrained tiny checkpoint from conftest, so these tests check mechanics, never
recognition quality: a verify verdict is only required to agree with its own exit code, and
--threshold 4.0 (the largest squared distance between unit vectors) or 0 force a verdict.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FaceIDRun, Run, manifest_bytes

VERIFY_FIELDS = {"same", "distance", "threshold"}
FACE_FIELDS = {"name", "distance", "threshold", "rule", "box", "matches"}


def ok(run: Run, code: int = 0) -> Run:
    assert run.code == code, run
    run.assert_no_traceback()
    return run


def one_error_line(run: Run, code: int = 1, *words: str) -> str:
    """The run failed with `code` and exactly one 'faceid: error:' line on stderr."""
    assert run.code == code, run
    run.assert_no_traceback()
    assert len(run.stderr_lines) == 1, run
    line = run.stderr_lines[0]
    assert line.startswith("faceid: error: "), run
    for word in words:
        assert word in line, run
    return line


def people(faceid_run: FaceIDRun) -> dict[str, int]:
    data = ok(faceid_run("list", "--json")).json()
    assert data["count"] == len(data["people"])
    return data["people"]


# ---------------------------------------------------------------- the program itself


def test_help_runs_without_importing_torch() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "faceid.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("enroll", "verify", "identify", "list", "remove", "rename", "embed", "doctor"):
        assert command in proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "click" in imported, "the -X importtime log was not understood"
    assert not {m for m in imported if m == "torch" or m.startswith("torch.")}, "torch imported"


def test_version_option(faceid_run: FaceIDRun) -> None:
    run = ok(faceid_run("--version", model=None, gallery=None))
    assert "0.1.0" in run.stdout


@pytest.mark.parametrize("command", ["verify", "identify", "enroll", "embed"])
def test_missing_model_is_one_line_naming_it_and_exit_1(
    faceid_run: FaceIDRun, face: Path, tmp_path: Path, command: str
) -> None:
    missing = tmp_path / "no-such-model.pt"
    args = {
        "verify": ["verify", face, face],
        "identify": ["identify", face],
        "enroll": ["enroll", face, "--name", "Ann"],
        "embed": ["embed", face, "--json"],
    }[command]
    line = one_error_line(faceid_run(*args, model=missing), 1, str(missing))
    assert "model" in line or "checkpoint" in line


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["verify", "{face}", "{face}", "--no-such-option"], id="unknown-option"),
        pytest.param(["verify", "{face}"], id="verify-missing-argument"),
        pytest.param(["identify"], id="identify-missing-argument"),
        pytest.param(["no-such-command"], id="unknown-command"),
        pytest.param(["embed", "{face}"], id="embed-without-output-or-json"),
        pytest.param(["embed", "--json"], id="embed-without-photos"),
        pytest.param(["embed", "--from", "{missing}", "--json"], id="embed-from-missing-list"),
        pytest.param(["embed", "{face}", "--json", "--on-no-face", "guess"], id="bad-choice"),
        pytest.param(["identify", "{face}", "--top-k", "0"], id="top-k-zero"),
        pytest.param(["identify", "{face}", "--top-k", "many"], id="top-k-not-a-number"),
        pytest.param(["verify", "{face}", "{face}", "--threshold", "nan"], id="threshold-nan"),
        pytest.param(["verify", "{face}", "{face}", "--threshold", "-1"], id="threshold-negative"),
        pytest.param(["enroll", "{face}"], id="enroll-photo-without-name"),
    ],
)
def test_usage_errors_exit_2_and_leave_the_gallery_alone(
    faceid_run: FaceIDRun, face: Path, gallery: Path, tmp_path: Path, args: list[str]
) -> None:
    argv = [a.format(face=face, missing=tmp_path / "missing.txt") for a in args]
    run = faceid_run(*argv)
    assert run.code == 2, run
    run.assert_no_traceback()
    assert run.stderr_lines, run
    assert not gallery.exists()


# ---------------------------------------------------------------- enroll and list


def test_list_of_a_new_gallery_is_empty_and_creates_nothing(
    faceid_run: FaceIDRun, gallery: Path
) -> None:
    assert ok(faceid_run("list", "--json")).json() == {"people": {}, "count": 0}
    assert "empty" in ok(faceid_run("list")).stdout
    assert not gallery.exists()


def test_enroll_one_photo_reports_it_and_list_shows_the_person(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], gallery: Path
) -> None:
    photo = photos["Tony_Blair"][0]
    data = ok(faceid_run("enroll", photo, "--name", "Tony Blair", "--json")).json()
    assert set(data) == {"enrolled", "failed", "gallery"}
    assert data["failed"] == []
    assert data["gallery"] == str(gallery)
    [row] = data["enrolled"]
    assert row["name"] == "Tony Blair"
    assert row["source"] == str(photo)
    assert isinstance(row["id"], int)
    assert people(faceid_run) == {"Tony Blair": 1}
    text = ok(faceid_run("list")).stdout
    assert text.splitlines() == ["Tony Blair\t1"]


def test_enroll_twice_under_one_name_gives_that_name_two_photos(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]]
) -> None:
    first, second = photos["Colin_Powell"]
    ok(faceid_run("enroll", first, "--name", "Colin"))
    run = ok(faceid_run("enroll", second, "--name", "Colin"))
    assert "enrolled 1 photo(s) of 1 person(s)" in run.stdout
    assert people(faceid_run) == {"Colin": 2}


def test_enroll_several_photos_in_one_command_under_one_name(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]]
) -> None:
    data = ok(faceid_run("enroll", *photos["George_W_Bush"], "--name", "GWB", "--json")).json()
    assert [r["source"] for r in data["enrolled"]] == [str(p) for p in photos["George_W_Bush"]]
    assert people(faceid_run) == {"GWB": 2}


def test_enroll_folder_of_person_folders_names_people_after_their_folders(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    root = tmp_path / "people"
    for person, files in photos.items():
        (root / person).mkdir(parents=True)
        for f in files:
            (root / person / f.name).symlink_to(f)
    (root / "Tony_Blair" / "notes.txt").write_text("not a photo")
    data = ok(faceid_run("enroll", root, "--json")).json()
    assert data["failed"] == []
    assert len(data["enrolled"]) == 6
    assert people(faceid_run) == {p: 2 for p in photos}


def test_enroll_flat_folder_needs_name_then_enrolls_every_photo(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tmp_path: Path, gallery: Path
) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in photos["Tony_Blair"]:
        (flat / f.name).symlink_to(f)
    one_error_line(faceid_run("enroll", flat), 2, "--name")
    assert not gallery.exists()
    ok(faceid_run("enroll", flat, "--name", "Tony"))
    assert people(faceid_run) == {"Tony": 2}


def test_enroll_folder_warns_per_bad_photo_and_enrolls_the_rest(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tmp_path: Path, no_face_photo: Path
) -> None:
    person = tmp_path / "people" / "Ann"
    person.mkdir(parents=True)
    (person / "good.jpg").symlink_to(photos["Tony_Blair"][0])
    (person / "grey.png").symlink_to(no_face_photo)
    (person / "text.jpg").write_text("not really a JPEG")
    run = ok(faceid_run("enroll", person.parent, "--json"))
    data = run.json()
    assert [r["source"] for r in data["enrolled"]] == [str(person / "good.jpg")]
    assert sorted(Path(r["source"]).name for r in data["failed"]) == ["grey.png", "text.jpg"]
    assert all(r["error"] and r["name"] == "Ann" for r in data["failed"])
    assert len(run.stderr_lines) == 2
    assert all(line.startswith("faceid: warning: ") for line in run.stderr_lines), run
    assert people(faceid_run) == {"Ann": 1}


def test_enroll_folder_where_every_photo_fails_exits_1_and_writes_nothing(
    faceid_run: FaceIDRun, tmp_path: Path, no_face_photo: Path, gallery: Path
) -> None:
    person = tmp_path / "people" / "Ann"
    person.mkdir(parents=True)
    (person / "a.png").symlink_to(no_face_photo)
    (person / "b.png").symlink_to(no_face_photo)
    run = faceid_run("enroll", person.parent)
    assert run.code == 1, run
    run.assert_no_traceback()
    *warnings, last = run.stderr_lines
    assert len(warnings) == 2 and all(w.startswith("faceid: warning: ") for w in warnings), run
    assert last.startswith("faceid: error: "), run
    assert manifest_bytes(gallery) is None


def test_enroll_a_group_photo_needs_largest(
    faceid_run: FaceIDRun, group_photo: Path, gallery: Path
) -> None:
    one_error_line(faceid_run("enroll", group_photo, "--name", "Two"), 1, "2 faces")
    assert manifest_bytes(gallery) is None
    ok(faceid_run("enroll", group_photo, "--name", "Two", "--largest"))
    assert people(faceid_run) == {"Two": 1}


# ---------------------------------------------------------------- verify


def test_verify_json_has_the_documented_fields_and_agrees_with_the_exit_code(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]]
) -> None:
    a, b = photos["George_W_Bush"]
    run = faceid_run("verify", a, b, "--json")
    run.assert_no_traceback()
    data = run.json()
    assert set(data) == VERIFY_FIELDS
    assert isinstance(data["same"], bool)
    assert data["threshold"] == pytest.approx(0.8)  # the checkpoint's own threshold
    assert 0.0 <= data["distance"] <= 4.0
    assert data["same"] == (data["distance"] <= data["threshold"])
    assert run.code == (0 if data["same"] else 1)
    assert run.stderr == ""
    # the text output tells the same story
    text = faceid_run("verify", a, b)
    assert text.code == run.code
    assert ("same person" if data["same"] else "different people") in text.stdout
    assert f"{data['distance']:.4f}" in text.stdout


def test_verify_same_photo_twice_is_distance_zero_and_same(
    faceid_run: FaceIDRun, face: Path
) -> None:
    data = ok(faceid_run("verify", face, face, "--json")).json()
    assert data["same"] is True
    assert data["distance"] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize(
    ("threshold", "same", "code"),
    [
        pytest.param("4.0", True, 0, id="threshold-4-says-same"),
        pytest.param("0", False, 1, id="threshold-0-says-different"),
    ],
)
def test_verify_threshold_option_overrides_the_models(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], threshold: str, same: bool, code: int
) -> None:
    a, b = photos["George_W_Bush"][0], photos["Colin_Powell"][0]
    data = ok(faceid_run("verify", a, b, "--json", "--threshold", threshold), code).json()
    assert data["same"] is same
    assert data["threshold"] == float(threshold)
    assert data["distance"] > 0


def test_verify_timings_reports_milliseconds_per_stage(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]]
) -> None:
    a, b = photos["Tony_Blair"]
    run = faceid_run("verify", a, b, "--json", "--timings", "--threshold", "4")
    data = ok(run).json()
    assert set(data) == VERIFY_FIELDS | {"timings_ms"}
    assert {"load", "detect", "align", "embed"} <= set(data["timings_ms"])
    assert all(v >= 0 for v in data["timings_ms"].values())


def test_verify_a_group_photo_needs_largest(
    faceid_run: FaceIDRun, group_photo: Path, face: Path
) -> None:
    one_error_line(faceid_run("verify", group_photo, face), 1, "faces")
    run = faceid_run("verify", group_photo, face, "--largest", "--json")
    assert run.code in (0, 1)
    assert set(run.json()) == VERIFY_FIELDS


def test_verify_a_photo_without_a_face_is_one_error_line(
    faceid_run: FaceIDRun, face: Path, no_face_photo: Path
) -> None:
    one_error_line(faceid_run("verify", no_face_photo, face), 1, "no face")
    run = faceid_run("verify", face, no_face_photo, "--json")
    one_error_line(run, 1, "no face")
    data = run.json()
    assert data["kind"] == "NoFace" and "no face" in data["error"]


# ---------------------------------------------------------------- identify


@pytest.fixture
def three_people(faceid_run: FaceIDRun, photos: dict[str, list[Path]], gallery: Path) -> Path:
    """The first photo of each of the three people enrolled under their LFW names."""
    for person, files in photos.items():
        ok(faceid_run("enroll", files[0], "--name", person))
    return gallery


def test_identify_within_threshold_names_the_person_and_exits_0(
    faceid_run: FaceIDRun, three_people: Path, photos: dict[str, list[Path]]
) -> None:
    probe = photos["Colin_Powell"][1]
    data = ok(faceid_run("identify", probe, "--json", "--threshold", "4")).json()
    assert set(data) == {"faces", "rule"}
    assert data["rule"]["kind"] == "threshold" and data["rule"]["reason"] == "given"
    [hit] = data["faces"]
    assert set(hit) == FACE_FIELDS
    assert hit["name"] in photos
    assert hit["name"] == hit["matches"][0]["name"]
    assert hit["distance"] == hit["matches"][0]["distance"]
    assert hit["threshold"] == 4.0
    assert len(hit["box"]) == 4
    assert len(hit["matches"]) == 1


def test_identify_beyond_threshold_says_unknown_and_exits_1(
    faceid_run: FaceIDRun, three_people: Path, photos: dict[str, list[Path]]
) -> None:
    probe = photos["Colin_Powell"][1]  # not an enrolled photo, so its distance is > 0
    run = ok(faceid_run("identify", probe, "--json", "--threshold", "0"), 1)
    [hit] = run.json()["faces"]
    assert hit["name"] == "unknown"
    assert hit["distance"] > 0
    assert run.stderr == ""
    assert "unknown" in faceid_run("identify", probe, "--threshold", "0").stdout


def test_identify_an_enrolled_photo_finds_its_person_at_distance_zero(
    faceid_run: FaceIDRun, three_people: Path, photos: dict[str, list[Path]]
) -> None:
    # Same pixels, same embedding: true for any model, trained or not.
    data = ok(faceid_run("identify", photos["Tony_Blair"][0], "--json")).json()
    [hit] = data["faces"]
    assert hit["name"] == "Tony_Blair"
    assert hit["distance"] == pytest.approx(0.0, abs=1e-5)


def test_identify_top_k_lists_k_different_people_nearest_first(
    faceid_run: FaceIDRun, three_people: Path, photos: dict[str, list[Path]]
) -> None:
    probe = photos["George_W_Bush"][1]
    [hit] = ok(faceid_run("identify", probe, "--json", "--top-k", "3", "--threshold", "4")).json()[
        "faces"
    ]
    names = [m["name"] for m in hit["matches"]]
    assert sorted(names) == sorted(photos)
    distances = [m["distance"] for m in hit["matches"]]
    assert distances == sorted(distances)
    # asking for more people than are enrolled gives everyone, once
    [hit] = ok(faceid_run("identify", probe, "--json", "--top-k", "10", "--threshold", "4")).json()[
        "faces"
    ]
    assert sorted(m["name"] for m in hit["matches"]) == sorted(photos)
    text = ok(faceid_run("identify", probe, "--top-k", "3", "--threshold", "4")).stdout
    assert all(f"{i}. " in text for i in (1, 2, 3))


def test_identify_all_faces_reports_each_face_of_a_group_photo(
    faceid_run: FaceIDRun, three_people: Path, group_photo: Path
) -> None:
    # The group photo is George_W_Bush_0001 | Colin_Powell_0001, both enrolled: distance ~0.
    data = ok(faceid_run("identify", group_photo, "--all-faces", "--json", "--top-k", "2")).json()
    faces = data["faces"]
    assert len(faces) == 2
    assert all(set(f) == FACE_FIELDS and len(f["matches"]) == 2 for f in faces)
    by_side = sorted(faces, key=lambda f: f["box"][0])
    assert by_side[0]["box"][2] <= 250 <= by_side[1]["box"][0]
    assert [f["name"] for f in by_side] == ["George_W_Bush", "Colin_Powell"]
    text = ok(faceid_run("identify", group_photo, "--all-faces")).stdout
    assert text.count("face at [") == 2


def test_identify_a_group_photo_without_all_faces_or_largest_is_an_error(
    faceid_run: FaceIDRun, three_people: Path, group_photo: Path
) -> None:
    one_error_line(faceid_run("identify", group_photo), 1, "2 faces")
    [hit] = ok(
        faceid_run("identify", group_photo, "--largest", "--json", "--threshold", "4")
    ).json()["faces"]
    assert hit["name"] in {"George_W_Bush", "Colin_Powell"}


def test_identify_with_an_empty_gallery_is_one_error_line(
    faceid_run: FaceIDRun, face: Path, gallery: Path
) -> None:
    one_error_line(faceid_run("identify", face), 1, "empty")
    assert not gallery.exists()


def test_identify_a_photo_without_a_face_is_one_error_line(
    faceid_run: FaceIDRun, three_people: Path, no_face_photo: Path
) -> None:
    one_error_line(faceid_run("identify", no_face_photo), 1, "no face")


# ---------------------------------------------------------------- remove and rename


def test_remove_forgets_every_photo_of_a_person(
    faceid_run: FaceIDRun, three_people: Path, photos: dict[str, list[Path]]
) -> None:
    ok(faceid_run("enroll", photos["Tony_Blair"][1], "--name", "Tony_Blair"))
    data = ok(faceid_run("remove", "Tony_Blair", "--json")).json()
    assert data == {"removed": "Tony_Blair", "embeddings": 2}
    assert people(faceid_run) == {"George_W_Bush": 1, "Colin_Powell": 1}
    assert (
        "removed Colin_Powell (1 embedding(s))" in ok(faceid_run("remove", "Colin_Powell")).stdout
    )


def test_remove_someone_not_enrolled_is_one_error_line_and_changes_nothing(
    faceid_run: FaceIDRun, three_people: Path
) -> None:
    before = manifest_bytes(three_people)
    one_error_line(faceid_run("remove", "Nobody"), 1, "Nobody")
    assert manifest_bytes(three_people) == before


def test_rename_moves_the_photos_and_renaming_onto_someone_merges(
    faceid_run: FaceIDRun, three_people: Path
) -> None:
    data = ok(faceid_run("rename", "Tony_Blair", "Tony", "--json")).json()
    assert data == {"renamed": "Tony_Blair", "to": "Tony", "embeddings": 1}
    assert people(faceid_run) == {"George_W_Bush": 1, "Colin_Powell": 1, "Tony": 1}
    ok(faceid_run("rename", "Colin_Powell", "Tony"))
    assert people(faceid_run) == {"George_W_Bush": 1, "Tony": 2}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("Nobody", "X", id="not-enrolled"),
        pytest.param("Tony_Blair", "a/b", id="new-name-with-slash"),
        pytest.param("Tony_Blair", "", id="empty-new-name"),
    ],
)
def test_rename_errors_are_one_line_and_change_nothing(
    faceid_run: FaceIDRun, three_people: Path, old: str, new: str
) -> None:
    before = manifest_bytes(three_people)
    one_error_line(faceid_run("rename", old, new), 1)
    assert manifest_bytes(three_people) == before


# ---------------------------------------------------------------- embed


@pytest.fixture(scope="module")
def api_embeddings(tiny_model: Path, photos: dict[str, list[Path]]) -> dict[Path, np.ndarray]:
    """FaceID.embed of every photo, computed through the Python API."""
    import torch

    from faceid import FaceID

    fid = FaceID(model=tiny_model, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {p: fid.embed(p) for files in photos.values() for p in files}
    finally:
        torch.set_num_threads(threads)


def test_embed_writes_rows_in_input_order_equal_to_the_api(
    faceid_run: FaceIDRun,
    photos: dict[str, list[Path]],
    api_embeddings: dict[Path, np.ndarray],
    tmp_path: Path,
) -> None:
    order = [photos["Tony_Blair"][1], photos["George_W_Bush"][0], photos["Colin_Powell"][1]]
    order += [photos["Tony_Blair"][0]]
    out = tmp_path / "out.npy"
    run = ok(faceid_run("embed", *order, "-o", out))
    assert f"wrote 4 embedding(s) to {out}" in run.stdout
    emb = np.load(out, allow_pickle=False)
    assert emb.shape == (4, 128) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, np.stack([api_embeddings[p] for p in order]), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)


def test_embed_output_file_gets_exactly_the_name_given(
    faceid_run: FaceIDRun, face: Path, tmp_path: Path
) -> None:
    out = tmp_path / "vectors.bin"
    data = ok(faceid_run("embed", face, "-o", out, "--json")).json()
    assert data["output"] == str(out)
    assert "embeddings" not in data
    assert np.load(out).shape == (1, 128)
    assert not out.with_name("vectors.bin.npy").exists()


def test_embed_to_an_unwritable_place_is_one_error_line(
    faceid_run: FaceIDRun, face: Path, tmp_path: Path
) -> None:
    one_error_line(faceid_run("embed", face, "-o", tmp_path / "no" / "dir" / "out.npy"), 1)


def test_embed_json_carries_the_embeddings_and_one_row_per_file(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], api_embeddings: dict[Path, np.ndarray]
) -> None:
    order = [photos["Colin_Powell"][0], photos["Tony_Blair"][1]]
    data = ok(faceid_run("embed", *order, "--json")).json()
    assert set(data) == {"count", "dim", "files", "model_id", "embeddings"}
    assert data["count"] == 2 and data["dim"] == 128
    assert data["model_id"].startswith("faceid-")
    assert [f["source"] for f in data["files"]] == [str(p) for p in order]
    assert [(f["status"], f["row"], f["error"]) for f in data["files"]] == [
        ("ok", 0, None),
        ("ok", 1, None),
    ]
    expected = np.stack([api_embeddings[p] for p in order])
    np.testing.assert_allclose(np.array(data["embeddings"]), expected, atol=1e-5)


def test_embed_from_a_list_file_follows_the_photos_given_first(
    faceid_run: FaceIDRun,
    photos: dict[str, list[Path]],
    api_embeddings: dict[Path, np.ndarray],
    tmp_path: Path,
) -> None:
    first = photos["George_W_Bush"][1]
    listed = [photos["Tony_Blair"][0], photos["Colin_Powell"][0]]
    list_file = tmp_path / "list.txt"
    list_file.write_text(f"{listed[0]}\n\n   \n  {listed[1]}  \n", encoding="utf-8")
    data = ok(faceid_run("embed", first, "--from", list_file, "--json")).json()
    order = [first, *listed]
    assert [f["source"] for f in data["files"]] == [str(p) for p in order]
    expected = np.stack([api_embeddings[p] for p in order])
    np.testing.assert_allclose(np.array(data["embeddings"]), expected, atol=1e-5)


def test_embed_on_no_face_error_stops_with_one_line_and_writes_nothing(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], no_face_photo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.npy"
    run = faceid_run("embed", photos["Tony_Blair"][0], no_face_photo, "-o", out)
    one_error_line(run, 1, "no face")
    assert not out.exists()


def test_embed_on_no_face_skip_leaves_the_photo_out_and_says_so(
    faceid_run: FaceIDRun,
    photos: dict[str, list[Path]],
    no_face_photo: Path,
    api_embeddings: dict[Path, np.ndarray],
) -> None:
    a, b = photos["Tony_Blair"][0], photos["Colin_Powell"][0]
    data = ok(faceid_run("embed", a, no_face_photo, b, "--on-no-face", "skip", "--json")).json()
    assert data["count"] == 2
    rows = [(f["source"], f["status"], f["row"]) for f in data["files"]]
    assert rows == [(str(a), "ok", 0), (str(no_face_photo), "skipped", None), (str(b), "ok", 1)]
    assert "no face" in data["files"][1]["error"]
    expected = np.stack([api_embeddings[a], api_embeddings[b]])
    np.testing.assert_allclose(np.array(data["embeddings"]), expected, atol=1e-5)


def test_embed_on_no_face_full_image_embeds_the_photo_centre(
    faceid_run: FaceIDRun, face: Path, no_face_photo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.npy"
    run = ok(faceid_run("embed", no_face_photo, face, "--on-no-face", "full-image", "-o", out))
    assert np.load(out).shape == (2, 128)
    assert "fallback" in run.stdout
    data = ok(faceid_run("embed", no_face_photo, "--on-no-face", "full-image", "--json")).json()
    assert [(f["status"], f["row"]) for f in data["files"]] == [("fallback", 0)]


# ---------------------------------------------------------------- doctor


def test_doctor_calls_a_fresh_or_enrolled_gallery_healthy(
    faceid_run: FaceIDRun, face: Path
) -> None:
    data = ok(faceid_run("doctor", "--json")).json()
    assert data["healthy"] is True and data["problems"] == [] and data["repaired"] == []
    ok(faceid_run("enroll", face, "--name", "Ann"))
    run = ok(faceid_run("doctor"))
    assert "healthy" in run.stdout
    data = ok(faceid_run("doctor", "--json")).json()
    assert set(data) == {"gallery", "problems", "repaired", "healthy", "rule"}
    assert data["healthy"] is True


def test_doctor_reports_a_lost_index_and_repair_fixes_it_without_losing_anyone(
    faceid_run: FaceIDRun, three_people: Path, photos: dict[str, list[Path]]
) -> None:
    before = people(faceid_run)
    for index in three_people.glob("index-*.faiss"):
        index.unlink()
    one_error_line(faceid_run("identify", photos["Tony_Blair"][1]), 1, "index")
    run = faceid_run("doctor", "--json")
    assert run.code == 1, run
    data = run.json()
    assert data["healthy"] is False and data["problems"]
    run = ok(faceid_run("doctor", "--repair", "--json"))
    data = run.json()
    assert data["healthy"] is True and data["repaired"]
    assert people(faceid_run) == before
    assert ok(faceid_run("doctor", "--json")).json()["problems"] == []


def test_doctor_needs_no_model_so_it_works_when_the_model_is_lost(
    faceid_run: FaceIDRun, three_people: Path, tmp_path: Path
) -> None:
    data = ok(faceid_run("doctor", "--json", model=tmp_path / "gone.pt")).json()
    assert data["healthy"] is True and data["problems"] == []
    (three_people / "manifest.json").write_text("{ not json")
    run = faceid_run("doctor", "--repair", "--json", model=tmp_path / "gone.pt")
    assert run.code == 0, run
    data = run.json()
    assert data["problems"] and data["repaired"] and data["healthy"] is True
    assert people(faceid_run) == {"George_W_Bush": 1, "Colin_Powell": 1, "Tony_Blair": 1}


# ---------------------------------------------------------------- JSON errors


@pytest.mark.parametrize("command", ["verify", "identify", "enroll"])
def test_errors_with_json_print_one_json_document_and_one_stderr_line(
    faceid_run: FaceIDRun, face: Path, tmp_path: Path, command: str
) -> None:
    missing = tmp_path / "missing.jpg"
    args = {
        "verify": ["verify", missing, face],
        "identify": ["identify", missing],
        "enroll": ["enroll", missing, "--name", "Ann"],
    }[command]
    run = faceid_run(*args, "--json")
    one_error_line(run, 1, "missing.jpg")
    data = run.json()
    if command == "enroll":  # the per-photo report, nothing enrolled
        assert data["enrolled"] == [] and len(data["failed"]) == 1
    else:
        assert set(data) == {"error", "kind"} and data["kind"] == "BadImage"


def test_faceid_gallery_environment_variable_is_the_default_gallery(
    tiny_model: Path, face: Path, tmp_path: Path, fast_cpu: None
) -> None:
    from click.testing import CliRunner

    from faceid.cli import main

    where = tmp_path / "from-env"
    env = {"FACEID_GALLERY": str(where), "FACEID_DEBUG": None}
    args = ["enroll", str(face), "--name", "Ann", "--model", str(tiny_model)]
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert (where / "manifest.json").is_file()
