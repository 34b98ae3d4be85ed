"""The Python API on its own, with the shipped model and the photos in examples/.

Pins what the README's "Python API" section promises: every kind of photo a user may
hold is accepted (or refused as BadImage), every failure is a FaceIDError whose message
speaks of parameters, and the detector can be swapped.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceid import BadImage, FaceID, FaceIDError, ManyFaces, NoFace, UsageError
from faceid.detect import DlibHOGDetector, Face

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
URIBE = EXAMPLES / "probes" / "Alvaro_Uribe_0002.jpg"
URIBE_ENROLLED = EXAMPLES / "people" / "Alvaro_Uribe" / "Alvaro_Uribe_0001.jpg"
MOYA = EXAMPLES / "probes" / "Carlos_Moya_0002.jpg"


# Uribe's probe is named when 5 % of strangers may be named among these three people: with the
# shipped model at 0.58 from his enrolled photo against 1.14 (0.88 at the default 1 %; older
# models missed him there), so the tests that need his name do not hang on one model's margin.
LOOSE = 0.05


@pytest.fixture(scope="module")
def fid(tmp_path_factory: pytest.TempPathFactory) -> FaceID:
    """The shipped model, one detector, and a gallery holding the three example people."""
    fid = FaceID(gallery=tmp_path_factory.mktemp("api") / "gallery", device="cpu")
    fid.enroll_paths([EXAMPLES / "people"], workers=1)
    return fid


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two example people side by side, Moya's face made the larger."""
    path = tmp_path_factory.mktemp("group") / "group.jpg"
    canvas = Image.new("RGB", (600, 300))
    with Image.open(URIBE) as a, Image.open(MOYA) as b:
        canvas.paste(a.convert("RGB"), (0, 25))
        canvas.paste(b.convert("RGB").resize((300, 300)), (300, 0))
    canvas.save(path, quality=95)
    return path


@pytest.fixture(scope="module")
def reference(fid: FaceID) -> np.ndarray:
    return fid.embed(URIBE)


def rgb() -> np.ndarray:
    with Image.open(URIBE) as im:
        return np.asarray(im.convert("RGB"))


# ----------------------------------------------------------------- kinds of photo


@pytest.mark.parametrize(
    "make",
    [
        lambda: str(URIBE),
        lambda: URIBE,
        lambda: URIBE.read_bytes(),
        lambda: bytearray(URIBE.read_bytes()),
        lambda: open(URIBE, "rb"),  # noqa: SIM115 - the API reads it
        lambda: io.BytesIO(URIBE.read_bytes()),
        lambda: Image.open(URIBE),
        lambda: rgb(),
        lambda: rgb().astype(np.float32) / 255.0,
        lambda: np.dstack([rgb(), np.full(rgb().shape[:2], 255, np.uint8)]),
        lambda: Image.fromarray(rgb()).convert("RGBA"),
    ],
    ids=[
        "str",
        "Path",
        "bytes",
        "bytearray",
        "file",
        "BytesIO",
        "PIL",
        "uint8 RGB",
        "float RGB",
        "opaque RGBA",
        "PIL RGBA",
    ],
)
def test_every_kind_of_the_same_photo_gives_the_same_embedding(
    fid: FaceID, reference: np.ndarray, make
) -> None:
    np.testing.assert_allclose(fid.embed(make()), reference, atol=1e-5)


def test_gray_photos_as_arrays_or_pil_images_agree_and_find_the_person(fid: FaceID) -> None:
    gray = np.asarray(Image.open(URIBE).convert("L"))
    expected = fid.embed(gray)
    for photo in (gray[:, :, None], gray / 255.0, Image.fromarray(gray), np.dstack([gray] * 3)):
        np.testing.assert_allclose(fid.embed(photo), expected, atol=1e-5)
    [face] = fid.identify(gray)
    assert face.matches[0]["name"] == "Alvaro_Uribe", face  # nearest; colour helps the margin


def test_bgr_array_needs_channels_bgr_and_then_matches_the_rgb_one(
    fid: FaceID, reference: np.ndarray
) -> None:
    bgr = np.ascontiguousarray(rgb()[:, :, ::-1])  # what cv2.imread returns
    np.testing.assert_allclose(fid.embed(bgr, channels="bgr"), reference, atol=1e-5)
    assert fid.identify(bgr, channels="bgr", fpir=LOOSE)[0].name == "Alvaro_Uribe"
    swapped = fid.embed(bgr)  # read as RGB: red and blue swapped, a different face
    assert float(((swapped - reference) ** 2).sum()) > 0.01


@pytest.mark.parametrize(
    "photo",
    [
        3,
        None,
        [[0, 0], [0, 0]],
        np.zeros((2, 64, 64, 3), np.uint8),
        np.zeros((64, 64, 2), np.uint8),
        np.zeros((64, 64, 3), np.int16),
        np.zeros((64, 64, 3), bool),
        np.full((64, 64, 3), 2.0),
        np.full((64, 64, 3), np.nan),
        np.zeros((8, 8, 3), np.uint8),
        b"",
        b"not an image",
        io.StringIO("text"),
    ],
    ids=lambda p: type(p).__name__ + str(getattr(p, "shape", "")) + str(getattr(p, "dtype", "")),
)
def test_anything_else_is_bad_image(fid: FaceID, photo: object) -> None:
    with pytest.raises(BadImage) as info:
        fid.embed(photo)
    assert "\n" not in str(info.value)


