"""The predictions table an evaluation reads, checked and turned into numpy arrays.

One row per (subject_id, prediction_time): the binary label (null = censored before the horizon), the
model's risk, each compared score's risk (NaN = no score, with an optional `<score>_reason` column), subgroup
columns, and optionally the time-to-event columns of the labels table (event_time, censor_time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from ehr_risk.errors import InputDataError
from ehr_risk.evaluation.subgroups import age_band

DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class TimeToEvent:
    """Column names of the follow-up: time to event or censoring is measured from prediction_time."""

    event_time: str = "event_time"
    censor_time: str = "censor_time"
    prediction_time: str = "prediction_time"


@dataclass
class PredictionArrays:
    n_rows: int
    subject_ids: NDArray[np.generic]
    label: NDArray[np.float64]  # NaN = censored before the horizon
    risks: dict[str, NDArray[np.float64]]  # model first, then compared scores; NaN = missing
    reasons: dict[str, NDArray[np.object_]]  # score -> per-row reason it is missing (None where present)
    subgroups: dict[str, NDArray[np.object_]] = field(default_factory=dict)
    subgroups_unavailable: list[str] = field(default_factory=list)
    time_years: NDArray[np.float64] | None = None  # NaN where unusable
    event: NDArray[np.bool_] | None = None
    prediction_dates: tuple[str, str] | None = None


def to_polars(df: Any) -> pl.DataFrame:
    if isinstance(df, pl.DataFrame):
        return df
    try:
        return pl.from_pandas(df)
    except (TypeError, ValueError) as exc:
        raise InputDataError(
            f"predictions: expected a pandas or polars DataFrame, got {type(df).__name__}"
        ) from exc


def _float(df: pl.DataFrame, col: str, what: str) -> NDArray[np.float64]:
    try:
        return df[col].cast(pl.Float64).fill_null(float("nan")).to_numpy().astype(np.float64)
    except pl.exceptions.PolarsError as exc:
        raise InputDataError(f"predictions: {what} column {col!r} is {df[col].dtype}, not numeric") from exc


def risk_array(df: pl.DataFrame, col: str) -> NDArray[np.float64]:
    """A risk column as floats in [0, 1], NaN where missing; a value outside [0, 1] is an input error."""
    if col not in df.columns:
        raise InputDataError(f"predictions: missing risk column {col!r}; have {', '.join(df.columns)}")
    p = _float(df, col, "risk")
    out_of_range = np.isfinite(p) & ((p < 0) | (p > 1))
    if out_of_range.any():
        raise InputDataError(
            f"predictions: risk column {col!r} has {int(out_of_range.sum())} value(s) outside [0, 1]"
        )
    p[~np.isfinite(p)] = np.nan
    return p


def resolve_scores(df: pl.DataFrame, names: Sequence[str]) -> dict[str, str]:
    """Score name -> column: the column itself, or `<name>_risk` as `ehr-risk risk-score` writes it."""
    return {n: n if n in df.columns or f"{n}_risk" not in df.columns else f"{n}_risk" for n in names}


def extract(
    df: pl.DataFrame,
    *,
    label: str,
    model: str,
    compare: Sequence[str],
    subgroups: Sequence[str],
    time_to_event: TimeToEvent | None,
) -> PredictionArrays:
    # Compared scores go by the name the user gave (pce), whichever column holds them (pce or pce_risk).
    # Their reasons stay in `<name>_reason`, where `ehr_risk.scores` writes them.
    renamed = {col: name for name, col in resolve_scores(df, compare).items() if col != name}
    df = df.rename(renamed) if renamed else df
    missing = [c for c in (label, model, *compare) if c not in df.columns]
    if missing:
        raise InputDataError(
            f"predictions: missing column(s) {', '.join(missing)}; have {', '.join(df.columns)}"
        )
    if df.height == 0:
        raise InputDataError("predictions: the table has no rows")
    y = _float(df, label, "label")
    bad = np.isfinite(y) & (y != 0) & (y != 1)
    if bad.any():
        raise InputDataError(
            f"predictions: label column {label!r} has {int(bad.sum())} value(s) other than 0/1/null"
        )
    risks: dict[str, NDArray[np.float64]] = {}
    reasons: dict[str, NDArray[np.object_]] = {}
    for col in (model, *compare):
        risks[col] = p = risk_array(df, col)
        reasons[col] = _reasons(df, col, np.isnan(p))
    ids = df["subject_id"].to_numpy() if "subject_id" in df.columns else np.arange(df.height)
    groups: dict[str, NDArray[np.object_]] = {}
    unavailable: list[str] = []
    for var in subgroups:
        if var in df.columns:
            groups[var] = np.asarray(df[var].cast(pl.String).to_list(), dtype=object)
        elif var == "age_band" and "age_years" in df.columns:
            groups[var] = age_band(_float(df, "age_years", "age"))
        else:
            unavailable.append(var)
    arrays = PredictionArrays(df.height, ids, y, risks, reasons, groups, unavailable)
    if "prediction_time" in df.columns and df.schema["prediction_time"].is_temporal():
        lo, hi = df["prediction_time"].min(), df["prediction_time"].max()
        arrays.prediction_dates = (str(lo)[:10], str(hi)[:10])
    if time_to_event is not None:
        arrays.time_years, arrays.event = _follow_up(df, time_to_event)
    return arrays


def _reasons(df: pl.DataFrame, col: str, missing: NDArray[np.bool_]) -> NDArray[np.object_]:
    out = np.full(df.height, None, dtype=object)
    # `<score>_reason` next to `<score>` or, as `ehr_risk.scores` writes it, next to `<score>_risk`
    candidates = [f"{col}_reason"] + (
        [f"{col.removesuffix('_risk')}_reason"] if col.endswith("_risk") else []
    )
    reason_col = next((c for c in candidates if c in df.columns), None)
    if reason_col is not None:
        values = df[reason_col].to_list()
        for i in np.flatnonzero(missing):
            text = "" if values[i] is None else str(values[i]).strip()
            out[i] = text or "not given"
    else:
        out[missing] = "not given"
    return out


def reason_counts(reasons: NDArray[np.object_], rows: NDArray[np.intp]) -> dict[str, int]:
    """Rows lacking the score, by reason, most frequent first."""
    values = [v for v in reasons[rows] if v is not None]
    uniq, counts = np.unique(np.asarray(values, dtype=str), return_counts=True)
    pairs = sorted(zip(uniq.tolist(), counts.tolist(), strict=True), key=lambda kv: (-kv[1], kv[0]))
    return {str(k): int(v) for k, v in pairs}


def _follow_up(df: pl.DataFrame, cols: TimeToEvent) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    need = [cols.event_time, cols.censor_time, cols.prediction_time]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise InputDataError(f"predictions: time-to-event column(s) {', '.join(missing)} missing")

    def days(col: str) -> NDArray[np.float64]:
        dtype = df.schema[col]
        if not dtype.is_temporal():
            raise InputDataError(f"predictions: time-to-event column {col!r} is {dtype}, not a date/time")
        seconds = df[col].dt.epoch("s").cast(pl.Float64).fill_null(float("nan"))
        return seconds.to_numpy().astype(np.float64) / 86400.0

    t0, ev, cens = days(cols.prediction_time), days(cols.event_time), days(cols.censor_time)
    event = np.isfinite(ev) & (~np.isfinite(cens) | (ev <= cens))
    end = np.where(event, ev, cens)
    years = (end - t0) / DAYS_PER_YEAR
    years[~np.isfinite(years) | (years <= 0)] = np.nan  # no follow-up after t: unusable
    return years, event
