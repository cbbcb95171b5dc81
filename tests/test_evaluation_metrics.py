"""Binary metrics: agreement with scikit-learn and hand computation; weights behave as replicated rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from ehr_risk.evaluation.metrics import BinaryPlan, point_metrics

Y = np.array([0, 0, 1, 0, 1, 1, 0, 1, 0, 0], dtype=float)
P = np.array([0.1, 0.2, 0.2, 0.3, 0.4, 0.4, 0.4, 0.8, 0.05, 0.6])


def _simulated(n: int, seed: int, slope: float = 1.0, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes drawn from logit P(y) = shift + slope·logit(p): perfectly calibrated when (0, 1)."""
    rng = np.random.default_rng(seed)
    lp = rng.normal(-2.0, 1.0, n)
    p = 1 / (1 + np.exp(-lp))
    y = (rng.random(n) < 1 / (1 + np.exp(-(shift + slope * lp)))).astype(float)
    return y, p


def test_agrees_with_sklearn_on_fixed_arrays_with_ties() -> None:
    m = point_metrics(Y, P)
    assert m["auroc"] == pytest.approx(roc_auc_score(Y, P), abs=1e-12)
    assert m["auprc"] == pytest.approx(average_precision_score(Y, P), abs=1e-12)
    assert m["brier"] == pytest.approx(brier_score_loss(Y, P), abs=1e-12)


