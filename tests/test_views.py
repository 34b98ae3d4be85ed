"""Consistent views: the student's crop and the teacher's chip of one augmented face."""

from pathlib import Path

import numpy as np
import pytest
import torch

from faceid.align import align
from faceid.train.views import (
    blend,
    chip_from_master,
    make_views,
    master_view,
    photometric,
    to_float,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _spot_centre(img: torch.Tensor) -> np.ndarray:
    """Intensity-weighted centre (x, y) of a bright spot in a (3, H, W) image."""
    w = img.mean(0).numpy()
    w = np.where(w > 0.5 * w.max(), w, 0)
    ys, xs = np.mgrid[: w.shape[0], : w.shape[1]]
    return np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum()


def test_both_views_show_the_same_jittered_image():
    # A bright spot in the master lands, after the same random pose jitter, where the
    # fixed maps between the two geometries say: the teacher sees what the student sees.
    side, crop = 200, 64
    masters = torch.zeros(6, 3, side, side)
    for i, (x, y) in enumerate([(90, 80), (110, 120), (100, 100), (80, 110), (120, 90), (95, 95)]):
        masters[i, :, y - 3 : y + 3, x - 3 : x + 3] = 1
    maps = np.tile(np.array([[0.4, 0.02, -8.0], [-0.02, 0.4, -6.0]], np.float32), (6, 1, 1))
    gen = torch.Generator().manual_seed(3)
    crops, chips = make_views(masters, maps, crop, generator=gen)
    crop_to_chip = chip_from_master(side) @ np.linalg.inv(np.vstack([maps[0], [0, 0, 1]]))
    for c, ch in zip(crops, chips):
        expected = crop_to_chip @ np.append(_spot_centre(c), 1)
        assert np.abs(expected[:2] - _spot_centre(ch / 255)).max() < 1.5


def test_an_unjittered_master_gives_the_inference_crop_and_dlibs_chip(face_photo):
    image, landmarks, face_box = face_photo
    master, crop_map = master_view(image, landmarks, 200, 96)
    crops, chips = make_views(to_float(master[None]), crop_map[None], 96, jitter=False)
    expected = align(image, landmarks, 96).astype(np.float32) / 255
    got = crops[0].permute(1, 2, 0).numpy()
    assert np.abs(got - expected).mean() * 255 < 2  # two resamplings instead of one
    # the teacher's chip is dlib's own chip of that face (dlib resamples a little differently)
    import dlib

    from faceid.detect import shape_predictor

    rect = dlib.rectangle(*[int(v) for v in face_box])
    dlib_chip = np.asarray(
        dlib.get_face_chip(image, shape_predictor()(image, rect), size=150, padding=0.25)
    )
    mine = chips[0].permute(1, 2, 0).numpy()
    assert np.abs(mine - dlib_chip).mean() < 6


def test_blends_mix_two_different_people():
    rng = np.random.default_rng(0)
    masters = torch.stack([torch.full((3, 16, 16), v) for v in (0.0, 0.0, 1.0, 1.0)])
    labels = np.array([0, 0, 1, 1])
    mixed, first, second = blend(masters, labels, 32, rng)
    assert mixed.shape == (32, 3, 16, 16) and first.shape == second.shape == (32,)
    assert (labels[first] != labels[second]).all()
    # every blend holds both a dark and a bright parent: never one person with himself
    spread = mixed.amax((1, 2, 3)) - mixed.amin((1, 2, 3))
    mean = mixed.mean((1, 2, 3))
    assert bool(((spread > 0.5) | ((mean > 0.25) & (mean < 0.75))).all())


def test_photometric_augmentation_keeps_shape_and_range():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 40, 40, generator=gen)
    out = photometric(x, blur=1.0, low_res=1.0, occlude=1.0, generator=gen)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert not torch.allclose(out, x)


@pytest.fixture(scope="module")
def face_photo():
    pytest.importorskip("dlib")
    from faceid.detect import DlibHOGDetector
    from faceid.imageio import load_image

    image = load_image(EXAMPLES / "people" / "Carlos_Moya" / "Carlos_Moya_0001.jpg")
    (face,) = DlibHOGDetector(1).detect(image)
    return image, face.landmarks, face.box
