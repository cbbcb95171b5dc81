"""Subject-level bootstrap: counts, seeding, interval coverage and width."""

from __future__ import annotations

import numpy as np
import pytest

from ehr_risk.evaluation.bootstrap import percentile_interval, resample_counts, run_bootstrap, subject_index
from ehr_risk.evaluation.metrics import BinaryPlan


def _plan(n: int, seed: int) -> tuple[BinaryPlan, int]:
    rng = np.random.default_rng(seed)
    lp = rng.normal(-1.5, 1.0, n)
    p = 1 / (1 + np.exp(-lp))
    # mildly miscalibrated, so that the ICI (>= 0, inflated by resampling) is away from its boundary
    y = (rng.random(n) < 1 / (1 + np.exp(-(lp + 0.4)))).astype(float)
    return BinaryPlan.build(y, p, thresholds=(0.1,)), n


def test_resample_counts_draw_n_subjects_each() -> None:
    counts = resample_counts(500, 40, np.random.default_rng(1))
    assert counts.shape == (40, 500)
    np.testing.assert_array_equal(counts.sum(axis=1), 500)
    assert 0.55 < (counts > 0).mean() < 0.71  # about 1 - 1/e of subjects drawn at least once


def test_subject_index_groups_rows() -> None:
    idx, n = subject_index(np.array([7, 3, 7, 9]))
    assert n == 3
    assert idx[0] == idx[2] and len({idx[0], idx[1], idx[3]}) == 3


def test_seeded_and_independent_of_threads() -> None:
    plan, n = _plan(2000, 2)
    tasks = {"m": plan.compute}
    _, a = run_bootstrap(tasks, n, n_boot=120, seed=7, chunk=25, n_jobs=1)
    _, b = run_bootstrap(tasks, n, n_boot=120, seed=7, chunk=25, n_jobs=2)
    _, c = run_bootstrap(tasks, n, n_boot=120, seed=8, chunk=25, n_jobs=2)
    np.testing.assert_array_equal(a["m"]["auroc"], b["m"]["auroc"])
    assert not np.array_equal(a["m"]["auroc"], c["m"]["auroc"])
    assert a["m"]["auroc"].size == 120


def test_intervals_cover_the_estimate_and_shrink_with_n() -> None:
    widths = {}
    for n in (1000, 16000):
        plan, n_subj = _plan(n, 3)
        points, samples = run_bootstrap({"m": plan.compute}, n_subj, n_boot=200, seed=0)
        widths[n] = {}
        for key in ("auroc", "brier", "calibration_slope", "eo_ratio", "ici", "sensitivity@0.1"):
            ci = percentile_interval(points["m"][key], samples["m"][key])
            assert ci.low <= ci.estimate <= ci.high, key
            widths[n][key] = ci.high - ci.low
    for key, wide in widths[1000].items():
        # 16 times the subjects: about a quarter of the width; allow generous slack
        assert widths[16000][key] < 0.5 * wide, key


def test_interval_of_undefined_metric_is_empty() -> None:
    ci = percentile_interval(0.5, np.array([np.nan, np.nan, 0.4]))
    assert np.isnan(ci.low) and ci.n_valid == 1
    assert ci.as_dict()["ci_low"] is None


def test_paired_difference_is_tighter_than_either_interval() -> None:
    from ehr_risk.evaluation.compare import paired_task

    rng = np.random.default_rng(5)
    n = 4000
    lp = rng.normal(-1.5, 1.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(float)
    p1 = 1 / (1 + np.exp(-(lp + rng.normal(0, 0.3, n))))
    p2 = 1 / (1 + np.exp(-(lp + rng.normal(0, 0.35, n))))
    task = paired_task(BinaryPlan.build(y, p1).compute, BinaryPlan.build(y, p2).compute)
    points, samples = run_bootstrap({"pair": task}, n, n_boot=200, seed=1)
    pt, s = points["pair"], samples["pair"]
    assert pt["delta_auroc"] == pytest.approx(pt["model_auroc"] - pt["score_auroc"])
    width = lambda k: np.subtract(*np.quantile(s[k], [0.975, 0.025]))  # noqa: E731
    assert width("delta_auroc") < width("model_auroc")
