"""2013 ACC/AHA Pooled Cohort Equations (PCE): 10-year risk of a first hard ASCVD event.

Source: Goff DC Jr, Lloyd-Jones DM, et al. 2013 ACC/AHA Guideline on the Assessment of Cardiovascular
Risk. Circulation 2014;129(25 Suppl 2):S49–S73, Table A ("Equation Parameters of the Pooled Cohort
Equations for Estimation of 10-Year Risk of Hard ASCVD and Specific Examples"). Every coefficient,
baseline survival S10 and mean "coefficient × value" sum below is copied from that table, at its printed
precision. Some calculators (Cerner's ASCVD SMART app, the PooledCohort R package) use constants with one
more digit (e.g. white men S10 0.91436, mean 61.1816); their printed risks differ from ours by up to
0.2 percentage points (docs/scores.md).

risk = 1 − S10 ^ exp(Σ coef·x − mean), with x built from ln(age), ln(TC), ln(HDL), ln(SBP) (treated or
untreated), smoking and diabetes. Sex- and race-specific; the guideline says to use the white equations
for races other than African American (race "other" here).

Valid ranges are the published calculator's: age 40–79, total cholesterol 130–320 mg/dL, HDL 20–100
mg/dL, SBP 90–200 mmHg (Goff et al., and the ACC/AHA ASCVD Risk Estimator).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from ehr_risk.scores.base import RACES, SEXES, RiskEquation, Var

# Term order of the coefficient vectors below.
TERMS = (
    "ln_age",
    "ln_age_sq",
    "ln_tc",
    "ln_age_x_ln_tc",
    "ln_hdl",
    "ln_age_x_ln_hdl",
    "ln_treated_sbp",
    "ln_age_x_ln_treated_sbp",
    "ln_untreated_sbp",
    "ln_age_x_ln_untreated_sbp",
    "smoker",
    "ln_age_x_smoker",
    "diabetes",
)

# Goff et al. 2014, Table A: (coefficients in TERMS order, baseline survival S10, mean coef×value sum).
# "N/A" cells of the table are 0 here.
COEFFICIENTS: dict[tuple[str, str], tuple[tuple[float, ...], float, float]] = {
    ("female", "white"): (
        (-29.799, 4.884, 13.540, -3.114, -13.578, 3.149, 2.019, 0.0, 1.957, 0.0, 7.574, -1.665, 0.661),
        0.9665,
        -29.18,
    ),
    ("female", "black"): (
        (17.114, 0.0, 0.940, 0.0, -18.920, 4.475, 29.291, -6.432, 27.820, -6.087, 0.691, 0.0, 0.874),
        0.9533,
        86.61,
    ),
    ("male", "white"): (
        (12.344, 0.0, 11.853, -2.664, -7.990, 1.769, 1.797, 0.0, 1.764, 0.0, 7.837, -1.795, 0.658),
        0.9144,
        61.18,
    ),
    ("male", "black"): (
        (2.469, 0.0, 0.302, 0.0, -0.307, 0.0, 1.916, 0.0, 1.809, 0.0, 0.549, 0.0, 0.645),
        0.8954,
        19.54,
    ),
}


def pce_terms(
    age: np.ndarray, tc: np.ndarray, hdl: np.ndarray, sbp: np.ndarray, bp_tx: np.ndarray, smoker: np.ndarray,
    diabetes: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """(n, 13) design matrix in TERMS order."""
    la, lt, lh, ls = np.log(age), np.log(tc), np.log(hdl), np.log(sbp)
    treated = bp_tx == 1
    lts = np.where(treated, ls, 0.0)
    lus = np.where(treated, 0.0, ls)
    return np.column_stack(
        [la, la**2, lt, la * lt, lh, la * lh, lts, la * lts, lus, la * lus, smoker, la * smoker, diabetes]
    )


class PooledCohortEquations(RiskEquation):
    """10-year hard ASCVD risk (nonfatal MI, CHD death, fatal/nonfatal stroke), Goff et al. 2014."""

    name: ClassVar[str] = "pce"
    TARGET: ClassVar[str] = "ascvd"
    HORIZON: ClassVar[int] = 10
    # 7.5 % is the guideline's statin-discussion threshold.
    default_threshold: ClassVar[float] = 0.075

    def variables(self) -> tuple[Var, ...]:
        return (
            Var("age_years", low=40, high=79),
            Var("sex", "category", categories=SEXES),
            Var("race", "category", categories=RACES),
            Var("total_cholesterol_mg_dl", low=130, high=320),
            Var("hdl_mg_dl", low=20, high=100),
            Var("systolic_bp_mm_hg", low=90, high=200),
            Var("on_bp_treatment", "flag"),
            Var("current_smoker", "flag"),
            Var("diabetes", "flag"),
        )

    def linear_predictor(self, v: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Individual sum Σ coef·x, the group mean sum and baseline survival, per row."""
        x = pce_terms(
            v["age_years"], v["total_cholesterol_mg_dl"], v["hdl_mg_dl"], v["systolic_bp_mm_hg"],
            v["on_bp_treatment"], v["current_smoker"], v["diabetes"],
        )  # fmt: skip
        n = len(x)
        total, mean, s10 = np.zeros(n), np.zeros(n), np.zeros(n)
        # Guideline: races other than African American use the white equations.
        race = np.where(v["race"] == "black", "black", "white")
        for (sex, group), (coef, base, group_mean) in COEFFICIENTS.items():
            rows = (v["sex"] == sex) & (race == group)
            total[rows] = x[rows] @ np.asarray(coef)
            mean[rows], s10[rows] = group_mean, base
        return total, mean, s10

    def _risk(self, v: Mapping[str, np.ndarray]) -> np.ndarray:
        total, mean, s10 = self.linear_predictor(v)
        return 1.0 - np.power(s10, np.exp(total - mean))
