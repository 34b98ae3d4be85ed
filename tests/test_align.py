"""Alignment: the similarity transform and the crops it makes."""

import numpy as np
import pytest

from faceid.align import TEMPLATE_5PT, align, similarity_transform


def _apply(m, pts):
    return pts @ m[:, :2].T + m[:, 2]


def test_similarity_transform_recovers_a_known_rotation_scale_and_shift():
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -2.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.random.default_rng(0).normal(size=(5, 2)) * 10
    dst = scale * src @ rot.T + shift
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], scale * rot)
    assert np.allclose(m[:, 2], shift)


def test_similarity_transform_never_reflects():
    src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    m = similarity_transform(src, src * [-1, 1])  # a mirror image
    assert np.linalg.det(m[:, :2]) > 0


def test_degenerate_landmarks_are_refused():
    with pytest.raises(ValueError):
        similarity_transform(np.ones((5, 2)), TEMPLATE_5PT)


def test_align_puts_the_landmarks_on_the_template():
    # Draw five dots at arbitrary rotated/scaled landmark positions; after alignment
    # each dot must sit at its template position in the crop.
    size = 64
    m = np.array([[2.0, -0.5, 40.0], [0.5, 2.0, 20.0]])
    points = _apply(m, TEMPLATE_5PT * size)
    image = np.zeros((300, 300, 3), np.uint8)
    for x, y in points.round().astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    crop = align(image, points, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    for x, y in (TEMPLATE_5PT * size).round().astype(int):
        assert crop[y - 1 : y + 2, x - 1 : x + 2].max() > 100
