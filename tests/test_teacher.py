"""The torch re-implementation of dlib's face descriptor network (the training teacher)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from faceid.train.teacher import CHIP_PADDING, CHIP_SIZE, load_teacher, read_dlib_weights

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _dlib_model_file() -> Path:
    from faceid.detect import model_file

    return model_file("dlib_face_recognition_resnet_model_v1.dat")


def test_the_file_reader_finds_dlibs_whole_network():
    w = read_dlib_weights(_dlib_model_file())
    assert len(w.convs) == 29 and len(w.affines) == 29 and w.fc.shape == (128, 256)
    assert w.means == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    count = sum(c["weight"].size + c["bias"].size for c in w.convs)
    count += sum(s.size + b.size for s, b in w.affines) + w.fc.size
    assert count == 5_614_592
    # stride-2 convolutions and the 7x7 stem are unpadded; stride-1 3x3 ones pad by one
    assert [(c["stride"], c["padding"]) for c in w.convs][:3] == [(2, 0), (1, 1), (1, 1)]
    assert {c["padding"] for c in w.convs if c["stride"] == 2} == {0}


def _real_chips(count: int):
    """(chips, dlib's own descriptors) for `count` real faces: LFW photos where present,
    else the example photos with their landmarks nudged (each a distinct real chip)."""
    dlib = pytest.importorskip("dlib")
    from faceid.detect import shape_predictor
    from faceid.imageio import load_image

    detector, predictor = dlib.get_frontal_face_detector(), shape_predictor()
    model = dlib.face_recognition_model_v1(str(_dlib_model_file()))
    paths = sorted(LFW.glob("*/*.jpg"))[::13][: count + 40] if LFW.is_dir() else []
    nudges = [np.zeros((5, 2))]
    if not paths:
        paths = sorted(EXAMPLES.rglob("*.jpg"))
        rng = np.random.default_rng(0)
        nudges += [rng.normal(0, 1.5, (5, 2)) for _ in range(count // len(paths) + 1)]
    chips, refs = [], []
    for path in paths:
        image = load_image(path)
        found = detector(image, 1)
        if not found:
            continue
        shape = predictor(image, found[0])
        points = np.array([[p.x, p.y] for p in shape.parts()], float)
        for nudge in nudges:
            moved = dlib.full_object_detection(
                shape.rect, [dlib.point(*map(int, np.round(p))) for p in points + nudge]
            )
            chip = dlib.get_face_chip(image, moved, size=CHIP_SIZE, padding=CHIP_PADDING)
            chips.append(np.asarray(chip))
            refs.append(np.asarray(model.compute_face_descriptor(image, moved)))
            if len(chips) == count:
                return np.stack(chips), np.stack(refs)
    return np.stack(chips), np.stack(refs)


@pytest.mark.slow
def test_the_torch_teacher_matches_dlib_on_200_real_chips():
    chips, refs = _real_chips(200)
    assert len(chips) == 200
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        out = torch.cat([load_teacher()(b) for b in x.split(50)]).numpy()
    cos = (out * refs).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(refs, axis=1)
    assert cos.min() >= 0.999
    assert np.abs(out - refs).max() < 1e-3
    # descriptors are not unit length: the fc layer has no normalisation
    assert 1.0 < np.linalg.norm(out, axis=1).mean() < 2.0


def test_a_file_that_is_not_dlibs_network_is_refused(tmp_path):
    from faceid.errors import ModelError

    bogus = tmp_path / "x.dat"
    bogus.write_bytes(b"\x01\x01\x01\x05hello")
    with pytest.raises(ModelError):
        read_dlib_weights(bogus)
