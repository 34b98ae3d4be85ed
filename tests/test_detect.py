"""dlib's HOG detector behind the Detector protocol, on the photos in examples/."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceid.detect import Detector, DlibHOGDetector, Face
from faceid.imageio import load_image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_each_example_probe_has_one_face_with_a_box_inside_the_photo_and_five_landmarks() -> None:
    detector: Detector = DlibHOGDetector()
    for path in sorted((EXAMPLES / "probes").glob("*.jpg")):
        image = load_image(path)
        [face] = detector.detect(image)
        left, top, right, bottom = face.box
        assert 0 <= left < right <= image.shape[1] and 0 <= top < bottom <= image.shape[0]
        assert face.landmarks.shape == (5, 2)
        # the landmarks lie in (or next to) the box: they are this face's
        assert (face.landmarks[:, 0] > left - 10).all() and (
            face.landmarks[:, 0] < right + 10
        ).all()


def test_a_blank_image_has_no_face() -> None:
    assert DlibHOGDetector().detect(np.full((200, 200, 3), 90, np.uint8)) == []


def test_faces_come_largest_first() -> None:
    image = load_image(EXAMPLES / "probes" / "Carlos_Moya_0002.jpg")
    small = image[::2, ::2]
    canvas = np.zeros((250, 375, 3), np.uint8)
    canvas[:, :250] = image
    canvas[:125, 250:] = small
    faces = DlibHOGDetector(upsample=1).detect(canvas)
    assert len(faces) == 2 and faces[0].area > faces[1].area


def test_face_area_and_dict() -> None:
    face = Face(box=(10, 20, 30, 60), landmarks=np.zeros((5, 2), np.float32), score=1.23456)
    assert face.area == 800
    assert face.to_dict()["box"] == [10, 20, 30, 60] and face.to_dict()["score"] == 1.2346
