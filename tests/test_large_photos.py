"""Big photos cost what their faces need: a reduced JPEG decode, detection on a bounded copy,
boxes and landmarks mapped back to full resolution, and alignment from enough pixels.

The photos are LFW photos scaled up (a face at 4-8x the pixels) or pasted small into a large
canvas, so the face found in the big photo can be compared with the same face found in the
original: same place, nearly the same embedding.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceid.align import align
from faceid.detect import DETECT_SIDE, DlibHOGDetector
from faceid.imageio import load_image, load_picture
from faceid.pipeline import align_face, crop_photo, find_faces, open_picture

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def detector() -> DlibHOGDetector:
    return DlibHOGDetector(1)


@pytest.fixture(scope="module")
def encoder():
    from faceid.model.encoder import Encoder

    return Encoder.load(None, "cpu")


def jpeg(image: Image.Image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def upscaled(path: Path, factor: int) -> bytes:
    with Image.open(path) as im:
        im = im.convert("RGB")
        return jpeg(im.resize((im.width * factor, im.height * factor), Image.BICUBIC))


def iou(a: tuple, b: tuple) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


def test_a_large_jpeg_is_decoded_at_reduced_size_for_detection(face: Path) -> None:
    data = upscaled(face, 8)  # 2000 x 2000
    picture = load_picture(data, reduce_to=DETECT_SIDE)
    assert picture.image.shape == (1000, 1000, 3) and picture.scale == 2.0
    assert picture.full_shape == (2000, 2000)
    assert picture.at_scale(3.0)[1] == 2.0  # coarser than needed: the decode at hand
    assert picture.full().shape == (2000, 2000, 3)
    np.testing.assert_array_equal(picture.full(), load_image(data))


def test_small_photos_and_arrays_are_not_reduced(face: Path) -> None:
    assert load_picture(face, reduce_to=DETECT_SIDE).scale == 1.0
    array = np.zeros((3000, 3000, 3), np.uint8)
    assert load_picture(array, reduce_to=DETECT_SIDE).image is array


def test_detection_on_the_bounded_copy_maps_boxes_back(
    face: Path, detector: DlibHOGDetector
) -> None:
    original = detector.detect(load_image(face))
    big = load_image(upscaled(face, 8))
    found = detector.detect(big)
    assert len(found) == len(original) == 1
    expected = tuple(v * 8 for v in original[0].box)
    assert iou(found[0].box, expected) >= 0.7  # HOG boxes snap to its pyramid scales
    eyes = np.linalg.norm(original[0].landmarks[0] - original[0].landmarks[2]) * 8
    assert np.abs(found[0].landmarks - (original[0].landmarks + 0.5) * 8 + 0.5).max() < 0.1 * eyes


def test_a_big_photo_embeds_like_its_original(face: Path, detector, encoder) -> None:
    small = crop_photo(face, detector, encoder.input_size)
    big = crop_photo(upscaled(face, 8), detector, encoder.input_size)
    a, b = encoder.embed(np.stack([small.crop, big.crop]))
    assert float(((a - b) ** 2).sum()) < 0.1  # the threshold is 1.24


def test_a_small_face_in_a_big_photo_is_aligned_from_a_finer_decode(
    face: Path, detector, encoder
) -> None:
    canvas = Image.new("RGB", (4000, 3000), (90, 110, 100))
    with Image.open(face) as im:
        canvas.paste(im.convert("RGB").resize((750, 750), Image.BICUBIC), (2000, 1000))
    picture = open_picture(jpeg(canvas), detector)
    assert picture.scale == 4.0  # decoded at 1000 x 750
    faces = find_faces(picture, detector)
    assert len(faces) == 1 and faces[0].box[0] >= 2000
    crop = align_face(picture, faces[0], encoder.input_size)
    # The face needed more pixels than the 1/4 decode: the 1/2 one was made for it.
    assert [scale for _, scale in picture._finer.values()] == [2.0]
    reference = crop_photo(face, detector, encoder.input_size).crop
    a, b = encoder.embed(np.stack([reference, crop]))
    assert float(((a - b) ** 2).sum()) < 0.1


def test_a_48_megapixel_photo_is_accepted(face: Path, detector, encoder) -> None:
    canvas = Image.new("RGB", (8000, 6000), (120, 120, 120))
    with Image.open(face) as im:
        canvas.paste(im.convert("RGB").resize((3000, 3000), Image.BICUBIC), (2500, 1500))
    result = crop_photo(jpeg(canvas, 85), detector, encoder.input_size)
    assert result.status == "ok", result.error
    assert result.face.box[0] > 2500 and result.face.box[2] < 5500


def test_the_saved_hog_detector_is_dlibs_frontal_face_detector(group_photo: Path) -> None:
    import dlib

    from faceid.detect import HOG_FILE, hog_detector

    assert HOG_FILE.is_file()
    image = load_image(group_photo)
    ours = hog_detector().run(image, 1, 0.0)
    theirs = dlib.get_frontal_face_detector().run(image, 1, 0.0)
    assert [(r.left(), r.top(), r.right(), r.bottom()) for r in ours[0]] == [
        (r.left(), r.top(), r.right(), r.bottom()) for r in theirs[0]
    ]
    assert ours[1] == theirs[1] and len(ours[0]) == 2


def test_aligning_from_many_more_pixels_gives_the_same_crop(face: Path, detector) -> None:
    image = load_image(face)
    landmarks = detector.detect(image)[0].landmarks
    big = np.asarray(Image.fromarray(image).resize((2000, 2000), Image.BICUBIC))
    reference = align(image, landmarks, 96).astype(float)
    shrunk = align(big, (landmarks + 0.5) * 8 - 0.5, 96).astype(float)
    assert np.abs(shrunk - reference).mean() < 6  # grey levels, out of 255


def test_a_reduced_decode_is_turned_upright_like_the_full_one() -> None:
    """EXIF orientation 6 (rotate 90): the reduced decode and its scale agree with the full."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (1000, 2000, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif.tobytes())
    picture = load_picture(out.getvalue(), reduce_to=DETECT_SIDE)
    assert picture.image.shape == (1000, 500, 3) and picture.scale == 2.0
    assert picture.full_shape == (2000, 1000) == load_image(out.getvalue()).shape[:2]
