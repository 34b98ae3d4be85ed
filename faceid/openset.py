"""Open-set identification: a threshold that knows how many people a stranger can be taken for.

A stranger is compared with every enrolled person and is given a name when the closest one
lies within the threshold, so the share of strangers given a name (FPIR, the false-positive
identification rate of NIST FRVT 1:N) grows with the number of people N in the gallery. A
threshold chosen per pair (FAR 1e-2) names about N x 1e-2 strangers' worth of false matches:
at 500 people, most strangers get a name.

Calibration measures, on people held out from training, the distance from a stranger's photo
to the closest of N enrolled people (one photo each) for N on a log grid, by drawing many
random galleries from the held-out people's photos. It stores the quantiles of that
closest-impostor distance (a table of gallery sizes x FPIR levels): the FPIR-quantile at N is
the threshold that gives that FPIR for a gallery of N people. Between grid sizes the table is
interpolated in log N; past the largest size a line in log N, fitted to the table's upper
rows and anchored at its last row, extrapolates it (the curve flattens as N grows, since
distances cannot go below 0, so a line is the conservative side: stricter than needed, fewer
strangers named). Quantiles of the genuine distance (a person's photo against another photo
of the same person) are stored too, so the share of enrolled people missed (FNIR) at a
threshold can be estimated, and a gallery too large for the model to keep FPIR at its
target while naming most people can be flagged.

The same draws also measure the ratio test's score, the closest person's distance over the
next person's: its quantiles for strangers by gallery size (the bound for a target FPIR), and,
when the probes are photos of the held-out people themselves, the same ratio for genuine
probes (their own person against the closest of the others), so that the share of enrolled
people a ratio bound misses is counted rather than modelled. The rule for a gallery bounds
whichever score the calibration says names more enrolled people at the target FPIR: in
practice the distance for a few people, the ratio once a crowd sets the scale.

Everything is pure numpy; the calibration is a small JSON-able dict that checkpoints carry
as ``meta["openset"]`` (and anything that copies checkpoint metadata, such as an ONNX export,
carries unchanged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from faceid.distance import MAX_DISTANCE, pairwise_squared_l2, ratio

__all__ = [
    "DEFAULT_FPIR",
    "FNIR_WARNING",
    "FPIRS",
    "Rule",
    "calibrate",
    "calibrate_embeddings",
    "check",
    "fnir_at",
    "fpir_at",
    "fnir_ratio_at",
    "max_people",
    "ratio_for_fpir",
    "ratio_from",
    "rule_for",
    "threshold_for_fpir",
]

FORMAT = "faceid-openset"
VERSION = 1
DEFAULT_FPIR = 0.01
"""The default target: one stranger in a hundred given a name."""
FNIR_WARNING = 0.5
"""Past this estimated share of enrolled people missed, a gallery is too large for the target."""
FPIRS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99)
"""FPIR levels stored for each gallery size (the columns of the table)."""
GENUINE_LEVELS = 100
"""Genuine-distance quantiles stored, at levels (i + 0.5) / GENUINE_LEVELS."""
_FIT_SPAN = 16.0
"""Extrapolation fits the grid sizes within a factor of this of the largest one."""


# --- calibration -------------------------------------------------------------------


def _size_grid(largest: int, steps: int = 24) -> list[int]:
    """1 .. largest on a log grid (about four sizes per doubling at the bottom, fewer later)."""
    grid = np.unique(np.round(np.geomspace(1, largest, steps)).astype(int))
    return [int(n) for n in grid if n >= 1]


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = (np.cumsum(w) - 0.5 * w) / w.sum()
    return np.interp(levels, cum, v)


def calibrate(
    dist: np.ndarray,
    probe_people: np.ndarray,
    entry_people: np.ndarray,
    genuine: np.ndarray,
    *,
    genuine_weights: np.ndarray | None = None,
    probe_entries: np.ndarray | None = None,
    fpirs: tuple[float, ...] = FPIRS,
    draws: int = 64,
    seed: int = 0,
    source: dict | None = None,
) -> dict:
    """Closest-impostor quantiles by gallery size, from a probes x gallery-photos distance matrix.

    dist[i, j]: distance from probe photo i (a stranger) to candidate gallery photo j;
    probe_people / entry_people name each row's and column's person, so a probe is never
    compared with its own person. Each draw shuffles the candidate people, enrolls one
    random photo of each, and reads, for every probe, the closest of the first N people
    other than its own, for every N of the grid at once (a running minimum). The largest
    size is the number of candidate people (less one when probes are among them).
    genuine: distances between two photos of one person (with genuine_weights, e.g. so
    that each probe photo counts once), summarised as quantiles for FNIR estimates.
    probe_entries: when the probes are gallery photos too, each probe's own column (-1 for
    none). Each draw then also enrolls another photo of the probe's person and measures the
    genuine probe's ratio, its own person's distance over the closest of the others, so the
    ratio test's misses are counted, not modelled (a hard photo is far from everyone, its
    own person included: the two distances are not independent).
    """
    dist = np.asarray(dist, dtype=np.float32)
    probe_people = np.asarray(probe_people)
    entry_people = np.asarray(entry_people)
    if dist.ndim != 2 or dist.shape != (probe_people.size, entry_people.size):
        raise ValueError(
            f"dist must be (probes x entries) = ({probe_people.size}, {entry_people.size}), "
            f"got {dist.shape}"
        )
    if not np.all(np.isfinite(dist)):
        raise ValueError("dist contains NaN or infinite values")
    fpirs = tuple(float(p) for p in fpirs)
    if list(fpirs) != sorted(set(fpirs)) or not all(0 < p < 1 for p in fpirs) or len(fpirs) < 2:
        raise ValueError("fpirs must be at least two increasing rates within (0, 1)")
    people, col_person = np.unique(entry_people, return_inverse=True)
    m = people.size
    pos = np.searchsorted(people, probe_people).clip(0, max(m - 1, 0))
    own = np.where(people[pos] == probe_people, pos, -1) if m else np.full(probe_people.size, -1)
    largest = m - 1 if (own >= 0).any() else m
    if largest < 2:
        raise ValueError("calibration needs at least three people")
    genuine = np.asarray(genuine, dtype=np.float64).reshape(-1)
    if genuine.size == 0 or not np.all(np.isfinite(genuine)):
        raise ValueError("genuine distances must be a non-empty array of finite values")
    weights = np.ones_like(genuine) if genuine_weights is None else np.asarray(genuine_weights)

    sizes = _size_grid(largest)
    rng = np.random.default_rng(seed)
    order = np.argsort(col_person, kind="stable")  # entries grouped by person
    counts = np.bincount(col_person, minlength=m)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows = np.arange(probe_people.size)
    has_own = own >= 0
    samples = [[] for _ in sizes]
    ratios = [[] for _ in sizes]
    mates = _mate_sampler(probe_entries, own, order, starts, counts, probe_people.size)
    genuine_ratios = [[] for _ in sizes]
    for _ in range(int(draws)):
        perm = rng.permutation(m)  # the order people are enrolled in
        cols = order[starts[perm] + (rng.random(m) * counts[perm]).astype(int)]
        sel = dist[:, cols]
        where = np.empty(m, int)
        where[perm] = np.arange(m)
        own_at = np.where(has_own, where[own.clip(0)], m)
        sel[rows[has_own], own_at[has_own]] = np.inf
        first, second = _running_two_smallest(sel)
        if mates is not None:
            with_mate, mate_cols = mates(rng)
            own_dist = dist[with_mate, mate_cols]
        for k, n in enumerate(sizes):
            # n people other than the probe's own: one column more when it came first
            at = n - 1 + (own_at < n)
            samples[k].append(first[rows, at])
            if n >= 2:
                ratios[k].append(ratio(first[rows, at], second[rows, at]))
                if mates is not None:
                    # n people with the probe's own: its distance over the n - 1 others'
                    at = n - 2 + (own_at[with_mate] < n - 1)
                    genuine_ratios[k].append(_genuine_ratio(own_dist, first[with_mate, at]))
    table = np.array([np.quantile(np.concatenate(s), fpirs) for s in samples])
    # Fewer strangers are named with fewer people or a stricter threshold: keep it so.
    table = np.maximum.accumulate(table, axis=1)
    table = np.minimum.accumulate(table, axis=0)
    # The ratio's quantiles rise towards 1 as the gallery grows (the two closest people
    # of a crowd are about as far): a bound that holds for N holds for more people.
    ratio_table = np.array([np.quantile(np.concatenate(r), fpirs) for r in ratios[1:]])
    ratio_table = np.maximum.accumulate(ratio_table, axis=1)
    ratio_table = np.maximum.accumulate(ratio_table, axis=0)
    levels = (np.arange(GENUINE_LEVELS) + 0.5) / GENUINE_LEVELS
    simulated = {}
    if mates is not None:
        simulated["genuine_ratios"] = _short(
            np.array([np.quantile(np.concatenate(r), levels) for r in genuine_ratios[1:]])
        )
    return {
        "format": FORMAT,
        "version": VERSION,
        "sizes": sizes,
        "fpirs": list(fpirs),
        "thresholds": _short(table),
        "slopes": _short(_slopes(sizes, table)),
        "ratios": _short(ratio_table),
        **simulated,
        "genuine": _short(_weighted_quantiles(genuine, weights, levels)),
        "source": {
            "probes": int(probe_people.size),
            "people": int(m),
            "photos": int(entry_people.size),
            "genuine_pairs": int(genuine.size),
            "draws": int(draws),
            "seed": int(seed),
            **(source or {}),
        },
    }


def _running_two_smallest(sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every prefix of the columns: the smallest and second-smallest value of each row."""
    cols = np.ascontiguousarray(sel.T)  # one column after another, each contiguous
    first = np.minimum.accumulate(cols, axis=0)
    second = np.full_like(cols, np.inf)
    for j in range(1, cols.shape[0]):
        # the runner-up is the old runner-up, or whichever of the old best and the new
        # column lost the best place
        np.minimum(second[j - 1], np.maximum(first[j - 1], cols[j]), out=second[j])
    return first.T, second.T


