"""Pin the `faceid` command line: every command, its exit codes, its --json documents and what
it does to the gallery.

The model is the untrained tiny checkpoint from conftest, so these tests check mechanics, never
recognition quality: a verify verdict is only required to agree with its own exit code, and
--threshold 4.0 (the largest squared distance between unit vectors) or 0 force a verdict.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FaceIDRun, Run, manifest_bytes

VERIFY_FIELDS = {"same", "distance", "threshold", "faces"}
FACE_FIELDS = {"name", "distance", "ratio", "threshold", "rule", "box", "matches"}


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


@pytest.mark.parametrize(
    "args",
    [["list"], ["identify", "{face}"], ["remove", "Ann"], ["rename", "Ann", "Bo"], ["doctor"]],
    ids=lambda a: a[0],
)
def test_reading_verbs_on_a_path_without_a_gallery_say_so_and_create_nothing(
    faceid_run: FaceIDRun, gallery: Path, face: Path, args: list[str]
) -> None:
    argv = [a.format(face=face) for a in args]
    one_error_line(faceid_run(*argv), 1, f"no gallery at {gallery}")
    data = faceid_run(*argv, "--json").json()
    assert data["kind"] == "NoGallery"
    assert not gallery.exists()


def test_an_enrolled_then_emptied_gallery_lists_as_empty(faceid_run: FaceIDRun, face: Path) -> None:
    ok(faceid_run("enroll", face, "--name", "Ann"))
    ok(faceid_run("remove", "Ann"))
    assert ok(faceid_run("list", "--json")).json() == {"people": {}, "count": 0}
    assert "empty" in ok(faceid_run("list")).stdout


def test_enroll_one_photo_reports_it_and_list_shows_the_person(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], gallery: Path
) -> None:
    photo = photos["Amelie_Mauresmo"][0]
    data = ok(faceid_run("enroll", photo, "--name", "Tony Blair", "--json")).json()
    assert set(data) == {"enrolled", "failed", "skipped", "duplicates", "gallery"}
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
    first, second = photos["Carlos_Moya"]
    ok(faceid_run("enroll", first, "--name", "Colin"))
    run = ok(faceid_run("enroll", second, "--name", "Colin"))
    assert "enrolled 1 photo(s) of 1 person(s)" in run.stdout
    assert people(faceid_run) == {"Colin": 2}


def test_enroll_several_photos_in_one_command_under_one_name(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]]
) -> None:
    data = ok(faceid_run("enroll", *photos["Alvaro_Uribe"], "--name", "GWB", "--json")).json()
    assert [r["source"] for r in data["enrolled"]] == [str(p) for p in photos["Alvaro_Uribe"]]
    assert people(faceid_run) == {"GWB": 2}


def test_enroll_folder_of_person_folders_names_people_after_their_folders(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    root = tmp_path / "people"
    for person, files in photos.items():
        (root / person).mkdir(parents=True)
        for f in files:
            (root / person / f.name).symlink_to(f)
    (root / "Amelie_Mauresmo" / "notes.txt").write_text("not a photo")
    data = ok(faceid_run("enroll", root, "--json")).json()
    assert data["failed"] == []
    assert len(data["enrolled"]) == 6
    assert people(faceid_run) == {p: 2 for p in photos}


def test_enroll_flat_folder_needs_name_then_enrolls_every_photo(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tmp_path: Path, gallery: Path
) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in photos["Amelie_Mauresmo"]:
        (flat / f.name).symlink_to(f)
    one_error_line(faceid_run("enroll", flat), 2, "--name")
    assert not gallery.exists()
    ok(faceid_run("enroll", flat, "--name", "Tony"))
    assert people(faceid_run) == {"Tony": 2}


def test_enroll_folder_reports_each_bad_photo_once_and_enrolls_the_rest(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tmp_path: Path, no_face_photo: Path
) -> None:
    person = tmp_path / "people" / "Ann"
    person.mkdir(parents=True)
    (person / "good.jpg").symlink_to(photos["Amelie_Mauresmo"][0])
    (person / "grey.png").symlink_to(no_face_photo)
    (person / "text.jpg").write_text("not really a JPEG")
    run = ok(faceid_run("enroll", person.parent, "--json"))
    data = run.json()
    assert [r["source"] for r in data["enrolled"]] == [str(person / "good.jpg")]
    assert [Path(r["source"]).name for r in data["failed"]] == ["grey.png"]
    assert all(r["error"] and r["name"] == "Ann" for r in data["failed"])
    assert [(Path(r["source"]).name, r["reason"]) for r in data["skipped"]] == [
        ("text.jpg", "not an image (judged by content)")
    ]
    assert run.stderr_lines == [], run  # the report says it; stderr does not repeat it
    text = ok(faceid_run("enroll", person.parent, "--allow-duplicates"))
    assert text.stderr_lines == [], text
    assert sum("grey.png" in line for line in text.stdout.splitlines()) == 1, text
    assert sum("text.jpg" in line for line in text.stdout.splitlines()) == 1, text
    assert people(faceid_run) == {"Ann": 2}


def test_enroll_folder_where_every_photo_fails_exits_1_and_writes_nothing(
    faceid_run: FaceIDRun, tmp_path: Path, no_face_photo: Path, gallery: Path
) -> None:
    person = tmp_path / "people" / "Ann"
    person.mkdir(parents=True)
    shutil.copyfile(no_face_photo, person / "a.png")
    shutil.copyfile(no_face_photo, person / "b.png")
    run = faceid_run("enroll", person.parent)
    assert run.code == 1, run
    run.assert_no_traceback()
    assert len(run.stderr_lines) == 1 and run.stderr_lines[0].startswith("faceid: error: "), run
    assert [line.startswith("failed: ") for line in run.stdout.splitlines()[1:]] == [True, True]
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
    a, b = photos["Alvaro_Uribe"]
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
    a, b = photos["Alvaro_Uribe"][0], photos["Carlos_Moya"][0]
    data = ok(faceid_run("verify", a, b, "--json", "--threshold", threshold), code).json()
    assert data["same"] is same
    assert data["threshold"] == float(threshold)
    assert data["distance"] > 0


def test_verify_timings_reports_milliseconds_per_stage(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]]
) -> None:
    a, b = photos["Amelie_Mauresmo"]
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
    probe = photos["Carlos_Moya"][1]
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
    probe = photos["Carlos_Moya"][1]  # not an enrolled photo, so its distance is > 0
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
    data = ok(faceid_run("identify", photos["Amelie_Mauresmo"][0], "--json")).json()
    [hit] = data["faces"]
    assert hit["name"] == "Amelie_Mauresmo"
    assert hit["distance"] == pytest.approx(0.0, abs=1e-5)


def test_identify_top_k_lists_k_different_people_nearest_first(
    faceid_run: FaceIDRun, three_people: Path, photos: dict[str, list[Path]]
) -> None:
    probe = photos["Alvaro_Uribe"][1]
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
    # The group photo is Alvaro_Uribe_0001 | Carlos_Moya_0001, both enrolled: distance ~0.
    data = ok(faceid_run("identify", group_photo, "--all-faces", "--json", "--top-k", "2")).json()
    faces = data["faces"]
    assert len(faces) == 2
    assert all(set(f) == FACE_FIELDS and len(f["matches"]) == 2 for f in faces)
    by_side = sorted(faces, key=lambda f: f["box"][0])
    assert by_side[0]["box"][2] <= 250 <= by_side[1]["box"][0]
    assert [f["name"] for f in by_side] == ["Alvaro_Uribe", "Carlos_Moya"]
    text = ok(faceid_run("identify", group_photo, "--all-faces")).stdout
    assert text.count("face at [") == 2


def test_identify_a_group_photo_without_all_faces_or_largest_is_an_error(
    faceid_run: FaceIDRun, three_people: Path, group_photo: Path
) -> None:
    one_error_line(faceid_run("identify", group_photo), 1, "2 faces")
    [hit] = ok(
        faceid_run("identify", group_photo, "--largest", "--json", "--threshold", "4")
    ).json()["faces"]
    assert hit["name"] in {"Alvaro_Uribe", "Carlos_Moya"}


def test_identify_with_an_empty_gallery_is_one_error_line(
    faceid_run: FaceIDRun, face: Path, gallery: Path
) -> None:
    ok(faceid_run("enroll", face, "--name", "Ann"))
    ok(faceid_run("remove", "Ann"))
    one_error_line(faceid_run("identify", face), 1, "empty")


@pytest.mark.parametrize("name", ["unknown", "Unknown", " UNKNOWN "])
def test_the_word_for_no_one_cannot_be_a_name(
    faceid_run: FaceIDRun, face: Path, gallery: Path, three_people: Path, name: str
) -> None:
    one_error_line(faceid_run("enroll", face, "--name", name, gallery=gallery), 1, "another name")
    before = manifest_bytes(three_people)
    one_error_line(faceid_run("rename", "Carlos_Moya", name, gallery=three_people), 1)
    assert manifest_bytes(three_people) == before


def test_identify_a_photo_without_a_face_is_one_error_line(
    faceid_run: FaceIDRun, three_people: Path, no_face_photo: Path
) -> None:
    one_error_line(faceid_run("identify", no_face_photo), 1, "no face")


# ---------------------------------------------------------------- remove and rename


def test_remove_forgets_every_photo_of_a_person(
    faceid_run: FaceIDRun, three_people: Path, photos: dict[str, list[Path]]
) -> None:
    ok(faceid_run("enroll", photos["Amelie_Mauresmo"][1], "--name", "Amelie_Mauresmo"))
    data = ok(faceid_run("remove", "Amelie_Mauresmo", "--json")).json()
    assert data == {"removed": "Amelie_Mauresmo", "embeddings": 2}
    assert people(faceid_run) == {"Alvaro_Uribe": 1, "Carlos_Moya": 1}
    assert "removed Carlos_Moya (1 embedding(s))" in ok(faceid_run("remove", "Carlos_Moya")).stdout


def test_remove_someone_not_enrolled_is_one_error_line_and_changes_nothing(
    faceid_run: FaceIDRun, three_people: Path
) -> None:
    before = manifest_bytes(three_people)
    one_error_line(faceid_run("remove", "Nobody"), 1, "Nobody")
    assert manifest_bytes(three_people) == before


def test_rename_moves_the_photos_and_renaming_onto_someone_needs_merge(
    faceid_run: FaceIDRun, three_people: Path
) -> None:
    data = ok(faceid_run("rename", "Amelie_Mauresmo", "Tony", "--json")).json()
    assert data == {"renamed": "Amelie_Mauresmo", "to": "Tony", "embeddings": 1}
    assert people(faceid_run) == {"Alvaro_Uribe": 1, "Carlos_Moya": 1, "Tony": 1}
    before = manifest_bytes(three_people)
    line = one_error_line(faceid_run("rename", "Carlos_Moya", "Tony"), 2, "--merge")
    assert "'Tony' is already enrolled (1 photo(s))" in line
    assert manifest_bytes(three_people) == before
    ok(faceid_run("rename", "Carlos_Moya", "Tony", "--merge"))
    assert people(faceid_run) == {"Alvaro_Uribe": 1, "Tony": 2}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("Nobody", "X", id="not-enrolled"),
        pytest.param("Amelie_Mauresmo", "a/b", id="new-name-with-slash"),
        pytest.param("Amelie_Mauresmo", "", id="empty-new-name"),
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
    order = [photos["Amelie_Mauresmo"][1], photos["Alvaro_Uribe"][0], photos["Carlos_Moya"][1]]
    order += [photos["Amelie_Mauresmo"][0]]
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
    order = [photos["Carlos_Moya"][0], photos["Amelie_Mauresmo"][1]]
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
    first = photos["Alvaro_Uribe"][1]
    listed = [photos["Amelie_Mauresmo"][0], photos["Carlos_Moya"][0]]
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
    run = faceid_run("embed", photos["Amelie_Mauresmo"][0], no_face_photo, "-o", out)
    one_error_line(run, 1, "no face")
    assert not out.exists()


def test_embed_on_no_face_skip_leaves_the_photo_out_and_says_so(
    faceid_run: FaceIDRun,
    photos: dict[str, list[Path]],
    no_face_photo: Path,
    api_embeddings: dict[Path, np.ndarray],
) -> None:
    a, b = photos["Amelie_Mauresmo"][0], photos["Carlos_Moya"][0]
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


def test_doctor_calls_an_enrolled_gallery_healthy(faceid_run: FaceIDRun, face: Path) -> None:
    ok(faceid_run("enroll", face, "--name", "Ann"))
    data = ok(faceid_run("doctor", "--json")).json()
    assert data["healthy"] is True and data["problems"] == [] and data["repaired"] == []
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
    one_error_line(faceid_run("identify", photos["Amelie_Mauresmo"][1]), 1, "index")
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
    assert people(faceid_run) == {"Alvaro_Uribe": 1, "Carlos_Moya": 1, "Amelie_Mauresmo": 1}


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


# ---------------------------------------------------------------- no surprises


def test_per_person_folders_with_name_are_a_usage_error_unless_one_person(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tmp_path: Path, gallery: Path
) -> None:
    root = tmp_path / "people"
    for person, files in photos.items():
        (root / person).mkdir(parents=True)
        shutil.copyfile(files[0], root / person / "a.jpg")
    line = one_error_line(faceid_run("enroll", root, "--name", "Family"), 2, "--one-person")
    assert "--name" in line and "`" not in line
    assert not gallery.exists()
    ok(faceid_run("enroll", root, "--name", "Family", "--one-person"))
    assert people(faceid_run) == {"Family": 3}


def test_contradictory_all_faces_and_largest_exit_2_naming_both_flags(
    faceid_run: FaceIDRun, face: Path
) -> None:
    ok(faceid_run("enroll", face, "--name", "Ann"))
    line = one_error_line(faceid_run("identify", face, "--all-faces", "--largest"), 2)
    assert "--all-faces" in line and "--largest" in line


@pytest.mark.parametrize("value", ["5", "4.5", "-0.1", "inf"])
def test_threshold_outside_0_to_4_is_a_usage_error_naming_the_flag(
    faceid_run: FaceIDRun, face: Path, value: str
) -> None:
    line = one_error_line(faceid_run("verify", face, face, "--threshold", value), 2)
    assert "--threshold must be a number from 0 to 4" in line


def test_errors_name_this_commands_flags_not_the_apis_parameters(
    faceid_run: FaceIDRun, group_photo: Path, face: Path
) -> None:
    line = one_error_line(faceid_run("verify", group_photo, face), 1, "2 faces found")
    assert "--largest" in line and "`" not in line
    line = one_error_line(faceid_run("identify", face, "--top-k", "0"), 2, "--top-k")


def test_verify_largest_says_which_face_it_used_and_its_box_order(
    faceid_run: FaceIDRun, group_photo: Path, face: Path
) -> None:
    run = faceid_run("verify", group_photo, face, "--largest")
    run.assert_no_traceback()
    assert "the largest of 2 faces, box [" in run.stdout
    assert "(left, top, right, bottom)" in run.stdout
    data = faceid_run("verify", group_photo, face, "--largest", "--json").json()
    assert [f["faces_found"] for f in data["faces"]] == [2, 1]
    assert all(len(f["box"]) == 4 for f in data["faces"])


def test_embed_full_image_gives_a_row_per_photo_or_fails_naming_the_photos(
    faceid_run: FaceIDRun, face: Path, group_photo: Path, no_face_photo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.npy"
    ok(faceid_run("embed", face, no_face_photo, "-o", out, "--on-no-face", "full-image"))
    assert np.load(out).shape[0] == 2
    out.unlink()
    run = faceid_run("embed", face, group_photo, "-o", out, "--on-no-face", "full-image")
    one_error_line(run, 1, "group.jpg", "--largest")
    assert not out.exists()


def test_a_text_file_as_model_says_what_it_is(
    faceid_run: FaceIDRun, face: Path, tmp_path: Path
) -> None:
    text = tmp_path / "text.jpg"
    text.write_text("hello")
    one_error_line(
        faceid_run("verify", face, face, model=text),
        1,
        "not a faceid checkpoint: it is a text file",
    )


def test_a_closed_output_pipe_is_a_quiet_exit(
    faceid_run: FaceIDRun, face: Path, gallery: Path, tiny_model: Path
) -> None:
    import os

    ok(faceid_run("enroll", face, "--name", "Ann"))
    read, write = os.pipe()
    os.close(read)  # like `faceid list | head -c0`: the reader is gone before we write
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "faceid.cli", "list", "--gallery", str(gallery)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""


def test_progress_bars_are_closed_before_an_error_line() -> None:
    import io

    from tqdm import tqdm

    from faceid.cli import _close_bars

    stream = io.StringIO()
    bar = tqdm(total=10, file=stream)
    bar.update(3)
    _close_bars()
    assert stream.getvalue().endswith("\n")  # the error that follows starts its own line


def test_the_default_gallery_is_in_the_users_data_folder_whatever_the_current_folder(
    tiny_model: Path, face: Path, tmp_path: Path, fast_cpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from faceid.cli import main

    data = tmp_path / "data-home"
    env = {"FACEID_GALLERY": None, "FACEID_DEBUG": None, "XDG_DATA_HOME": str(data)}
    runner = CliRunner()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    args = ["enroll", str(face), "--name", "Ann", "--model", str(tiny_model)]
    assert runner.invoke(main, args, env=env, catch_exceptions=False).exit_code == 0
    monkeypatch.chdir(tmp_path / "b")
    listed = runner.invoke(main, ["list", "--json"], env=env, catch_exceptions=False)
    assert json.loads(listed.stdout)["people"] == {"Ann": 1}
    expected = data / "faceid" / "galleries" / "default"
    assert (expected / "manifest.json").is_file()
    doctor = runner.invoke(main, ["doctor"], env=env, catch_exceptions=False)
    assert str(expected) in doctor.stdout
    assert not (tmp_path / "a" / "galleries").exists()


def test_help_shows_where_the_default_gallery_is() -> None:
    from click.testing import CliRunner

    from faceid.cli import main
    from faceid.locations import user_gallery_path

    text = " ".join(CliRunner().invoke(main, ["list", "--help"]).stdout.split())
    assert str(user_gallery_path()) in text.replace("- ", "-").replace(" /", "/") or (
        "galleries/default" in text
    )


def test_an_ivf_index_on_a_new_gallery_searches_exactly_until_it_can_be_trained(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], gallery: Path
) -> None:
    first, second = photos["Alvaro_Uribe"]
    run = ok(faceid_run("enroll", first, "--name", "Ann", "--index", "IVF4096,Flat"))
    assert "--index IVF4096,Flat needs 159,744 faces to train" in run.stdout
    manifest = json.loads((gallery / "manifest.json").read_text())
    assert manifest["index_factory"] == "Flat"
    data = ok(faceid_run("enroll", second, "--name", "Bo", "--index", "IVF4,Flat", "--json")).json()
    assert "index_deferred" not in data  # an existing gallery keeps its own
    hit = faceid_run("identify", first, "--json").json()
    assert hit["faces"][0]["matches"][0]["name"] == "Ann"


def test_a_deferred_ivf_index_is_built_once_there_are_enough_faces(
    tmp_path: Path, face: Path, tiny_model: Path, fast_cpu: None
) -> None:
    from faceid import FaceID

    fid = FaceID(gallery=tmp_path / "g", model=tiny_model, index="IVF1,Flat", device="cpu")
    report = fid.enroll_many([("Ann", str(face))], workers=1)
    assert report.index_deferred == ("IVF1,Flat", 39)
    info = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert info["index_factory"] == "Flat"
    rng = np.random.default_rng(0)
    more = rng.normal(size=(40, fid.encoder.embedding_dim)).astype(np.float32)
    more /= np.linalg.norm(more, axis=1, keepdims=True)
    fid.gallery.add(more, [f"P{i}" for i in range(40)], ["synthetic"] * 40)
    assert fid.gallery.switched == "IVF1,Flat"
    assert json.loads((tmp_path / "g" / "manifest.json").read_text())["index_factory"] == (
        "IVF1,Flat"
    )


def _plain_pairs(root: Path, photos: dict[str, list[Path]]) -> Path:
    """Photos laid out LFW-style under root, and a plain pairs file naming them."""
    lines = []
    names = list(photos)
    for i, person in enumerate(names):
        (root / person).mkdir(parents=True, exist_ok=True)
        for k, photo in enumerate(photos[person]):
            shutil.copyfile(photo, root / person / f"{k}.jpg")
        other = names[(i + 1) % len(names)]
        lines.append(f"{person}/0.jpg\t{person}/1.jpg\t1")
        lines.append(f"{person}/0.jpg\t{other}/1.jpg\t0")
    pairs = root / "my_pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    return pairs


def test_calibrate_reads_plain_pairs_and_warns_only_when_people_really_overlap(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    root = tmp_path / "lfw-like"
    pairs = _plain_pairs(root, photos)
    args = ["calibrate", "--pairs", pairs, "--root", root, "--workers", "1", "--no-cache"]
    run = ok(faceid_run(*args, "-o", tmp_path / "a.pt", gallery=None))
    assert run.stderr_lines == [], run  # no peopleDevTest.txt anywhere: nothing to warn about
    assert "on 6 pairs" in run.stdout

    (root / "peopleDevTest.txt").write_text("2\nAnn\t3\nBo\t2\n")  # nobody of ours
    run = ok(faceid_run(*args, "-o", tmp_path / "b.pt", gallery=None))
    assert run.stderr_lines == [], run

    (root / "peopleDevTest.txt").write_text("2\nAnn\t3\nCarlos_Moya\t2\n")
    run = ok(faceid_run(*args, "-o", tmp_path / "c.pt", gallery=None))
    [warning] = run.stderr_lines
    assert warning.startswith("faceid: warning: 1 of the people in my_pairs.txt")
    assert "Carlos_Moya" in warning


def test_enrolling_the_same_photo_again_is_refused_naming_who_unless_allowed(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    photo = photos["Alvaro_Uribe"][0]
    copy = tmp_path / "IMG_0001.png"  # another name and format, the same pixels
    from PIL import Image

    Image.open(photo).save(copy)
    ok(faceid_run("enroll", photo, "--name", "O"))
    for again, name in ((photo, "O"), (copy, "Biden")):
        line = one_error_line(faceid_run("enroll", again, "--name", name), 1, "'O'")
        assert "same face is already enrolled" in line and "--allow-duplicates" in line
    assert people(faceid_run) == {"O": 1}
    ok(faceid_run("enroll", copy, "--name", "O", "--allow-duplicates"))
    assert people(faceid_run) == {"O": 2}


def test_a_folder_with_one_photo_twice_enrolls_it_once_and_lists_the_other(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    root = tmp_path / "people"
    for person in ("O", "Biden"):
        (root / person).mkdir(parents=True)
        shutil.copyfile(photos["Alvaro_Uribe"][0], root / person / "same.jpg")
    shutil.copyfile(photos["Carlos_Moya"][0], root / "Biden" / "other.jpg")
    data = ok(faceid_run("enroll", root, "--json")).json()
    assert sorted(r["name"] for r in data["enrolled"]) == ["Biden", "Biden"]
    [dup] = data["duplicates"]
    assert dup["name"] == "O" and "'Biden'" in dup["reason"]
    assert people(faceid_run) == {"Biden": 2}


def test_a_face_that_identify_would_name_as_someone_else_is_refused(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]]
) -> None:
    # The tiny model puts these two people 0.645 apart: within a 0.7 identification threshold.
    ok(faceid_run("enroll", photos["Amelie_Mauresmo"][0], "--name", "Ann"))
    other = photos["Carlos_Moya"][0]
    line = one_error_line(faceid_run("enroll", other, "--name", "Carl", "--threshold", "0.7"), 1)
    assert "looks like 'Ann'" in line and "identification threshold 0.7000" in line
    ok(faceid_run("enroll", other, "--name", "Carl"))  # the model's own 0.2: no match
    assert people(faceid_run) == {"Ann": 1, "Carl": 1}
