"""Training runs compared from their logs (faceid.train.runs, scripts/compare_runs.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from faceid.train.runs import read_log, summarise

ROOT = Path(__file__).resolve().parents[1]


def _run(folder: Path, fnirs: list[float], seconds_per_epoch: float) -> Path:
    folder.mkdir()
    rows = [
        {
            "epoch": i + 1,
            "seconds": seconds_per_epoch * (i + 1),
            "images_per_s": 50.0,
            "val_auc": 0.9 + 0.01 * i,
            "val_tar_far1e-2": 0.7,
            "val_tar_far1e-3": 0.5,
            "val_rank1": 0.7,
            "val_fnir_fpir1e-2_n500": f,
        }
        for i, f in enumerate(fnirs)
    ]
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_the_summary_keeps_the_epoch_training_kept_and_the_mean_of_the_last(tmp_path):
    run = _run(tmp_path / "a", [0.9, 0.8, 0.85, 0.86, 0.84], 60)
    s = summarise(read_log(run), last=3)
    assert s["best_epoch"] == 2 and s["val_fnir_fpir1e-2_n500_best_epoch"] == 0.8
    assert s["val_fnir_fpir1e-2_n500_last3"] == pytest.approx((0.85 + 0.86 + 0.84) / 3)
    assert s["epochs"] == 5 and s["seconds"] == 300


def test_compare_runs_prints_one_row_per_run_and_draws_the_plot(tmp_path):
    pytest.importorskip("matplotlib")
    a = _run(tmp_path / "fixed", [0.9, 0.8], 60)
    b = _run(tmp_path / "online", [0.95, 0.85, 0.7], 40)
    png = tmp_path / "runs.png"
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "compare_runs.py"),
            str(a),
            str(b),
            "--plot",
            str(png),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [
        line
        for line in out.splitlines()
        if line.startswith("| fixed") or line.startswith("| online")
    ]
    assert len(lines) == 2 and "| 3 (best 3) |" in lines[1]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_runs_over_the_epochs_both_runs_have(tmp_path):
    a = _run(tmp_path / "stopped", [0.9, 0.8], 60)
    b = _run(tmp_path / "going", [0.95, 0.85, 0.7], 40)
    script = str(ROOT / "scripts" / "compare_runs.py")
    out = subprocess.run(
        [sys.executable, script, str(a), str(b), "--epochs", "2", "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    going = json.loads(out)["going"]
    assert going["epochs"] == 2 and going["val_fnir_fpir1e-2_n500_best_epoch"] == 0.85


def test_an_empty_log_is_refused(tmp_path):
    (tmp_path / "log.jsonl").write_text("")
    with pytest.raises(ValueError, match="no epochs"):
        read_log(tmp_path)