def test_unknown_channels_value_is_a_usage_error_naming_the_parameter(fid: FaceID) -> None:
    with pytest.raises(UsageError, match="`channels`") as info:
        fid.embed(rgb(), channels="rgba")
    assert info.value.params == ("channels",)


# ------------------------------------------------------------------ errors and words


@pytest.mark.parametrize("threshold", [-0.1, 4.01, 5, float("nan"), float("inf"), "1"])
def test_threshold_outside_0_to_4_is_a_usage_error(threshold: object) -> None:
    with pytest.raises(UsageError, match="`threshold`"):
        FaceID(threshold=threshold)


def test_threshold_overridden_says_whether_the_models_thresholds_are_in_force() -> None:
    assert not FaceID().threshold_overridden
    assert FaceID(threshold=1.0).threshold_overridden


def test_failures_are_faceid_errors_whose_messages_name_parameters_not_flags(
    fid: FaceID, group: Path, tmp_path: Path
) -> None:
    grey = tmp_path / "grey.png"
    Image.new("RGB", (100, 100), (128, 128, 128)).save(grey)
    attempts = [
        lambda: fid.identify(URIBE, top_k=0),
        lambda: fid.identify(URIBE, all_faces=True, largest=True),
        lambda: fid.verify(group, URIBE),
        lambda: fid.identify(grey),
        lambda: fid.embed_many([URIBE], on_no_face="maybe"),
        lambda: fid.embed_many([URIBE], pick="left"),
        lambda: FaceID(index=" "),
        lambda: FaceID(index_switch=-1),
        lambda: FaceID(model=tmp_path / "missing.pt").embed(URIBE),
        lambda: FaceID(model=URIBE).embed(URIBE),
        lambda: FaceID(device="tpu").embed(URIBE),
    ]
    for attempt in attempts:
        with pytest.raises(FaceIDError) as info:
            attempt()
        message = str(info.value)
        assert "--" not in message and "\n" not in message, message


def test_contradictory_all_faces_and_largest_is_a_usage_error(fid: FaceID) -> None:
    with pytest.raises(UsageError) as info:
        fid.identify(URIBE, all_faces=True, largest=True)
    assert info.value.params == ("all_faces", "largest")


def test_many_faces_error_says_which_parameter_chooses(fid: FaceID, group: Path) -> None:
    with pytest.raises(ManyFaces, match="2 faces found; choose one with `largest`") as info:
        fid.identify(group)
    assert info.value.params == ("largest",)
    again = pickle.loads(pickle.dumps(info.value))  # as a worker process sends it back
    assert type(again) is ManyFaces and again.params == ("largest",)


def test_a_photo_that_is_a_text_file_opened_in_text_mode_says_so(fid: FaceID) -> None:
    with open(URIBE, encoding="latin-1") as fh, pytest.raises(BadImage, match="text mode"):
        fid.embed(fh)


# ----------------------------------------------------------------------- the verbs


def test_identify_names_enrolled_people_and_says_unknown_for_others(fid: FaceID) -> None:
    [face] = fid.identify(URIBE, fpir=LOOSE)
    assert face.name == "Alvaro_Uribe" and face.distance <= face.threshold
    assert face.rule.fpir == LOOSE and face.rule.people == 3
    [strict] = fid.identify(URIBE)  # the default, 1 %: a miss rather than a risk
    assert strict.threshold < face.threshold and strict.rule.fpir == 0.01
    # the default keeps a stranger unknown; a looser rule may name him (that is its trade:
    # at 5 % the shipped model puts Adrien Brody within reach of Alvaro Uribe)
    [stranger] = fid.identify(EXAMPLES / "probes" / "Adrien_Brody_0001.jpg")
    assert stranger.name == "unknown" and stranger.distance > stranger.threshold


def test_identify_all_faces_gives_each_face_with_its_box_largest_first(
    fid: FaceID, group: Path
) -> None:
    faces = fid.identify(group, all_faces=True, fpir=LOOSE)
    assert [f.name for f in faces] == ["Carlos_Moya", "Alvaro_Uribe"]
    left, top, right, bottom = faces[0].box
    assert 300 <= left < right <= 600 and 0 <= top < bottom <= 300


def test_verify_with_largest_says_which_face_of_each_photo_it_used(
    fid: FaceID, group: Path
) -> None:
    v = fid.verify(group, MOYA, largest=True)
    assert v.same
    assert v.faces[0]["faces_found"] == 2 and v.faces[0]["box"][0] >= 300
    assert v.faces[1]["faces_found"] == 1
    assert v.to_dict()["faces"] == v.faces


