"""Evaluation reports: the numbers as JSON, the curves as PNG.

matplotlib is imported inside the plotting functions and drawn through its Agg
canvas directly (no pyplot), so importing this module is cheap and never touches
the process-wide backend of a caller that uses pyplot itself.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from faceid.evaluate import metrics

__all__ = [
    "write_json",
    "plot_roc",
    "plot_distance_histograms",
    "plot_cmc",
    "plot_det",
    "pairs_report",
    "identify_report",
    "VERIFY_FARS",
    "IDENTIFY_FARS",
]

VERIFY_FARS = (1e-2, 1e-3)
IDENTIFY_FARS = (1e-2, 1e-1)
IDENTIFY_FPIRS = (1e-2, 1e-1)
_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


# --- writing files -----------------------------------------------------------


def _plain(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars/arrays to Python, Paths to str, NaN/inf to None.

    Non-finite floats become null because bare NaN is not valid JSON and would break
    strict readers of the report.
    """
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [_plain(v) for v in items]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def _atomic_write(path: str | Path, write: Callable[[Any], None], mode: str) -> None:
    """A crash or a concurrent reader never sees a half-written report or image."""
    from faceid.atomic import atomic_open

    with atomic_open(path, mode) as fh:
        write(fh)


def write_json(report: dict, path: str | Path) -> None:
    """Write ``report`` as indented JSON, atomically, with numpy values converted."""
    data = _plain(report)

    def write(fh: Any) -> None:
        json.dump(data, fh, indent=2, allow_nan=False)
        fh.write("\n")

    _atomic_write(path, write, "w")


def _figure(size: tuple[float, float] = (6.0, 4.5)) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Any, path: str | Path) -> None:
    fig.tight_layout()
    _atomic_write(path, lambda fh: fig.savefig(fh, format="png"), "wb")


# --- plots -------------------------------------------------------------------


