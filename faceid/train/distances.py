"""Distances between embeddings, as objects so miners and losses agree on one definition."""

from __future__ import annotations

import torch


class SquaredL2:
    """||a - b||², the distance faceid thresholds everywhere.

    For unit vectors it equals 2 - 2 a·b; computing it that way is one matmul,
    clamped at zero against rounding.
    """

    def pairwise(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = x if y is None else y
        sq = (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None, :] - 2 * x @ y.T
        return sq.clamp_min(0)

    def paired(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a - b) ** 2).sum(1)
