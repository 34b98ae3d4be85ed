"""The one distance faceid thresholds: squared L2 between embeddings.

Written once and used by the API, evaluation and training alike (it works on numpy
arrays and torch tensors), so a threshold means the same thing everywhere. For unit
vectors it lies in [0, 4].
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

T = TypeVar("T")

MAX_DISTANCE = 4.0
"""Squared L2 between unit vectors lies in [0, 4]: a threshold outside it means nothing."""


def squared_l2(a: T, b: T) -> T:
    """||a - b||² along the last axis (broadcasting, so a[:, None] vs b[None] is all pairs)."""
    return ((a - b) ** 2).sum(-1)


def pairwise_squared_l2(a: T, b: T) -> T:
    """All (i, j) squared distances between the rows of a and b, via the dot-product form
    (no N x M x D temporary), clamped at zero against rounding."""
    d = (a * a).sum(-1)[:, None] + (b * b).sum(-1)[None, :] - 2 * (a @ b.T)
    return d * (d > 0)


def ratio(closest, second):
    """The ratio test's score: the closest person's distance over the next person's.

    Lower is more certain, like a distance. 1 (undecided) where both are 0; works on
    scalars and numpy arrays alike.
    """
    closest, second = np.asarray(closest, float), np.asarray(second, float)
    safe = np.where(second > 0, second, 1.0)
    return np.where(second > 0, closest / safe, 1.0)
