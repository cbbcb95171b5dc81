"""Published clinical risk equations (PCE, PREVENT, Framingham) and the documented T2D / CKD fallbacks.

Each is a scikit-learn style estimator over the named clinical variables; `predict_risk` gives the risk
and, for rows without one, the reason. See docs/scores.md for sources, valid ranges and the missing policy.
"""

from ehr_risk.scores.base import RiskEquation, RiskResult
from ehr_risk.scores.ckd import CKDOnsetLogistic
from ehr_risk.scores.diabetes import DiabetesOnsetLogistic
from ehr_risk.scores.framingham import FraminghamGeneralCVD
from ehr_risk.scores.from_records import coverage, score_frame, scores_from_events
from ehr_risk.scores.pce import PooledCohortEquations
from ehr_risk.scores.prevent import PreventEquations
from ehr_risk.scores.registry import FIXED_SCORES, SCORES, make_score

__all__ = [
    "FIXED_SCORES",
    "SCORES",
    "CKDOnsetLogistic",
    "DiabetesOnsetLogistic",
    "FraminghamGeneralCVD",
    "PooledCohortEquations",
    "PreventEquations",
    "RiskEquation",
    "RiskResult",
    "coverage",
    "make_score",
    "score_frame",
    "scores_from_events",
]
