"""Reports: JSON that round-trips, PNGs that are really PNGs, and the report dicts."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faceid.evaluate import metrics
from faceid.evaluate.report import (
    identify_report,
    pairs_report,
    plot_cmc,
    plot_det,
    plot_distance_histograms,
    plot_roc,
    write_json,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 100 and path.read_bytes()[:8] == PNG_MAGIC


def _synthetic(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlapping genuine/impostor distances in LFW-like folds (n per class per fold)."""
    rng = np.random.default_rng(seed)
    dist, same, folds = [], [], []
    for f in range(10):
        dist += [rng.normal(0.8, 0.25, n), rng.normal(1.6, 0.25, n)]
        same += [np.ones(n, bool), np.zeros(n, bool)]
        folds += [np.full(2 * n, f)]
    return np.clip(np.concatenate(dist), 0, 4), np.concatenate(same), np.concatenate(folds)


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# --- JSON ---------------------------------------------------------------------


def test_write_json_round_trips_numpy(tmp_path):
    report = {
        "acc": np.float32(0.5),
        "n": np.int64(3),
        "ok": np.bool_(True),
        "curve": np.array([0.0, 0.25, 1.0]),
        "nested": {"path": Path("a/b.jpg"), "pair": (1, 2), 7: "int key"},
        "missing": None,
        "nan": float("nan"),
        "inf": np.float64(np.inf),
    }
    path = tmp_path / "out" / "report.json"
    write_json(report, path)
    text = path.read_text()
    assert text.startswith("{\n  ")  # indent=2
    back = json.loads(text)
    assert back == {
        "acc": 0.5,
        "n": 3,
        "ok": True,
        "curve": [0.0, 0.25, 1.0],
        "nested": {"path": "a/b.jpg", "pair": [1, 2], "7": "int key"},
        "missing": None,
        "nan": None,
        "inf": None,
    }
    assert _no_temp_files(path.parent)


def test_write_json_replaces_and_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "r.json"
    write_json({"v": 1}, path)
    write_json({"v": 2}, path)
    assert json.loads(path.read_text()) == {"v": 2}
    with pytest.raises(TypeError):
        write_json({"v": object()}, path)
    assert json.loads(path.read_text()) == {"v": 2}
    assert _no_temp_files(tmp_path)


# --- plots --------------------------------------------------------------------


def test_plots_write_png(tmp_path):
    dist, same, _ = _synthetic(20)
    far, tar, _ = metrics.roc(dist, same)
    plot_roc(far, tar, tmp_path / "roc.png", label="synthetic", marks={"FAR 1e-2": 1e-2})
    plot_roc(far, tar, tmp_path / "plain" / "roc.png")
    plot_distance_histograms(dist, same, 1.2, tmp_path / "hist.png")
    plot_distance_histograms(dist, same, None, tmp_path / "hist_nothr.png")
    plot_cmc(np.array([0.5, 0.7, 0.8, 0.9, 0.95]), tmp_path / "cmc.png")
    for name in ["roc.png", "plain/roc.png", "hist.png", "hist_nothr.png", "cmc.png"]:
        assert _is_png(tmp_path / name), name
    assert _no_temp_files(tmp_path)


def test_plots_survive_degenerate_data(tmp_path):
    plot_roc([0.0, 1.0], [0.0, 1.0], tmp_path / "roc.png", marks={"m": 1e-3})
    plot_distance_histograms([0.5, 0.5], [True, True], 0.5, tmp_path / "hist.png")
    plot_cmc([1.0], tmp_path / "cmc.png")
    assert all(_is_png(tmp_path / n) for n in ["roc.png", "hist.png", "cmc.png"])


