"""Training targets from the label tables (numpy only, no torch): hazard intervals for the sequence models,
binary labels per horizon and inverse-probability-of-censoring weights for the classical models.

Times are numpy datetime64 arrays (NaT = none) as read from `DS/labels/<task>.parquet`.
"""

from __future__ import annotations

import re

import numpy as np

DAYS_PER_YEAR = 365.25
_US_PER_YEAR = 86_400e6 * DAYS_PER_YEAR
_NONE = np.iinfo(np.int64).max
_LABEL_COLUMN = re.compile(r"label_(\d+(?:\.\d+)?)y")


def label_column(h: float) -> str:
    """`label_10y`, `label_2.5y` (the spelling of ehr_risk.tasks.label_column)."""
    return f"label_{h:g}y"


def label_horizons(columns: list[str]) -> list[float]:
    """Horizons (years) of the `label_<h>y` columns of a label table, ascending."""
    return sorted(float(m.group(1)) for c in columns if (m := _LABEL_COLUMN.fullmatch(c)))


def _us(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a).astype("datetime64[us]")
    return np.where(np.isnat(a), _NONE, a.astype(np.int64))


def observed_time(
    prediction_time: np.ndarray, event_time: np.ndarray, competing_time: np.ndarray, censor_time: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Years from t to the first of outcome, competing death and end of follow-up, with two flags:
    `is_event` (the outcome came first; a tie with the end of follow-up counts as the outcome) and
    `is_competing` (a death from another cause came first)."""
    t0 = _us(prediction_time)
    ev, comp, cens = _us(event_time), _us(competing_time), _us(censor_time)
    end = np.minimum(np.minimum(ev, comp), cens)
    is_event = (ev != _NONE) & (ev <= comp) & (ev <= cens)
    is_competing = ~is_event & (comp != _NONE) & (comp <= cens)
    end = np.where(end == _NONE, t0, end)  # no follow-up information at all: censored at t
    years = np.maximum(end - t0, 0) / _US_PER_YEAR
    return years, is_event, is_competing


def hazard_targets(
    prediction_time: np.ndarray,
    event_time: np.ndarray,
    competing_time: np.ndarray,
    censor_time: np.ndarray,
    n_intervals: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Interval index (0..J, J = followed beyond the last interval) and event flag for one task.

    For an event the index is the interval it falls in. A row censored in the second half of an interval is
    counted as surviving it (index = next interval), one censored in the first half is not: dropping every
    partly observed interval would overstate the hazard under heavy censoring (the convention of
    Gensheimer & Narasimhan, "A scalable discrete-time survival model for neural networks", PeerJ 2019).
    A competing death is censoring for the cause-specific hazard (see ehr_risk/models/hazard.py)."""
    years, is_event, _ = observed_time(prediction_time, event_time, competing_time, censor_time)
    steps = np.where(is_event, np.floor(years), np.floor(years + 0.5))
    interval = np.minimum(steps.astype(np.int64), n_intervals)
    return interval, is_event & (interval < n_intervals)


def competing_targets(
    prediction_time: np.ndarray,
    event_time: np.ndarray,
    competing_time: np.ndarray,
    censor_time: np.ndarray,
    n_intervals: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(interval index, event flag, competing-death flag) for the competing-risks heads: as
    `hazard_targets`, but a death from another cause is an outcome of its own, in the interval it falls in."""
    years, is_event, is_competing = observed_time(prediction_time, event_time, competing_time, censor_time)
    steps = np.where(is_event | is_competing, np.floor(years), np.floor(years + 0.5))
    interval = np.minimum(steps.astype(np.int64), n_intervals)
    inside = interval < n_intervals
    return interval, is_event & inside, is_competing & inside


def binary_label(
    years: np.ndarray, is_event: np.ndarray, is_competing: np.ndarray, horizon: float
) -> tuple[np.ndarray, np.ndarray]:
    """Label at `horizon` years as in contracts.md: (value, known). Known when the outcome or a competing
    death happened before the horizon, or follow-up reached it; a competing death first means False."""
    before = years < horizon
    known = ~before | is_event | is_competing
    return is_event & before, known


def censoring_survival(years: np.ndarray, censored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan–Meier estimate of G(s) = P(censoring time > s), censoring being the 'event'. Returns the
    distinct censoring times and G just after each (a right-continuous step function)."""
    order = np.argsort(years, kind="stable")
    y, c = years[order], censored[order]
    times, first = np.unique(y, return_index=True)
    n_at_risk = len(y) - first
    n_cens = np.add.reduceat(c.astype(np.int64), first) if len(y) else np.zeros(0, np.int64)
    surv = np.cumprod(1.0 - n_cens / np.maximum(n_at_risk, 1))
    keep = n_cens > 0
    return times[keep], surv[keep]


def ipcw_weights(
    years: np.ndarray,
    is_event: np.ndarray,
    is_competing: np.ndarray,
    horizon: float,
    max_weight: float = 20.0,
) -> np.ndarray:
    """Inverse-probability-of-censoring weights for rows whose label at `horizon` is known (0 for the rest):
    1/G(T−) when the outcome or competing death came before the horizon, 1/G(h) when followed beyond it.
    Rows censored before h are then represented by similar rows that were followed up, which removes the
    bias of simply dropping them. Weights are capped at `max_weight` and scaled to mean 1 over known rows."""
    censored = ~is_event & ~is_competing
    times, surv = censoring_survival(years, censored)
    _, known = binary_label(years, is_event, is_competing, horizon)
    at = np.where(years < horizon, years, horizon)
    # G(at−): the survival just after the last censoring time strictly before `at`.
    idx = np.searchsorted(times, at, side="left") - 1
    g = np.where(idx >= 0, surv[np.clip(idx, 0, None)] if len(surv) else 1.0, 1.0)
    w = np.where(known, 1.0 / np.maximum(g, 1.0 / max_weight), 0.0)
    mean = w[known].mean() if known.any() else 1.0
    return w / mean
