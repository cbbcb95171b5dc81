"""Harrell's C, Uno's C, time-dependent AUC (IPCW) against hand-computed and brute-force values."""

from __future__ import annotations

import numpy as np
import pytest

from ehr_risk.evaluation.survival import ConcordancePlan, harrell_c, km_censoring_left, td_auc, uno_c


def _brute_c(t: np.ndarray, e: np.ndarray, r: np.ndarray, tau: float = np.inf, uno: bool = False) -> float:
    g = km_censoring_left(t, e, t)
    num = den = 0.0
    for i in range(t.size):
        if not e[i] or t[i] >= tau:
            continue
        w = 1 / g[i] ** 2 if uno else 1.0
        for j in range(t.size):
            if t[j] > t[i]:
                den += w
                num += w * ((r[i] > r[j]) + 0.5 * (r[i] == r[j]))
    return num / den


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    r = np.round(rng.random(n), 2)
    event_t = np.round(rng.exponential(1 / (0.3 + r)), 1)
    cens_t = np.round(rng.exponential(2.0, n), 1)
    return np.minimum(event_t, cens_t), event_t <= cens_t, r


def test_harrell_c_hand_example() -> None:
    # times 1..5; events at 1, 3, 4; censored at 2 and 5.
    t = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    e = np.array([True, False, True, True, False])
    r = np.array([0.9, 0.5, 0.7, 0.2, 0.1])
    # comparable pairs (i event, T_j > T_i): i=1: j=2,3,4,5 -> risks 0.9 > all: 4 concordant
    # i=3: j=4,5 -> 0.7 > 0.2, 0.1: 2 concordant; i=4: j=5 -> 0.2 > 0.1: 1 concordant. 7/7.
    assert harrell_c(t, e, r) == pytest.approx(1.0)
    r2 = np.array([0.9, 0.5, 0.1, 0.2, 0.1])  # i=3 vs j=4 discordant, vs j=5 tied
    assert harrell_c(t, e, r2) == pytest.approx((4 + 0.5 + 1) / 7)


def test_tied_times_are_not_comparable_like_lifelines() -> None:
    t = np.array([1.0, 1.0, 2.0])
    e = np.array([True, True, False])
    r = np.array([0.9, 0.1, 0.5])
    # only pairs (0,2) concordant and (1,2) discordant are comparable
    assert harrell_c(t, e, r) == pytest.approx(0.5)


def test_harrell_and_uno_match_brute_force_with_ties() -> None:
    t, e, r = _data(300, 1)
    assert harrell_c(t, e, r) == pytest.approx(_brute_c(t, e, r), abs=1e-12)
    assert uno_c(t, e, r, tau=1.5) == pytest.approx(_brute_c(t, e, r, 1.5, uno=True), abs=1e-10)


def test_td_auc_matches_brute_force_ipcw() -> None:
    t, e, r = _data(300, 2)
    tau = 1.0
    g = km_censoring_left(t, e, t)
    num = den = 0.0
    for i in np.flatnonzero((t <= tau) & e):
        for j in np.flatnonzero(t > tau):
            den += 1 / g[i]
            num += ((r[i] > r[j]) + 0.5 * (r[i] == r[j])) / g[i]
    assert td_auc(t, e, r, tau) == pytest.approx(num / den, abs=1e-12)


def test_km_censoring_hand_example() -> None:
    t = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
    e = np.array([True, False, True, False, True])
    # censorings at 2 (at risk 4) and 3 (at risk 2): G(2-) = 1, G(3-) = 3/4, G(4-) = 3/4 * 1/2
    got = km_censoring_left(t, e, np.array([1.0, 2.0, 2.5, 3.0, 4.0]))
    np.testing.assert_allclose(got, [1.0, 1.0, 0.75, 0.75, 0.375])


def test_weights_equal_replicated_subjects() -> None:
    t, e, r = _data(200, 3)
    counts = np.random.default_rng(0).poisson(1.0, (2, t.size)).astype(np.float32)
    plan = ConcordancePlan.build(t, e, r, tau=1.5)
    res = plan.concordance(counts)
    for b in range(2):
        rep = np.repeat(np.arange(t.size), counts[b].astype(int))
        assert res["harrell_c"][b] == pytest.approx(_brute_c(t[rep], e[rep], r[rep]), abs=1e-9)


def test_informative_risk_beats_noise() -> None:
    rng = np.random.default_rng(4)
    n = 5000
    r = rng.random(n)
    event_t = rng.exponential(1 / (0.05 + 0.5 * r))
    cens_t = rng.uniform(0, 10, n)
    t, e = np.minimum(event_t, cens_t), event_t <= cens_t
    assert harrell_c(t, e, r) > 0.65
    assert harrell_c(t, e, rng.random(n)) == pytest.approx(0.5, abs=0.03)
    assert td_auc(t, e, r, 2.0) > 0.65
