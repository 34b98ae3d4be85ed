"""Metrics on synthetic distances whose right answers are known by construction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faceid.evaluate import metrics as m


def _pairs(genuine, impostor):
    dist = np.array(list(genuine) + list(impostor), dtype=float)
    same = np.array([True] * len(genuine) + [False] * len(impostor))
    return dist, same


SEPARATED = _pairs([0.1, 0.2, 0.3], [1.0, 1.2, 1.5, 2.0])
INVERTED = _pairs([1.0, 1.2, 1.5], [0.1, 0.2, 0.3, 0.4])
TIED = _pairs([0.7, 0.7, 0.7], [0.7, 0.7])


def _brute_auc(dist, same):
    gen, imp = dist[same], dist[~same]
    wins = sum((g < i) + 0.5 * (g == i) for g, i in itertools.product(gen, imp))
    return wins / (len(gen) * len(imp))


# --- separated / inverted / tied ---------------------------------------------


def test_perfectly_separated():
    dist, same = SEPARATED
    assert m.roc_auc(dist, same) == 1.0
    assert m.eer(dist, same) == (0.0, 0.3)
    thr, acc = m.best_threshold(dist, same)
    assert acc == 1.0
    assert thr == pytest.approx(0.65)  # midway between 0.3 and 1.0
    assert m.accuracy_at(dist, same, thr) == 1.0
    assert m.tar_at_far(dist, same, 0.0) == (1.0, 0.3)
    assert m.kfold_accuracy(dist, same, folds=np.arange(7) % 2)["mean"] == 1.0


def test_perfectly_inverted():
    dist, same = INVERTED
    assert m.roc_auc(dist, same) == 0.0
    assert m.eer(dist, same)[0] == 1.0
    thr, acc = m.best_threshold(dist, same)
    assert acc == pytest.approx(4 / 7)  # accept nothing: every impostor right
    assert thr < 0.1
    assert m.tar_at_far(dist, same, 0.0)[0] == 0.0


def test_all_equal_distances_are_a_coin_toss():
    dist, same = TIED
    assert m.roc_auc(dist, same) == 0.5
    far, tar, thr = m.roc(dist, same)
    np.testing.assert_array_equal(far, [0.0, 1.0])  # the tie moves as one block
    np.testing.assert_array_equal(tar, [0.0, 1.0])
    assert thr[0] < 0.7 and thr[1] == 0.7
    rate, eer_thr = m.eer(dist, same)
    assert rate == pytest.approx(0.5)
    assert eer_thr == pytest.approx(0.7)
    thr, acc = m.best_threshold(dist, same)
    assert acc == pytest.approx(0.6) and thr > 0.7  # accept all: 3 of 5 right
    assert m.tar_at_far(dist, same, 0.5) == (0.0, pytest.approx(0.7))


def test_roc_ties_and_start_point():
    dist = np.array([0.1, 0.1, 0.2, 0.3])
    same = np.array([1, 0, 1, 0])
    far, tar, thr = m.roc(dist, same)
    np.testing.assert_array_equal(far, [0.0, 0.5, 0.5, 1.0])
    np.testing.assert_array_equal(tar, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(thr[1:], [0.1, 0.2, 0.3])
    assert thr[0] < 0.1
    assert np.all(np.diff(thr) > 0)
    assert m.roc_auc(dist, same) == pytest.approx(0.625)  # (0.5 + 1 + 0 + 1) / 4
    assert m.roc_auc(dist, same) == pytest.approx(_brute_auc(dist, same.astype(bool)))


def test_eer_interpolates_between_roc_points():
    dist, same = _pairs([0.1, 0.3], [0.2, 0.4])
    # points: thr<0.1 (0,0); 0.1 (far 0, tar .5); 0.2 (far .5, tar .5); 0.3 (.5, 1); 0.4 (1, 1)
    # FRR - FAR at 0.2 is 0.5 - 0.5 = 0 -> EER 0.5 exactly at threshold 0.2
    assert m.eer(dist, same) == (0.5, 0.2)
    dist, same = _pairs([0.1, 0.4], [0.2, 0.3])
    # diff: 1, 0.5 (0.1), 0.0 (0.2: far .5, frr .5)
    assert m.eer(dist, same) == (0.5, 0.2)
    dist, same = _pairs([0.1], [0.2, 0.3, 0.4])
    # diff: 1 then 0 at 0.1 (far 0, frr 0)
    assert m.eer(dist, same) == (0.0, 0.1)
    dist, same = _pairs([0.2, 0.4], [0.1, 0.3])
    # diff: 1 (start), 0.5 (0.1: far .5, frr 1 -> .5), then 0.2: far .5 frr .5 -> 0
    assert m.eer(dist, same) == (0.5, 0.2)
    dist, same = _pairs([0.3], [0.1, 0.2])
    # diff: 1, 0.5 (0.1), 0.0 (0.2: frr 1, far 1) -> EER 1 exactly at 0.2
    assert m.eer(dist, same) == (1.0, 0.2)
    dist, same = _pairs([0.2, 0.3, 0.4], [0.1, 0.5])
    # start 1; 0.1: frr 1, far .5 -> .5; 0.2: frr 2/3, far .5 -> 1/6; 0.3: frr 1/3 -> -1/6
    rate, thr = m.eer(dist, same)
    assert rate == pytest.approx(0.5)  # halfway: far stays .5
    assert thr == pytest.approx(0.25)


# --- operating points --------------------------------------------------------


TAR_FAR = _pairs(
    [0.1, 0.3, 0.5, 0.7],
    [0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4],
)


@pytest.mark.parametrize(
    ("far", "tar", "thr"),
    [
        (0.0, 0.25, 0.1),  # no impostor may pass: stop below 0.2
        (0.1, 0.5, 0.3),  # one impostor (0.2) may pass: stop below 0.4
        (0.15, 0.5, 0.3),  # 1.5 impostors rounds down to one
        (0.25, 0.75, 0.5),
        (0.5, 1.0, 0.9),  # five of ten may pass; 1.0 would be the sixth
        (1.0, 1.0, 1.4),
    ],
)
def test_tar_at_far_hand_computed(far, tar, thr):
    dist, same = TAR_FAR
    assert m.tar_at_far(dist, same, far) == (tar, thr)
    assert m.threshold_at_far(dist, same, far) == thr


def test_threshold_at_far_counts_exactly():
    # 0.29 * 100 is 28.999999999999996 in floating point; 29 impostors must still pass
    imp = np.linspace(0.01, 1.0, 100)
    dist, same = _pairs([0.0], imp)
    thr = m.threshold_at_far(dist, same, 0.29)
    assert thr == imp[28]
    assert np.sum(imp <= thr) == 29


def test_threshold_at_far_below_everything():
    dist, same = _pairs([0.5], [0.1, 0.9])
    thr = m.threshold_at_far(dist, same, 0.0)
    assert thr < 0.1
    assert m.tar_at_far(dist, same, 0.0) == (0.0, thr)


def test_accuracy_at():
    dist, same = _pairs([0.1, 0.3, 0.5], [0.2, 0.6])
    assert m.accuracy_at(dist, same, 0.3) == pytest.approx(3 / 5)  # 0.1 0.3 ok, 0.6 ok
    assert m.accuracy_at(dist, same, 0.55) == pytest.approx(4 / 5)
    assert m.accuracy_at(dist, same, 0.5) == pytest.approx(4 / 5)  # <= accepts 0.5


def test_best_threshold_prefers_smallest_among_equals():
    dist, same = _pairs([0.2, 0.6], [0.4, 0.8])
    # accept {0.2}: 3/4; accept {0.2,0.4,0.6}: 3/4 -> the smaller one wins
    thr, acc = m.best_threshold(dist, same)
    assert acc == 0.75
    assert thr == pytest.approx(0.3)


def test_best_threshold_single_class():
    dist = np.array([0.2, 0.4])
    thr, acc = m.best_threshold(dist, np.array([True, True]))
    assert acc == 1.0 and thr > 0.4
    thr, acc = m.best_threshold(dist, np.array([False, False]))
    assert acc == 1.0 and thr < 0.2


# --- k-fold ------------------------------------------------------------------


# fold 0 is perfectly separable (threshold 0.425); fold 1 is alternating (threshold 0.3)
KFOLD_DIST = np.array([0.1, 0.5, 0.35, 0.7, 0.2, 0.4, 0.6, 0.8])
KFOLD_SAME = np.array([1, 0, 1, 0, 1, 0, 1, 0], dtype=bool)


def test_kfold_accuracy_hand_computed():
    res = m.kfold_accuracy(KFOLD_DIST, KFOLD_SAME, folds=2)
    # fold 0 scored at 0.3 (best on fold 1): 0.35 rejected -> 3/4
    # fold 1 scored at 0.425 (best on fold 0): 0.4 accepted, 0.6 rejected -> 2/4
    assert res["per_fold"] == [0.75, 0.5]
    assert res["thresholds"] == pytest.approx([0.3, 0.425])
    assert res["mean"] == pytest.approx(0.625)
    assert res["std"] == pytest.approx(0.125)
    assert res["folds"] == [0, 1]


def test_kfold_accuracy_fold_ids_any_order():
    ids = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    perm = np.array([7, 0, 3, 5, 1, 6, 2, 4])
    res = m.kfold_accuracy(KFOLD_DIST[perm], KFOLD_SAME[perm], folds=ids[perm])
    assert res["per_fold"] == [0.75, 0.5]


def test_kfold_int_split_is_contiguous():
    dist = np.arange(10) / 10
    same = dist < 0.45
    res = m.kfold_accuracy(dist, same, folds=5)
    assert len(res["per_fold"]) == 5
    assert res["mean"] == 1.0


def test_kfold_single_class_is_defined():
    # all genuine: each fold's threshold is "accept all" just above the other fold's
    # largest distance (0.45, then 0.25), so only the first fold scores
    res = m.kfold_accuracy(np.array([0.1, 0.2, 0.3, 0.4]), np.ones(4, bool), folds=2)
    assert res["per_fold"] == [1.0, 0.0]
    assert res["thresholds"] == pytest.approx([0.45, 0.25])


# --- identification ----------------------------------------------------------


GALLERY = np.array(["a", "a", "b", "c"])
PROBES = np.array(["a", "b", "c", "z"])
MATRIX = np.array(
    [
        [0.5, 0.2, 0.3, 0.9],  # a: best image of a (0.2) beats b 0.3 -> rank 1
        [0.1, 0.6, 0.4, 0.2],  # b: a 0.1, c 0.2 ahead -> rank 3
        [0.3, 0.8, 0.5, 0.4],  # c: a 0.3 ahead -> rank 2
        [0.1, 0.1, 0.1, 0.1],  # z: not enrolled -> excluded
    ]
)


def test_true_ranks_and_cmc():
    np.testing.assert_array_equal(m.true_ranks(MATRIX, PROBES, GALLERY), [1, 3, 2, 0])
    np.testing.assert_allclose(m.cmc(MATRIX, PROBES, GALLERY, max_rank=4), [1 / 3, 2 / 3, 1, 1])
    assert m.cmc(MATRIX, PROBES, GALLERY).shape == (10,)


def test_cmc_ties_count_against_the_probe():
    matrix = np.full((1, 3), 0.5)
    assert m.true_ranks(matrix, ["b"], ["a", "b", "c"]).tolist() == [3]
    np.testing.assert_array_equal(m.cmc(matrix, ["b"], ["a", "b", "c"], max_rank=3), [0, 0, 1])


def test_cmc_integer_labels():
    matrix = np.array([[0.1, 0.9], [0.9, 0.1]])
    np.testing.assert_array_equal(m.cmc(matrix, [7, 3], [3, 7], max_rank=2), [0.0, 1.0])


GEN_BEST = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
GEN_OK = np.array([True, True, False, True, True])
IMP_BEST = np.array([0.25, 0.45, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3])


@pytest.mark.parametrize(
    ("far", "dir_", "thr"),
    [
        (0.0, 0.4, 0.2),  # stop below impostor 0.25
        (0.1, 0.6, 0.4),  # 0.25 may pass, 0.45 may not; 0.3 is a wrong match
        (0.2, 0.8, 0.5),
        (1.0, 0.8, 1.3),
    ],
)
def test_dir_at_far_hand_computed(far, dir_, thr):
    assert m.dir_at_far(GEN_BEST, GEN_OK, IMP_BEST, far) == (pytest.approx(dir_), thr)


def test_dir_at_far_nothing_passes():
    rate, thr = m.dir_at_far([0.5], [True], [0.1], 0.0)
    assert rate == 0.0 and thr < 0.1


def test_open_set_at():
    res = m.open_set_at(GEN_BEST, GEN_OK, IMP_BEST, 0.4)
    assert res == {"genuine_identified": pytest.approx(0.6), "impostor_rejected": 0.9}
    res = m.open_set_at(GEN_BEST, GEN_OK, [], 0.4)
    assert res["impostor_rejected"] is None
    res = m.open_set_at([], [], IMP_BEST, 0.4)
    assert res["genuine_identified"] is None


def test_det_is_fpir_against_one_minus_dir_at_every_threshold():
    fpir, fnir, thr = m.det(GEN_BEST, GEN_OK, IMP_BEST)
    assert (fpir[0], fnir[0]) == (0.0, 1.0) and thr[0] < 0.1
    assert (fpir[-1], fnir[-1]) == (1.0, pytest.approx(0.2))  # 0.3 is a wrong match: never named
    assert np.all(np.diff(fpir) >= 0) and np.all(np.diff(fnir) <= 0)
    for f, n, t in zip(fpir, fnir, thr):
        res = m.open_set_at(GEN_BEST, GEN_OK, IMP_BEST, t)
        assert f == pytest.approx(1 - res["impostor_rejected"])
        assert n == pytest.approx(1 - res["genuine_identified"])
    k = list(thr).index(0.4)  # hand computed: 0.25 passes; 0.1, 0.2, 0.4 named right
    assert (fpir[k], fnir[k]) == (0.1, pytest.approx(0.4))
    with pytest.raises(ValueError, match="both"):
        m.det(GEN_BEST, GEN_OK, [])


# --- validation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("dist", "same", "message"),
    [
        ([0.1, 0.2], [True], "has 1 entries"),
        ([], [], "empty"),
        ([0.1, np.nan], [True, False], "NaN"),
        ([[0.1, 0.2]], [True, False], "one-dimensional"),
        ([0.1, 0.2], [2, 0], "booleans or 0/1"),
    ],
)
def test_bad_inputs(dist, same, message):
    for fn in (m.roc, m.roc_auc, m.eer, m.best_threshold):
        with pytest.raises(ValueError, match=message):
            fn(dist, same)
    with pytest.raises(ValueError, match=message):
        m.accuracy_at(dist, same, 0.5)


@pytest.mark.parametrize("same", [[True, True], [False, False]])
def test_single_class_is_refused_where_rates_are_undefined(same):
    for fn in (m.roc, m.roc_auc, m.eer):
        with pytest.raises(ValueError, match="undefined"):
            fn([0.1, 0.2], same)
    with pytest.raises(ValueError, match="undefined"):
        m.tar_at_far([0.1, 0.2], same, 0.1)


def test_other_validation():
    dist, same = SEPARATED
    with pytest.raises(ValueError, match="far must be within"):
        m.tar_at_far(dist, same, 1.5)
    with pytest.raises(ValueError, match="at least two folds"):
        m.kfold_accuracy(dist, same, folds=np.zeros(7))
    with pytest.raises(ValueError, match="number of folds"):
        m.kfold_accuracy(dist, same, folds=1)
    with pytest.raises(ValueError, match="one fold id per pair"):
        m.kfold_accuracy(dist, same, folds=np.zeros(3))
    with pytest.raises(ValueError, match="no probe identity is enrolled"):
        m.cmc(MATRIX[3:], ["z"], GALLERY)
    with pytest.raises(ValueError, match="columns"):
        m.cmc(MATRIX, PROBES, GALLERY[:3])
    with pytest.raises(ValueError, match="max_rank"):
        m.cmc(MATRIX, PROBES, GALLERY, max_rank=0)
    with pytest.raises(ValueError, match="no impostor probes"):
        m.dir_at_far(GEN_BEST, GEN_OK, [], 0.1)
    with pytest.raises(ValueError, match="no genuine probes"):
        m.dir_at_far([], [], IMP_BEST, 0.1)
    with pytest.raises(ValueError, match="genuine_correct has"):
        m.dir_at_far(GEN_BEST, GEN_OK[:2], IMP_BEST, 0.1)
    with pytest.raises(ValueError, match="no genuine and no impostor"):
        m.open_set_at([], [], [], 0.1)


# --- properties --------------------------------------------------------------


# few distinct values so that ties are common
_values = st.integers(min_value=0, max_value=8).map(lambda k: k / 2.0)
_labelled = st.lists(st.tuples(_values, st.booleans()), min_size=2, max_size=30).filter(
    lambda xs: 0 < sum(s for _, s in xs) < len(xs)
)


@settings(max_examples=200, deadline=None)
@given(_labelled)
def test_auc_is_mann_whitney(pairs):
    dist = np.array([d for d, _ in pairs])
    same = np.array([s for _, s in pairs])
    auc = m.roc_auc(dist, same)
    assert auc == pytest.approx(_brute_auc(dist, same), abs=1e-12)
    far, tar, _ = m.roc(dist, same)
    trapezoid = float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2))
    assert auc == pytest.approx(trapezoid, abs=1e-12)
    assert far[0] == tar[0] == 0.0 and far[-1] == tar[-1] == 1.0


@settings(max_examples=100, deadline=None)
@given(_labelled, st.sampled_from([0.0, 0.01, 0.1, 0.3, 1.0]))
def test_operating_points_are_consistent(pairs, far):
    dist = np.array([d for d, _ in pairs])
    same = np.array([s for _, s in pairs])
    tar, thr = m.tar_at_far(dist, same, far)
    assert np.mean(dist[~same] <= thr) <= far + 1e-12
    assert tar == np.mean(dist[same] <= thr)
    bthr, acc = m.best_threshold(dist, same)
    assert acc == pytest.approx(m.accuracy_at(dist, same, bthr))
    assert acc >= max(same.mean(), 1 - same.mean()) - 1e-12
    rate, _ = m.eer(dist, same)
    assert 0.0 <= rate <= 1.0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(_values, st.booleans()), min_size=4, max_size=40),
    st.integers(min_value=2, max_value=4),
)
def test_kfold_accuracy_in_unit_interval(pairs, k):
    dist = np.array([d for d, _ in pairs])
    same = np.array([s for _, s in pairs])
    res = m.kfold_accuracy(dist, same, folds=k)
    assert 0.0 <= res["mean"] <= 1.0
    assert all(0.0 <= a <= 1.0 for a in res["per_fold"])
    assert len(res["per_fold"]) == len(res["thresholds"]) == k
