"""Consistent views: the student's crop and the teacher's chip cut from one augmented face.

Distillation only teaches what the teacher is asked about. Each training photo is
kept once as a wide "master" view in dlib's chip geometry (template padding 0.5,
so both the teacher's chip, padding 0.25, and the student's crop fit inside it),
with the per-photo map from master pixels to the student's crop. A batch is then
augmented once, on the masters (colour, blur, low resolution, occlusion, blends of
two people), and each view is sampled from the same augmented master through the
same random pose jitter: teacher and student see exactly the same image, only in
their own geometry and resolution.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from faceid.align import TEMPLATE_5PT, similarity_transform
from faceid.train.augment import color_jitter
from faceid.train.teacher import CHIP_PADDING, CHIP_SIZE, chip_template

MASTER_PADDING = 0.5


def master_view(
    image: np.ndarray, landmarks: np.ndarray, side: int, crop_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The face as a side x side master and the 2x3 map from master pixels to the crop."""
    import cv2

    to_master = similarity_transform(landmarks, chip_template(MASTER_PADDING) * side)
    to_crop = similarity_transform(landmarks, TEMPLATE_5PT * crop_size)
    master = cv2.warpAffine(
        image, to_master, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
    crop_from_master = _3x3(to_crop) @ np.linalg.inv(_3x3(to_master))
    return master, crop_from_master[:2].astype(np.float32)


def _3x3(m: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(m, np.float64), [0.0, 0.0, 1.0]])


def chip_from_master(side: int) -> np.ndarray:
    """3x3 map from master pixels to the teacher's chip pixels (a scale and a shift).

    Both are the same template with different padding: a template point q sits at
    side * (pm + q) / (2 pm + 1) in the master and at 150 * (pc + q) / (2 pc + 1) in the chip.
    """
    pm, pc = MASTER_PADDING, CHIP_PADDING
    scale = (CHIP_SIZE / (2 * pc + 1)) * (2 * pm + 1) / side
    shift = CHIP_SIZE * (pc - pm) / (2 * pc + 1)
    return np.array([[scale, 0, shift], [0, scale, shift], [0, 0, 1.0]])


def _normaliser(size: int) -> torch.Tensor:
    """Pixel coordinates (centres at integers) -> grid_sample's [-1, 1] (align_corners=False)."""
    return torch.tensor([[2 / size, 0, 1 / size - 1], [0, 2 / size, 1 / size - 1], [0, 0, 1.0]])