def test_plot_validation(tmp_path):
    with pytest.raises(ValueError, match="equally long"):
        plot_roc([0.0, 1.0], [0.0], tmp_path / "x.png")
    with pytest.raises(ValueError, match="must be a FAR"):
        plot_roc([0.0, 1.0], [0.0, 1.0], tmp_path / "x.png", marks={"zero": 0.0})
    with pytest.raises(ValueError, match="non-empty"):
        plot_distance_histograms([], [], None, tmp_path / "x.png")
    with pytest.raises(ValueError, match="non-empty"):
        plot_cmc([], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_importing_report_does_not_import_matplotlib():
    code = "import sys, faceid.evaluate.report; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- pairs report -------------------------------------------------------------


def test_pairs_report(tmp_path):
    dist, same, folds = _synthetic()
    rep = pairs_report(dist, same, folds, stored_threshold=1.2)
    assert rep["counts"] == {"pairs": 4000, "genuine": 2000, "impostor": 2000, "folds": 10}
    kf = rep["kfold_accuracy"]
    assert len(kf["per_fold"]) == 10
    # normals 0.8 apart with sd 0.25: best accuracy Phi(1.6) = 0.945, EER 0.055
    assert 0.92 < kf["mean"] < 0.97
    assert rep["roc_auc"] == pytest.approx(metrics.roc_auc(dist, same))
    assert 0.03 < rep["eer"]["rate"] < 0.08
    assert set(rep["tar_at_far"]) == {"0.01", "0.001"}
    assert rep["tar_at_far"]["0.001"]["tar"] <= rep["tar_at_far"]["0.01"]["tar"]
    assert rep["far_resolution"] == 1 / 2000
    st = rep["stored_threshold"]
    assert st["threshold"] == 1.2
    assert st["accuracy"] == pytest.approx(metrics.accuracy_at(dist, same, 1.2))
    assert st["accuracy"] == pytest.approx((st["tar"] + 1 - st["far"]) / 2)
    g = rep["distances"]["genuine"]
    assert g["n"] == 2000 and g["min"] <= g["p5"] <= g["p50"] <= g["p95"] <= g["max"]
    assert g["mean"] == pytest.approx(0.8, abs=0.03)
    assert rep["distances"]["impostor"]["mean"] == pytest.approx(1.6, abs=0.03)
    write_json(rep, tmp_path / "pairs.json")
    assert json.loads((tmp_path / "pairs.json").read_text())["counts"]["pairs"] == 4000


def test_pairs_report_without_stored_threshold_and_int_folds():
    dist = np.array([0.1, 0.2, 1.0, 1.5] * 5)
    same = np.array([True, True, False, False] * 5)
    rep = pairs_report(dist, same, 5, stored_threshold=None)
    assert rep["stored_threshold"] is None
    assert rep["kfold_accuracy"]["mean"] == 1.0
    assert rep["roc_auc"] == 1.0
    assert rep["eer"] == {"rate": 0.0, "threshold": 0.2}


def test_pairs_report_needs_both_classes():
    with pytest.raises(ValueError, match="impostor"):
        pairs_report([0.1, 0.2], [True, True], np.array([0, 1]), stored_threshold=None)


# --- identify report ----------------------------------------------------------


GALLERY = np.array(["a", "a", "b", "c"])
GENUINE_LABELS = np.array(["a", "b", "c", "b"])
GENUINE = np.array(
    [
        [0.5, 0.2, 0.3, 0.9],  # a: rank 1 at 0.2
        [0.1, 0.6, 0.4, 0.2],  # b: rank 3
        [0.3, 0.8, 0.5, 0.4],  # c: rank 2
        [0.9, 0.9, 0.3, 0.8],  # b: rank 1 at 0.3
    ]
)
IMPOSTOR = np.array([[0.25, 0.7, 0.9, 0.9], [0.9, 0.9, 0.6, 1.0], [0.8, 0.8, 0.8, 0.8]])


def test_identify_report(tmp_path):
    rep = identify_report(GENUINE, GENUINE_LABELS, GALLERY, IMPOSTOR, stored_threshold=0.28)
    assert rep["counts"] == {
        "gallery_images": 4,
        "gallery_identities": 3,
        "genuine_probes": 4,
        "genuine_probes_enrolled": 4,
        "impostor_probes": 3,
    }
    assert rep["rank1"] == 0.5
    assert rep["rank5"] == 1.0
    assert rep["cmc"] == [0.5, 0.75, 1.0] + [1.0] * 7
    # impostor best distances 0.25, 0.6, 0.8: at FAR 0.1 none may pass -> below 0.25,
    # so only probe a (0.2) is identified; at FAR 0.01 likewise
    assert rep["dir_at_far"]["0.1"]["dir"] == 0.25
    assert rep["dir_at_far"]["0.01"]["dir"] == 0.25
    assert rep["dir_at_far"]["0.1"]["threshold"] == 0.2
    # at 0.28: probe a identified (0.2), probe b-2 at 0.3 not accepted; impostor 0.25 passes
    st = rep["stored_threshold"]
    assert st["threshold"] == 0.28
    assert st["genuine_identified"] == 0.25
    assert st["impostor_rejected"] == pytest.approx(2 / 3)
    assert st["strangers_named"] == pytest.approx(1 / 3)
    assert rep["fnir_at_fpir"]["0.1"] == {"fnir": 0.75, "threshold": 0.2}
    assert rep["default_rule"] is None
    write_json(rep, tmp_path / "identify.json")
    assert json.loads((tmp_path / "identify.json").read_text())["rank1"] == 0.5


def test_identify_report_scores_the_default_rule_it_is_given():
    rule = {"threshold": 0.35, "kind": "fpir", "fpir": 0.01, "people": 3}
    rep = identify_report(
        GENUINE, GENUINE_LABELS, GALLERY, IMPOSTOR, stored_threshold=None, rule=rule
    )
    # at 0.35: a (0.2) and b-2 (0.3) named right; impostor 0.25 given a name
    assert rep["default_rule"] == {
        "threshold": 0.35,
        "genuine_identified": 0.5,
        "impostor_rejected": pytest.approx(2 / 3),
        "strangers_named": pytest.approx(1 / 3),
        "rule": rule,
    }


def test_ratio_scores_divide_the_closest_person_by_the_next_one():
    # per person: a is the closer of its two photos
    assert metrics.ratio_scores(GENUINE, GALLERY) == pytest.approx([0.2 / 0.3, 0.5, 0.75, 0.375])
    assert metrics.ratio_scores(IMPOSTOR, GALLERY) == pytest.approx([0.25 / 0.9, 0.6 / 0.9, 1.0])
    assert metrics.ratio_scores([[0.0, 0.0]], ["a", "b"]).tolist() == [1.0]  # a tie at 0
    assert metrics.ratio_scores([[0.3, 0.1]], ["a", "a"]).tolist() == [0.0]  # one person


def test_identify_report_scores_a_ratio_rule_on_the_ratio():
    rule = {"threshold": 0.5, "score": "ratio", "kind": "fpir", "fpir": 0.01, "people": 3}
    rep = identify_report(
        GENUINE, GENUINE_LABELS, GALLERY, IMPOSTOR, stored_threshold=None, rule=rule
    )
    # right at rank 1: a (ratio 0.667, too close to b) and the second b (0.375, named);
    # impostor ratios 0.278 (named), 0.667 and 1.0
    assert rep["default_rule"]["genuine_identified"] == 0.25
    assert rep["default_rule"]["strangers_named"] == pytest.approx(1 / 3)
    assert rep["ratio"]["dir_at_far"]["0.1"]["dir"] == 0.0  # no stranger may pass: below 0.278
    with pytest.raises(ValueError, match="full distance matrix"):
        identify_report(
            GENUINE, GENUINE_LABELS, GALLERY, IMPOSTOR.min(1), stored_threshold=None, rule=rule
        )


def test_plot_det_draws_log_axes_and_the_operating_point(tmp_path):
    fpir, fnir, _ = metrics.det([0.1, 0.2, 0.4], [True, True, True], [0.15, 0.3, 0.5, 0.9])
    plot_det(
        fpir,
        fnir,
        tmp_path / "det.png",
        label="model",
        marks={"rule": (0.25, 1 / 3)},
        more={"by ratio": (fpir, fnir)},
    )
    assert (tmp_path / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_det([0.0, 1.0], [1.0, 0.0], tmp_path / "empty.png")  # nothing on log axes: still a PNG
    with pytest.raises(ValueError):
        plot_det([0.1], [0.1, 0.2], tmp_path / "x.png")


def test_identify_report_best_distances_and_no_impostors():
    best = IMPOSTOR.min(axis=1)
    a = identify_report(GENUINE, GENUINE_LABELS, GALLERY, IMPOSTOR, stored_threshold=None)
    b = identify_report(GENUINE, GENUINE_LABELS, GALLERY, best, stored_threshold=None)
    assert b["ratio"] is None  # the ratio test needs every impostor's distances
    assert {k: v for k, v in a.items() if k != "ratio"} == {
        k: v for k, v in b.items() if k != "ratio"
    }
    assert a["stored_threshold"] is None
    empty = identify_report(
        GENUINE, GENUINE_LABELS, GALLERY, np.empty((0, 4)), stored_threshold=0.35
    )
    assert empty["dir_at_far"] is None
    assert empty["counts"]["impostor_probes"] == 0
    assert empty["stored_threshold"]["impostor_rejected"] is None
    assert empty["stored_threshold"]["genuine_identified"] == 0.5  # a at 0.2, b at 0.3


def test_identify_report_tie_is_not_correct():
    # probe b ties with a at 0.3: rank 2 under the pessimistic rule, so not identified
    genuine = np.array([[0.3, 0.3]])
    rep = identify_report(genuine, ["b"], ["a", "b"], [0.9], stored_threshold=1.0)
    assert rep["rank1"] == 0.0
    assert rep["stored_threshold"]["genuine_identified"] == 0.0
    assert not math.isnan(rep["dir_at_far"]["0.1"]["dir"])


def test_identify_report_validation():
    with pytest.raises(ValueError, match="2-D"):
        identify_report(GENUINE[0], GENUINE_LABELS[:1], GALLERY, IMPOSTOR, stored_threshold=None)
    with pytest.raises(ValueError, match="columns"):
        identify_report(GENUINE, GENUINE_LABELS, GALLERY, IMPOSTOR[:, :3], stored_threshold=None)