def _genuine_ratio(own: np.ndarray, closest_other: np.ndarray) -> np.ndarray:
    """A genuine probe's ratio: its own person's distance over the closest other's; above 1
    when an impostor is closer (capped at 1e6, for a JSON-able table)."""
    return np.minimum(own / np.maximum(closest_other, own * 1e-6 + 1e-12), 1e6)


def _mate_sampler(probe_entries, own, order, starts, counts, n_probes):
    """None without probe_entries; else a function of a random generator returning the probes
    that have another photo of their person and, for each, a random one of those photos."""
    if probe_entries is None:
        return None
    entries = np.asarray(probe_entries).reshape(-1)
    if entries.size != n_probes:
        raise ValueError(f"probe_entries has {entries.size} entries for {n_probes} probes")
    where_in_order = np.empty(order.size, int)
    where_in_order[order] = np.arange(order.size)
    has = (own >= 0) & (counts[own.clip(0)] >= 2) & (entries >= 0)
    probes = np.flatnonzero(has)
    person = own[probes]
    self_at = where_in_order[entries[probes]] - starts[person]  # the probe among its photos
    if np.any((self_at < 0) | (self_at >= counts[person])):
        raise ValueError("probe_entries must point at photos of each probe's own person")

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        k = (rng.random(probes.size) * (counts[person] - 1)).astype(int)
        k += k >= self_at  # any photo of the person but the probe itself
        return probes, order[starts[person] + k]

    return draw