def _sample(x: torch.Tensor, source_from_out: torch.Tensor, out_size: int) -> torch.Tensor:
    """Warp a batch: source_from_out (N, 3, 3) maps output pixels to source pixels."""
    side = x.shape[-1]
    n_src = _normaliser(side).to(x)
    n_out_inv = torch.linalg.inv(_normaliser(out_size)).to(x)
    theta = (n_src @ source_from_out @ n_out_inv)[:, :2]
    grid = F.affine_grid(theta, [len(x), 3, out_size, out_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def pose_jitter(
    n: int,
    side: int,
    *,
    rotate_deg: float = 12.0,
    scale: float = 0.12,
    shift: float = 0.06,
    flip: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(n, 3, 3) random similarities of master pixels about the centre (with mirror flips)."""

    def rand(*shape):
        return torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1

    angle = rand(n) * math.radians(rotate_deg)
    s = 1 + rand(n) * scale
    mirror = torch.where(rand(n) < 2 * flip - 1, -1.0, 1.0).double()
    t = rand(n, 2) * shift * side
    c = (side - 1) / 2
    cos, sin = torch.cos(angle) * s, torch.sin(angle) * s
    m = torch.zeros(n, 3, 3, dtype=torch.float64)
    m[:, 0, 0], m[:, 0, 1] = cos * mirror, -sin
    m[:, 1, 0], m[:, 1, 1] = sin * mirror, cos
    m[:, 2, 2] = 1
    centre = torch.tensor([c, c], dtype=torch.float64)
    m[:, :2, 2] = centre - (m[:, :2, :2] @ centre) + t
    return m


def photometric(
    x: torch.Tensor,
    *,
    color: float = 0.3,
    gray: float = 0.15,
    blur: float = 0.25,
    low_res: float = 0.2,
    occlude: float = 0.25,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Colour, grayscale, blur, low resolution and an occluding block, on (N, 3, S, S) [0, 1]."""
    n, side = len(x), x.shape[-1]

    def rand(*shape):
        return torch.rand(*shape, generator=generator).to(x.device)

    x = color_jitter(x, rand, color=color, gray=gray)
    # Gaussian blur of a random strength (sigma 1-2.5 master pixels), on the chosen few.
    chosen = torch.nonzero(rand(n) < blur).flatten()
    if len(chosen):
        x[chosen] = _gaussian_blur(x[chosen], 1 + 1.5 * rand(len(chosen)))
    # Low resolution: down to a quarter..half the side and back up.
    chosen = torch.nonzero(rand(n) < low_res).flatten()
    if len(chosen):
        small = max(8, int(side * (0.25 + 0.25 * float(rand(1)))))
        x[chosen] = F.interpolate(
            F.interpolate(x[chosen], size=small, mode="area"),
            size=side,
            mode="bilinear",
            align_corners=False,
        )
    # An occluding block (hand, microphone, sunglasses) of 15-35 % of the side.
    ys, xs = torch.meshgrid(
        torch.arange(side, device=x.device), torch.arange(side, device=x.device), indexing="ij"
    )
    h = (0.15 + 0.2 * rand(n)) * side
    w = (0.15 + 0.2 * rand(n)) * side
    top = 0.2 * side + rand(n) * 0.6 * side - h / 2
    left = 0.2 * side + rand(n) * 0.6 * side - w / 2
    inside = (
        (ys[None] >= top[:, None, None])
        & (ys[None] < (top + h)[:, None, None])
        & (xs[None] >= left[:, None, None])
        & (xs[None] < (left + w)[:, None, None])
        & (rand(n) < occlude)[:, None, None]
    )
    x = torch.where(inside[:, None], rand(n, 3, 1, 1), x)
    return x.clamp(0, 1)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable 9-tap Gaussian blur, one sigma per image."""
    n, c, h, w = x.shape
    taps = torch.arange(-4, 5, device=x.device, dtype=x.dtype)
    k = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)
    flat = x.reshape(1, n * c, h, w)
    flat = F.conv2d(F.pad(flat, (4, 4, 0, 0), mode="replicate"), k.view(-1, 1, 1, 9), groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, 4, 4), mode="replicate"), k.view(-1, 1, 9, 1), groups=n * c)
    return flat.view(n, c, h, w)


def blend(
    masters: torch.Tensor,
    labels: np.ndarray,
    count: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """`count` new faces from two different people each: mixup or a CutMix half-face.

    Returns the blended masters and the indices of the two parents (the blend uses the
    first's crop map: both parents are in one geometry, so their features line up).
    """
    n = len(masters)
    first = rng.integers(0, n, count)
    second = np.array([rng.choice(np.flatnonzero(labels != labels[i])) for i in first])
    a, b = masters[first], masters[second]
    lam = torch.from_numpy(rng.uniform(0.3, 0.7, count)).to(masters).view(-1, 1, 1, 1)
    mixed = lam * a + (1 - lam) * b
    side = masters.shape[-1]
    cut = torch.from_numpy(rng.uniform(0.35, 0.65, count) * side).to(masters)
    rows = torch.arange(side, device=masters.device, dtype=masters.dtype)
    lower = (rows[None, :, None] >= cut[:, None, None]).unsqueeze(1)  # (count, 1, side, 1)
    cutmix = torch.where(lower, b, a)
    use_cut = torch.from_numpy(rng.random(count) < 0.5).to(masters.device).view(-1, 1, 1, 1)
    return torch.where(use_cut, cutmix, mixed), first, second


def make_views(
    masters: torch.Tensor,
    crop_maps: np.ndarray,
    crop_size: int,
    *,
    jitter: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Student crops ([0, 1], crop_size) and teacher chips (0..255, 150 px) of the same images.

    masters: (N, 3, S, S) floats in [0, 1], already photometrically augmented;
    crop_maps: (N, 2, 3) master px -> crop px.
    """
    n, side = len(masters), masters.shape[-1]
    jit = (
        pose_jitter(n, side, generator=generator)
        if jitter
        else torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
    )
    inv_jit = torch.linalg.inv(jit)
    to_crop = torch.from_numpy(
        np.concatenate([crop_maps.astype(np.float64), np.tile([[[0.0, 0.0, 1.0]]], (n, 1, 1))], 1)
    )
    crops = _sample(masters, (inv_jit @ torch.linalg.inv(to_crop)).float(), crop_size)
    return crops, teacher_chips(masters, inv_jit)


def teacher_chips(masters: torch.Tensor, inv_jitter: torch.Tensor | None = None) -> torch.Tensor:
    """The teacher's 150 px chips (0..255) of (N, 3, S, S) masters, through an optional jitter."""
    n, side = len(masters), masters.shape[-1]
    from_chip = torch.linalg.inv(torch.from_numpy(chip_from_master(side))).expand(n, 3, 3)
    if inv_jitter is not None:
        from_chip = inv_jitter @ from_chip
    return _sample(masters, from_chip.float(), CHIP_SIZE) * 255


def describe_masters(
    teacher: torch.nn.Module, masters_u8: np.ndarray, device: str = "cpu", batch: int = 64
) -> np.ndarray:
    """The teacher's descriptors (N, 128) of plain, un-augmented masters (uint8 NHWC).

    The fixed targets of `--teacher fixed` (scripts/teacher_targets.py) and the mean that
    online distillation centres on both come from here.
    """
    out = np.zeros((len(masters_u8), 128), np.float32)
    with torch.inference_mode():
        for i in range(0, len(masters_u8), batch):
            chips = teacher_chips(to_float(masters_u8[i : i + batch]).to(device))
            out[i : i + batch] = teacher(chips).float().cpu().numpy()
    return out


def plain_crops(
    masters_u8: np.ndarray, crop_maps: np.ndarray, crop_size: int, batch: int = 256
) -> np.ndarray:
    """The student's un-augmented crops (uint8 NHWC) cut from masters: the inference crop
    within a grey level or two, for a cache that carries masters alone."""
    out = np.zeros((len(masters_u8), crop_size, crop_size, 3), np.uint8)
    for i in range(0, len(masters_u8), batch):
        m = to_float(masters_u8[i : i + batch])
        crops, _ = make_views(m, crop_maps[i : i + batch], crop_size, jitter=False)
        out[i : i + batch] = to_u8(crops)
    return out


def to_float(masters_u8: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(masters_u8)).permute(0, 3, 1, 2).float() / 255


def to_u8(images: torch.Tensor) -> np.ndarray:
    """float NCHW in [0, 1] -> uint8 NHWC: the inverse of to_float, for storing views."""
    return (images * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
