"""dlib's ResNet face descriptor: the distillation teacher and the accuracy baseline.

It is the model behind `face_recognition` (trained on ~3 M faces). faceid uses
it only as a teacher on training photos and as a yardstick in evaluations; it is
never part of the shipped encoder's inference.
"""

from __future__ import annotations

import functools

import numpy as np

from faceid.detect import model_file, shape_predictor


@functools.cache
def _model():
    import dlib

    return dlib.face_recognition_model_v1(
        str(model_file("dlib_face_recognition_resnet_model_v1.dat"))
    )


def dlib_descriptor(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """dlib's 128-d descriptor of the face in `box` (not unit length: about 1.4)."""
    import dlib

    shape = shape_predictor()(image, dlib.rectangle(*[int(v) for v in box]))
    return np.asarray(_model().compute_face_descriptor(image, shape), np.float32)