def plot_roc(
    far: object,
    tar: object,
    path: str | Path,
    *,
    label: str = "",
    marks: dict[str, float] | None = None,
) -> None:
    """ROC with FAR on a log axis, where the operating points that matter live.

    Points with FAR 0 cannot sit on a log axis and are dropped (the curve starts at
    the smallest non-zero FAR). ``marks`` maps a caption to a FAR (e.g.
    ``{"FAR 1e-3": 1e-3}``); each is drawn as a dotted line with the TAR reached
    there (the best TAR among points with FAR <= the mark).
    """
    f = np.asarray(far, dtype=np.float64)
    t = np.asarray(tar, dtype=np.float64)
    if f.shape != t.shape or f.ndim != 1:
        raise ValueError(f"far and tar must be 1-D and equally long, got {f.shape}, {t.shape}")
    for caption, x in (marks or {}).items():
        if not 0.0 < x <= 1.0:
            raise ValueError(f"mark {caption!r} must be a FAR in (0, 1], got {x}")
    keep = f > 0
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    if keep.any():
        ax.step(f[keep], t[keep], where="post", label=label or None)
        left = min([float(f[keep].min()), *(marks or {}).values()])
        ax.set_xlim(left / 1.5, 1.0)
    ax.set_xscale("log")
    for caption, x in (marks or {}).items():
        reached = t[f <= x].max() if np.any(f <= x) else 0.0
        ax.axvline(x, linestyle=":", color="grey")
        ax.annotate(
            f"{caption}: TAR {reached:.3f}",
            xy=(x, reached),
            xytext=(4, -12),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate (log)")
    ax.set_ylabel("true accept rate")
    ax.grid(True, which="both", alpha=0.3)
    if label:
        ax.legend(loc="lower right")
    _save_png(fig, path)


def plot_distance_histograms(
    dist: object, same: object, threshold: float | None, path: str | Path
) -> None:
    """Genuine and impostor distance histograms on shared bins, threshold marked.

    Densities rather than counts, so the overlap is readable even when one class is
    much larger than the other.
    """
    d = np.asarray(dist, dtype=np.float64)
    s = np.asarray(same).astype(bool)
    if d.shape != s.shape or d.size == 0:
        raise ValueError("dist and same must be non-empty and equally long")
    lo, hi = float(d.min()), float(d.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 51)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for mask, name, color in ((s, "genuine", "tab:green"), (~s, "impostor", "tab:red")):
        if mask.any():
            ax.hist(
                d[mask],
                bins=bins,
                density=True,
                alpha=0.5,
                color=color,
                label=f"{name} (n={int(mask.sum())})",
            )
    if threshold is not None:
        ax.axvline(
            float(threshold),
            color="black",
            linestyle="--",
            label=f"threshold {float(threshold):.3f}",
        )
    ax.set_xlabel("squared L2 distance")
    ax.set_ylabel("density")
    ax.legend()
    _save_png(fig, path)


def plot_cmc(cmc_curve: object, path: str | Path) -> None:
    """Cumulative match characteristic: identification rate against rank."""
    c = np.asarray(cmc_curve, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise ValueError("cmc_curve must be a non-empty 1-D array")
    ranks = np.arange(1, c.size + 1)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(ranks, c, marker="o")
    ax.set_xticks(ranks if c.size <= 20 else ranks[:: max(1, c.size // 10)])
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.grid(True, alpha=0.3)
    _save_png(fig, path)


def plot_det(
    fpir: object,
    fnir: object,
    path: str | Path,
    *,
    label: str = "",
    marks: dict[str, tuple[float, float]] | None = None,
    more: dict[str, tuple[object, object]] | None = None,
) -> None:
    """Open-set DET curve: FNIR against FPIR, both on log axes (NIST FRVT 1:N style).

    Points where either rate is 0 cannot sit on log axes and are dropped. ``marks`` maps a
    caption to an operating point (fpir, fnir), e.g. the default decision rule's; ``more``
    maps a caption to another curve's (fpir, fnir), e.g. the same probes scored otherwise.
    """
    curves = {label: (fpir, fnir), **(more or {})}
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for caption, (fp, fn) in curves.items():
        x = np.asarray(fp, dtype=np.float64)
        y = np.asarray(fn, dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(
                f"fpir and fnir must be 1-D and equally long, got {x.shape}, {y.shape}"
            )
        keep = (x > 0) & (y > 0)
        if keep.any():
            ax.step(x[keep], y[keep], where="post", label=caption or None)
    for caption, (px, py) in (marks or {}).items():
        if px > 0 and py > 0:
            ax.plot([px], [py], marker="o", linestyle="none", label=caption)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FPIR: strangers given a name (log)")
    ax.set_ylabel("FNIR: enrolled people not named right (log)")
    ax.grid(True, which="both", alpha=0.3)
    if label or marks or more:
        ax.legend(loc="lower left", fontsize=8)
    _save_png(fig, path)


# --- reports -----------------------------------------------------------------


def _summary(values: np.ndarray) -> dict | None:
    if values.size == 0:
        return None
    out = {"n": int(values.size), "mean": float(values.mean()), "std": float(values.std())}
    out["min"] = float(values.min())
    for q, v in zip(_PERCENTILES, np.percentile(values, _PERCENTILES), strict=True):
        out[f"p{q}"] = float(v)
    out["max"] = float(values.max())
    return out


def _far_key(far: float) -> str:
    return f"{far:g}"  # 0.01, 0.001: stable, readable JSON keys


def pairs_report(
    dist: object,
    same: object,
    folds: np.ndarray | int,
    *,
    stored_threshold: float | None,
) -> dict:
    """Everything ``faceid evaluate pairs`` reports, as a JSON-ready dict.

    The headline is the 10-fold accuracy (threshold fitted on the other folds); the
    stored threshold's accuracy says how the shipped model actually behaves, which
    can be lower if that threshold was calibrated on other data. ``far_resolution``
    (1 / impostors) is included because a TAR@FAR below it means "no impostor
    accepted at all" and is noisy. Needs both genuine and impostor pairs.
    """
    d = np.asarray(dist, dtype=np.float64)
    s = np.asarray(same)
    kfold = metrics.kfold_accuracy(d, s, folds)
    s = s.astype(bool)
    eer_value, eer_threshold = metrics.eer(d, s)
    n_imp = int((~s).sum())
    report: dict[str, Any] = {
        "counts": {
            "pairs": int(d.size),
            "genuine": int(s.sum()),
            "impostor": n_imp,
            "folds": len(kfold["per_fold"]),
        },
        "kfold_accuracy": kfold,
        "roc_auc": metrics.roc_auc(d, s),
        "eer": {"rate": eer_value, "threshold": eer_threshold},
        "tar_at_far": {},
        "far_resolution": 1.0 / n_imp,
        "stored_threshold": None,
        "distances": {"genuine": _summary(d[s]), "impostor": _summary(d[~s])},
    }
    for far in VERIFY_FARS:
        tar, thr = metrics.tar_at_far(d, s, far)
        report["tar_at_far"][_far_key(far)] = {"tar": tar, "threshold": thr}
    if stored_threshold is not None:
        thr = float(stored_threshold)
        accepted = d <= thr
        report["stored_threshold"] = {
            "threshold": thr,
            "accuracy": metrics.accuracy_at(d, s, thr),
            "tar": float(accepted[s].mean()),
            "far": float(accepted[~s].mean()),
        }
    return report


def identify_report(
    genuine_dist: object,
    genuine_labels: object,
    gallery_labels: object,
    impostor_dist: object,
    *,
    stored_threshold: float | None,
    rule: Mapping[str, Any] | None = None,
    max_rank: int = 10,
) -> dict:
    """Everything ``faceid evaluate identify`` reports, as a JSON-ready dict.

    ``genuine_dist`` is the (genuine probes x gallery images) distance matrix and
    ``genuine_labels`` its probes' identities; ``gallery_labels`` names each gallery
    image. ``impostor_dist`` is either the (impostor probes x gallery) matrix or
    already each impostor probe's best distance; it may be empty, in which case the
    open-set figures that need impostors are None.

    A genuine probe counts as correctly identified only when its true identity is
    strictly rank 1 (see :func:`metrics.true_ranks`), so the closed-set rank-1 and
    the open-set figures use one definition of "correct". ``stored_threshold`` is scored
    as "stored_threshold"; ``rule`` (a decision rule's dict, with its "threshold", e.g.
    :meth:`faceid.openset.Rule.to_dict`) as "default_rule".
    """
    g = np.asarray(genuine_dist, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"genuine_dist must be 2-D (probes x gallery), got shape {g.shape}")
    gallery = np.asarray(gallery_labels)
    imp = np.asarray(impostor_dist, dtype=np.float64)
    imp_ratio = None  # the ratio test needs every impostor's distances, not just the best
    if imp.ndim == 2:
        if imp.shape[0] and imp.shape[1] != gallery.size:
            raise ValueError(
                f"impostor_dist has {imp.shape[1]} columns but the gallery has {gallery.size}"
            )
        imp_best = imp.min(axis=1) if imp.shape[0] else np.empty(0)
        if imp.shape[0]:
            imp_ratio = metrics.ratio_scores(imp, gallery)
    elif imp.ndim == 1:
        imp_best = imp
    else:
        raise ValueError(f"impostor_dist must be 1-D or 2-D, got shape {imp.shape}")

    ranks = metrics.true_ranks(g, genuine_labels, gallery)
    curve = metrics.cmc(g, genuine_labels, gallery, max_rank=max(int(max_rank), 5))
    correct = ranks == 1
    best = g.min(axis=1)
    report: dict[str, Any] = {
        "counts": {
            "gallery_images": int(gallery.size),
            "gallery_identities": int(np.unique(gallery).size),
            "genuine_probes": int(g.shape[0]),
            "genuine_probes_enrolled": int((ranks > 0).sum()),
            "impostor_probes": int(imp_best.size),
        },
        "rank1": float(curve[0]),
        "rank5": float(curve[4]),
        "cmc": curve[: int(max_rank)].tolist(),
        "dir_at_far": None,
        "fnir_at_fpir": None,
        "ratio": None,
        "stored_threshold": None,
        "default_rule": None,
    }
    if imp_best.size:
        report["dir_at_far"], report["fnir_at_fpir"] = _open_set_rates(best, correct, imp_best)
    ratio = metrics.ratio_scores(g, gallery) if imp_ratio is not None else None
    if ratio is not None:
        # the same figures with the ratio test's score (closest / next person) in place of
        # the distance: what identify's rule bounds in larger galleries
        dir_r, fnir_r = _open_set_rates(ratio, correct, imp_ratio)
        report["ratio"] = {"dir_at_far": dir_r, "fnir_at_fpir": fnir_r}
    if stored_threshold is not None:
        report["stored_threshold"] = _at(best, correct, imp_best, float(stored_threshold))
    if rule is not None:
        by_ratio = rule.get("score") == "ratio"
        if by_ratio and ratio is None:
            raise ValueError("a ratio rule needs the impostors' full distance matrix")
        scores = (ratio, imp_ratio) if by_ratio else (best, imp_best)
        report["default_rule"] = {
            **_at(scores[0], correct, scores[1], float(rule["threshold"])),
            "rule": dict(rule),
        }
    return report


def _open_set_rates(scores: np.ndarray, correct: np.ndarray, imp_scores: np.ndarray) -> tuple:
    """DIR at each FAR and FNIR at each FPIR (NIST's 1:N words: FPIR is the false-alarm rate
    over strangers, FNIR = 1 - DIR), with the bound on the score that gives each."""
    dir_at, fnir_at = {}, {}
    for far in IDENTIFY_FARS:
        rate, thr = metrics.dir_at_far(scores, correct, imp_scores, far)
        dir_at[_far_key(far)] = {"dir": rate, "threshold": thr}
    for fpir in IDENTIFY_FPIRS:
        rate, thr = metrics.dir_at_far(scores, correct, imp_scores, fpir)
        fnir_at[_far_key(fpir)] = {"fnir": 1.0 - rate, "threshold": thr}
    return dir_at, fnir_at


def _at(best: np.ndarray, correct: np.ndarray, imp_best: np.ndarray, threshold: float) -> dict:
    """Open-set outcome at one bound on the score (a distance, or a ratio), with the share of
    strangers given a name."""
    outcome = metrics.open_set_at(best, correct, imp_best, threshold)
    rejected = outcome["impostor_rejected"]
    return {
        "threshold": threshold,
        **outcome,
        "strangers_named": None if rejected is None else 1.0 - rejected,
    }
