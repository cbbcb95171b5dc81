"""CSV input and output of `ehr-risk risk-score` (the file contract lives here, not in the CLI).

Input: one row per person, the clinical-variable columns named in docs/scores.md (extra columns are kept
and passed through). Output: the input columns unchanged, then `risk` (fraction 0–1, empty when not
computed), `reason` (empty when computed) and, under the clip policy, `flag` (1 when an input was clipped).
Errors name the file, the column and the line or data row number, never a value.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from ehr_risk.errors import ConfigError, InputDataError
from ehr_risk.scores.base import RiskEquation, RiskResult, to_numeric_column

OUTPUT_COLUMNS = ("risk", "reason", "flag")


def read_csv_text(path: Path) -> pd.DataFrame:
    """All cells as strings (None for empty cells); InputDataError for a file that is not a usable CSV.

    Parsed with the csv module rather than pandas so that a row with more or fewer fields than the header
    is an error naming its line, not silently shifted (pandas makes a long first row the index) or padded
    with missing values (a short row). Blank lines are skipped; a UTF-8 byte-order mark is accepted.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, skipinitialspace=True)
            header = next(reader, None)
            if header is None:
                raise InputDataError(f"{path}: empty file (no header row)")
            width = len(header)
            rows: list[list[str]] = []
            for fields in reader:
                if not fields:
                    continue
                if len(fields) != width:
                    raise InputDataError(
                        f"{path}: line {reader.line_num} has {len(fields)} fields, the header has {width}"
                    )
                rows.append(fields)
    except FileNotFoundError:
        raise InputDataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputDataError(f"{path}: is a directory, not a CSV file") from None
    except UnicodeDecodeError:
        raise InputDataError(f"{path}: not UTF-8 text (a CSV file is expected)") from None
    except csv.Error as exc:
        raise InputDataError(f"{path}: not a readable CSV file ({exc})") from None
    except OSError as exc:
        raise InputDataError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    columns = [str(c).strip() for c in header]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise InputDataError(f"{path}: column(s) {', '.join(repeated)} appear more than once in the header")
    raw = pd.DataFrame(rows, columns=columns, dtype=object)
    return raw.mask(raw == "")


def read_score_input(path: Path, estimator: RiskEquation) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(raw text frame for pass-through, parsed frame for the equation); InputDataError on a bad file."""
    raw = read_csv_text(path)
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
    """The input columns as read, then risk / reason (/ flag); ConfigError when `path` cannot be written."""
    out = raw.copy()
    out["risk"] = np.where(np.isnan(result.risk), "", [f"{r:.6f}" for r in np.nan_to_num(result.risk)])
    out["reason"] = result.reason
    if flag:
        out["flag"] = result.flag.astype(int)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL)
        tmp.replace(path)  # atomic: a failed run never leaves a half-written output
    except OSError as exc:
        if tmp.is_file():
            tmp.unlink()
        raise ConfigError(f"{path}: cannot write the output ({exc.strerror or type(exc).__name__})") from None