def test_embed_many_full_image_gives_one_row_per_photo_or_names_those_that_cannot(
    fid: FaceID, group: Path, tmp_path: Path
) -> None:
    grey = tmp_path / "grey.png"
    Image.new("RGB", (100, 100), (128, 128, 128)).save(grey)
    vectors, rows = fid.embed_many([URIBE, grey], on_no_face="full-image", workers=1)
    assert len(vectors) == 2 and [r["status"] for r in rows] == ["ok", "fallback"]
    with pytest.raises(ManyFaces, match="group.jpg"):
        fid.embed_many([URIBE, group], on_no_face="full-image", workers=1)
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    with pytest.raises(FaceIDError, match="2 photos cannot give a row.*group.jpg.*notes.jpg"):
        fid.embed_many([group, URIBE, text], on_no_face="full-image", workers=1)
    vectors, _ = fid.embed_many([URIBE, group], on_no_face="full-image", largest=True, workers=1)
    assert len(vectors) == 2


def test_enroll_accepts_an_array_and_names_its_source(tmp_path: Path) -> None:
    fid = FaceID(gallery=tmp_path / "g", device="cpu")
    fid.enroll(rgb(), "Alvaro Uribe")
    fid.enroll(Image.open(URIBE_ENROLLED), "Alvaro Uribe")
    assert fid.people() == {"Alvaro Uribe": 2}


def test_doctor_is_an_api_verb(fid: FaceID) -> None:
    report = fid.doctor()
    assert report.healthy and report.problems == [] and report.repaired == []
    assert report.to_dict()["gallery"] == str(fid.gallery_path)


# -------------------------------------------------------------- a plugged detector


class CentreDetector:
    """A stand-in detector: one face at the centre, landmarks from dlib's predictor."""

    calls = 0

    def detect(self, image: np.ndarray) -> list[Face]:
        from faceid.pipeline import fallback_face

        CentreDetector.calls += 1
        return [fallback_face(image)]


def test_a_plugged_in_detector_is_used_by_every_verb(tmp_path: Path) -> None:
    fid = FaceID(gallery=tmp_path / "g", device="cpu", detector=CentreDetector())
    CentreDetector.calls = 0
    fid.enroll(URIBE_ENROLLED, "Uribe")
    fid.verify(URIBE, URIBE_ENROLLED)
    fid.identify(URIBE)
    fid.embed_many([URIBE, MOYA], workers=1)
    assert CentreDetector.calls == 6
    assert fid.detector.__class__ is CentreDetector


def test_an_unpicklable_detector_runs_in_this_process_when_workers_are_asked_for(
    tmp_path: Path,
) -> None:
    detector = DlibHOGDetector()  # holds dlib objects and a lock: cannot be pickled
    fid = FaceID(gallery=tmp_path / "g", device="cpu", detector=detector)
    photos = sorted((EXAMPLES / "people").glob("*/*.jpg")) + sorted(
        (EXAMPLES / "probes").glob("*.jpg")
    )
    vectors, rows = fid.embed_many(photos, workers=2)
    assert len(vectors) == len(photos) == 10


def test_no_face_is_its_own_error(fid: FaceID, tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.new("RGB", (100, 100), (128, 128, 128)).save(grey)
    with pytest.raises(NoFace, match="grey.png: no face found"):
        fid.embed(grey)


def test_reading_a_gallery_that_does_not_exist_is_no_gallery(tmp_path: Path) -> None:
    from faceid import NoGallery

    fid = FaceID(gallery=tmp_path / "typo", device="cpu")
    for attempt in (fid.people, lambda: fid.identify(URIBE), fid.doctor, lambda: fid.remove("A")):
        with pytest.raises(NoGallery, match="no gallery at"):
            attempt()
    assert not (tmp_path / "typo").exists()


def test_rename_onto_an_enrolled_name_needs_merge(tmp_path: Path) -> None:
    fid = FaceID(gallery=tmp_path / "g", device="cpu")
    fid.enroll(URIBE, "A")
    fid.enroll(MOYA, "B")
    with pytest.raises(UsageError, match="use `merge`") as info:
        fid.rename("A", "B")
    assert info.value.params == ("merge",)
    assert fid.people() == {"A": 1, "B": 1}
    assert fid.rename("A", "B", merge=True) == 1
    assert fid.people() == {"B": 2}


def test_wrong_kinds_of_arguments_are_usage_errors_not_a_character_scan_or_a_crash(
    fid: FaceID,
) -> None:
    for attempt in (
        lambda: fid.embed_many(str(URIBE)),
        lambda: fid.embed_many(URIBE.read_bytes()),
        lambda: fid.enroll_many([str(URIBE)]),
        lambda: fid.enroll_many(("Ann", str(URIBE))),
        lambda: FaceID(gallery=3),
        lambda: FaceID(model=123),
        lambda: FaceID(upsample="x"),
        lambda: FaceID(detect_side=-1),
        lambda: fid.embed_many([URIBE], workers="x"),
        lambda: fid.enroll_many([("Ann", URIBE)], workers=-1),
    ):
        with pytest.raises(UsageError):
            attempt()


def test_enroll_paths_takes_one_path_as_well_as_a_list(tmp_path: Path) -> None:
    fid = FaceID(gallery=tmp_path / "g", device="cpu")
    report = fid.enroll_paths(EXAMPLES / "people", workers=1)
    assert len(report.enrolled) == 6
