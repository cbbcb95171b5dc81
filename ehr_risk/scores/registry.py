"""Score names → estimator factories. The names are the column prefixes of `score_frame` output.

pce                         2013 ACC/AHA Pooled Cohort Equations, 10-year hard ASCVD
prevent_{cvd,ascvd,hf}_{10,30}y   AHA PREVENT base model
framingham, framingham_bmi  Framingham 2008 general CVD, laboratory / office (BMI) model
t2d, ckd                    fitted logistic fallbacks (need `fit` on labelled training rows)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ehr_risk.errors import ConfigError
from ehr_risk.scores.base import RiskEquation
from ehr_risk.scores.ckd import CKDOnsetLogistic
from ehr_risk.scores.diabetes import DiabetesOnsetLogistic
from ehr_risk.scores.framingham import FraminghamGeneralCVD
from ehr_risk.scores.pce import PooledCohortEquations
from ehr_risk.scores.prevent import HORIZONS, OUTCOMES, PreventEquations

Factory = Callable[..., RiskEquation]

SCORES: dict[str, Factory] = {
    "pce": PooledCohortEquations,
    "framingham": lambda **kw: FraminghamGeneralCVD(variant="lab", **kw),
    "framingham_bmi": lambda **kw: FraminghamGeneralCVD(variant="bmi", **kw),
    "t2d": DiabetesOnsetLogistic,
    "ckd": CKDOnsetLogistic,
}
for _outcome in OUTCOMES:
    for _horizon in HORIZONS:
        SCORES[f"prevent_{_outcome}_{_horizon}y"] = lambda o=_outcome, h=_horizon, **kw: PreventEquations(
            outcome=o, horizon=h, **kw
        )

#: the scores computable without training (fixed published coefficients)
FIXED_SCORES: tuple[str, ...] = tuple(n for n in SCORES if n not in ("t2d", "ckd"))


def make_score(name: str, **params: Any) -> RiskEquation:
    """A new estimator for a registered score name; ConfigError listing the names for an unknown one."""
    try:
        factory = SCORES[name]
    except KeyError:
        raise ConfigError(f"unknown risk score {name!r}; known: {', '.join(SCORES)}") from None
    return factory(**params)


def resolve_cli_name(name: str, outcome: str | None, horizon: int | None) -> str:
    """`risk-score NAME [--outcome] [--horizon]` → registry name; ConfigError for unpublished combinations."""
    key = name.strip().lower().replace("-", "_")
    if key == "prevent":
        outcome = outcome or "cvd"
        horizon = horizon or 10
        if outcome not in OUTCOMES:
            raise ConfigError(f"prevent: --outcome must be one of {', '.join(OUTCOMES)}")
        if horizon not in HORIZONS:
            raise ConfigError("prevent: --horizon must be 10 or 30")
        return f"prevent_{outcome}_{horizon}y"
    if key not in SCORES:
        raise ConfigError(f"unknown risk score {name!r}; known: pce, prevent, framingham, framingham-bmi")
    if key not in FIXED_SCORES:
        raise ConfigError(f"{name}: a fitted score; train it with the modelling pipeline, not risk-score")
    estimator = make_score(key)
    if outcome is not None and outcome != estimator.target:
        raise ConfigError(f"{name} predicts {estimator.target} only (got --outcome {outcome})")
    if horizon is not None and horizon != estimator.horizon_years:
        raise ConfigError(f"{name} is a {estimator.horizon_years}-year score (got --horizon {horizon})")
    return key
