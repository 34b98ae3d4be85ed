"""Open-set calibration on synthetic distances whose answers are known analytically.

With impostor distances iid with CDF F, the closest of N has CDF 1 - (1 - F)^N, so the
threshold that names a share p of strangers is F^-1(1 - (1 - p)^(1/N)).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from faceid import openset


def _iid(sample, probes: int = 2000, entries: int = 600, seed: int = 0):
    """A probes x entries matrix of iid distances; every entry its own person, no probe enrolled."""
    rng = np.random.default_rng(seed)
    dist = sample(rng, (probes, entries))
    return dist, np.arange(probes) + entries, np.arange(entries)


def _uniform(rng, shape):
    return rng.uniform(0.0, 4.0, shape)


def _uniform_threshold(n: int, p: float) -> float:  # F(t) = t / 4
    return 4.0 * (1.0 - (1.0 - p) ** (1.0 / n))


K = 5.0  # exponential lower tail: F(t) = exp(K (t - 4)) on t <= 4


def _exp_tail(rng, shape):
    return 4.0 + np.log(rng.random(shape)) / K


def _exp_tail_cdf(t):
    return np.exp(K * (np.minimum(t, 4.0) - 4.0))


def _exp_tail_threshold(n: int, p: float) -> float:
    return 4.0 + math.log(1.0 - (1.0 - p) ** (1.0 / n)) / K


GENUINE = np.linspace(0.0, 1.0, 1001)  # uniform on [0, 1]


@pytest.fixture(scope="module")
def uniform_cal() -> dict:
    dist, probes, entries = _iid(_uniform)
    return openset.calibrate(dist, probes, entries, GENUINE, draws=48)


@pytest.fixture(scope="module")
def tail_cal() -> dict:
    dist, probes, entries = _iid(_exp_tail, entries=400)
    return openset.calibrate(dist, probes, entries, GENUINE, draws=48)


@pytest.mark.parametrize("n", [1, 10, 100, 500])
@pytest.mark.parametrize("p", [0.01, 0.1, 0.5])
def test_threshold_names_the_target_share_of_iid_strangers(uniform_cal, n, p):
    t = openset.threshold_for_fpir(uniform_cal, n, p)
    assert t == pytest.approx(_uniform_threshold(n, p), rel=0.25)
    achieved = 1.0 - (1.0 - t / 4.0) ** n  # the exact FPIR of that threshold
    assert 0.7 * p <= achieved <= 1.35 * p


def test_thresholds_tighten_as_the_gallery_grows_and_loosen_with_the_target(uniform_cal):
    sizes = [1, 3, 10, 30, 100, 300, 599]
    t = [openset.threshold_for_fpir(uniform_cal, n, 0.01) for n in sizes]
    assert all(a > b for a, b in zip(t, t[1:]))
    rates = [0.001, 0.01, 0.1, 0.5]
    t = [openset.threshold_for_fpir(uniform_cal, 100, p) for p in rates]
    assert all(a < b for a, b in zip(t, t[1:]))


@pytest.mark.parametrize("n", [2000, 5000, 20000])
def test_larger_galleries_than_calibrated_are_extrapolated_in_log_n(tail_cal, n):
    # Calibrated up to 400 people; with an exponential tail the threshold is linear in ln N.
    assert tail_cal["sizes"][-1] == 400
    t = openset.threshold_for_fpir(tail_cal, n, 0.01)
    assert t == pytest.approx(_exp_tail_threshold(n, 0.01), abs=0.06)
    achieved = 1.0 - (1.0 - _exp_tail_cdf(t)) ** n
    assert 0.6 * 0.01 <= achieved <= 1.5 * 0.01
    assert openset.rule_for(tail_cal, n, 0.01).extrapolated
    assert not openset.rule_for(tail_cal, 400, 0.01).extrapolated


def test_strangers_of_unequal_difficulty_are_averaged_not_pooled():
    # 5 % of the probes are look-alikes, close to everyone (distances U(0, 0.02)); the rest
    # U(0, 4). The FPIR at a threshold is the mean of each group's 1 - (1 - F_i)^N; pooling
    # every distance into one iid F would overstate it several times over.
    dist, probes, entries = _iid(_uniform, probes=2000, entries=500, seed=1)
    dist[:100] *= 0.02 / 4.0
    cal = openset.calibrate(dist, probes, entries, GENUINE, draws=48)

    def shares(t: float) -> tuple[float, float]:
        return min(t / 0.02, 1.0), t / 4.0

    for n in (20, 200):
        t = openset.threshold_for_fpir(cal, n, 0.1)
        near, far = shares(t)
        achieved = 0.05 * (1 - (1 - near) ** n) + 0.95 * (1 - (1 - far) ** n)
        assert 0.75 * 0.1 <= achieved <= 1.3 * 0.1
        pooled = 1 - (1 - (0.05 * near + 0.95 * far)) ** n
        assert pooled > 3 * achieved  # the naive iid model would be far off here


def test_a_probe_is_never_compared_with_its_own_person():
    # Three people with two photos each; every photo is a probe. Own-person distances are 0
    # and impostors 1: a gallery of the other two people never yields 0.
    people = np.array([0, 0, 1, 1, 2, 2])
    dist = np.where(people[:, None] == people[None, :], 0.0, 1.0)
    cal = openset.calibrate(dist, people, people, np.array([0.0]), draws=8)
    assert cal["sizes"] == [1, 2]
    assert np.allclose(cal["thresholds"], 1.0)


def test_fpir_at_inverts_threshold_for_fpir(uniform_cal, tail_cal):
    cases = [(uniform_cal, n, p) for n in (1, 50, 599) for p in (0.001, 0.01, 0.2)]
    for cal, n, p in cases + [(tail_cal, 3000, 0.01), (tail_cal, 3000, 0.2)]:
        t = openset.threshold_for_fpir(cal, n, p)
        assert openset.fpir_at(cal, n, t) == pytest.approx(p, rel=1e-3)


def test_fnir_matches_the_analytic_share_of_genuine_probes_missed(uniform_cal):
    # Genuine distance g ~ U(0, 1), impostors iid U(0, 4): a genuine probe is named right when
    # g <= t and all N - 1 impostors are farther: integral_0^t (1 - x/4)^(N-1) dx.
    for n, t in ((1, 0.5), (10, 0.5), (100, 0.3), (100, 0.9)):
        named = 4.0 / n * (1.0 - (1.0 - t / 4.0) ** n)
        assert openset.fnir_at(uniform_cal, n, t) == pytest.approx(1.0 - named, abs=0.02)


def test_rule_warns_when_the_gallery_is_too_large_to_name_most_people():
    # Genuine distances U(0, 0.002) against impostors U(0, 4): the threshold for FPIR 1 %,
    # about 0.04 / N, passes the genuine median near N = 40.
    dist, probes, entries = _iid(_uniform, probes=1000, entries=300)
    uniform_cal = openset.calibrate(dist, probes, entries, GENUINE * 0.002, draws=16)
    small = openset.rule_for(uniform_cal, 5, 0.01)
    assert small.warning is None and small.fnir < 0.5
    limit = openset.max_people(uniform_cal, 0.01)
    assert 25 < limit < 60
    big = openset.rule_for(uniform_cal, limit * 2, 0.01)
    assert big.fnir > 0.5
    assert big.warning and f"{limit:,} people" in big.warning
    assert openset.rule_for(uniform_cal, limit, 0.01).fnir <= 0.5


def test_rule_says_the_threshold_and_why(uniform_cal):
    rule = openset.rule_for(uniform_cal, 1, 0.01)  # one person: no next one, a distance
    assert rule.describe() == f"threshold {rule.threshold:.4f}: FPIR 1 % for 1 people"
    assert rule.to_dict()["fpir"] == 0.01 and rule.to_dict()["people"] == 1
    assert rule.to_dict()["score"] == "distance"
    ratio = dataclasses.replace(rule, score="ratio", threshold=0.5, people=496)
    assert ratio.describe() == "ratio 0.5000 (closest / next person): FPIR 1 % for 496 people"


# --- the ratio test -------------------------------------------------------------------
# For iid impostor distances U(0, 4) the closest over the second closest of N >= 2 is
# uniform on (0, 1) whatever N (given the second, the first is uniform below it), so the
# ratio bound that names a share p of strangers is p itself.


@pytest.mark.parametrize("n", [2, 10, 100, 599])
@pytest.mark.parametrize("p", [0.01, 0.1, 0.5])
def test_ratio_bound_names_the_target_share_of_iid_strangers(uniform_cal, n, p):
    assert openset.ratio_for_fpir(uniform_cal, n, p) == pytest.approx(p, rel=0.2, abs=0.002)


def test_ratio_bound_holds_past_the_largest_calibrated_gallery(uniform_cal):
    largest = uniform_cal["sizes"][-1]
    at_largest = openset.ratio_for_fpir(uniform_cal, largest, 0.01)
    assert openset.ratio_for_fpir(uniform_cal, 100 * largest, 0.01) == at_largest


def test_ratio_fnir_matches_the_analytic_share_of_genuine_probes_missed(uniform_cal):
    # g ~ U(0, 1) and impostors U(0, 4): named when all N - 1 impostors lie beyond g / r,
    # integral_0^1 (1 - g / 4r)^(N-1) dg for 4r >= 1.
    for n, r in ((2, 0.5), (10, 0.5), (10, 0.9)):
        named = 4 * r / n * (1 - (1 - 1 / (4 * r)) ** n)
        assert openset.fnir_ratio_at(uniform_cal, n, r) == pytest.approx(1 - named, abs=0.02)


def test_ratio_fnir_is_measured_on_genuine_probes_when_the_probes_are_enrolled_photos():
    # 300 people with two photos each, every photo a probe; a photo's mate lies at 0.5 and
    # everyone else iid U(0, 4). A genuine probe is named at bound r when the closest of the
    # n - 1 others lies beyond 0.5 / r: (1 - 0.125 / r)^(n - 1).
    rng = np.random.default_rng(5)
    people = np.repeat(np.arange(300), 2)
    dist = rng.uniform(0.0, 4.0, (600, 600))
    dist[people[:, None] == people[None, :]] = 0.5
    dist[np.arange(600), np.arange(600)] = 0.0
    cal = openset.calibrate(
        dist, people, people, np.array([0.5]), probe_entries=np.arange(600), draws=16
    )
    assert "genuine_ratios" in cal
    for n, r in ((2, 0.5), (10, 0.5), (50, 0.9)):
        expected = 1.0 - (1.0 - 0.125 / r) ** (n - 1)
        assert openset.fnir_ratio_at(cal, n, r) == pytest.approx(expected, abs=0.03)
    with pytest.raises(ValueError, match="own person"):
        openset.calibrate(
            dist, people, people, np.array([0.5]), probe_entries=np.roll(np.arange(600), 2), draws=2
        )


def _crowd_cal(genuine_scale: float) -> dict:
    """Strangers whose distances to everyone share a per-probe scale (a blurred or turned
    photo is far from every face, a bland one near many): what a distance bound cannot
    see and a ratio can. Scales log-uniform over 0.5 to 2, distances scale x U(1, 2)."""
    rng = np.random.default_rng(3)
    scale = np.exp(rng.uniform(np.log(0.5), np.log(2.0), (1500, 1)))
    dist = scale * rng.uniform(1.0, 2.0, (1500, 400))
    genuine = np.linspace(0.0, genuine_scale, 101)
    return openset.calibrate(dist, np.arange(1500) + 400, np.arange(400), genuine, draws=16)


def test_the_rule_takes_the_ratio_in_a_crowd_and_the_distance_alone_for_one_person():
    cal = _crowd_cal(1.0)
    assert openset.rule_for(cal, 1, 0.01).score == "distance"
    crowd = openset.rule_for(cal, 300, 0.01)
    assert crowd.score == "ratio"
    assert crowd.threshold == openset.ratio_for_fpir(cal, 300, 0.01)
    distance = openset.threshold_for_fpir(cal, 300, 0.01)
    assert crowd.fnir == openset.fnir_ratio_at(cal, 300, crowd.threshold)
    assert crowd.fnir < openset.fnir_at(cal, 300, distance)
    switch = openset.ratio_from(cal, 0.01)
    assert 2 <= switch <= 300
    assert openset.rule_for(cal, switch, 0.01).score == "ratio"
    assert switch == 2 or openset.rule_for(cal, switch - 1, 0.01).score == "distance"


def test_rule_names_by_its_own_score():
    by_distance = openset.Rule(0.5, "fpir", 10, 0.01, score="distance")
    assert by_distance.names(0.4, 0.41) and not by_distance.names(0.6, 3.0)
    by_ratio = openset.Rule(0.5, "fpir", 10, 0.01, score="ratio")
    assert by_ratio.names(0.6, 1.3) and not by_ratio.names(0.4, 0.41)
    assert by_ratio.names(1.9, None) and not by_ratio.names(2.1, None)  # next: 4.0 at most
    assert not by_ratio.names(0.0, 0.0)  # two people at once: undecided


def test_calibrations_without_a_ratio_table_keep_the_distance_rule(uniform_cal):
    old = {k: v for k, v in uniform_cal.items() if k != "ratios"}
    rule = openset.rule_for(old, 496, 0.01)
    assert rule.score == "distance"
    assert rule.threshold == openset.threshold_for_fpir(uniform_cal, 496, 0.01)
    with pytest.raises(ValueError, match="no ratio table"):
        openset.ratio_for_fpir(old, 496, 0.01)


def test_calibration_is_json_and_survives_a_round_trip(uniform_cal):
    again = json.loads(json.dumps(uniform_cal))
    assert openset.threshold_for_fpir(again, 123, 0.01) == openset.threshold_for_fpir(
        uniform_cal, 123, 0.01
    )
    assert len(json.dumps(uniform_cal)) < 20_000


def test_calibrate_embeddings_uses_every_photo_and_caps_probes_per_person():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 16))
    people = np.repeat(np.arange(40), 3)
    people[:30] = 0  # one person with 30 photos
    emb = centres[people] + 0.3 * rng.normal(size=(people.size, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cal = openset.calibrate_embeddings(emb, people, probes_per_person=5, draws=4)
    n_people = np.unique(people).size
    assert cal["source"]["people"] == n_people and cal["source"]["photos"] == people.size
    assert cal["source"]["probes"] == sum(min(5, (people == p).sum()) for p in np.unique(people))
    assert cal["sizes"][-1] == n_people - 1
    assert max(cal["genuine"]) < min(cal["thresholds"][0][-4:])  # same person: closer
    assert len(cal["genuine_ratios"]) == len(cal["sizes"]) - 1  # measured, not modelled


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"format": "faceid-openset", "version": 99},
        {"format": "faceid-openset", "version": 1, "sizes": [1, 2]},
        "ratio above 1",
    ],
)
def test_malformed_calibrations_are_refused_with_a_reason(bad, uniform_cal):
    if bad == "ratio above 1":
        bad = {**uniform_cal, "ratios": (np.asarray(uniform_cal["ratios"]) + 1.0).tolist()}
    with pytest.raises(ValueError):
        openset.check(bad)


def test_fpir_outside_the_calibrated_range_and_empty_galleries_are_refused(uniform_cal):
    with pytest.raises(ValueError, match="calibrated range"):
        openset.threshold_for_fpir(uniform_cal, 10, 1e-6)
    with pytest.raises(ValueError, match="at least one person"):
        openset.threshold_for_fpir(uniform_cal, 0, 0.01)
