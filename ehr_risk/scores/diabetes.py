"""Type 2 diabetes onset: documented logistic-regression fallback (no published score fits the records).

Why not a published score (details in docs/scores.md):
- Framingham Offspring simple clinical model (Wilson PWF et al., Arch Intern Med 2007;167:1068–1074)
  needs parental history of diabetes and a *fasting* glucose; EHR extracts carry neither reliably
  (family history is rarely coded, glucose is mostly random/non-fasting).
- ARIC (Schmidt MI et al., Diabetes Care 2005;28:2013–2018) needs waist circumference, height and
  parental history; FINDRISC and the ADA risk test need diet, activity or waist; QDiabetes needs UK
  deprivation, ethnicity groups and family history.
Filling those inputs with "absent" would be exactly the silent imputation the project forbids, so we fit
a logistic regression on the training split over the same kind of variables as Wilson 2007's model that
the clinical-variables table does hold: age, sex, BMI, SBP and BP treatment, HDL, triglycerides, glucose.
Rows with diabetes already present are ineligible (reason "diabetes already present").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from ehr_risk.scores.base import SEXES, Var
from ehr_risk.scores.logistic import LogisticRiskModel, numeric


class DiabetesOnsetLogistic(LogisticRiskModel):
    """Risk of incident type 2 diabetes within `horizon` years, fitted on labelled training rows."""

    name: ClassVar[str] = "t2d"
    TARGET: ClassVar[str] = "t2d"
    ELIGIBILITY_ONLY: ClassVar[tuple[str, ...]] = ("diabetes",)

    def variables(self) -> tuple[Var, ...]:
        # Plausible-value bounds (ours): they catch unit and entry errors, not clinical cut-offs.
        return (
            numeric("age_years", 18, 100),
            Var("sex", "category", categories=SEXES),
            numeric("bmi_kg_m2", 12, 80),
            numeric("systolic_bp_mm_hg", 60, 260),
            Var("on_bp_treatment", "flag"),
            numeric("hdl_mg_dl", 5, 200),
            numeric("triglycerides_mg_dl", 10, 5000),
            numeric("glucose_mg_dl", 20, 1000),
            Var("diabetes", "flag"),
        )

    def _eligibility(self, v: Mapping[str, np.ndarray]) -> list[tuple[np.ndarray, str]]:
        return [(v["diabetes"] == 1, "diabetes already present")]
