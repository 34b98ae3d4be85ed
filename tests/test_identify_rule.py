"""identify's threshold from the model's open-set calibration: FPIR for the gallery's size.

The tiny model's embeddings are meaningless, so its calibrations here are synthetic ones
whose thresholds are known; what is pinned is how identify and doctor choose and report them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from faceid import openset
from tests.test_cli import FaceIDRun, ok, one_error_line


def _calibration(genuine_scale: float) -> dict:
    rng = np.random.default_rng(0)
    dist = rng.uniform(0.0, 4.0, (1000, 200))  # iid impostor distances, F(t) = t / 4
    genuine = np.linspace(0.0, genuine_scale, 101)
    return openset.calibrate(dist, np.arange(1000) + 200, np.arange(200), genuine, draws=8)


def _with_calibration(tiny_model: Path, out: Path, calibration: dict) -> Path:
    from faceid.model.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(tiny_model)
    save_checkpoint(dataclasses.replace(ckpt, meta={**ckpt.meta, "openset": calibration}), out)
    assert load_checkpoint(out).model_id == ckpt.model_id  # same weights, same galleries
    return out


@pytest.fixture(scope="module")
def calibrated(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Genuine distances U(0, 0.002): most people named up to a few dozen people."""
    return _with_calibration(
        tiny_model, tmp_path_factory.mktemp("cal") / "cal.pt", _calibration(0.002)
    )


@pytest.fixture(scope="module")
def hopeless(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Genuine distances as spread as impostors': FPIR 1 % leaves nearly everyone unnamed."""
    return _with_calibration(
        tiny_model, tmp_path_factory.mktemp("cal") / "hopeless.pt", _calibration(4.0)
    )


@pytest.fixture
def three(faceid_run: FaceIDRun, photos: dict[str, list[Path]], calibrated: Path) -> Path:
    for person, files in photos.items():
        ok(faceid_run("enroll", files[0], "--name", person, model=calibrated))
    return calibrated


def test_identify_uses_the_threshold_for_1_percent_fpir_at_the_gallerys_size(
    faceid_run: FaceIDRun, three: Path, photos: dict[str, list[Path]]
) -> None:
    cal = _calibration(0.002)
    run = faceid_run("identify", photos["Carlos_Moya"][0], "--json", model=three)
    data = run.json()
    expected = openset.threshold_for_fpir(cal, 3, 0.01)
    assert data["rule"]["kind"] == "fpir"
    assert data["rule"]["people"] == 3 and data["rule"]["fpir"] == 0.01
    assert data["rule"]["threshold"] == pytest.approx(expected, abs=1e-6)
    assert data["faces"][0]["threshold"] == pytest.approx(expected, abs=1e-6)
    assert data["faces"][0]["name"] == "Carlos_Moya"  # the enrolled photo itself: distance 0
    text = ok(faceid_run("identify", photos["Carlos_Moya"][0], model=three)).stdout
    assert f"threshold {expected:.4f}: FPIR 1 % for 3 people" in text


def test_fpir_changes_the_threshold_and_threshold_overrides_it(
    faceid_run: FaceIDRun, three: Path, photos: dict[str, list[Path]]
) -> None:
    probe = photos["Carlos_Moya"][1]
    loose = faceid_run("identify", probe, "--json", "--fpir", "0.2", model=three).json()
    strict = faceid_run("identify", probe, "--json", "--fpir", "0.001", model=three).json()
    assert loose["rule"]["threshold"] > strict["rule"]["threshold"]
    assert "FPIR 20 % for 3 people" in loose["rule"]["reason"]
    given = faceid_run("identify", probe, "--json", "--threshold", "4", model=three).json()
    assert given["rule"] == {
        "threshold": 4.0,
        "kind": "threshold",
        "reason": "given",
        "people": None,
        "fpir": None,
        "estimated_fnir": None,
        "extrapolated": False,
        "warning": None,
        "score": "distance",
    }
    assert given["faces"][0]["name"] == given["faces"][0]["matches"][0]["name"]


def test_identify_bounds_the_ratio_to_the_next_person_when_the_calibration_says_it_names_more(
    faceid_run: FaceIDRun,
    photos: dict[str, list[Path]],
    tiny_model: Path,
    tmp_path: Path,
) -> None:
    from tests.test_openset import _crowd_cal

    cal = _crowd_cal(1.0)
    model = _with_calibration(tiny_model, tmp_path / "crowd.pt", cal)
    for person, files in photos.items():
        ok(faceid_run("enroll", files[0], "--name", person, model=model))
    expected = openset.rule_for(cal, 3, 0.01)
    assert expected.score == "ratio"
    for probe in (photos["Carlos_Moya"][0], photos["Carlos_Moya"][1]):
        data = faceid_run("identify", probe, "--json", model=model).json()
        assert data["rule"]["score"] == "ratio"
        assert data["rule"]["threshold"] == pytest.approx(expected.threshold, abs=1e-6)
        [face] = data["faces"]
        assert len(face["matches"]) == 1  # one asked for; the next person is read all the same
        second = face["distance"] / face["ratio"] if face["ratio"] else None
        assert (face["name"] != "unknown") == (face["ratio"] <= expected.threshold)
        if second is not None:
            assert second >= face["distance"]
    text = faceid_run("identify", photos["Carlos_Moya"][0], model=model).stdout
    assert "ratio to the next person" in text
    assert f"ratio {expected.threshold:.4f} (closest / next person): FPIR 1 % for 3 people" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fpir", "0.1", "--threshold", "1"], "contradict"),
        (["--fpir", "0"], "between 0 and 1"),
        (["--fpir", "nan"], "between 0 and 1"),
        (["--fpir", "1e-7"], "calibrated range"),
    ],
)
def test_contradictory_or_impossible_fpir_is_a_usage_error(
    faceid_run: FaceIDRun, three: Path, photos: dict[str, list[Path]], args, message
) -> None:
    one_error_line(faceid_run("identify", photos["Carlos_Moya"][1], *args, model=three), 2, message)