def test_agrees_with_sklearn_on_random_data() -> None:
    y, p = _simulated(3000, 1)
    p = np.round(p, 2)  # many ties
    m = point_metrics(y, p)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["auprc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert m["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_hand_computed_values() -> None:
    # 4 events, 6 non-events. Pairs (event, non-event) ordered correctly, ties count 1/2:
    # event 0.2: beats 0.1, 0.05, ties 0.2 -> 2.5; 0.4 (x2): beat 0.1,0.2,0.3,0.05, tie 0.4 -> 4.5 each;
    # 0.8: beats all 6 -> 6.  Total 17.5 / 24.
    m = point_metrics(Y, P, thresholds=(0.35,))
    assert m["auroc"] == pytest.approx(17.5 / 24)
    assert m["observed_rate"] == pytest.approx(0.4)
    assert m["mean_predicted"] == pytest.approx(P.mean())
    assert m["eo_ratio"] == pytest.approx(P.sum() / 4)
    brier = float(np.mean((P - Y) ** 2))
    assert m["scaled_brier"] == pytest.approx(1 - brier / (0.4 * 0.6))
    # p >= 0.35 flags 0.4, 0.4, 0.4, 0.8, 0.6: 3 events (tp), 2 non-events (fp); fn = 1, tn = 4
    assert m["sensitivity@0.35"] == pytest.approx(3 / 4)
    assert m["specificity@0.35"] == pytest.approx(4 / 6)
    assert m["ppv@0.35"] == pytest.approx(3 / 5)
    assert m["npv@0.35"] == pytest.approx(4 / 5)
    assert m["flagged@0.35"] == pytest.approx(0.5)


def test_threshold_at_a_tied_value_counts_the_tie_as_flagged() -> None:
    m = point_metrics(Y, P, thresholds=(0.4,))
    assert m["flagged@0.4"] == pytest.approx(0.5)
    assert m["sensitivity@0.4"] == pytest.approx(3 / 4)


def test_calibration_on_perfectly_calibrated_data() -> None:
    y, p = _simulated(40_000, 2)
    m = point_metrics(y, p)
    assert m["calibration_slope"] == pytest.approx(1.0, abs=0.06)
    assert m["calibration_intercept"] == pytest.approx(0.0, abs=0.1)
    assert m["calibration_in_the_large"] == pytest.approx(0.0, abs=0.05)
    assert m["eo_ratio"] == pytest.approx(1.0, abs=0.05)
    assert m["ici"] < 0.01


def test_calibration_detects_overfitting_and_offset() -> None:
    y, p = _simulated(40_000, 3, slope=0.5, shift=-1.5)  # predictions too extreme and too high
    m = point_metrics(y, p)
    assert m["calibration_slope"] == pytest.approx(0.5, abs=0.06)
    assert m["calibration_in_the_large"] < -0.2
    assert m["eo_ratio"] > 1.1
    assert m["ici"] > 0.02


def test_logistic_recalibration_matches_an_independent_fit() -> None:
    from sklearn.linear_model import LogisticRegression

    y, p = _simulated(5000, 4, slope=0.8, shift=0.2)
    m = point_metrics(y, p)
    o = np.log(p / (1 - p))[:, None]
    fit = LogisticRegression(C=1e12, tol=1e-12, max_iter=10_000).fit(o, y)
    assert m["calibration_slope"] == pytest.approx(fit.coef_[0, 0], abs=1e-4)
    assert m["calibration_intercept"] == pytest.approx(fit.intercept_[0], abs=1e-4)


def test_integer_weights_equal_replicated_rows() -> None:
    """A bootstrap resample as counts gives the metrics of the resample as rows."""
    y, p = _simulated(2000, 5)
    p = np.round(p, 3)
    rng = np.random.default_rng(0)
    counts = rng.poisson(1.0, (3, y.size)).astype(np.float32)
    plan = BinaryPlan.build(y, p, thresholds=(0.1,))
    res = plan.compute(counts)
    for b in range(3):
        rep = np.repeat(np.arange(y.size), counts[b].astype(int))
        exact = point_metrics(y[rep], p[rep], thresholds=(0.1,))
        for key in ("auroc", "auprc", "brier", "eo_ratio", "sensitivity@0.1", "ppv@0.1"):
            assert res[key][b] == pytest.approx(exact[key], rel=1e-5), key
        assert res["calibration_slope"][b] == pytest.approx(exact["calibration_slope"], abs=0.01)


def test_rows_of_one_subject_share_its_weight() -> None:
    y = np.array([1, 0, 0, 1, 0], dtype=float)
    p = np.array([0.9, 0.2, 0.3, 0.6, 0.1])
    plan = BinaryPlan.build(y, p, subject_index=np.array([0, 0, 1, 2, 2]))
    # subject 0 twice, subject 1 dropped, subject 2 once -> rows 0,1,0,1,3,4
    res = plan.compute(np.array([[2.0, 0.0, 1.0]]))
    rows = [0, 1, 0, 1, 3, 4]
    assert res["auroc"][0] == pytest.approx(roc_auc_score(y[rows], p[rows]))


def test_undefined_metrics_are_nan_not_errors() -> None:
    m = point_metrics(np.zeros(5), np.linspace(0.1, 0.5, 5), thresholds=(0.2,))
    assert np.isnan(m["auroc"]) and np.isnan(m["auprc"]) and np.isnan(m["calibration_slope"])
    assert m["brier"] == pytest.approx(np.mean(np.linspace(0.1, 0.5, 5) ** 2))


def test_rejects_nan_input() -> None:
    with pytest.raises(ValueError):
        BinaryPlan.build([0, 1], [0.1, np.nan])


def test_plot_curves_match_sklearn() -> None:
    from sklearn.metrics import precision_recall_curve, roc_curve

    from ehr_risk.evaluation.plots import pr_points, roc_points

    y, p = _simulated(500, 6)
    p = np.round(p, 2)
    fpr, tpr = roc_points(y, p)
    ref_fpr, ref_tpr, _ = roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    recall, precision = pr_points(y, p)
    ref_p, ref_r, _ = precision_recall_curve(y, p)
    np.testing.assert_allclose(recall, ref_r[::-1])
    np.testing.assert_allclose(precision, ref_p[::-1])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 12)), min_size=2, max_size=60).filter(
        lambda rows: 0 < sum(y for y, _ in rows) < len(rows)
    )
)
def test_property_agrees_with_sklearn_under_heavy_ties(rows: list[tuple[bool, int]]) -> None:
    y = np.array([float(a) for a, _ in rows])
    p = np.array([b / 12 for _, b in rows])
    m = point_metrics(y, p)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["auprc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert m["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_quantile_bins_stay_inside_the_groups_with_a_heavy_last_group() -> None:
    """Regression: a heavy last tie group (e.g. a resampled subject) made a bin edge point past it."""
    from ehr_risk.evaluation.metrics import _quantile_bins

    weights = np.r_[np.ones(250), np.zeros(50), [40.0]]
    bins = _quantile_bins(weights, 200)
    assert bins[0] == 0 and bins.max() < weights.size
    assert np.add.reduceat(weights, bins).sum() == weights.sum()


def test_calibration_plot_with_no_events_in_a_bin_renders() -> None:
    """Regression: Wilson bounds at an observed rate of 0 passed it by a rounding error (negative yerr)."""
    from ehr_risk.evaluation.plots import calibration_plot

    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.3, 400)
    y = (rng.uniform(size=400) < p).astype(float)
    y[np.argsort(p)[:40]] = 0.0  # lowest decile without events
    png = calibration_plot({"m": y}, {"m": p}, {})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_calibration_in_the_large_solves_its_score_equation() -> None:
    """CITL is the a with Σ y = Σ expit(a + logit p): checked by an independent root finder."""
    from scipy.optimize import brentq

    y, p = _simulated(3000, 7, slope=1.0, shift=0.4)
    o = np.log(p / (1 - p))
    a = brentq(lambda a: float(np.sum(y - 1 / (1 + np.exp(-(a + o))))), -10, 10, xtol=1e-12)
    assert point_metrics(y, p)["calibration_in_the_large"] == pytest.approx(a, abs=1e-8)
    assert a == pytest.approx(0.4, abs=0.15)


def _brute_loess(x: np.ndarray, y: np.ndarray, span: float = 0.75) -> np.ndarray:
    """Local-linear fit with tricube weights over the nearest ceil(span·n) rows, one point at a time."""
    k = int(np.ceil(span * x.size))
    fit = np.empty(x.size)
    for i in range(x.size):
        d = np.abs(x - x[i])
        h = np.sort(d)[k - 1] * (1 + 1e-9)
        w = np.clip(1 - (d / h) ** 3, 0, 1) ** 3
        slope, intercept = np.polyfit(x, y, 1, w=np.sqrt(w))
        fit[i] = intercept + slope * x[i]
    return fit


def test_ici_matches_a_brute_force_loess() -> None:
    """ICI = mean |p − s(p)|, s the loess (local linear, tricube, span 0.75) of y on p (Austin 2019)."""
    y, p = _simulated(150, 8, slope=0.7, shift=0.3)  # distinct risks, fewer than the bins: exact
    m = point_metrics(y, p)
    expected = float(np.mean(np.abs(p - _brute_loess(p, y))))
    assert m["ici"] == pytest.approx(expected, rel=1e-6)
    assert m["ici"] > 0.01
