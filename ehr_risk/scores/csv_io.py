"""CSV input and output of `ehr-risk risk-score` (the file contract lives here, not in the CLI).

Input: one row per person, the clinical-variable columns named in docs/scores.md (extra columns are kept
and passed through). Output: the input columns unchanged, then `risk` (fraction 0–1, empty when not
computed), `reason` (empty when computed) and, under the clip policy, `flag` (1 when an input was clipped).
Errors name the file, the column and the data row number, never a value.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from ehr_risk.errors import InputDataError
from ehr_risk.scores.base import RiskEquation, RiskResult, to_numeric_column

OUTPUT_COLUMNS = ("risk", "reason", "flag")


def read_score_input(path: Path, estimator: RiskEquation) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(raw text frame for pass-through, parsed frame for the equation); InputDataError on a bad file."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True)
    except FileNotFoundError:
        raise InputDataError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise InputDataError(f"{path}: empty file (no header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{path}: not a readable CSV file ({type(exc).__name__})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in estimator.required_columns if c not in raw.columns]
    if missing:
        raise InputDataError(f"{path}: missing column(s) {', '.join(missing)}")
    clash = [c for c in OUTPUT_COLUMNS if c in raw.columns]
    if clash:
        raise InputDataError(f"{path}: input already has output column(s) {', '.join(clash)}")

    parsed = pd.DataFrame(index=raw.index)
    for var in estimator.variables():
        if var.kind == "category":
            parsed[var.column] = raw[var.column]
            continue
        try:
            parsed[var.column] = to_numeric_column(raw[var.column], var.column)
        except InputDataError as exc:
            raise InputDataError(f"{path}: {exc}") from None
    return raw, parsed


def write_score_output(path: Path, raw: pd.DataFrame, result: RiskResult, flag: bool = False) -> None:
    out = raw.copy()
    out["risk"] = np.where(np.isnan(result.risk), "", [f"{r:.6f}" for r in np.nan_to_num(result.risk)])
    out["reason"] = result.reason
    if flag:
        out["flag"] = result.flag.astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    out.to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL)
    tmp.replace(path)
