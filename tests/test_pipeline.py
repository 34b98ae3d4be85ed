"""The photo -> aligned crop stages on their own, on the photos in examples/."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceid.detect import DlibHOGDetector, Face
from faceid.errors import ManyFaces, NoFace, UsageError
from faceid.pipeline import (
    _for_workers,
    choose_face,
    crop_faces,
    crop_photo,
    crop_photos,
    describe,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
URIBE = EXAMPLES / "probes" / "Alvaro_Uribe_0002.jpg"
MOYA = EXAMPLES / "probes" / "Carlos_Moya_0002.jpg"


@pytest.fixture(scope="module")
def detector() -> DlibHOGDetector:
    return DlibHOGDetector()


@pytest.fixture(scope="module")
def group() -> np.ndarray:
    canvas = Image.new("RGB", (600, 300))
    with Image.open(URIBE) as a, Image.open(MOYA) as b:
        canvas.paste(a.convert("RGB"), (0, 25))
        canvas.paste(b.convert("RGB").resize((300, 300)), (300, 0))
    return np.asarray(canvas)


def test_crop_photo_gives_an_aligned_crop_of_the_requested_size(detector) -> None:
    result = crop_photo(URIBE, detector, 96)
    assert result.status == "ok" and result.found == 1 and result.error == ""
    assert result.crop.shape == (96, 96, 3) and result.crop.dtype == np.uint8
    assert set(result.timings) == {"load", "detect", "align"}


def test_the_same_photo_in_any_form_gives_the_same_crop(detector) -> None:
    expected = crop_photo(URIBE, detector, 64).crop
    for source in (str(URIBE), URIBE.read_bytes(), io.BytesIO(URIBE.read_bytes())):
        np.testing.assert_array_equal(crop_photo(source, detector, 64).crop, expected)


def test_several_faces_are_an_error_crop_unless_a_policy_chooses(detector, group) -> None:
    result = crop_photo(group, detector, 64)
    assert result.status == "error" and result.crop is None
    assert isinstance(result.exception, ManyFaces)
    with pytest.raises(ManyFaces):
        result.raise_error()
    largest = crop_photo(group, detector, 64, pick="largest")
    assert largest.found == 2 and largest.face.box[0] >= 300


def test_no_face_is_skipped_or_falls_back_as_asked(detector) -> None:
    grey = np.full((120, 120, 3), 128, np.uint8)
    assert crop_photo(grey, detector, 64, on_no_face="skip").status == "skipped"
    fallback = crop_photo(grey, detector, 64, on_no_face="full-image")
    assert fallback.status == "fallback" and fallback.crop.shape == (64, 64, 3)
    assert isinstance(crop_photo(grey, detector, 64).exception, NoFace)


def test_unknown_policies_are_usage_errors_naming_the_parameter(detector) -> None:
    with pytest.raises(UsageError, match="`on_no_face`"):
        crop_photo(URIBE, detector, 64, on_no_face="later")
    face = Face(box=(0, 0, 10, 10), landmarks=np.zeros((5, 2), np.float32), score=1.0)
    with pytest.raises(UsageError, match="`pick`"):
        choose_face([face, face], np.zeros((20, 20, 3), np.uint8), "left", "x")


def test_crop_faces_gives_every_face_largest_first(detector, group) -> None:
    faces, crops = crop_faces(group, detector, 64)
    assert len(faces) == 2 and crops.shape == (2, 64, 64, 3)
    assert faces[0].area >= faces[1].area
    with pytest.raises(NoFace):
        crop_faces(np.full((100, 100, 3), 128, np.uint8), detector, 64)


def test_describe_names_paths_and_says_what_other_photos_are() -> None:
    assert describe(URIBE) == str(URIBE)
    assert describe(np.zeros((2, 2))) == "<array>"
    assert describe(b"abc") == "<3 bytes>"
    with open(URIBE, "rb") as fh:
        assert describe(fh) == str(URIBE)
    assert describe(io.BytesIO()) == "<BytesIO>"


def test_crop_photos_keeps_input_order_in_worker_processes() -> None:
    photos = sorted((EXAMPLES / "people").glob("*/*.jpg")) + sorted(
        (EXAMPLES / "probes").glob("*.jpg")
    )
    results = list(crop_photos([str(p) for p in photos], 64, workers=2))
    assert [r.source for r in results] == [str(p) for p in photos]
    assert all(r.status == "ok" for r in results)


def test_workers_get_dlibs_detector_by_its_settings_and_others_only_if_picklable() -> None:
    assert _for_workers(None, 1, 800) == (1, 800)
    assert _for_workers(DlibHOGDetector(0, 640), 1, 800) == (0, 640)
    assert isinstance(_for_workers(Picklable(), 1, 800), Picklable)

    class Local:  # not importable by name: cannot be pickled
        def detect(self, image):
            return []

    assert _for_workers(Local(), 1, 800) is None


class Picklable:
    def detect(self, image: np.ndarray) -> list[Face]:
        return []
