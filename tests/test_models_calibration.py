"""Logistic recalibration: the textbook fit, the map it applies, and what it does to a model's slope."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ehr_risk.models.calibration import Recalibration, expit, fit_column, fit_logistic, logit


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True risk expit(lp); the 'model' reports expit(1.6·lp + 0.3): too extreme and too high."""
    rng = np.random.default_rng(seed)
    lp = rng.normal(-2.2, 0.9, n)
    y = rng.random(n) < expit(lp)
    return expit(1.6 * lp + 0.3), y


def test_fit_matches_unpenalised_weighted_logistic_regression() -> None:
    risk, y = _overconfident(4000, 1)
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(y))
    a, b = fit_logistic(risk, y.astype(float), w)
    ref = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000)
    ref.fit(logit(risk)[:, None], y, sample_weight=w)
    assert a == pytest.approx(ref.intercept_[0], abs=1e-4)
    assert b == pytest.approx(ref.coef_[0, 0], abs=1e-4)
    # the generating distortion is undone: slope ≈ 1/1.6, intercept ≈ −0.3/1.6
    assert b == pytest.approx(1 / 1.6, abs=0.08)


def test_recalibration_restores_slope_one_on_new_rows_and_keeps_the_ranking() -> None:
    tune_risk, tune_y = _overconfident(6000, 3)
    coef, why = fit_column(tune_risk, tune_y, np.ones(len(tune_y)))
    assert coef is not None and why == ""
    cal = Recalibration(coefficients={"risk_t_10y": coef})
    new_risk, new_y = _overconfident(20000, 4)
    fixed = cal.apply({"risk_t_10y": new_risk})["risk_t_10y"]
    _, slope_before = fit_logistic(new_risk, new_y.astype(float), np.ones(len(new_y)))
    _, slope_after = fit_logistic(fixed, new_y.astype(float), np.ones(len(new_y)))
    assert slope_before < 0.75 and slope_after == pytest.approx(1.0, abs=0.06)
    assert roc_auc_score(new_y, fixed) == pytest.approx(roc_auc_score(new_y, new_risk))
    assert abs(fixed.mean() - new_y.mean()) < abs(new_risk.mean() - new_y.mean())


def test_too_few_events_leave_the_column_as_it_is_with_the_reason() -> None:
    risk = np.full(100, 0.1)
    y = np.zeros(100, bool)
    y[:5] = True
    coef, why = fit_column(risk, y, np.ones(100))
    assert coef is None and "5 events" in why


def test_cumulative_risks_stay_non_decreasing_over_horizons() -> None:
    cal = Recalibration(
        coefficients={"risk_t_5y": (0.8, 1.0), "risk_t_10y": (-0.5, 1.0)},
        order={"t": ["risk_t_5y", "risk_t_10y"]},
    )
    out = cal.apply({"risk_t_5y": np.array([0.10, 0.30]), "risk_t_10y": np.array([0.12, 0.50])})
    assert (out["risk_t_10y"] >= out["risk_t_5y"]).all()
    assert Recalibration().apply({"x": np.array([0.2])})["x"][0] == 0.2  # nothing fitted: unchanged
