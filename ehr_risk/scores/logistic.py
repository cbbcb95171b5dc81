"""Logistic-regression fallback for outcomes without a published score the records can support.

Used for type 2 diabetes and CKD onset (see diabetes.py, ckd.py and docs/scores.md for why the published
scores do not fit our records). Same contract as the fixed equations — named clinical columns, valid
ranges, NaN risk with a reason for missing / out-of-range / ineligible rows, never imputation — but the
coefficients are learned by `fit` on the training split's labelled rows (complete cases only).

Design: continuous inputs are standardised; `sex` becomes a 0/1 male indicator; 0/1 flags are used as is.
L2-penalised logistic regression (scikit-learn `LogisticRegression`, lbfgs), so the fitted odds ratios
can be reported next to the published scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ehr_risk.errors import InputDataError
from ehr_risk.scores.base import RiskEquation, Var


class LogisticRiskModel(RiskEquation):
    """Base of the fitted fallbacks; subclasses give `variables()` and, optionally, `_eligibility`."""

    requires_fit: ClassVar[bool] = True
    default_threshold: ClassVar[float] = 0.10
    #: inputs used only to decide eligibility (e.g. prevalent disease), not as predictors
    ELIGIBILITY_ONLY: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        horizon: int = 5,
        C: float = 1.0,
        out_of_range: Literal["missing", "clip"] = "missing",
        threshold: float | None = None,
    ) -> None:
        super().__init__(out_of_range=out_of_range, threshold=threshold)
        self.horizon = horizon
        self.C = C

    @property
    def horizon_years(self) -> int:
        return self.horizon

    def predictors(self) -> tuple[Var, ...]:
        return tuple(v for v in self.variables() if v.column not in self.ELIGIBILITY_ONLY)

    def design(self, v: Mapping[str, np.ndarray]) -> np.ndarray:
        """(n, p) design matrix in `variables()` order (categories → indicators)."""
        cols: list[np.ndarray] = []
        for var in self.predictors():
            a = v[var.column]
            if var.kind == "category":
                # The first category is the reference (sex: female → 0, male → 1).
                cols.extend((a == c).astype(float) for c in var.categories[1:])
            else:
                cols.append(a.astype(float))
        return np.column_stack(cols)

    def design_names(self) -> list[str]:
        names: list[str] = []
        for var in self.predictors():
            if var.kind == "category":
                names.extend(f"{var.column}={c}" for c in var.categories[1:])
            else:
                names.append(var.column)
        return names

    def fit(self, X: pd.DataFrame, y: Any = None) -> Self:
        """Fit on rows with complete, in-range, eligible inputs and a known label (y not null)."""
        super().fit(X)
        if y is None:
            raise InputDataError(f"{self.name}: fitting needs labels (y)")
        labels = pd.Series(pd.array(y, dtype="boolean")).to_numpy(dtype=float, na_value=np.nan)
        if len(labels) != len(X):
            raise InputDataError(f"{self.name}: {len(labels)} labels for {len(X)} rows")
        values, ok, _, _ = self.validate_rows(X)
        use = ok & ~np.isnan(labels)
        target = labels[use]
        if use.sum() < 10 or len(np.unique(target)) < 2:
            raise InputDataError(
                f"{self.name}: needs >= 10 complete labelled rows with both outcomes to fit "
                f"(have {int(use.sum())} rows, {int(target.sum()) if use.any() else 0} events)"
            )
        model = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(C=self.C, max_iter=1000))])
        model.fit(self.design({k: a[use] for k, a in values.items()}), target.astype(int))
        self.model_ = model
        self.n_train_ = int(use.sum())
        self.n_events_ = int(target.sum())
        lr: LogisticRegression = model.named_steps["lr"]
        scale: StandardScaler = model.named_steps["scale"]
        # Odds ratio per one unit of each input (undoing the standardisation), for reporting.
        per_unit = lr.coef_[0] / scale.scale_
        self.odds_ratios_ = dict(zip(self.design_names(), np.exp(per_unit).tolist(), strict=True))
        return self

    def _risk(self, v: Mapping[str, np.ndarray]) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"{self.name}: call fit() on labelled training rows before predicting")
        return np.asarray(self.model_.predict_proba(self.design(v))[:, 1], dtype=float)

    def predict_risk(self, X: pd.DataFrame) -> Any:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"{self.name}: call fit() on labelled training rows before predicting")
        return super().predict_risk(X)


def numeric(column: str, low: float, high: float) -> Var:
    return Var(column, "numeric", low=low, high=high)
