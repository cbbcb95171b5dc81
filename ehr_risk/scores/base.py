"""Common base of the published clinical risk equations: input contract, valid ranges, missing-with-reason.

Every equation is a scikit-learn style estimator over the clinical-variables table (the column names of
`DS/features/clinical.parquet` and of `ehr-risk risk-score` CSV input). A row whose inputs are missing or
outside the equation's published valid range gets a NaN risk and a reason ("missing hdl_mg_dl",
"age_years out of range 40-79"), never a silently clipped or imputed value. The one exception is the
documented `out_of_range="clip"` policy: values are clamped into the valid range, the risk is computed,
and the row is flagged (`flag=True`) with the clipping named in its reason.

Reasons hold column names and published bounds only, never the patient's value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from ehr_risk.errors import InputDataError

OutOfRangePolicy = Literal["missing", "clip"]
SEXES = ("female", "male")
RACES = ("white", "black", "other")


@dataclass(frozen=True)
class Var:
    """One input column: `kind` is numeric (with a closed valid range), flag (0/1) or category."""

    column: str
    kind: Literal["numeric", "flag", "category"] = "numeric"
    low: float | None = None
    high: float | None = None
    categories: tuple[str, ...] = ()

    def range_text(self) -> str:
        return f"{self.low:g}-{self.high:g}"


@dataclass
class RiskResult:
    """Per-row output: risk in [0, 1] (NaN when not computed), reason ("" when computed), flag."""

    risk: np.ndarray
    reason: list[str]
    flag: np.ndarray

    def to_frame(self, prefix: str = "") -> pd.DataFrame:
        return pd.DataFrame(
            {f"{prefix}risk": self.risk, f"{prefix}reason": self.reason, f"{prefix}flag": self.flag}
        )


def to_numeric_column(values: pd.Series, column: str) -> np.ndarray:
    """Column → float64 array (NaN for missing); InputDataError naming the first non-numeric position."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    coerced = pd.to_numeric(values, errors="coerce")
    bad = coerced.isna() & values.notna() & (values.astype("string").str.strip() != "")
    if bool(bad.any()):
        position = int(np.flatnonzero(bad.to_numpy())[0])
        count = int(bad.sum())
        raise InputDataError(f"column {column}: data row {position + 1} is not a number ({count} such rows)")
    return coerced.to_numpy(dtype="float64", na_value=np.nan)


def to_category_column(values: pd.Series) -> np.ndarray:
    """Column → object array of lower-case stripped strings, None for missing."""
    out = values.astype("string").str.strip().str.lower()
    arr = out.mask(out == "").to_numpy(dtype=object)
    arr[pd.isna(arr)] = None
    return arr


