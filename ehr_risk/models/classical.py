"""Classical baselines on the tabular features: regularised logistic regression and gradient boosting.

One binary classifier per (task, horizon) predicts the label at that horizon (contracts.md: a competing
death first means False). Rows censored before the horizon are handled by inverse-probability-of-censoring
weights (`censoring="ipcw"`, the default, see targets.py) or dropped (`"drop"`, biased upwards when
follow-up is short). Class weighting (`class_weight="balanced"`) is available but off by default: it
trades calibration for sensitivity, and these models are meant to give calibrated risks.

Model selection uses the tuning split: the inverse regularisation C of logistic regression is picked from a
grid by weighted tuning log loss; gradient boosting stops early on the tuning loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class ClassicalSettings:
    kind: Literal["lr", "gbm"]
    class_weight: Literal["balanced"] | None = None
    censoring: Literal["ipcw", "drop"] = "ipcw"
    seed: int = 0
    # logistic regression
    C: tuple[float, ...] = (0.01, 0.1, 1.0)
    lr_max_iter: int = 2000
    # gradient boosting
    learning_rate: float = 0.05
    max_iter: int = 1000
    max_leaf_nodes: int = 8
    min_samples_leaf: int = 200
    l2_regularization: float = 1.0
    n_iter_no_change: int = 20


def make_estimator(settings: ClassicalSettings, C: float = 1.0) -> Any:
    if settings.kind == "lr":
        # Missing values: median plus a missingness indicator (absence of a lab is informative).
        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                ("scale", StandardScaler()),
                (
                    "model",
                    LogisticRegression(
                        C=C, max_iter=settings.lr_max_iter, class_weight=settings.class_weight
                    ),
                ),
            ]
        )
    return HistGradientBoostingClassifier(
        learning_rate=settings.learning_rate,
        max_iter=settings.max_iter,
        max_leaf_nodes=settings.max_leaf_nodes,
        min_samples_leaf=settings.min_samples_leaf,
        l2_regularization=settings.l2_regularization,
        early_stopping=True,
        n_iter_no_change=settings.n_iter_no_change,
        class_weight=settings.class_weight,
        random_state=settings.seed,
    )


@dataclass(frozen=True)
class BinaryTarget:
    """Rows (indices into the feature matrix), labels and sample weights of one (task, horizon)."""

    rows: np.ndarray
    y: np.ndarray
    weight: np.ndarray


def _fit_weight(est: Any, kind: str, X: np.ndarray, t: BinaryTarget, **kw: Any) -> Any:
    if kind == "lr":
        return est.fit(X[t.rows], t.y, model__sample_weight=t.weight)
    return est.fit(X[t.rows], t.y, sample_weight=t.weight, **kw)


def fit_binary(
    settings: ClassicalSettings,
    X_train: np.ndarray,
    train: BinaryTarget,
    X_tune: np.ndarray,
    tune: BinaryTarget,
) -> tuple[Any, dict[str, float]]:
    """Fit one classifier with model selection on the tuning rows; returns it and what was selected."""
    if len(np.unique(train.y)) < 2:
        raise ValueError("training rows hold a single class")
    if settings.kind == "gbm":
        est = make_estimator(settings)
        kw: dict[str, Any] = {}
        if len(np.unique(tune.y)) == 2:
            kw = {"X_val": X_tune[tune.rows], "y_val": tune.y, "sample_weight_val": tune.weight}
        else:  # no usable tuning rows: sklearn's own validation fraction
            est.set_params(validation_fraction=0.1)
        est = _fit_weight(est, "gbm", X_train, train, **kw)
        info = {"n_iter": float(est.n_iter_)}
        if kw:
            info["tuning_log_loss"] = _loss(est, X_tune, tune)
        return est, info
    best: tuple[float, float, Any] | None = None
    for C in settings.C:
        est = _fit_weight(make_estimator(settings, C), "lr", X_train, train)
        loss = _loss(est, X_tune, tune) if len(tune.rows) else 0.0
        if best is None or loss < best[0]:
            best = (loss, C, est)
        if not len(tune.rows):
            break
    assert best is not None
    return best[2], {"C": best[1], "tuning_log_loss": best[0]}


def _loss(est: Any, X: np.ndarray, t: BinaryTarget) -> float:
    p = est.predict_proba(X[t.rows])[:, 1]
    return float(log_loss(t.y, p, sample_weight=t.weight, labels=[False, True]))


@dataclass
class HorizonClassifiers:
    """Fitted classifiers keyed by output column (`risk_<task>_<h>y`); `predict_risk` gives each column."""

    settings: ClassicalSettings
    models_: dict[str, Any] = field(default_factory=dict)
    selection_: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, column: str, model: Any, info: dict[str, float]) -> None:
        self.models_[column] = model
        self.selection_[column] = info

    def predict_risk(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return {c: m.predict_proba(X)[:, 1].astype(np.float64) for c, m in self.models_.items()}
