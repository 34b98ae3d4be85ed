"""Alignment: a similarity transform from five landmarks to a fixed template.

A similarity (rotation, uniform scale, shift) keeps the face's proportions, so
identity cues survive while pose roll and size are normalised. Training data is
prepared with this same function, so the encoder sees identical crops at
training and inference time.
"""

from __future__ import annotations

import numpy as np

# dlib's 5 points, in order: image-right eye outer and inner corner, image-left
# eye outer and inner corner, base of the nose. Coordinates are fractions of the
# crop side. Derived by averaging eye-normalised landmarks of 296 random LFW
# faces, then placing the eye centres at y = 0.40, x = 0.35 and 0.65, which
# leaves room for forehead and chin.
TEMPLATE_5PT = np.array(
    [
        [0.7091, 0.3984],
        [0.5909, 0.4016],
        [0.2909, 0.3984],
        [0.4091, 0.4016],
        [0.5000, 0.6328],
    ],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama, no reflection) mapping src points onto dst.

    Returns the 2x3 matrix cv2.warpAffine expects.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching (n>=2, 2) point arrays, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0**2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("landmarks are degenerate (all at one point)")
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / var_s
    shift = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, shift[:, None]])


# A warp that shrinks by more than this samples too few of the source pixels (aliasing): the
# face's neighbourhood is first area-averaged down to SHRINK_TO source pixels per crop pixel,
# about what an LFW photo gives (the crops the encoder was trained on), which stay untouched.
MAX_SHRINK = 2.0
SHRINK_TO = 1.5


def align(image: np.ndarray, landmarks: np.ndarray, size: int = 64) -> np.ndarray:
    """Warp the face whose 5 landmarks are given into a size x size RGB crop."""
    import cv2

    matrix = similarity_transform(landmarks, TEMPLATE_5PT * size)
    shrink = 1.0 / float(np.hypot(*matrix[:, 0]))  # source pixels per crop pixel
    if shrink > MAX_SHRINK:
        image, matrix = _pre_shrink(image, matrix, size, SHRINK_TO / shrink)
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _pre_shrink(
    image: np.ndarray, matrix: np.ndarray, size: int, factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """The crop's source region, area-averaged by `factor`, and the matrix that warps it."""
    import cv2

    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    src = corners @ inverse.T
    h, w = image.shape[:2]
    x0, y0 = (max(0, int(np.floor(v)) - 2) for v in src.min(0))
    x1, y1 = (int(np.ceil(v)) + 2 for v in src.max(0))
    x1, y1 = min(w, x1), min(h, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:  # the face lies outside the image: nothing to gain
        return image, matrix
    region = image[y0:y1, x0:x1]
    out_w = max(1, round((x1 - x0) * factor))
    out_h = max(1, round((y1 - y0) * factor))
    small = cv2.resize(region, (out_w, out_h), interpolation=cv2.INTER_AREA)
    fx, fy = out_w / (x1 - x0), out_h / (y1 - y0)
    # small pixel centre (u + 0.5) = (x - x0 + 0.5) * f  =>  x = (u + 0.5) / f - 0.5 + x0
    to_region = np.array(
        [[1 / fx, 0, 0.5 / fx - 0.5 + x0], [0, 1 / fy, 0.5 / fy - 0.5 + y0], [0, 0, 1]]
    )
    return small, matrix @ to_region
