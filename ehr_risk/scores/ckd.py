"""CKD onset (eGFR < 60): documented logistic-regression fallback.

The published score for this outcome is the CKD Prognosis Consortium's incident-CKD equations (Nelson RG
et al., JAMA 2019;322:2104–2114): 5-year risk of eGFR < 60 from age, sex, race, eGFR, history of CVD,
ever smoking, hypertension, BMI and albuminuria (urine ACR or dipstick), with separate equations for
people with diabetes adding HbA1c and diabetes treatment. It does not fit our records as they stand:
- albuminuria is measured in a minority of patients and the clinical-variables table has no ACR column;
- history of CVD and "ever smoker" are not variables of the table (only current smoking is);
- the coefficient tables are in the paper's online supplement, which we could not verify here.
Rather than impute absent albuminuria and CVD history, we fit a logistic regression on the training split
over the Nelson variables the table holds: age, sex, eGFR, SBP and BP treatment (hypertension), diabetes,
BMI and current smoking (race is left out, as in the race-free CKD-EPI 2021 eGFR it builds on).
Rows with eGFR already below 60 are ineligible (reason "egfr below 60: CKD already present").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from ehr_risk.scores.base import SEXES, Var
from ehr_risk.scores.logistic import LogisticRiskModel, numeric


class CKDOnsetLogistic(LogisticRiskModel):
    """Risk of incident CKD (eGFR < 60 mL/min/1.73 m2) within `horizon` years, fitted on training rows."""

    name: ClassVar[str] = "ckd"
    TARGET: ClassVar[str] = "ckd"

    def variables(self) -> tuple[Var, ...]:
        # Plausible-value bounds (ours): they catch unit and entry errors, not clinical cut-offs.
        return (
            numeric("age_years", 18, 100),
            Var("sex", "category", categories=SEXES),
            numeric("egfr_ml_min_1_73m2", 5, 200),
            numeric("systolic_bp_mm_hg", 60, 260),
            Var("on_bp_treatment", "flag"),
            Var("diabetes", "flag"),
            numeric("bmi_kg_m2", 12, 80),
            Var("current_smoker", "flag"),
        )

    def _eligibility(self, v: Mapping[str, np.ndarray]) -> list[tuple[np.ndarray, str]]:
        return [(v["egfr_ml_min_1_73m2"] < 60, "egfr below 60: CKD already present")]
