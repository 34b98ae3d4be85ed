"""Face detection with five landmarks.

Detection sits behind a tiny protocol so another detector (a CNN, a GPU one)
can be added without touching alignment or the API. The default is dlib's HOG
detector plus its 5-point shape predictor, whose model files come from the
`face_recognition_models` wheel.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from faceid.errors import ModelError

DETECT_SIDE = 800
"""Detection runs on a copy whose long side is at most this many pixels. HOG's cost grows
with pixels while a face needs only so many to be found, so a 12 MP photo costs about what
an 800 px one does. With one upsample, faces down to 40 px are found in photos up to this
size, and down to 1/20 of the long side in larger ones (200 px in a 4000x3000 photo);
`FaceID(detect_side=...)` trades speed for smaller faces in big photos."""

HOG_FILE = Path(__file__).resolve().parent / "weights" / "frontal_face_detector.svm"
"""dlib's frontal face detector, saved once with `save_hog_detector`: loading this file takes
a few milliseconds where `dlib.get_frontal_face_detector()` rebuilds it in ~0.5 s."""


@dataclass(frozen=True)
class Face:
    """One detected face: box (left, top, right, bottom), 5 landmarks (x, y), detector score."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return max(0, right - left) * max(0, bottom - top)

    def scaled(self, factor: float) -> Face:
        """The same face in an image `factor` times as large (a reduced copy's face mapped
        back onto the full-resolution photo)."""
        if factor == 1.0:
            return self
        box = tuple(int(round(v * factor)) for v in self.box)
        # dlib's pixel centres: point p of the copy covers [p, p+1), centred at p + 0.5
        points = (self.landmarks + 0.5) * factor - 0.5
        return Face(box=box, landmarks=points.astype(np.float32), score=self.score)

    def to_dict(self) -> dict:
        return {
            "box": list(self.box),
            "landmarks": np.round(self.landmarks, 2).tolist(),
            "score": round(float(self.score), 4),
        }


class Detector(Protocol):
    """Anything that finds faces with five landmarks in an RGB uint8 image."""

    def detect(self, image: np.ndarray) -> list[Face]: ...


def model_file(name: str) -> Path:
    """Locate a file of the face_recognition_models wheel without importing it.

    Its __init__ imports pkg_resources, which new setuptools no longer ships, so
    we find the package directory through importlib instead.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "face_recognition_models is not installed: pip install face_recognition_models"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise ModelError(f"dlib model file missing: {path}")
    return path


def hog_detector():
    """dlib's HOG face detector: from the saved file, else built by dlib (same model)."""
    import dlib

    if HOG_FILE.is_file():
        try:
            return dlib.fhog_object_detector(str(HOG_FILE))
        except RuntimeError:  # a dlib whose serialisation changed: build it instead
            pass
    return dlib.get_frontal_face_detector()


def save_hog_detector(path: str | Path = HOG_FILE) -> Path:
    """Write dlib's frontal face detector to a file (how HOG_FILE was made)."""
    import dlib

    dlib.get_frontal_face_detector().save(str(path))
    return Path(path)


@functools.cache
def shape_predictor():
    """dlib's 5-point landmark model, loaded once per process (it is ~9 MB)."""
    import dlib

    return dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))


class DlibHOGDetector:
    """dlib's HOG + linear SVM frontal face detector and 5-point landmark predictor.

    `upsample` doubles the image that many times before detection: 1 finds faces
    down to about 40 px wide at roughly 4x the cost of 0. Images whose long side exceeds
    `max_side` are shrunk to it first (see DETECT_SIDE); boxes and landmarks come back in
    the given image's coordinates.
    """

    def __init__(self, upsample: int = 1, max_side: int = DETECT_SIDE) -> None:
        import dlib

        self.upsample = int(upsample)
        self.max_side = int(max_side)
        self._detector = hog_detector()
        self._predictor = dlib.shape_predictor(
            str(model_file("shape_predictor_5_face_landmarks.dat"))
        )
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[Face]:
        small, scale = bounded(image, self.max_side)
        with self._lock:
            rects, scores, _ = self._detector.run(small, self.upsample, 0.0)
            faces = []
            for rect, score in zip(rects, scores):
                shape = self._predictor(small, rect)
                points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
                box = (rect.left(), rect.top(), rect.right(), rect.bottom())
                faces.append(Face(box=box, landmarks=points, score=float(score)))
        if scale != 1.0:
            faces = [f.scaled(scale) for f in faces]
        return sorted(faces, key=lambda f: -f.area)


def bounded(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image shrunk (area averaging) to a long side of at most max_side, and the factor
    that maps its coordinates back (original pixels per pixel of the copy)."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image, 1.0
    import cv2

    ratio = max_side / max(h, w)
    size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, max(h, w) / max(small.shape[:2])


def landmarks_in_box(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Five landmarks for a given box: the fallback when the detector finds nothing."""
    import dlib

    shape = shape_predictor()(image, dlib.rectangle(*[int(v) for v in box]))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
