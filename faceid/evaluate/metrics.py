"""Verification and identification metrics on distances, in pure numpy.

Conventions shared by every function here, so that figures from different
commands can be compared:

* a *distance* is the squared L2 distance between unit embeddings (0..4);
  smaller means more alike;
* ``same`` is True (or 1) for genuine pairs, False (0) for impostor pairs;
* a pair is accepted as "same" when ``distance <= threshold``.

Thresholds are always taken from the observed distances (or midway between
them), never interpolated from a fitted curve, so every reported operating
point is one that a deployed threshold would reproduce exactly on the same data.

Degenerate inputs: functions that need both classes (ROC, AUC, EER, TAR@FAR)
raise ValueError when one is missing, because FAR or TAR is then undefined.
Accuracy-based functions (``accuracy_at``, ``best_threshold``,
``kfold_accuracy``) accept a single class, since accuracy stays defined.
"""

from __future__ import annotations

import math

import numpy as np

from faceid.distance import ratio

__all__ = [
    "roc",
    "roc_auc",
    "eer",
    "tar_at_far",
    "threshold_at_far",
    "accuracy_at",
    "best_threshold",
    "kfold_accuracy",
    "true_ranks",
    "cmc",
    "dir_at_far",
    "open_set_at",
    "det",
]


# --- validation --------------------------------------------------------------


