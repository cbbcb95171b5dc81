"""Time-to-event discrimination with censoring handled by inverse probability of censoring weights (IPCW).

- Harrell's C (Harrell et al., JAMA 1982; Stat Med 1996): among pairs with T_i < T_j and an event at T_i,
  the share where the earlier failure has the higher risk (risk ties count ½; pairs with tied times are not
  comparable). lifelines' `concordance_index` takes survival-oriented scores: pass it −risk to compare.
- Uno's C (Uno et al., Stat Med 2011): the same pairs restricted to T_i < τ, each weighted by Ĝ(T_i−)⁻²,
  which makes the estimate consistent for the population concordance under random censoring.
- Time-dependent AUC at horizon τ, cumulative/dynamic (Heagerty et al., Biometrics 2000; IPCW estimator of
  Uno et al., JASA 2007 and Blanche et al., Stat Med 2013): cases have T ≤ τ with an event, weighted by
  1/Ĝ(T_i−); controls have T > τ (weight 1/Ĝ(τ), constant, so it cancels); rows censored before τ enter
  only through Ĝ, never silently as controls.
Ĝ is the Kaplan–Meier estimate of the censoring distribution (Kaplan & Meier, JASA 1958), events before
censorings at tied times. Resamples reuse the full-sample Ĝ (the usual simplification) and re-weight pairs.

All estimators take a matrix of subject weights (see `bootstrap.py`), so the point estimate and every
resample run the same numpy code; the pair counts use a bit decomposition of the risk ranks, O(n log n).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ehr_risk.evaluation.metrics import BinaryPlan

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


def km_censoring_left(time: FloatArray, event: NDArray[np.bool_], query: FloatArray) -> FloatArray:
    """Ĝ(t−) = P(C ≥ t): Kaplan–Meier of the censoring times evaluated just before each query time."""
    t = np.asarray(time, dtype=np.float64)
    cens = ~np.asarray(event, dtype=bool)
    uniq = np.unique(t[cens])
    if uniq.size == 0:
        return np.ones(np.shape(query))
    at_risk = t.size - np.searchsorted(np.sort(t), uniq, side="left")
    d = np.bincount(np.searchsorted(uniq, t[cens]), minlength=uniq.size)
    surv = np.cumprod(1.0 - d / at_risk)
    k = np.searchsorted(uniq, np.asarray(query, dtype=np.float64), side="left")  # censorings strictly before
    return np.concatenate([[1.0], surv])[k]


@dataclass(frozen=True)
class _Level:
    contrib_gather: IntArray  # subject columns of contributing rows, sorted by (group, time desc)
    recv: IntArray  # positions (in the event-row list) of receiving rows
    lo: IntArray
    hi: IntArray


@dataclass(frozen=True)
class ConcordancePlan:
    """Pair structure of (time, event, risk) for Harrell's and Uno's C, independent of the weights."""

    event_gather: IntArray  # subject column of each event row
    event_time: FloatArray
    event_uno_weight: FloatArray  # Ĝ(T−)⁻² for T < τ, else 0
    below: tuple[_Level, ...]  # levels whose sums give Σ_j w_j [T_j > T_i][r_j < r_i]
    tied: _Level  # Σ_j w_j [T_j > T_i][r_j = r_i]
    later: _Level  # Σ_j w_j [T_j > T_i]

    @classmethod
    def build(
        cls,
        time: FloatArray,
        event: NDArray[np.bool_],
        risk: FloatArray,
        subject_index: IntArray | None = None,
        *,
        tau: float | None = None,
    ) -> ConcordancePlan:
        t = np.asarray(time, dtype=np.float64)
        e = np.asarray(event, dtype=bool)
        r = np.asarray(risk, dtype=np.float64)
        if np.isnan(t).any() or np.isnan(r).any():
            raise ValueError("time and risk must not contain NaN")
        idx = np.arange(t.size, dtype=np.intp) if subject_index is None else np.asarray(subject_index)
        rank = np.unique(r, return_inverse=True)[1].astype(np.int64)
        t_rank = np.unique(t, return_inverse=True)[1].astype(np.int64)
        n_t = int(t_rank.max(initial=0)) + 1
        ev = np.flatnonzero(e)
        g_left = km_censoring_left(t, e, t[ev])
        horizon = np.inf if tau is None else float(tau)
        uno = np.where((t[ev] < horizon) & (g_left > 0), 1.0 / np.maximum(g_left, 1e-12) ** 2, 0.0)

        def level(group: NDArray[np.int64], contrib: NDArray[np.bool_], recv: NDArray[np.bool_]) -> _Level:
            key = group * n_t + (n_t - 1 - t_rank)  # group ascending, time descending
            rv = np.flatnonzero(recv[ev])
            g_ev = group[ev[rv]]
            # A contributor counts only if its group holds a receiver that failed before it; dropping the
            # others (most rows at the fine levels, where few groups hold an event) saves most of the work.
            first_failure = np.full(int(group.max(initial=0)) + 1, n_t, dtype=np.int64)
            np.minimum.at(first_failure, g_ev, t_rank[ev[rv]])
            rows = np.flatnonzero(contrib & (t_rank > first_failure[group]))
            order = rows[np.argsort(key[rows], kind="stable")]
            keys = key[order]
            lo = np.searchsorted(keys, g_ev * n_t, side="left")
            hi = np.searchsorted(keys, g_ev * n_t + (n_t - 1 - t_rank[ev[rv]]), side="left")
            return _Level(idx[order], rv.astype(np.intp), lo.astype(np.intp), hi.astype(np.intp))

        n_bits = max(int(rank.max(initial=0)).bit_length(), 1)
        below = []
        for k in range(n_bits):
            bit = ((rank >> k) & 1).astype(bool)
            below.append(level(rank >> (k + 1), ~bit, bit))
        everyone = np.ones(t.size, dtype=bool)
        return cls(
            event_gather=idx[ev],
            event_time=t[ev],
            event_uno_weight=uno,
            below=tuple(below),
            tied=level(rank, everyone, everyone),
            later=level(np.zeros_like(rank), everyone, everyone),
        )

    @staticmethod
    def _sums(lv: _Level, weights: NDArray[np.floating], out: FloatArray) -> None:
        # Integer weights: float32 sums are exact below 2**24, and half the memory traffic of float64.
        dt = np.float64 if weights.shape[0] == 1 else np.float32
        w = np.take(weights.astype(dt, copy=False), lv.contrib_gather, axis=1)
        c = np.empty((w.shape[0], w.shape[1] + 1), dtype=dt)
        c[:, 0] = 0
        np.cumsum(w, axis=1, out=c[:, 1:])
        out[:, lv.recv] += np.take(c, lv.hi, axis=1) - np.take(c, lv.lo, axis=1)

    def concordance(self, weights: NDArray[np.floating]) -> dict[str, FloatArray]:
        """Harrell's and Uno's C for each row of subject weights (b × n_subjects)."""
        b, m = weights.shape[0], self.event_time.size
        below, tied, later = np.zeros((b, m)), np.zeros((b, m)), np.zeros((b, m))
        for lv in self.below:
            self._sums(lv, weights, below)
        self._sums(self.tied, weights, tied)
        self._sums(self.later, weights, later)
        a = np.take(weights, self.event_gather, axis=1).astype(np.float64)
        num = below + 0.5 * tied
        with np.errstate(divide="ignore", invalid="ignore"):
            harrell = (a * num).sum(axis=1) / (a * later).sum(axis=1)
            au = a * self.event_uno_weight
            uno = (au * num).sum(axis=1) / (au * later).sum(axis=1)
        return {"harrell_c": harrell, "uno_c": uno}


def td_auc_plan(
    time: FloatArray,
    event: NDArray[np.bool_],
    risk: FloatArray,
    tau: float,
    subject_index: IntArray | None = None,
) -> tuple[BinaryPlan | None, dict[str, int]]:
    """Weighted binary plan whose AUROC is the IPCW cumulative/dynamic AUC at τ, and the row counts."""
    t = np.asarray(time, dtype=np.float64)
    e = np.asarray(event, dtype=bool)
    idx = np.arange(t.size, dtype=np.intp) if subject_index is None else np.asarray(subject_index)
    case = (t <= tau) & e
    control = t > tau
    counts = {
        "cases": int(case.sum()),
        "controls": int(control.sum()),
        "censored_before": int((~case & ~control).sum()),
    }
    if not case.any() or not control.any():
        return None, counts
    keep = case | control
    g = km_censoring_left(t, e, t)
    w = np.where(case, 1.0 / np.maximum(g, 1e-12), 1.0)
    plan = BinaryPlan.build(
        case[keep].astype(np.float64), np.asarray(risk)[keep], idx[keep], row_weight=w[keep], max_bins=50
    )
    return plan, counts


def harrell_c(time: FloatArray, event: NDArray[np.bool_], risk: FloatArray) -> float:
    plan = ConcordancePlan.build(time, event, risk)
    return float(plan.concordance(np.ones((1, len(time))))["harrell_c"][0])


def uno_c(time: FloatArray, event: NDArray[np.bool_], risk: FloatArray, tau: float | None = None) -> float:
    plan = ConcordancePlan.build(time, event, risk, tau=tau)
    return float(plan.concordance(np.ones((1, len(time))))["uno_c"][0])


def td_auc(time: FloatArray, event: NDArray[np.bool_], risk: FloatArray, tau: float) -> float:
    plan, _ = td_auc_plan(time, event, risk, tau)
    return float("nan") if plan is None else float(plan.auroc(np.ones((1, len(time))))[0])