class RiskEquation(ClassifierMixin, BaseEstimator):
    """Base of the fixed-coefficient equations. Subclasses declare `variables()` and `_risk(values)`.

    `fit` learns nothing: it checks the input columns and records `feature_names_in_` (scikit-learn's
    contract), so an equation can stand wherever a fitted classifier is expected.
    """

    #: family name used in messages, e.g. "pce", "prevent"
    name: ClassVar[str] = ""
    #: the outcome the risk is for ("ascvd", "cvd", "hf", "t2d", "ckd") and its horizon in years
    TARGET: ClassVar[str] = ""
    HORIZON: ClassVar[int] = 10
    #: rows whose risk is >= threshold are labelled 1 by `predict`
    default_threshold: ClassVar[float] = 0.075
    #: True for equations whose coefficients come from `fit` (the documented LR fallbacks)
    requires_fit: ClassVar[bool] = False

    def __init__(self, out_of_range: OutOfRangePolicy = "missing", threshold: float | None = None) -> None:
        self.out_of_range = out_of_range
        self.threshold = threshold

    @property
    def target(self) -> str:
        return self.TARGET

    @property
    def horizon_years(self) -> int:
        return self.HORIZON

    # ---- to be provided by each equation ----
    def variables(self) -> tuple[Var, ...]:
        raise NotImplementedError

    def _risk(self, v: Mapping[str, np.ndarray]) -> np.ndarray:
        """Risk for rows whose inputs are all present and valid (arrays of equal length)."""
        raise NotImplementedError

    def _eligibility(self, v: Mapping[str, np.ndarray]) -> list[tuple[np.ndarray, str]]:
        """Extra (mask, reason) pairs making rows ineligible, e.g. prevalent disease. Default: none."""
        return []

    # ---- scikit-learn interface ----
    @property
    def required_columns(self) -> list[str]:
        return [v.column for v in self.variables()]

    def fit(self, X: pd.DataFrame, y: Any = None) -> Self:
        self._check_params()
        self._check_columns(X)
        self.feature_names_in_ = np.asarray(self.required_columns, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n, 2) array [1 - risk, risk]; both NaN on rows without a risk (see `predict_risk`)."""
        risk = self.predict_risk(X).risk
        return np.column_stack([1.0 - risk, risk])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1.0 where risk >= threshold, 0.0 below, NaN where no risk could be computed."""
        risk = self.predict_risk(X).risk
        threshold = self.default_threshold if self.threshold is None else self.threshold
        with np.errstate(invalid="ignore"):
            return np.where(np.isnan(risk), np.nan, (risk >= threshold).astype(float))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        return tags

    # ---- the shared missing / range logic ----
    def predict_risk(self, X: pd.DataFrame) -> RiskResult:
        """Risk per row, with the reason for every row that has none (NaN), and the clip flag."""
        values, ok, reasons, flag = self.validate_rows(X)
        risk = np.full(len(X), np.nan)
        if ok.any():
            risk[ok] = np.clip(self._risk({k: a[ok] for k, a in values.items()}), 0.0, 1.0)
        return RiskResult(risk=risk, reason=reasons, flag=flag & ok)

    def validate_rows(
        self, X: pd.DataFrame
    ) -> tuple[dict[str, np.ndarray], np.ndarray, list[str], np.ndarray]:
        """Parsed input arrays, the mask of usable rows, the reason per row and the clip flag per row."""
        self._check_params()
        self._check_columns(X)
        n = len(X)
        reasons = np.full(n, "", dtype=object)
        bad = np.zeros(n, dtype=bool)
        flag = np.zeros(n, dtype=bool)
        values: dict[str, np.ndarray] = {}

        def note(mask: np.ndarray, text: str) -> None:
            if mask.any():
                current = reasons[mask]
                reasons[mask] = np.where(current == "", text, current + "; " + text)

        for var in self.variables():
            raw = X[var.column]
            if var.kind == "category":
                cat = to_category_column(raw)
                missing = pd.isna(cat)
                invalid = ~missing & ~np.isin(cat, list(var.categories))
                note(missing, f"missing {var.column}")
                note(invalid, f"{var.column} not one of {'|'.join(var.categories)}")
                bad |= missing | invalid
                values[var.column] = cat
                continue
            num = to_numeric_column(raw, var.column)
            missing = np.isnan(num)
            note(missing, f"missing {var.column}")
            bad |= missing
            if var.kind == "flag":
                invalid = ~missing & ~np.isin(num, (0.0, 1.0))
                note(invalid, f"{var.column} not 0/1")
                bad |= invalid
            else:
                assert var.low is not None and var.high is not None
                outside = ~missing & ((num < var.low) | (num > var.high))
                if self.out_of_range == "clip":
                    note(outside, f"clipped {var.column} to {var.range_text()}")
                    flag |= outside
                    num = np.where(outside, np.clip(num, var.low, var.high), num)
                else:
                    note(outside, f"{var.column} out of range {var.range_text()}")
                    bad |= outside
            values[var.column] = num

        for mask, text in self._eligibility(values):
            mask = mask & ~bad
            note(mask, text)
            bad |= mask
        return values, ~bad, reasons.tolist(), flag

    def _check_params(self) -> None:
        if self.out_of_range not in ("missing", "clip"):
            raise ValueError(f"out_of_range must be 'missing' or 'clip', not {self.out_of_range!r}")

    def _check_columns(self, X: pd.DataFrame) -> None:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"{type(self).__name__} needs a pandas DataFrame with named clinical columns")
        missing = [c for c in self.required_columns if c not in X.columns]
        if missing:
            raise InputDataError(f"{self.name}: missing input column(s) {', '.join(missing)}")