def _short(values: np.ndarray) -> list:
    """Seven significant digits: a compact JSON table that loses nothing a threshold needs."""
    return np.vectorize(lambda v: float(f"{v:.7g}"), otypes=[float])(values).tolist()


def _slopes(sizes: list[int], table: np.ndarray) -> np.ndarray:
    """Per FPIR column: d threshold / d ln N over the upper grid sizes, never positive."""
    logn = np.log(np.asarray(sizes, float))
    upper = logn >= logn[-1] - math.log(_FIT_SPAN)
    if upper.sum() < 3:
        upper = np.zeros_like(upper)
        upper[-3:] = True
    x = logn[upper]
    slopes = np.polyfit(x, table[upper], 1)[0] if x.size >= 2 else np.zeros(table.shape[1])
    return np.minimum(slopes, 0.0)


def calibrate_embeddings(
    embeddings: np.ndarray,
    people: np.ndarray,
    *,
    probes_per_person: int = 10,
    draws: int = 64,
    seed: int = 0,
    source: dict | None = None,
) -> dict:
    """Calibrate from unit embeddings of held-out people (one row per photo).

    Every photo can be enrolled; up to probes_per_person photos of each person are probes
    (as strangers to everyone else, and as genuine probes against each other photo of their
    person, each probe photo weighing one), so that the few people with hundreds of photos
    do not decide the figures alone. Distances are squared L2, as everywhere in faceid.
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    people = np.asarray(people)
    if emb.ndim != 2 or emb.shape[0] != people.size:
        raise ValueError(f"embeddings {emb.shape} and people ({people.size}) do not match")
    rng = np.random.default_rng(seed)
    probes = []
    for person in np.unique(people):
        idx = np.flatnonzero(people == person)
        probes.extend(rng.permutation(idx)[:probes_per_person].tolist())
    probes = np.sort(np.array(probes, int))
    dist = pairwise_squared_l2(emb[probes], emb)
    genuine, weights = [], []
    for i, p in enumerate(probes):
        mates = np.flatnonzero((people == people[p]) & (np.arange(people.size) != p))
        if mates.size:
            genuine.append(dist[i, mates])
            weights.append(np.full(mates.size, 1.0 / mates.size))
    if not genuine:
        raise ValueError("calibration needs some people with two or more photos")
    return calibrate(
        dist,
        people[probes],
        people,
        np.concatenate(genuine),
        genuine_weights=np.concatenate(weights),
        probe_entries=probes,
        draws=draws,
        seed=seed,
        source={"probes_per_person": probes_per_person, **(source or {})},
    )


# --- reading a calibration ---------------------------------------------------------


def check(calibration: object) -> dict:
    """The calibration if it is well formed, else ValueError saying what is wrong."""
    c = calibration
    if not isinstance(c, dict) or c.get("format") != FORMAT:
        raise ValueError("not an open-set calibration")
    if c.get("version") != VERSION:
        raise ValueError(f"open-set calibration version {c.get('version')}, expected {VERSION}")
    try:
        sizes = np.asarray(c["sizes"], float)
        fpirs = np.asarray(c["fpirs"], float)
        table = np.asarray(c["thresholds"], float)
        slopes = np.asarray(c["slopes"], float)
        genuine = np.asarray(c["genuine"], float)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"open-set calibration is missing fields: {exc}") from None
    if (
        sizes.ndim != 1
        or sizes.size < 2
        or sizes[0] != 1
        or np.any(np.diff(sizes) <= 0)
        or fpirs.ndim != 1
        or fpirs.size < 2
        or np.any(np.diff(fpirs) <= 0)
        or table.shape != (sizes.size, fpirs.size)
        or slopes.shape != (fpirs.size,)
        or genuine.ndim != 1
        or genuine.size == 0
        or not all(np.all(np.isfinite(a)) for a in (table, slopes, genuine))
    ):
        raise ValueError("open-set calibration has inconsistent shapes or values")
    if "ratios" in c:  # calibrations made before the ratio test have none
        try:
            ratios = np.asarray(c["ratios"], float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"open-set calibration has a malformed ratio table: {exc}") from None
        if (
            ratios.shape != (sizes.size - 1, fpirs.size)
            or not np.all(np.isfinite(ratios))
            or np.any(ratios < 0)
            or np.any(ratios > 1)
        ):
            raise ValueError("open-set calibration has an inconsistent ratio table")
    if "genuine_ratios" in c:
        try:
            gr = np.asarray(c["genuine_ratios"], float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"open-set calibration has malformed genuine ratios: {exc}") from None
        if gr.ndim != 2 or gr.shape[0] != sizes.size - 1 or not np.all(np.isfinite(gr)):
            raise ValueError("open-set calibration has inconsistent genuine ratios")
    return c


def _interp_rows(logn: float, grid: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The table's row at log gallery size logn, each column interpolated over log sizes grid."""
    return np.array([np.interp(logn, grid, table[:, j]) for j in range(table.shape[1])])


