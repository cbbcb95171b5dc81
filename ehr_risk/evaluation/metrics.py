"""Binary-outcome metrics written once for a matrix of subject weights.

Every metric is a function of per-group sums of weights and of events, where the groups are the rows with
equal predicted risk (sorted ascending). The point estimate passes one row of ones; a bootstrap chunk passes
one row of resampling counts per resample (see `bootstrap.py`), so both run the same code and the bootstrap
never calls scikit-learn per resample. AUROC is the Mann-Whitney statistic computed from cumulative sums over
the sorted tie groups; AUPRC is average precision as scikit-learn defines it (step-wise, no interpolation).

Calibration follows Van Calster et al., J Clin Epidemiol 2016 and BMC Med 2019:
- calibration-in-the-large: intercept `a` of logit P(y) = a + logit(p) (slope fixed at 1; target 0);
- calibration slope / intercept: logistic recalibration logit P(y) = a + b·logit(p) (targets b = 1, a = 0);
- E/O: sum of predicted risks over observed events (target 1);
- ICI (Austin & Steyerberg, Stat Med 2019): mean |p − s(p)| where s is a tricube-weighted local-linear
  (loess, span 0.75) smooth of y on p, fitted on at most `max_bins` quantile bins of p (exact when there are
  fewer distinct risks); bandwidths are fixed from the full sample so resamples differ only in weights.
The logistic fits are exact for the point estimate and use the same quantile bins for resamples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

SPAN = 0.75
EPS = 1e-6

CORE_METRICS = ("auroc", "auprc", "brier", "scaled_brier", "observed_rate", "mean_predicted", "eo_ratio")
CALIBRATION_METRICS = ("calibration_in_the_large", "calibration_intercept", "calibration_slope", "ici")
THRESHOLD_STATS = ("sensitivity", "specificity", "ppv", "npv", "flagged")


def threshold_key(stat: str, threshold: float) -> str:
    return f"{stat}@{threshold:g}"


def logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, EPS, 1 - EPS)
    return np.asarray(np.log(q / (1 - q)), dtype=np.float64)


def _expit(x: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)), dtype=np.float64)


def _starts(sorted_values: NDArray[np.float64]) -> IntArray:
    """Start index of each run of equal values in a sorted array."""
    change = np.flatnonzero(np.diff(sorted_values) != 0) + 1
    return np.concatenate([[0], change]).astype(np.intp)


@dataclass(frozen=True)
class BinaryPlan:
    """Everything about (y, p) that does not depend on the weights, computed once.

    Rows are sorted by p and cut into segments: each tie group that holds an event is its own segment, and
    the runs of event-free rows between them are merged (they enter AUROC and AUPRC only through their
    total weight). Segments also break at the thresholds and at the calibration bins, so every metric is
    exact on segment sums while resamples touch far fewer columns than rows.
    `gather` maps sorted rows to columns of the subject-weight matrix; `row_weight` (optional) multiplies
    the subject weights row by row (inverse-probability-of-censoring weights).
    """

    gather: IntArray
    row_weight: FloatArray | None
    y: FloatArray  # sorted by p
    p: FloatArray
    seg_starts: IntArray  # row positions
    pos_gather: IntArray  # subject column of each event row, in sorted order
    pos_weight: FloatArray | None
    pos_starts: IntArray  # runs of event rows within one segment
    pos_segments: IntArray  # the segment of each run
    bin_seg_starts: IntArray  # calibration bins, in segments
    bin_x: FloatArray
    bin_logit: FloatArray
    kernel: FloatArray  # loess tricube weights, bins × bins
    thresholds: tuple[float, ...]
    threshold_seg: IntArray  # first segment with p >= threshold

    @property
    def n(self) -> int:
        return int(self.y.size)

    @classmethod
    def build(
        cls,
        y: Sequence[float] | NDArray[np.generic],
        p: Sequence[float] | NDArray[np.generic],
        subject_index: NDArray[np.intp] | None = None,
        *,
        thresholds: Sequence[float] = (),
        row_weight: NDArray[np.float64] | None = None,
        max_bins: int = 200,
    ) -> BinaryPlan:
        y_arr = np.asarray(y, dtype=np.float64)
        p_arr = np.asarray(p, dtype=np.float64)
        if y_arr.shape != p_arr.shape or y_arr.ndim != 1:
            raise ValueError("y and p must be 1-d arrays of the same length")
        if y_arr.size == 0:
            raise ValueError("no rows to evaluate")
        if np.isnan(p_arr).any() or np.isnan(y_arr).any():
            raise ValueError("y and p must not contain NaN (filter the rows first)")
        idx = np.arange(y_arr.size, dtype=np.intp) if subject_index is None else np.asarray(subject_index)
        order = np.argsort(p_arr, kind="stable")
        p_s, y_s = p_arr[order], y_arr[order]
        rw = None if row_weight is None else np.asarray(row_weight, dtype=np.float64)[order]
        w0 = np.ones(p_s.size) if rw is None else rw
        starts = _starts(p_s)  # tie groups
        n_g = np.add.reduceat(w0, starts)
        has_pos = np.add.reduceat(y_s, starts) > 0
        bins = _quantile_bins(n_g, max_bins)  # in groups
        thr = tuple(float(t) for t in thresholds)
        thr_group = np.searchsorted(p_s[starts], np.asarray(thr, dtype=np.float64), side="left")
        pos_groups = np.flatnonzero(has_pos)
        cut = np.unique(np.concatenate([[0], pos_groups, pos_groups + 1, bins, thr_group]))
        cut = cut[cut < starts.size]
        seg_starts = starts[cut]
        seg_of_row = np.searchsorted(seg_starts, np.arange(p_s.size), side="right") - 1
        pos_rows = np.flatnonzero(y_s > 0)
        pos_seg = seg_of_row[pos_rows]
        pos_starts = _starts(pos_seg.astype(np.float64)) if pos_rows.size else np.zeros(0, dtype=np.intp)
        n_b = np.add.reduceat(n_g, bins)
        bin_x = np.add.reduceat(n_g * p_s[starts], bins) / n_b
        bin_logit = np.add.reduceat(n_g * logit(p_s[starts]), bins) / n_b
        return cls(
            gather=idx[order],
            row_weight=rw,
            y=y_s,
            p=p_s,
            seg_starts=seg_starts,
            pos_gather=idx[order][pos_rows],
            pos_weight=None if rw is None else rw[pos_rows],
            pos_starts=pos_starts,
            pos_segments=pos_seg[pos_starts] if pos_rows.size else np.zeros(0, dtype=np.intp),
            bin_seg_starts=np.searchsorted(cut, bins),
            bin_x=bin_x,
            bin_logit=bin_logit,
            kernel=_loess_kernel(bin_x, n_b),
            thresholds=thr,
            threshold_seg=np.searchsorted(cut, thr_group),
        )

    def _row_weights(self, weights: NDArray[np.floating]) -> NDArray[np.floating]:
        w = np.take(np.asarray(weights), self.gather, axis=1)
        return w if self.row_weight is None else w * self.row_weight.astype(w.dtype)

    def segment_sums(
        self, w_rows: NDArray[np.floating], weights: NDArray[np.floating]
    ) -> tuple[FloatArray, FloatArray]:
        """Per segment: total weight N (b × S) and weight of events Y (b × S)."""
        n_s = np.add.reduceat(w_rows, self.seg_starts, axis=1).astype(np.float64)
        y_s = np.zeros_like(n_s)
        if self.pos_gather.size:
            wp = np.take(np.asarray(weights), self.pos_gather, axis=1)
            if self.pos_weight is not None:
                wp = wp * self.pos_weight.astype(wp.dtype)
            y_s[:, self.pos_segments] = np.add.reduceat(wp, self.pos_starts, axis=1)
        return n_s, y_s

    def auroc(self, weights: NDArray[np.floating]) -> FloatArray:
        return _auroc(*self.segment_sums(self._row_weights(weights), weights))

    def compute(self, weights: NDArray[np.floating], *, calibration: bool = True) -> dict[str, FloatArray]:
        """All metrics for each row of `weights` (b × n_subjects); arrays of length b (NaN if undefined)."""
        w_rows = self._row_weights(weights)
        n_s, y_s = self.segment_sums(w_rows, weights)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return self._compute(w_rows, n_s, y_s, calibration)

    def _compute(
        self, w_rows: NDArray[np.floating], n_s: FloatArray, y_s: FloatArray, calibration: bool
    ) -> dict[str, FloatArray]:
        n = n_s.sum(axis=1)
        pos = y_s.sum(axis=1)
        neg = n - pos
        ok = (pos > 0) & (neg > 0)
        dt = w_rows.dtype
        sums = (w_rows @ np.stack([self.p, (self.p - self.y) ** 2], axis=1).astype(dt)).astype(np.float64)
        pred_sum, sq_sum = sums[:, 0], sums[:, 1]
        rate = pos / n
        # One pair of reverse cumulative sums serves AUROC, AUPRC and the thresholds: weight and events at
        # risk >= each segment's risk (a trailing zero column stands for "above the highest risk").
        flagged_rev, tp_rev = _reverse_cumsum(n_s), _reverse_cumsum(y_s)
        out: dict[str, FloatArray] = {
            "auroc": _auroc(n_s, y_s, flagged_rev, tp_rev),
            "auprc": _auprc(y_s, flagged_rev, tp_rev),
        }
        out["brier"] = sq_sum / n
        out["scaled_brier"] = np.where(ok, 1 - out["brier"] / (rate * (1 - rate)), np.nan)
        out["observed_rate"] = rate
        out["mean_predicted"] = pred_sum / n
        out["eo_ratio"] = np.where(pos > 0, pred_sum / pos, np.nan)
        for t, seg in zip(self.thresholds, self.threshold_seg, strict=True):  # flagged: p >= t
            flagged, tp = flagged_rev[:, seg], tp_rev[:, seg]
            fp = flagged - tp
            fn, tn = pos - tp, neg - fp
            out[threshold_key("sensitivity", t)] = tp / pos
            out[threshold_key("specificity", t)] = tn / neg
            out[threshold_key("ppv", t)] = tp / flagged
            out[threshold_key("npv", t)] = tn / (tn + fn)
            out[threshold_key("flagged", t)] = flagged / n
        if calibration:
            nb = np.add.reduceat(n_s, self.bin_seg_starts, axis=1)
            yb = np.add.reduceat(y_s, self.bin_seg_starts, axis=1)
            if n.size == 1:  # point estimate: exact fits on the rows
                o = logit(self.p)[None, :]
                nn = np.asarray(w_rows, dtype=np.float64)
                yy = nn * self.y
            else:
                o, nn, yy = self.bin_logit[None, :], nb, yb
            citl = _fit_offset(nn, yy, o)
            a, b = _fit_recalibration(nn, yy, o)
            out["calibration_in_the_large"] = np.where(ok, citl, np.nan)
            out["calibration_intercept"] = np.where(ok, a, np.nan)
            out["calibration_slope"] = np.where(ok, b, np.nan)
            smooth = loess_smooth(self.kernel, self.bin_x, nb, yb)
            out["ici"] = np.where(n > 0, (nb * np.abs(self.bin_x - smooth)).sum(axis=1) / n, np.nan)
        return out

    def smooth_curve(self) -> tuple[FloatArray, FloatArray]:
        """Loess calibration curve at the bin centres for the full sample (for plots)."""
        ones = np.ones((1, int(self.gather.max()) + 1))
        n_s, y_s = self.segment_sums(self._row_weights(ones), ones)
        nb = np.add.reduceat(n_s, self.bin_seg_starts, axis=1)
        yb = np.add.reduceat(y_s, self.bin_seg_starts, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.bin_x, loess_smooth(self.kernel, self.bin_x, nb, yb)[0]


def _reverse_cumsum(x: FloatArray) -> FloatArray:
    out = np.zeros((x.shape[0], x.shape[1] + 1))
    np.cumsum(x[:, ::-1], axis=1, out=out[:, -2::-1])
    return out


def _auroc(
    n_s: FloatArray, y_s: FloatArray, flagged_rev: FloatArray | None = None, tp_rev: FloatArray | None = None
) -> FloatArray:
    """Mann-Whitney AUROC: each event weight times the non-event weight strictly below it (ties ½)."""
    if flagged_rev is None or tp_rev is None:
        flagged_rev, tp_rev = _reverse_cumsum(n_s), _reverse_cumsum(y_s)
    pos, neg = tp_rev[:, 0], flagged_rev[:, 0] - tp_rev[:, 0]
    neg_at_or_above = flagged_rev[:, :-1] - tp_rev[:, :-1]
    neg_here = n_s - y_s
    with np.errstate(divide="ignore", invalid="ignore"):
        below = neg[:, None] - neg_at_or_above
        auc = (y_s * (below + 0.5 * neg_here)).sum(axis=1) / (pos * neg)
    return np.where((pos > 0) & (neg > 0), auc, np.nan)


def _auprc(y_s: FloatArray, flagged_rev: FloatArray, tp_rev: FloatArray) -> FloatArray:
    """Average precision: precision at each event segment's threshold, weighted by its events."""
    pos = tp_rev[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(flagged_rev[:, :-1] > 0, tp_rev[:, :-1] / flagged_rev[:, :-1], 0.0)
        ap = (y_s * precision).sum(axis=1) / pos
    return np.where(pos > 0, ap, np.nan)


def _quantile_bins(n_g: FloatArray, max_bins: int) -> IntArray:
    """Contiguous bins of tie groups holding about equal weight; one bin per group when few groups."""
    g = n_g.size
    if g <= max_bins:
        return np.arange(g, dtype=np.intp)
    cum = np.cumsum(n_g) - n_g  # weight before each group
    edges = np.searchsorted(cum, np.linspace(0, cum[-1] + n_g[-1], max_bins, endpoint=False), side="left")
    edges = edges[edges < g]  # a zero-weight tail can put an edge past the last group
    return np.unique(np.concatenate([[0], edges])).astype(np.intp)


def _loess_kernel(x: FloatArray, w: FloatArray, span: float = SPAN) -> FloatArray:
    """Tricube weights K[k, j] for evaluation point k; the bandwidth covers `span` of the total weight."""
    if x.size == 0:
        return np.zeros((0, 0))
    dist = np.abs(x[:, None] - x[None, :])
    order = np.argsort(dist, axis=1, kind="stable")
    d_sorted = np.take_along_axis(dist, order, axis=1)
    cum_w = np.cumsum(w[order], axis=1)
    k = np.argmax(cum_w >= span * w.sum(), axis=1)
    h = d_sorted[np.arange(x.size), k]
    h = np.where(h > 0, h, np.maximum(d_sorted.max(axis=1), 1e-12)) * (1 + 1e-9)
    u = np.clip(dist / h[:, None], 0.0, 1.0)
    return np.asarray((1 - u**3) ** 3, dtype=np.float64)


def loess_smooth(kernel: FloatArray, x: FloatArray, n_b: FloatArray, y_b: FloatArray) -> FloatArray:
    """Weighted local-linear fit of the event rate at every bin centre (b × bins)."""
    kt = kernel.T
    s0, s1, s2 = n_b @ kt, (n_b * x) @ kt, (n_b * x * x) @ kt
    t0, t1 = y_b @ kt, (y_b * x) @ kt
    det = s0 * s2 - s1 * s1
    stable = det > 1e-10 * np.maximum(s0 * s2, 1e-300)
    slope = np.where(stable, (s0 * t1 - s1 * t0) / np.where(stable, det, 1.0), 0.0)
    mean_x = s1 / s0
    fit: FloatArray = t0 / s0 + slope * (x - mean_x)
    return fit


def _fit_offset(n: FloatArray, y: FloatArray, o: FloatArray, iters: int = 30) -> FloatArray:
    """MLE of a in logit P(y) = a + o, from grouped counts (Newton, vectorised over resamples)."""
    a = np.zeros(n.shape[0])
    for _ in range(iters):
        mu = _expit(a[:, None] + o)
        grad = (y - n * mu).sum(axis=1)
        hess = (n * mu * (1 - mu)).sum(axis=1)
        step = grad / np.maximum(hess, 1e-12)
        a = a + np.clip(step, -5, 5)
        if np.nanmax(np.abs(step), initial=0.0) < 1e-10:
            break
    return a


def _fit_recalibration(
    n: FloatArray, y: FloatArray, o: FloatArray, iters: int = 50
) -> tuple[FloatArray, FloatArray]:
    """MLE of (a, b) in logit P(y) = a + b·o from grouped counts (damped Newton, vectorised)."""
    a, b = np.zeros(n.shape[0]), np.ones(n.shape[0])
    for _ in range(iters):
        mu = _expit(a[:, None] + b[:, None] * o)
        r = y - n * mu
        g0, g1 = r.sum(axis=1), (r * o).sum(axis=1)
        h = n * mu * (1 - mu)
        h00, h01, h11 = h.sum(axis=1), (h * o).sum(axis=1), (h * o * o).sum(axis=1)
        det = h00 * h11 - h01 * h01
        det = np.where(np.abs(det) > 1e-12, det, np.nan)
        da, db = (h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det
        scale = np.minimum(1.0, 5.0 / np.maximum(np.abs(da) + np.abs(db), 1e-300))
        a, b = a + scale * da, b + scale * db
        if np.nanmax(np.abs(da) + np.abs(db), initial=0.0) < 1e-10:
            break
    return a, b


def point_metrics(
    y: Sequence[float] | NDArray[np.generic],
    p: Sequence[float] | NDArray[np.generic],
    thresholds: Sequence[float] = (),
) -> dict[str, float]:
    """Convenience: every metric on one sample, as plain floats."""
    plan = BinaryPlan.build(y, p, thresholds=thresholds)
    res = plan.compute(np.ones((1, plan.n)))
    return {k: float(v[0]) for k, v in res.items()}
