"""Model versus clinical score on the same rows: paired differences, reclassification, decision curves.

- Paired ΔAUROC / ΔAUPRC / ΔBrier / Δscaled Brier: both computed on the rows where both exist, under the same
  subject resamples, so the interval of the difference accounts for their correlation.
- Categorical NRI (Pencina et al., Stat Med 2008) over the risk categories cut at the guideline thresholds:
  NRI_events = P(up | event) − P(down | event), NRI_non-events = P(down | no event) − P(up | no event);
  "up" means the model puts the row in a higher category than the score. Reported as the two components
  and their sum (Kerr et al., Epidemiology 2014 advise against reading the sum alone).
- Decision curve (Vickers & Elkin, Med Decis Making 2006): net benefit = TP/n − FP/n · pt/(1 − pt) at each
  threshold probability pt, with treat-all and treat-none (0) references.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ehr_risk.evaluation.bootstrap import MetricFn

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

DELTA_METRICS = ("auroc", "auprc", "brier", "scaled_brier")
DECISION_THRESHOLDS = tuple(round(float(x), 3) for x in np.arange(0.0, 0.301, 0.01))


def paired_task(model: MetricFn, score: MetricFn) -> MetricFn:
    """Model and score metrics on the same (paired) rows, and model − score; `model` and `score` are the
    metric functions (e.g. `BinaryPlan.compute`) of the two on exactly those rows."""

    def fn(weights: NDArray[np.floating]) -> dict[str, FloatArray]:
        m, s = model(weights), score(weights)
        out: dict[str, FloatArray] = {}
        for k in DELTA_METRICS:
            out[f"model_{k}"], out[f"score_{k}"], out[f"delta_{k}"] = m[k], s[k], m[k] - s[k]
        return out

    return fn


def risk_category(p: FloatArray, thresholds: Sequence[float]) -> IntArray:
    """0 below the first threshold, … len(thresholds) at or above the last (p >= t moves up)."""
    return np.searchsorted(np.asarray(sorted(thresholds)), p, side="right").astype(np.intp)


@dataclass(frozen=True)
class NRIPlan:
    gather: IntArray
    columns: FloatArray  # rows × 5: event&up, event&down, nonevent&up, nonevent&down, event

    @classmethod
    def build(
        cls,
        y: FloatArray,
        p_model: FloatArray,
        p_score: FloatArray,
        subject_idx: IntArray,
        thresholds: Sequence[float],
    ) -> NRIPlan:
        cm, cs = risk_category(p_model, thresholds), risk_category(p_score, thresholds)
        up, down = (cm > cs).astype(np.float64), (cm < cs).astype(np.float64)
        yy = np.asarray(y, dtype=np.float64)
        cols = np.stack([yy * up, yy * down, (1 - yy) * up, (1 - yy) * down, yy, np.ones_like(yy)], axis=1)
        return cls(np.asarray(subject_idx, dtype=np.intp), cols)

    def compute(self, weights: NDArray[np.floating]) -> dict[str, FloatArray]:
        w = np.take(weights, self.gather, axis=1)
        s = (w @ self.columns.astype(w.dtype)).astype(np.float64)
        ev, nonev = s[:, 4], s[:, 5] - s[:, 4]
        with np.errstate(divide="ignore", invalid="ignore"):
            nri_e = (s[:, 0] - s[:, 1]) / ev
            nri_n = (s[:, 3] - s[:, 2]) / nonev
        return {"nri_events": nri_e, "nri_nonevents": nri_n, "nri": nri_e + nri_n}


def reclassification_table(
    y: FloatArray, p_model: FloatArray, p_score: FloatArray, thresholds: Sequence[float]
) -> dict[str, list[list[int]]]:
    """Counts score category (rows) × model category (columns), for events and non-events."""
    k = len(thresholds) + 1
    cm, cs = risk_category(p_model, thresholds), risk_category(p_score, thresholds)
    out = {}
    for name, mask in (("events", y > 0.5), ("non_events", y <= 0.5)):
        table = np.zeros((k, k), dtype=np.int64)
        np.add.at(table, (cs[mask], cm[mask]), 1)
        out[name] = table.tolist()
    return out


def net_benefit(
    y: FloatArray, p: FloatArray, thresholds: Sequence[float] = DECISION_THRESHOLDS
) -> FloatArray:
    """Net benefit of treating rows with p >= pt, at each threshold probability pt."""
    yy = np.asarray(y, dtype=np.float64)
    pt = np.asarray(thresholds, dtype=np.float64)
    n = yy.size
    order = np.argsort(p)
    p_s, y_s = np.asarray(p)[order], yy[order]
    first = np.searchsorted(p_s, pt, side="left")
    tp_rev = np.concatenate([np.cumsum(y_s[::-1])[::-1], [0.0]])
    tp = tp_rev[first]
    fp = (n - first) - tp
    return np.asarray(tp / n - fp / n * pt / (1 - pt), dtype=np.float64)


def treat_all(y: FloatArray, thresholds: Sequence[float] = DECISION_THRESHOLDS) -> FloatArray:
    prevalence = float(np.mean(y))
    pt = np.asarray(thresholds, dtype=np.float64)
    return np.asarray(prevalence - (1 - prevalence) * pt / (1 - pt), dtype=np.float64)