def _row(c: dict, n_people: float) -> tuple[np.ndarray, bool]:
    """Thresholds at every stored FPIR for a gallery of n_people; and whether extrapolated."""
    sizes = np.asarray(c["sizes"], float)
    table = np.asarray(c["thresholds"], float)
    n = float(n_people)
    if n < 1:
        raise ValueError(f"a gallery holds at least one person, not {n_people}")
    logn, grid = math.log(n), np.log(sizes)
    if n <= sizes[-1]:
        row = _interp_rows(logn, grid, table)
        extrapolated = False
    else:
        row = table[-1] + np.asarray(c["slopes"], float) * (logn - grid[-1])
        extrapolated = True
    return np.maximum.accumulate(np.maximum(row, 0.0)), extrapolated


def _fpir_range(c: dict, fpir: float) -> float:
    fpirs = c["fpirs"]
    fpir = float(fpir)
    if not fpirs[0] <= fpir <= fpirs[-1]:
        raise ValueError(
            f"fpir must be within the calibrated range {fpirs[0]:g} to {fpirs[-1]:g}, not {fpir:g}"
        )
    return fpir


def threshold_for_fpir(calibration: dict, n_people: int, fpir: float = DEFAULT_FPIR) -> float:
    """The largest threshold giving at most `fpir` of strangers a name among n_people.

    Interpolated in log FPIR between the stored levels, and in log N (see the module's
    docstring for sizes past the calibrated ones).
    """
    c = check(calibration)
    fpir = _fpir_range(c, fpir)
    row, _ = _row(c, n_people)
    return float(np.interp(math.log(fpir), np.log(c["fpirs"]), row))


