"""Which files a folder enrollment takes, under which names, and what it reports skipping."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from faceid.errors import BadName, UsageError
from faceid.folders import plan_enrollment

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHOTO = EXAMPLES / "probes" / "Alvaro_Uribe_0002.jpg"


def names(plan) -> list[tuple[str, str]]:
    return sorted((n, Path(p).name) for n, p in plan.items)


def reasons(plan) -> dict[str, str]:
    return {Path(r["source"]).name: r["reason"] for r in plan.skipped}


def put(path: Path, source: Path = PHOTO) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, path)
    return path


def test_per_person_folders_with_a_name_are_refused_unless_one_person_is_set(
    tmp_path: Path,
) -> None:
    for person in ("Ann", "Bob"):
        put(tmp_path / "people" / person / "a.jpg")
    with pytest.raises(UsageError, match="per-person folders \\(Ann, Bob\\)") as info:
        plan_enrollment([tmp_path / "people"], "Family")
    assert info.value.params == ("name", "one_person")
    plan = plan_enrollment([tmp_path / "people"], "Family", one_person=True)
    assert names(plan) == [("Family", "a.jpg"), ("Family", "a.jpg")]
    assert {n for n, _ in plan_enrollment([tmp_path / "people"]).items} == {"Ann", "Bob"}


def test_one_person_needs_a_name(tmp_path: Path) -> None:
    put(tmp_path / "people" / "Ann" / "a.jpg")
    with pytest.raises(UsageError, match="`name`"):
        plan_enrollment([tmp_path / "people"], one_person=True)


def test_nested_folders_belong_to_the_person_folder_they_are_in(tmp_path: Path) -> None:
    put(tmp_path / "people" / "Cara" / "2019" / "summer" / "img.jpg")
    put(tmp_path / "people" / "Cara" / "top.jpg")
    assert names(plan_enrollment([tmp_path / "people"])) == [
        ("Cara", "img.jpg"),
        ("Cara", "top.jpg"),
    ]


def test_files_are_judged_by_content_not_by_their_names(tmp_path: Path) -> None:
    person = tmp_path / "people" / "Dan"
    put(person / "IMG_0001")  # no extension
    put(person / "SHOUT.JPG")
    Image.open(PHOTO).save(person / "as-png.jpeg", "PNG")  # wrong extension
    (person / "notes.jpg").write_text("not a photo")
    (person / "empty.png").write_bytes(b"")
    (person / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(60))
    plan = plan_enrollment([tmp_path / "people"])
    assert names(plan) == [("Dan", "IMG_0001"), ("Dan", "SHOUT.JPG"), ("Dan", "as-png.jpeg")]
    assert reasons(plan) == {
        "notes.jpg": "not an image (judged by content)",
        "empty.png": "empty file",
        "Thumbs.db": "not an image (judged by content)",
    }


def test_hidden_files_and_folders_are_skipped_and_reported_not_made_people(
    tmp_path: Path,
) -> None:
    root = tmp_path / "people"
    put(root / "Eve" / "a.jpg")
    put(root / "Eve" / ".b.jpg")
    put(root / ".thumbnails" / "t.jpg")
    put(root / "Eve" / ".cache" / "c.jpg")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    plan = plan_enrollment([root])
    assert names(plan) == [("Eve", "a.jpg")]
    assert reasons(plan) == {
        ".b.jpg": "hidden file",
        ".thumbnails": "hidden folder",
        ".cache": "hidden folder",
        ".DS_Store": "hidden file",
    }


def test_symlinked_person_folders_are_followed_but_loops_and_repeats_are_not(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere" / "Fay"
    put(elsewhere / "a.jpg")
    (elsewhere / "loop").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "again.jpg").symlink_to(elsewhere / "a.jpg")
    (elsewhere / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    root = tmp_path / "people"
    root.mkdir()
    (root / "Fay").symlink_to(elsewhere, target_is_directory=True)
    plan = plan_enrollment([root])
    assert names(plan) == [("Fay", "a.jpg")]
    assert reasons(plan) == {
        "again.jpg": f"same file as {root / 'Fay' / 'a.jpg'}",
        "dangling.jpg": "broken symbolic link",
        "loop": "folder already read (a symbolic link loop or a second link)",
    }


def test_a_fifo_is_reported_without_being_opened(tmp_path: Path) -> None:
    put(tmp_path / "people" / "Gil" / "a.jpg")
    os.mkfifo(tmp_path / "people" / "Gil" / "pipe.jpg")
    plan = plan_enrollment([tmp_path / "people"])
    assert reasons(plan) == {"pipe.jpg": "not a regular file"}


def test_a_flat_folder_needs_a_name(tmp_path: Path) -> None:
    put(tmp_path / "flat" / "a.jpg")
    with pytest.raises(UsageError, match="holds photos directly"):
        plan_enrollment([tmp_path / "flat"])
    assert names(plan_enrollment([tmp_path / "flat"], "Hal")) == [("Hal", "a.jpg")]


def test_a_folder_name_that_cannot_be_a_name_is_skipped_with_its_reason(tmp_path: Path) -> None:
    put(tmp_path / "people" / "Ivy" / "a.jpg")
    put(tmp_path / "people" / "bad\x01name" / "b.jpg")
    plan = plan_enrollment([tmp_path / "people"])
    assert names(plan) == [("Ivy", "a.jpg")]
    assert "control character" in reasons(plan)["bad\x01name"]


def test_reserved_or_bad_explicit_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadName):
        plan_enrollment([PHOTO], "bad/name")


def test_a_folder_without_photos_says_how_many_files_it_skipped(tmp_path: Path) -> None:
    (tmp_path / "people" / "Jo").mkdir(parents=True)
    (tmp_path / "people" / "Jo" / "x.txt").write_text("hello")
    with pytest.raises(UsageError, match="no photos found \\(1 file\\(s\\) skipped\\)"):
        plan_enrollment([tmp_path / "people"])


def test_a_folder_named_with_the_word_for_no_one_is_skipped_not_enrolled(tmp_path: Path) -> None:
    put(tmp_path / "people" / "Ivy" / "a.jpg")
    put(tmp_path / "people" / "Unknown" / "b.jpg")
    plan = plan_enrollment([tmp_path / "people"])
    assert names(plan) == [("Ivy", "a.jpg")]
    assert "faceid answers for a face it does not know" in reasons(plan)["Unknown"]
