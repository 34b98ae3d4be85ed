"""Batch augmentation in torch: one call per batch, on whatever device trains.

Running it on the batch tensor (rather than per image in loader workers) keeps
the 2-core CPU path simple and moves the work to the GPU when there is one.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def color_jitter(x: torch.Tensor, rand, *, color: float, gray: float) -> torch.Tensor:
    """Saturation, contrast and brightness each scaled by 1 ± `color`, then grayscale with
    probability `gray`; `rand(*shape)` draws uniform [0, 1) numbers on x's device."""
    n = len(x)
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    lum = (x * weights).sum(1, keepdim=True)
    x = lum + (x - lum) * (1 + (rand(n, 1, 1, 1) * 2 - 1) * color)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * (1 + (rand(n, 1, 1, 1) * 2 - 1) * color) + mean
    x = x * (1 + (rand(n, 1, 1, 1) * 2 - 1) * color)
    lum = (x * weights).sum(1, keepdim=True).expand_as(x)
    return torch.where(rand(n, 1, 1, 1) < gray, lum, x)


def augment(
    x: torch.Tensor,
    *,
    flip: float = 0.5,
    rotate_deg: float = 8.0,
    scale: float = 0.08,
    shift: float = 0.05,
    color: float = 0.25,
    gray: float = 0.1,
    blur: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """x: (N, 3, S, S) floats in [0, 1] -> augmented copy, same shape and range."""
    n, dev = len(x), x.device

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device="cpu").to(dev)

    # Horizontal flip, rotation, scale and shift as one affine warp.
    angle = (rand(n) * 2 - 1) * math.radians(rotate_deg)
    s = 1 + (rand(n) * 2 - 1) * scale
    sign = torch.where(rand(n) < flip, -1.0, 1.0)
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack(
        [
            torch.stack([cos * sign, -sin, (rand(n) * 2 - 1) * shift * 2], 1),
            torch.stack([sin * sign, cos, (rand(n) * 2 - 1) * shift * 2], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = color_jitter(x, rand, color=color, gray=gray)
    # Blur with a 3x3 Gaussian.
    k = torch.tensor([1.0, 2.0, 1.0], device=dev)
    k = (k[:, None] * k[None, :]) / 16
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(3, 1, 3, 3), groups=3)
    x = torch.where(rand(n, 1, 1, 1) < blur, blurred, x)
    return x.clamp(0, 1)
