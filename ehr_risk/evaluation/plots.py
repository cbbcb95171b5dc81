"""Evaluation figures (matplotlib, Agg backend): ROC, precision-recall, calibration, decision curve, risk
distribution by outcome. Each function returns PNG bytes; the report embeds them and writes them as files.
Curves are drawn from the full sample only (the intervals live in the tables)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
DPI = 110
SIZE = (5.2, 4.4)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _operating_points(y: FloatArray, p: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Cumulative true and false positives when flagging p >= each distinct risk (descending), and P."""
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(ps) != 0), ps.size - 1]  # last row of each tie group
    tp = np.cumsum(ys)[last]
    fp = (last + 1) - tp
    return tp, fp, np.asarray(ys.sum(), dtype=np.float64)


def roc_points(y: FloatArray, p: FloatArray) -> tuple[FloatArray, FloatArray]:
    tp, fp, pos = _operating_points(y, p)
    neg = y.size - pos
    return np.r_[0.0, fp / neg], np.r_[0.0, tp / pos]


def pr_points(y: FloatArray, p: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(recall, precision) from the highest threshold down, starting at recall 0, precision 1."""
    tp, fp, pos = _operating_points(y, p)
    return np.r_[0.0, tp / pos], np.r_[1.0, tp / (tp + fp)]


def _defined(y: FloatArray) -> bool:
    return y.size > 0 and 0 < y.sum() < y.size


def roc_plot(
    ys: Mapping[str, FloatArray], ps: Mapping[str, FloatArray], auroc: Mapping[str, float | None]
) -> bytes:
    fig, ax = plt.subplots(figsize=SIZE)
    for name, y in ys.items():
        if _defined(y):
            fpr, tpr = roc_points(y, ps[name])
            ax.plot(fpr, tpr, lw=1.6, label=f"{name} (AUROC {_fmt(auroc.get(name))}, n={y.size:,})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    ax.set(xlabel="1 − specificity", ylabel="sensitivity", title="ROC curve", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def pr_plot(
    ys: Mapping[str, FloatArray], ps: Mapping[str, FloatArray], auprc: Mapping[str, float | None]
) -> bytes:
    fig, ax = plt.subplots(figsize=SIZE)
    prevalence = None
    for name, y in ys.items():
        if _defined(y):
            recall, precision = pr_points(y, ps[name])
            ax.step(recall, precision, where="pre", lw=1.6, label=f"{name} (AUPRC {_fmt(auprc.get(name))})")
            prevalence = prevalence if prevalence is not None else float(y.mean())
    if prevalence is not None:
        ax.axhline(prevalence, ls=":", c="grey", lw=1, label=f"prevalence {prevalence:.3f}")
    ax.set(
        xlabel="recall (sensitivity)",
        ylabel="precision (PPV)",
        title="Precision-recall curve",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def binned_calibration(y: FloatArray, p: FloatArray, n_bins: int = 10) -> dict[str, FloatArray]:
    """Quantile bins of p: mean predicted, observed rate and its 95% Wilson interval."""
    order = np.argsort(p, kind="stable")
    parts = [part for part in np.array_split(order, min(n_bins, max(p.size, 1))) if part.size]
    n = np.array([part.size for part in parts], dtype=np.float64)
    pred = np.array([p[part].mean() for part in parts])
    obs = np.array([y[part].mean() for part in parts])
    z = 1.959964
    centre = (obs + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(obs * (1 - obs) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"n": n, "predicted": pred, "observed": obs, "low": centre - half, "high": centre + half}


def calibration_plot(
    ys: Mapping[str, FloatArray],
    ps: Mapping[str, FloatArray],
    smooth: Mapping[str, tuple[FloatArray, FloatArray]],
    n_bins: int = 10,
) -> bytes:
    fig, ax = plt.subplots(figsize=SIZE)
    top = 0.0
    for i, (name, y) in enumerate(ys.items()):
        if y.size == 0:
            continue
        colour = f"C{i}"
        b = binned_calibration(y, ps[name], n_bins)
        ax.errorbar(
            b["predicted"],
            b["observed"],
            # Wilson bounds can pass the observed rate by a rounding error at 0 or 1: clip to 0
            yerr=np.maximum([b["observed"] - b["low"], b["high"] - b["observed"]], 0.0),
            fmt="o",
            ms=4,
            c=colour,
            capsize=2,
            lw=1,
            label=f"{name}: deciles (95% CI)",
        )
        if name in smooth:
            x, s = smooth[name]
            ax.plot(x, s, c=colour, lw=1.4, label=f"{name}: loess")
        top = max(top, float(np.nanmax(b["high"])), float(np.quantile(ps[name], 0.99)))
    top = min(1.0, max(top * 1.08, 0.05))
    ax.plot([0, top], [0, top], ls=":", c="grey", lw=1, label="ideal")
    ax.set(
        xlabel="predicted risk",
        ylabel="observed event rate",
        title="Calibration",
        xlim=(0, top),
        ylim=(0, top),
    )
    ax.legend(loc="upper left", fontsize=7)
    return _png(fig)


def decision_curve_plot(
    thresholds: Sequence[float], net_benefit: Mapping[str, Sequence[float]], n_rows: int
) -> bytes:
    fig, ax = plt.subplots(figsize=SIZE)
    values: list[float] = []
    for name, nb in net_benefit.items():
        style: dict[str, Any] = {"lw": 1.6}
        if name == "treat_all":
            style = {"lw": 1.0, "c": "grey", "ls": "--"}
        elif name == "treat_none":
            style = {"lw": 1.0, "c": "black", "ls": ":"}
        ax.plot(thresholds, nb, label=name.replace("_", " "), **style)
        values.extend(v for v in nb if np.isfinite(v))
    top = max(values) if values else 0.01
    ax.set(
        xlabel="threshold probability",
        ylabel="net benefit",
        title=f"Decision curve (n={n_rows:,})",
        xlim=(0, max(thresholds) if thresholds else 0.3),
        ylim=(-0.1 * max(top, 1e-3), max(top, 1e-3) * 1.1),
    )
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def risk_distribution_plot(y: FloatArray, p: FloatArray, name: str) -> bytes:
    fig, ax = plt.subplots(figsize=SIZE)
    hi = float(np.quantile(p, 0.995)) if p.size else 1.0
    bins = np.linspace(0, max(hi, 1e-3), 41)
    for value, label, colour in ((0, "no event", "C0"), (1, "event", "C3")):
        sel = p[y == value]
        if sel.size:
            ax.hist(
                np.clip(sel, 0, bins[-1]),
                bins=bins.tolist(),
                density=True,
                alpha=0.5,
                color=colour,
                label=f"{label} (n={sel.size:,})",
            )
    ax.set(xlabel=f"predicted risk ({name})", ylabel="density", title="Risk distribution by outcome")
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
