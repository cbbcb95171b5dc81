"""Comparisons with a clinical score against hand-computed values: categorical NRI, reclassification
table, decision-curve net benefit."""

from __future__ import annotations

import numpy as np
import pytest

from ehr_risk.evaluation.compare import (
    NRIPlan,
    net_benefit,
    reclassification_table,
    risk_category,
    treat_all,
)

THRESHOLDS = (0.05, 0.075, 0.10, 0.20)
# Categories: <5%: 0, 5-7.5%: 1, 7.5-10%: 2, 10-20%: 3, >=20%: 4.
Y = np.array([1, 1, 1, 0, 0, 0], dtype=float)
MODEL = np.array([0.25, 0.25, 0.03, 0.04, 0.15, 0.03])  # categories 4, 4, 0, 0, 3, 0
SCORE = np.array([0.12, 0.08, 0.06, 0.09, 0.12, 0.04])  # categories 3, 2, 1, 2, 3, 0


def test_risk_categories_move_up_at_the_threshold() -> None:
    got = risk_category(np.array([0.0, 0.0499, 0.05, 0.075, 0.0999, 0.1, 0.2, 0.9]), THRESHOLDS)
    np.testing.assert_array_equal(got, [0, 0, 1, 2, 2, 3, 4, 4])


def test_categorical_nri_hand_computed() -> None:
    # events: up, up, down -> (2 - 1) / 3; non-events: down, same, same -> (1 - 0) / 3
    plan = NRIPlan.build(Y, MODEL, SCORE, np.arange(6), THRESHOLDS)
    res = plan.compute(np.ones((1, 6)))
    assert res["nri_events"][0] == pytest.approx(1 / 3)
    assert res["nri_nonevents"][0] == pytest.approx(1 / 3)
    assert res["nri"][0] == pytest.approx(2 / 3)
    # subject weights act as replicated rows: the first event twice -> events (3 - 1) / 4
    res = plan.compute(np.array([[2.0, 1, 1, 1, 1, 1]]))
    assert res["nri_events"][0] == pytest.approx(0.5)
    assert res["nri_nonevents"][0] == pytest.approx(1 / 3)


def test_reclassification_table_hand_computed() -> None:
    table = reclassification_table(Y, MODEL, SCORE, THRESHOLDS)
    events = np.zeros((5, 5), dtype=int)
    events[3, 4] = events[2, 4] = events[1, 0] = 1  # rows: score category, columns: model category
    non_events = np.zeros((5, 5), dtype=int)
    non_events[2, 0] = non_events[3, 3] = non_events[0, 0] = 1
    np.testing.assert_array_equal(table["events"], events)
    np.testing.assert_array_equal(table["non_events"], non_events)


def test_net_benefit_hand_computed() -> None:
    y = np.array([1, 0, 1, 0, 0], dtype=float)
    p = np.array([0.3, 0.2, 0.1, 0.05, 0.0])
    nb = net_benefit(y, p, thresholds=(0.0, 0.1, 0.25, 0.35))
    # pt 0: all treated, TP 2 FP 3 -> 2/5; pt 0.1: p >= 0.1 treats rows 0-2, TP 2 FP 1 -> 2/5 - 1/5·(0.1/0.9)
    # pt 0.25: row 0 only -> 1/5; pt 0.35: nobody -> 0
    np.testing.assert_allclose(nb, [0.4, 0.4 - 0.2 * 0.1 / 0.9, 0.2, 0.0])
    np.testing.assert_allclose(treat_all(y, thresholds=(0.0, 0.1)), [0.4, 0.4 - 0.6 * 0.1 / 0.9])


def test_net_benefit_of_a_perfect_model_is_the_prevalence() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.2).astype(float)
    nb = net_benefit(y, np.where(y > 0, 0.9, 0.01), thresholds=(0.05, 0.1, 0.3))
    np.testing.assert_allclose(nb, y.mean())