def _fpir_curve(c: dict, n_people: float, thresholds: np.ndarray) -> np.ndarray:
    """FPIR at each threshold: the inverse of the table's row, log-linear past its ends."""
    t = np.asarray(thresholds, float)
    if n_people < 1:
        return np.zeros_like(t)
    row, _ = _row(c, n_people)
    return _inverse(row, np.log(np.asarray(c["fpirs"], float)), t)


def _inverse(row: np.ndarray, logp: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The rate at each bound t of a row of bounds at log rates logp, log-linear past its ends."""
    row = row + np.arange(row.size) * 1e-9  # strictly increasing for the inverse
    out = np.interp(t, row, logp)
    lo_slope = (logp[1] - logp[0]) / (row[1] - row[0])
    hi_slope = (logp[-1] - logp[-2]) / (row[-1] - row[-2])
    out = np.where(t < row[0], logp[0] + (t - row[0]) * lo_slope, out)
    out = np.where(t > row[-1], logp[-1] + (t - row[-1]) * hi_slope, out)
    return np.exp(np.minimum(out, 0.0))


def fpir_at(calibration: dict, n_people: int, threshold: float) -> float:
    """Estimated share of strangers given a name at `threshold` among n_people."""
    c = check(calibration)
    return float(_fpir_curve(c, float(n_people), np.array([float(threshold)]))[0])


def _ratio_row(c: dict, n_people: float) -> tuple[np.ndarray, bool]:
    """Ratio bounds at every stored FPIR for a gallery of n_people (2 or more).

    Past the largest calibrated size the last row holds: a stranger's two closest people
    only get closer to each other in a larger crowd, so the bound stays on the safe side.
    """
    sizes = np.log(np.asarray(c["sizes"], float)[1:])
    table = np.asarray(c["ratios"], float)
    logn = math.log(float(n_people))
    row = _interp_rows(logn, sizes, table)
    return np.maximum.accumulate(row), bool(logn > sizes[-1])


def ratio_for_fpir(calibration: dict, n_people: int, fpir: float = DEFAULT_FPIR) -> float:
    """The largest ratio bound giving at most `fpir` of strangers a name among n_people.

    The ratio test (Lowe's, from image matching) names the closest person only when they
    are clearly closer than the next one: distance to the closest / distance to the second
    closest person. A stranger's two closest people tend to be about as far, so the bound
    holds strangers out with far fewer enrolled people missed than a bound on the distance
    alone, once the gallery holds more than a few dozen people.
    """
    c = check(calibration)
    if "ratios" not in c:
        raise ValueError("this calibration has no ratio table: recalibrate the model")
    if n_people < 2:
        raise ValueError("the ratio test needs at least two people in the gallery")
    fpir = _fpir_range(c, fpir)
    row, _ = _ratio_row(c, n_people)
    return float(np.interp(math.log(fpir), np.log(c["fpirs"]), row))


def fnir_ratio_at(calibration: dict, n_people: int, bound: float) -> float:
    """Estimated share of enrolled people's photos not named right at a ratio bound.

    A genuine probe at distance g from its own person is named when the closest of the
    n_people - 1 others lies beyond g / bound (and beyond g, so that it is also first).
    Calibrations made from embeddings measured that ratio for genuine probes in every
    drawn gallery (past the largest size the last row holds, which flatters a little);
    otherwise the stored genuine distances are weighed by the stranger curve at g / bound,
    taking the two distances as independent, which flatters more.
    """
    c = check(calibration)
    g = np.asarray(c["genuine"], float)
    bound = min(float(bound), 1.0)
    if bound <= 0:
        return 1.0
    if "genuine_ratios" in c:
        sizes = np.log(np.asarray(c["sizes"], float)[1:])
        table = np.asarray(c["genuine_ratios"], float)
        logn = min(math.log(max(float(n_people), 2.0)), sizes[-1])
        row = _interp_rows(logn, sizes, table)
        levels = (np.arange(row.size) + 0.5) / row.size
        row = np.maximum.accumulate(row) + np.arange(row.size) * 1e-12
        return float(1.0 - np.interp(bound, row, levels, left=0.0, right=1.0))
    beaten = _fpir_curve(c, float(n_people) - 1.0, g / bound)
    return float(1.0 - (1.0 - beaten).mean())


def fnir_at(calibration: dict, n_people: int, threshold: float) -> float:
    """Estimated share of enrolled people's photos not named right at `threshold`.

    A genuine probe is named right when its own person's photo is within the threshold and
    closer than every one of the n_people - 1 others: the stored genuine distances, each
    weighed by the chance that no impostor comes closer (the stranger curve at that
    distance), taking the two as independent.
    """
    c = check(calibration)
    g = np.asarray(c["genuine"], float)
    beaten = _fpir_curve(c, float(n_people) - 1.0, g)
    named = (g <= float(threshold)) * (1.0 - beaten)
    return float(1.0 - named.mean())


@dataclass
class Rule:
    """The identification threshold in force for a gallery, and why."""

    threshold: float  # the bound on the score: a squared distance, or a ratio of two
    kind: str  # "fpir" (calibrated open-set rule), "threshold" (given), "model" (no calibration)
    people: int | None = None
    fpir: float | None = None
    fnir: float | None = None  # estimated share of enrolled people missed
    extrapolated: bool = False  # the gallery is larger than any calibrated size
    warning: str | None = None
    score: str = "distance"  # "distance" to the closest person, or "ratio" (closest / next)

    def names(self, closest: float, second: float | None) -> bool:
        """Whether a probe whose closest person lies at `closest` (and the next person, if any,
        at `second`) is given that person's name."""
        if self.score == "ratio":
            # no second person in reach: the largest squared distance between unit vectors
            return float(ratio(closest, MAX_DISTANCE if second is None else second)) <= (
                self.threshold
            )
        return closest <= self.threshold

    @property
    def reason(self) -> str:
        if self.kind == "fpir":
            return f"FPIR {_pct(self.fpir)} for {self.people:,} people"
        if self.kind == "threshold":
            return "given"
        return "the model's identification threshold (the model has no open-set calibration)"

    def describe(self) -> str:
        """E.g. 'threshold 0.6200: FPIR 1 % for 496 people', or for the ratio test
        'ratio 0.5400 (closest / next person): FPIR 1 % for 496 people'."""
        if self.score == "ratio":
            return f"ratio {self.threshold:.4f} (closest / next person): {self.reason}"
        return f"threshold {self.threshold:.4f}: {self.reason}"

    def to_dict(self) -> dict:
        return {
            "threshold": round(self.threshold, 6),
            "score": self.score,
            "kind": self.kind,
            "reason": self.reason,
            "people": self.people,
            "fpir": self.fpir,
            "estimated_fnir": None if self.fnir is None else round(self.fnir, 4),
            "extrapolated": self.extrapolated,
            "warning": self.warning,
        }


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.3g} %"


def _best(c: dict, n_people: int, fpir: float) -> tuple[str, float, float, bool]:
    """The score (distance or ratio) whose bound for `fpir` misses the fewest enrolled people,
    as estimated by the calibration: (score, bound, estimated FNIR, extrapolated).

    A distance bound wins in small galleries, where the second closest person is one of
    very few and says little; the ratio test wins once a crowd sets the scale.
    """
    threshold = threshold_for_fpir(c, n_people, fpir)
    best = ("distance", threshold, fnir_at(c, n_people, threshold), _row(c, n_people)[1])
    if n_people >= 2 and "ratios" in c:
        bound = ratio_for_fpir(c, n_people, fpir)
        fnir = fnir_ratio_at(c, n_people, bound)
        if fnir < best[2]:
            best = ("ratio", bound, fnir, _ratio_row(c, n_people)[1])
    return best


def rule_for(calibration: dict, n_people: int, fpir: float = DEFAULT_FPIR) -> Rule:
    """The calibrated rule for a gallery of n_people at target fpir, with its warning.

    Of the two scores it can bound (the closest person's distance, or the ratio of the
    closest to the next person's), the rule takes the one estimated to name more of the
    enrolled people at the same share of strangers named.
    """
    score, threshold, fnir, extrapolated = _best(check(calibration), n_people, fpir)
    warning = None
    if fnir > FNIR_WARNING:
        limit = max_people(calibration, fpir)
        warning = (
            f"{n_people:,} people is more than this model can tell apart at FPIR {_pct(fpir)}: "
            f"an estimated {_pct(fnir)} of enrolled people's photos would not be named "
            f"(it keeps that under {_pct(FNIR_WARNING)} up to about {limit:,} people); "
            "accept more false names with a larger fpir, or use a stronger model"
        )
    return Rule(threshold, "fpir", int(n_people), float(fpir), fnir, extrapolated, warning, score)


def ratio_from(calibration: dict, fpir: float = DEFAULT_FPIR, limit: int = 100_000) -> int | None:
    """The smallest gallery for which the rule at `fpir` bounds the ratio rather than the
    distance (None when it never does up to `limit` people)."""
    c = check(calibration)
    n = 2
    while n <= limit:
        if _best(c, n, fpir)[0] == "ratio":
            return n
        n += 1 if n < 1000 else n // 100
    return None


def max_people(calibration: dict, fpir: float = DEFAULT_FPIR, fnir: float = FNIR_WARNING) -> int:
    """The largest gallery up to which the rule for `fpir` still names 1 - fnir of enrolled
    photos: the size before the estimated FNIR first passes `fnir`.

    The estimate is not monotone in N: where the rule turns from the distance to the ratio it
    can fall before rising again. It is interpolated between the calibration's grid sizes and
    extrapolated along a line past them, so stepping through the grid (then doubling) finds
    the first step that fails, and a bisection inside that step finds where. 0 when even one
    person is too many, capped at 10 million.
    """
    c = check(calibration)

    def ok(n: int) -> bool:
        return _best(c, n, fpir)[2] <= fnir

    if not ok(1):
        return 0
    cap = 10_000_000
    steps = sorted({int(n) for n in c["sizes"]} | {2**k for k in range(24)} | {cap})
    lo = 1
    for hi in (n for n in steps if 1 < n <= cap):
        if not ok(hi):
            break
        lo = hi
    else:
        return cap
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo
