"""Distances between embeddings, as objects so miners and losses agree on one definition."""

from __future__ import annotations

import torch

from faceid.distance import pairwise_squared_l2, squared_l2


class SquaredL2:
    """||a - b||², the distance faceid thresholds everywhere.

    For unit vectors it equals 2 - 2 a·b; computing it that way is one matmul,
    clamped at zero against rounding.
    """

    def pairwise(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return pairwise_squared_l2(x, x if y is None else y)

    def paired(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return squared_l2(a, b)