def _as_dist(dist: object, name: str = "dist") -> np.ndarray:
    d = np.asarray(dist, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {d.shape}")
    if d.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(d)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return d


def _as_labels(same: object, n: int, name: str = "same") -> np.ndarray:
    s = np.asarray(same)
    if s.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {s.shape}")
    if s.size != n:
        raise ValueError(f"{name} has {s.size} entries but the distances have {n}")
    if s.dtype != np.bool_:
        if not np.all((s == 0) | (s == 1)):
            raise ValueError(f"{name} must hold booleans or 0/1 values")
        s = s.astype(bool)
    return s


def _pairs(dist: object, same: object) -> tuple[np.ndarray, np.ndarray]:
    d = _as_dist(dist)
    return d, _as_labels(same, d.size)


def _need_both(same: np.ndarray) -> None:
    n_gen = int(same.sum())
    if n_gen == 0:
        raise ValueError("no genuine (same) pairs: TAR is undefined")
    if n_gen == same.size:
        raise ValueError("no impostor (different) pairs: FAR is undefined")


def _check_far(far: float) -> float:
    far = float(far)
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be within [0, 1], got {far}")
    return far


def _allowed(far: float, n: int) -> int:
    """How many of n negatives may be accepted at rate ``far``.

    Counting avoids float comparisons such as 3/300 <= 0.01 going the wrong way.
    """
    return int(math.floor(far * n + 1e-9))


def _largest_threshold(candidates: np.ndarray, negatives: np.ndarray, far: float) -> float:
    """Largest candidate accepting at most ``far`` of negatives, or just below them all."""
    cand = np.unique(candidates)
    neg = np.sort(negatives)
    accepted = np.searchsorted(neg, cand, side="right")
    ok = np.nonzero(accepted <= _allowed(far, neg.size))[0]
    if ok.size == 0:
        return float(np.nextafter(cand[0], -np.inf))
    return float(cand[ok[-1]])


# --- verification ------------------------------------------------------------


def roc(dist: object, same: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC as (far, tar, thresholds), one point per unique distance.

    Thresholds are the unique distances ascending, preceded by one just below the
    minimum so the curve starts at (0, 0) and ends at (1, 1). Pairs that share a
    distance move together: no operating point splits a tie, because no threshold
    could.
    """
    d, s = _pairs(dist, same)
    _need_both(s)
    uniq, inverse = np.unique(d, return_inverse=True)
    gen_per = np.bincount(inverse, weights=s.astype(np.float64), minlength=uniq.size)
    imp_per = np.bincount(inverse, weights=(~s).astype(np.float64), minlength=uniq.size)
    tar = np.concatenate([[0.0], np.cumsum(gen_per)]) / s.sum()
    far = np.concatenate([[0.0], np.cumsum(imp_per)]) / (~s).sum()
    thresholds = np.concatenate([[np.nextafter(uniq[0], -np.inf)], uniq])
    return far, tar, thresholds


def roc_auc(dist: object, same: object) -> float:
    """Area under the ROC: P(d_genuine < d_impostor) + 0.5 P(equal).

    Computed from mid-ranks (the Mann-Whitney U statistic), which is exact with ties
    and equals the trapezoidal area under :func:`roc`.
    """
    d, s = _pairs(dist, same)
    _need_both(s)
    _, inverse, counts = np.unique(d, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mid_rank = ends - (counts - 1) / 2.0  # 1-based average rank of each unique value
    ranks = mid_rank[inverse]
    n_gen = int(s.sum())
    n_imp = s.size - n_gen
    u_imp = ranks[~s].sum() - n_imp * (n_imp + 1) / 2.0  # pairs where impostor is farther
    return float(u_imp / (n_gen * n_imp))


def eer(dist: object, same: object) -> tuple[float, float]:
    """Equal error rate and its threshold, as (eer, threshold).

    FAR - FRR changes sign between two ROC points; both the rate and the threshold
    are interpolated linearly there, the usual convention, since the exact crossing
    rarely falls on an observed distance. When a point has FAR == FRR exactly its
    threshold is returned (perfect separation gives (0, largest genuine distance)).
    """
    far, tar, thr = roc(dist, same)
    diff = (1.0 - tar) - far  # non-increasing, from +1 to -1
    i = int(np.argmax(diff <= 0.0))
    if diff[i] == 0.0:
        return float(far[i]), float(thr[i])
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    rate = far[i - 1] + t * (far[i] - far[i - 1])
    threshold = thr[i - 1] + t * (thr[i] - thr[i - 1])
    return float(rate), float(threshold)


def threshold_at_far(dist: object, same: object, far: float) -> float:
    """The largest observed distance whose FAR is <= ``far``.

    Only impostors are needed; if even the smallest distance is an impostor above
    the budget, a threshold just below every distance (accept nothing) is returned.
    """
    d, s = _pairs(dist, same)
    far = _check_far(far)
    if s.all():
        raise ValueError("no impostor (different) pairs: FAR is undefined")
    return _largest_threshold(d, d[~s], far)


def tar_at_far(dist: object, same: object, far: float) -> tuple[float, float]:
    """(TAR, threshold) at the largest threshold whose FAR is <= ``far``.

    With n impostors, FAR moves in steps of 1/n: a ``far`` below 1/n means no
    impostor may be accepted, so report ``1/n_impostors`` beside the figure.
    """
    d, s = _pairs(dist, same)
    _need_both(s)
    thr = threshold_at_far(d, s, far)
    return float(np.mean(d[s] <= thr)), thr


def accuracy_at(dist: object, same: object, threshold: float) -> float:
    """Share of pairs classified correctly when accepting ``dist <= threshold``."""
    d, s = _pairs(dist, same)
    return float(np.mean((d <= float(threshold)) == s))


def best_threshold(dist: object, same: object) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy on these pairs.

    Candidates lie midway between adjacent unique distances, plus one below the
    minimum (accept nothing) and one above the maximum (accept everything), each
    half the mean spacing away (0.5 for a single unique value). Midpoints keep the
    threshold away from the training distances so held-out pairs near them are not
    decided by rounding. Among equally accurate thresholds the smallest wins: it
    accepts fewer impostors. Works with a single class present.
    """
    d, s = _pairs(dist, same)
    uniq, inverse = np.unique(d, return_inverse=True)
    gen_per = np.bincount(inverse, weights=s.astype(np.float64), minlength=uniq.size)
    imp_per = np.bincount(inverse, weights=(~s).astype(np.float64), minlength=uniq.size)
    # candidate k accepts the first k unique values (k = 0 .. len(uniq))
    tp = np.concatenate([[0.0], np.cumsum(gen_per)])
    fp = np.concatenate([[0.0], np.cumsum(imp_per)])
    acc = (tp + ((~s).sum() - fp)) / s.size
    k = int(np.argmax(acc))
    half = (uniq[-1] - uniq[0]) / (2 * (uniq.size - 1)) if uniq.size > 1 else 0.5
    if k == 0:
        thr = uniq[0] - half
    elif k == uniq.size:
        thr = uniq[-1] + half
    else:
        thr = (uniq[k - 1] + uniq[k]) / 2.0
    return float(thr), float(acc[k])


def kfold_accuracy(dist: object, same: object, folds: np.ndarray | int = 10) -> dict:
    """LFW-protocol accuracy: each fold is scored at the threshold best on the others.

    ``folds`` is either one fold id per pair (as read from the protocol files) or a
    number k, which splits the pairs into k contiguous blocks in their given order
    (right for pairs.txt, whose folds are contiguous). The threshold is never fitted
    on the pairs it is scored on, so the mean is an honest estimate of accuracy at a
    threshold chosen in advance.

    Returns ``{"mean", "std", "per_fold", "thresholds", "folds"}``; ``std`` is the
    population standard deviation across folds (ddof=0), as the LFW results page and
    most papers report it.
    """
    d, s = _pairs(dist, same)
    if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
        k = int(folds)
        if not 2 <= k <= d.size:
            raise ValueError(f"number of folds must be in [2, {d.size}], got {k}")
        fold_ids = np.empty(d.size, dtype=np.int64)
        for i, block in enumerate(np.array_split(np.arange(d.size), k)):
            fold_ids[block] = i
    else:
        fold_ids = np.asarray(folds)
        if fold_ids.ndim != 1 or fold_ids.size != d.size:
            raise ValueError(
                f"folds must be an int or hold one fold id per pair ({d.size}), "
                f"got shape {fold_ids.shape}"
            )
    ids = np.unique(fold_ids)
    if ids.size < 2:
        raise ValueError("kfold_accuracy needs at least two folds")
    per_fold: list[float] = []
    thresholds: list[float] = []
    for f in ids:
        test = fold_ids == f
        thr, _ = best_threshold(d[~test], s[~test])
        thresholds.append(thr)
        per_fold.append(accuracy_at(d[test], s[test], thr))
    acc = np.asarray(per_fold)
    return {
        "mean": float(acc.mean()),
        "std": float(acc.std()),
        "per_fold": per_fold,
        "thresholds": thresholds,
        "folds": [f.item() if hasattr(f, "item") else f for f in ids],
    }


# --- identification ----------------------------------------------------------


def true_ranks(dist_matrix: object, probe_labels: object, gallery_labels: object) -> np.ndarray:
    """1-based rank of each probe's true identity among gallery identities; 0 if absent.

    Ranks are over identities, not gallery images: an identity's distance is that of
    its closest gallery image, so enrolling more photos of one person does not push
    others down the list. Ties count against the probe (every other identity at the
    same distance ranks ahead), so constant distances identify nobody rather than
    everybody.
    """
    m = np.asarray(dist_matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"dist_matrix must be 2-D (probes x gallery), got shape {m.shape}")
    n_probe, n_gallery = m.shape
    if n_probe == 0 or n_gallery == 0:
        raise ValueError(f"dist_matrix is empty (shape {m.shape})")
    if not np.all(np.isfinite(m)):
        raise ValueError("dist_matrix contains NaN or infinite values")
    probes = np.asarray(probe_labels)
    gallery = np.asarray(gallery_labels)
    if probes.shape != (n_probe,):
        raise ValueError(
            f"probe_labels has {probes.size} entries but dist_matrix has {n_probe} rows"
        )
    if gallery.shape != (n_gallery,):
        raise ValueError(
            f"gallery_labels has {gallery.size} entries but dist_matrix has {n_gallery} columns"
        )
    ids, col_id = np.unique(gallery, return_inverse=True)
    col_id = col_id.reshape(-1)
    order = np.argsort(col_id, kind="stable")
    starts = np.searchsorted(col_id[order], np.arange(ids.size))
    per_id = np.minimum.reduceat(m[:, order], starts, axis=1)  # (n_probe, n_ids)
    pos = np.searchsorted(ids, probes)
    pos = np.clip(pos, 0, ids.size - 1)
    present = ids[pos] == probes
    ranks = np.zeros(n_probe, dtype=np.int64)
    rows = np.nonzero(present)[0]
    true_d = per_id[rows, pos[rows]]
    ahead = (per_id[rows] <= true_d[:, None]).sum(axis=1) - 1
    ranks[rows] = ahead + 1
    return ranks


def cmc(
    dist_matrix: object, probe_labels: object, gallery_labels: object, max_rank: int = 10
) -> np.ndarray:
    """Closed-set CMC: entry r-1 is the share of probes whose identity is within rank r.

    Probes whose identity is not enrolled are left out (they belong to open-set
    figures); ValueError if that leaves none. Ranks follow :func:`true_ranks`.
    """
    if int(max_rank) < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    ranks = true_ranks(dist_matrix, probe_labels, gallery_labels)
    ranks = ranks[ranks > 0]
    if ranks.size == 0:
        raise ValueError("no probe identity is enrolled in the gallery")
    r = np.arange(1, int(max_rank) + 1)
    return (ranks[None, :] <= r[:, None]).mean(axis=1)


def ratio_scores(dist_matrix: object, gallery_labels: object) -> np.ndarray:
    """Each probe's ratio-test score: its closest person's distance over the next person's.

    A person's distance is that of their closest gallery photo. Lower is more certain, as
    with distances, so the open-set functions below take these scores in their place. With
    only one person in the gallery there is no next person: the score is then 0 (every
    probe is certain), and a ratio rule is never chosen for a one-person gallery.
    """
    d = np.asarray(dist_matrix, dtype=np.float64)
    labels = np.asarray(gallery_labels)
    if d.ndim != 2 or d.shape[1] != labels.size:
        raise ValueError(f"dist_matrix {d.shape} does not match {labels.size} gallery labels")
    _, person = np.unique(labels, return_inverse=True)
    per_person = np.full((d.shape[0], int(person.max()) + 1 if person.size else 0), np.inf)
    np.minimum.at(per_person.T, person, d.T)
    if per_person.shape[1] < 2:
        return np.zeros(d.shape[0])
    two = np.partition(per_person, 1, axis=1)[:, :2]
    return ratio(two[:, 0], two[:, 1])


def _open_set_inputs(
    genuine_best_dist: object, genuine_correct: object, impostor_best_dist: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.asarray(genuine_best_dist, dtype=np.float64).reshape(-1)
    c = np.asarray(genuine_correct).reshape(-1)
    if c.size != g.size:
        raise ValueError(f"genuine_correct has {c.size} entries but genuine_best_dist has {g.size}")
    c = _as_labels(c, g.size, "genuine_correct") if c.size else c.astype(bool)
    i = np.asarray(impostor_best_dist, dtype=np.float64).reshape(-1)
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(i))):
        raise ValueError("open-set distances contain NaN or infinite values")
    return g, c, i


def dir_at_far(
    genuine_best_dist: object,
    genuine_correct: object,
    impostor_best_dist: object,
    far: float,
) -> tuple[float, float]:
    """Open-set (DIR, threshold) at false-alarm rate ``far``.

    The threshold is the largest observed best-match distance at which at most
    ``far`` of impostor probes (people not enrolled) would be accepted; DIR is the
    share of genuine probes whose rank-1 match is the right person AND close enough
    to be accepted. Both probe sets must be non-empty.
    """
    g, c, i = _open_set_inputs(genuine_best_dist, genuine_correct, impostor_best_dist)
    far = _check_far(far)
    if g.size == 0:
        raise ValueError("no genuine probes: DIR is undefined")
    if i.size == 0:
        raise ValueError("no impostor probes: the false-alarm rate is undefined")
    thr = _largest_threshold(np.concatenate([g, i]), i, far)
    return float(np.mean(c & (g <= thr))), thr


def open_set_at(
    genuine_best_dist: object,
    genuine_correct: object,
    impostor_best_dist: object,
    threshold: float,
) -> dict:
    """Open-set outcome at a fixed (e.g. shipped) threshold.

    Returns ``{"genuine_identified", "impostor_rejected"}``: the share of genuine
    probes named correctly and accepted, and the share of impostor probes turned
    away. A share whose probe set is empty is None rather than an error, so a split
    without impostors still reports its genuine side; both empty is a ValueError.
    """
    g, c, i = _open_set_inputs(genuine_best_dist, genuine_correct, impostor_best_dist)
    if g.size == 0 and i.size == 0:
        raise ValueError("no genuine and no impostor probes")
    thr = float(threshold)
    return {
        "genuine_identified": float(np.mean(c & (g <= thr))) if g.size else None,
        "impostor_rejected": float(np.mean(i > thr)) if i.size else None,
    }


def det(
    genuine_best_dist: object, genuine_correct: object, impostor_best_dist: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open-set DET curve as (fpir, fnir, thresholds), one point per unique best distance.

    FPIR: share of impostor probes (strangers) whose best match is within the threshold,
    i.e. who are given a name. FNIR: share of genuine probes not named right (wrong person at
    rank 1, or too far), so FNIR = 1 - DIR at the same threshold. Thresholds ascend from one
    just below every distance (FPIR 0, FNIR 1), as in :func:`roc`.
    """
    g, c, i = _open_set_inputs(genuine_best_dist, genuine_correct, impostor_best_dist)
    if g.size == 0 or i.size == 0:
        raise ValueError("a DET curve needs both genuine and impostor probes")
    uniq = np.unique(np.concatenate([g, i]))
    thresholds = np.concatenate([[np.nextafter(uniq[0], -np.inf)], uniq])
    fpir = np.searchsorted(np.sort(i), thresholds, side="right") / i.size
    named = np.sort(g[c])
    fnir = 1.0 - np.searchsorted(named, thresholds, side="right") / g.size
    return fpir, fnir, thresholds