def test_a_model_without_calibration_keeps_its_stored_threshold_and_refuses_fpir(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], tiny_model: Path
) -> None:
    from faceid.model.checkpoint import load_checkpoint

    stored = load_checkpoint(tiny_model).identify_threshold
    ok(faceid_run("enroll", photos["Carlos_Moya"][0], "--name", "Tony"))
    data = faceid_run("identify", photos["Carlos_Moya"][1], "--json").json()
    assert data["rule"]["kind"] == "model" and data["rule"]["threshold"] == pytest.approx(stored)
    run = faceid_run("identify", photos["Carlos_Moya"][1], "--fpir", "0.01")
    one_error_line(run, 2, "no open-set calibration")


def test_identify_and_doctor_warn_when_the_gallery_is_too_large_for_the_target(
    faceid_run: FaceIDRun, photos: dict[str, list[Path]], hopeless: Path, calibrated: Path
) -> None:
    for person, files in photos.items():
        ok(faceid_run("enroll", files[0], "--name", person, model=hopeless))
    run = faceid_run("identify", photos["Carlos_Moya"][0], "--json", model=hopeless)
    assert run.code == 0, run
    assert run.json()["rule"]["estimated_fnir"] > 0.5
    assert "faceid: warning: 3 people is more than this model can tell apart" in run.stderr
    run = faceid_run("doctor", model=hopeless)
    assert run.code == 0, run  # a warning, not an unhealthy gallery
    assert "FPIR 1 % for 3 people" in run.stdout and "warning" in run.stderr
    quiet = faceid_run("doctor", "--json", model=calibrated)
    assert quiet.stderr == "" and quiet.json()["rule"]["warning"] is None


def test_the_api_reports_the_rule_with_each_identification(
    three: Path, photos: dict[str, list[Path]], gallery: Path, fast_cpu: None
) -> None:
    from faceid import FaceID

    fid = FaceID(gallery=gallery, model=three, device="cpu")
    [hit] = fid.identify(photos["Alvaro_Uribe"][0], fpir=0.1)
    assert hit.rule.kind == "fpir" and hit.rule.fpir == 0.1 and hit.rule.people == 3
    assert hit.threshold == hit.rule.threshold
    assert fid.identify_rule(0.1).threshold == hit.threshold
    assert fid.identify_rule(0.1, n_people=300).threshold < hit.threshold


def test_the_shipped_model_carries_its_open_set_calibration_in_both_formats() -> None:
    """identify's default rule needs it, whichever backend runs the shipped model."""
    from faceid.model.encoder import Encoder
    from faceid.model.runner import DEFAULT_ONNX, DEFAULT_PT

    onnx = Encoder.load(DEFAULT_ONNX, "cpu")
    cal = openset.check(onnx.openset)
    assert cal["sizes"][-1] >= 496  # the DevTest gallery is inside the measured sizes
    assert 0.0 < openset.threshold_for_fpir(cal, 496, 0.01) < onnx.identify_threshold
    # in a gallery of hundreds its rule bounds the ratio to the next person, which its
    # calibration says names more people than a distance bound at the same FPIR
    rule = openset.rule_for(cal, 496, 0.01)
    assert rule.score == "ratio" and 0.0 < rule.threshold < 1.0
    assert rule.fnir < openset.fnir_at(cal, 496, openset.threshold_for_fpir(cal, 496, 0.01))
    pytest.importorskip("torch")
    torch_enc = Encoder.load(DEFAULT_PT, "cpu")
    assert torch_enc.model_id == onnx.model_id and torch_enc.openset == cal
