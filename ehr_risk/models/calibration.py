"""Logistic recalibration of a fitted model's risks on the tuning split.

Flexible models fitted by maximum likelihood on a few thousand events come out over-confident: on new
patients their risks are too extreme (calibration slope below 1), which is what the held-out calibration
slope measures. The standard remedy (Cox, Biometrika 1958; Steyerberg, Clinical Prediction Models, 2nd ed.
2019, ch. 15) refits the intercept and slope of the linear predictor on data the model did not learn from:

    risk' = expit(a + b · logit(risk))

with (a, b) from an (IPCW-)weighted logistic regression of the binary label at that horizon on logit(risk),
over the tuning rows. The map is increasing (b > 0), so discrimination (AUROC, C-index) is unchanged.
One (a, b) per output column; a column is left as it is when its tuning rows are too few (fewer than
`min_events` events or non-events) or the fitted slope is not positive, and the reason is kept. Risks of
one task are then made non-decreasing over its horizons, as cumulative risks must be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(q) - np.log1p(-q)


def expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Recalibration:
    """Per output column: (intercept, slope) on the logit scale; `order` lists each task's columns by
    horizon, for the monotone fix."""

    coefficients: dict[str, tuple[float, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # column → why it was left uncalibrated
    order: dict[str, list[str]] = field(default_factory=dict)

    def apply(self, risks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(risks)
        for column, (a, b) in self.coefficients.items():
            if column in out:
                out[column] = expit(a + b * logit(np.asarray(out[column], dtype=np.float64)))
        for columns in self.order.values():
            present = [c for c in columns if c in out]
            if len(present) > 1:
                stacked = np.maximum.accumulate(np.stack([out[c] for c in present]), axis=0)
                out.update({c: stacked[i] for i, c in enumerate(present)})
        return out

    def summary(self) -> dict[str, object]:
        return {
            "method": "logistic (intercept and slope on logit risk, tuning split)",
            "coefficients": {c: {"intercept": a, "slope": b} for c, (a, b) in self.coefficients.items()},
            "skipped": dict(self.skipped),
        }


def fit_logistic(
    risk: np.ndarray, y: np.ndarray, weight: np.ndarray, max_iter: int = 50
) -> tuple[float, float]:
    """Weighted maximum-likelihood (a, b) of y ~ expit(a + b·logit(risk)) by Newton–Raphson (two
    parameters: no regularisation, so the fit is the textbook recalibration, not a shrunk one)."""
    x = logit(risk)
    X = np.column_stack([np.ones_like(x), x])
    w = weight / weight.mean()
    beta = np.array([0.0, 1.0])
    for _ in range(max_iter):
        p = expit(X @ beta)
        grad = X.T @ (w * (y - p))
        hess = (X * (w * p * (1 - p))[:, None]).T @ X
        step = np.linalg.solve(hess + 1e-9 * np.eye(2), grad)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-8:
            break
    return float(beta[0]), float(beta[1])


def fit_column(
    risk: np.ndarray, y: np.ndarray, weight: np.ndarray, min_events: int = 20
) -> tuple[tuple[float, float] | None, str]:
    """(a, b) for one column, or None and the reason it is left as it is."""
    keep = np.isfinite(risk) & (weight > 0)
    risk, y, weight = risk[keep], y[keep].astype(np.float64), weight[keep]
    events, non_events = int(y.sum()), int(len(y) - y.sum())
    if min(events, non_events) < min_events:
        return None, f"{events} events and {non_events} non-events in the tuning rows (< {min_events})"
    a, b = fit_logistic(risk, y, weight)
    if not (np.isfinite(a) and np.isfinite(b)) or b <= 0:
        return None, "fitted slope not positive"
    return (a, b), ""
