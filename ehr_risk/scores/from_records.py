"""Every clinical score for every cohort row, from the clinical-variables table.

Input: the table of `DS/features/clinical.parquet` (built by `ehr_risk.features.clinical.clinical_variables`
from the events with documented look-back windows): subject_id, prediction_time and the named clinical
variables. Output: one row per input row, in the same order, with `<score>_risk` (float, NaN when not
computed) and `<score>_reason` (empty when computed) for each score, plus `<score>_flag` when a clipping
policy is in force — so each cohort row gets each score or the reason it has none.

A score whose inputs are absent from the table as a whole (e.g. no `bmi_kg_m2` column) does not stop the
others: all its rows get the reason "missing column <name>".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from ehr_risk.scores.base import RiskEquation
from ehr_risk.scores.registry import FIXED_SCORES, make_score

KEY_COLUMNS = ("subject_id", "prediction_time")


def score_frame(
    clinical: pd.DataFrame | pl.DataFrame,
    names: Sequence[str] | None = None,
    fitted: Mapping[str, RiskEquation] | None = None,
    out_of_range: str = "missing",
) -> pd.DataFrame:
    """Compute `names` (default: every fixed-coefficient score) plus any `fitted` estimators.

    `fitted` maps a column prefix to an already fitted estimator (the T2D / CKD fallbacks after training,
    or an equation with non-default parameters); it wins over a registry name of the same prefix.
    Returns the key columns present in `clinical` followed by the score columns.
    """
    frame = clinical.to_pandas() if isinstance(clinical, pl.DataFrame) else clinical
    frame = frame.reset_index(drop=True)
    estimators: dict[str, RiskEquation] = {}
    for name in FIXED_SCORES if names is None else names:
        estimators[name] = make_score(name, out_of_range=out_of_range)
    estimators.update(fitted or {})

    out = pd.DataFrame({c: frame[c] for c in KEY_COLUMNS if c in frame.columns}, index=frame.index)
    columns: dict[str, Any] = {}
    for prefix, estimator in estimators.items():
        absent = [c for c in estimator.required_columns if c not in frame.columns]
        if absent:
            columns[f"{prefix}_risk"] = np.full(len(frame), np.nan)
            columns[f"{prefix}_reason"] = [f"missing column {', '.join(absent)}"] * len(frame)
            continue
        result = estimator.predict_risk(frame)
        columns[f"{prefix}_risk"] = result.risk
        columns[f"{prefix}_reason"] = result.reason
        if estimator.out_of_range == "clip":
            columns[f"{prefix}_flag"] = result.flag
    return pd.concat([out, pd.DataFrame(columns, index=out.index)], axis=1)


def scores_from_events(
    events: Any,
    times: pl.DataFrame,
    names: Sequence[str] | None = None,
    fitted: Mapping[str, RiskEquation] | None = None,
    lookback_days: dict[str, int | None] | None = None,
    out_of_range: str = "missing",
) -> pd.DataFrame:
    """Events + prediction times → every score per (subject_id, prediction_time), in `times` row order.

    The clinical variables are extracted by `ehr_risk.features.clinical.clinical_variables` (visibility
    rule, look-back windows, units and code lists documented there), then scored by `score_frame`.
    """
    from ehr_risk.features.clinical import clinical_variables

    clinical = clinical_variables(events, times, lookback_days)
    return score_frame(clinical, names=names, fitted=fitted, out_of_range=out_of_range)


def reason_counts(reasons: Sequence[str]) -> dict[str, int]:
    """How many rows carry each reason (a row may have several, joined by "; "), most frequent first."""
    counts: dict[str, int] = {}
    for text in reasons:
        for part in str(text).split("; ") if text else ():
            counts[part] = counts.get(part, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def coverage(scores: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per score: rows, rows computed, and the count of each reason (for cohort reports; no values)."""
    report: dict[str, dict[str, Any]] = {}
    for col in scores.columns:
        if not col.endswith("_risk"):
            continue
        prefix = col[: -len("_risk")]
        report[prefix] = {
            "rows": len(scores),
            "computed": int(np.isfinite(scores[col].to_numpy(dtype=float)).sum()),
            "reasons": reason_counts(list(scores[f"{prefix}_reason"])),
        }
    return report
