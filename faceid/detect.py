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


@functools.cache
def shape_predictor():
    """dlib's 5-point landmark model, loaded once per process (it is ~9 MB)."""
    import dlib

    return dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))


class DlibHOGDetector:
    """dlib's HOG + linear SVM frontal face detector and 5-point landmark predictor.

    `upsample` doubles the image that many times before detection: 1 finds faces
    down to about 40 px wide at roughly 4x the cost of 0.
    """

    def __init__(self, upsample: int = 1) -> None:
        import dlib

        self.upsample = int(upsample)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(
            str(model_file("shape_predictor_5_face_landmarks.dat"))
        )
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[Face]:
        with self._lock:
            rects, scores, _ = self._detector.run(image, self.upsample, 0.0)
            faces = []
            for rect, score in zip(rects, scores):
                shape = self._predictor(image, rect)
                points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
                box = (rect.left(), rect.top(), rect.right(), rect.bottom())
                faces.append(Face(box=box, landmarks=points, score=float(score)))
        return sorted(faces, key=lambda f: -f.area)


def landmarks_in_box(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Five landmarks for a given box: the fallback when the detector finds nothing."""
    import dlib

    shape = shape_predictor()(image, dlib.rectangle(*[int(v) for v in box]))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
