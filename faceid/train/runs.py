"""The rows of training runs' logs (`log.jsonl`): which epoch is better (training keeps the
best by it), and runs side by side, summarised and plotted. No torch: logs are plain JSON.

Two recipes are compared fairly at equal compute: the same wall clock on the same machine,
so the curves are drawn against training seconds, not epochs (an online teacher makes
an epoch cost twice as much). Validation figures of one epoch are noisy on a hundred
held-out people, so the summary gives the mean of each run's last epochs beside its best.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

OPENSET_PEOPLE = 500
"""Gallery size of validation's open-set figure: about the issue's 496 DevTest people."""
SELECT = {
    # name: (row key, larger is better); "auto" is "openset" when the row has it, else "auc"
    "auc": ("val_auc", True),
    "tar1e-3": ("val_tar_far1e-3", True),
    "openset": (f"val_fnir_fpir1e-2_n{OPENSET_PEOPLE}", False),
}
METRICS = ("val_auc", "val_tar_far1e-2", "val_tar_far1e-3", "val_rank1", SELECT["openset"][0])
"""What the summary and the plot show (larger is better, except the FNIR)."""


def is_better(row: dict, best: dict | None, select: str = "auto") -> bool:
    """Whether an epoch's validation row beats the best so far, by `select` (see SELECT).

    "auto" uses the open-set figure when both rows have it (older runs' rows may not),
    else the ROC AUC. Ties go to the higher AUC.
    """
    if best is None:
        return True
    if select == "auto":
        key = SELECT["openset"][0]
        select = "openset" if key in row and key in best else "auc"
    if select not in SELECT:
        raise ValueError(f"unknown select {select!r}: use auto or one of {', '.join(SELECT)}")
    key, larger = SELECT[select]
    if key not in best:
        return True
    if row[key] != best[key]:
        return row[key] > best[key] if larger else row[key] < best[key]
    return row["val_auc"] > best["val_auc"]


def read_log(run: str | Path) -> list[dict]:
    """The rows of a run folder's log.jsonl (or of the file itself), in epoch order."""
    path = Path(run)
    path = path / "log.jsonl" if path.is_dir() else path
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path} holds no epochs")
    return rows


def summarise(rows: list[dict], last: int = 5) -> dict:
    """Epochs, seconds and photos/s of a run; per metric its best and its last-epochs mean."""
    best = None
    for row in rows:
        if is_better(row, best):
            best = row
    tail = rows[-last:]
    out = {
        "epochs": rows[-1]["epoch"],
        "seconds": rows[-1]["seconds"],
        "images_per_s": float(np.median([r["images_per_s"] for r in rows])),
        "best_epoch": best["epoch"],
    }
    for m in METRICS:
        if all(m in r for r in rows):
            out[f"{m}_best_epoch"] = best[m]
            out[f"{m}_last{last}"] = float(np.mean([r[m] for r in tail]))
    return out


def plot_runs(runs: dict[str, list[dict]], path: str | Path) -> None:
    """One panel per metric, every run's validation curve against its training seconds."""
    from faceid.evaluate.report import _figure, _save_png

    shown = [m for m in METRICS if all(m in r for rows in runs.values() for r in rows)]
    cols = min(3, len(shown))
    rows_ = -(-len(shown) // cols)
    fig = _figure((4.0 * cols, 3.4 * rows_))
    for i, metric in enumerate(shown):
        ax = fig.add_subplot(rows_, cols, i + 1)
        for name, rows in runs.items():
            ax.plot([r["seconds"] / 60 for r in rows], [r[metric] for r in rows], label=name)
        ax.set_xlabel("training minutes")
        ax.set_title(
            metric.removeprefix("val_") + (" (lower is better)" if "fnir" in metric else "")
        )
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    _save_png(fig, path)
