"""Framingham 2008 general cardiovascular disease risk (D'Agostino), laboratory and office (BMI) versions.

Source: D'Agostino RB Sr, Vasan RS, Pencina MJ, Wolf PA, Cobain M, Massaro JM, Kannel WB. General
Cardiovascular Risk Profile for Use in Primary Care: The Framingham Heart Study. Circulation
2008;117:743–753: the regression coefficients of the laboratory model (ln age, ln total cholesterol,
ln HDL, ln SBP treated / untreated, smoking, diabetes) and of the non-laboratory (office) model that
replaces the lipids by ln BMI, with the baseline 10-year survival S0(10) and mean Σβx per sex. The
Framingham Heart Study publishes the laboratory model's values on its "Cardiovascular Disease (10-year
risk)" page; the office model's values agree with the independent CVrisk transcription.

risk = 1 − S0(10) ^ exp(Σ β·x − mean). Outcome: CVD (coronary death, MI, coronary insufficiency, angina,
ischaemic and haemorrhagic stroke, TIA, peripheral artery disease, heart failure) within 10 years.

Valid ranges: the paper derived the model in people aged 30–74 free of CVD; it gives no published bounds
for the other inputs, so we use the plausible-value bounds of the PCE / PREVENT calculators for lipids and
SBP (total cholesterol 100–405 mg/dL, HDL 10–100 mg/dL, SBP 90–200 mmHg) and BMI 15–50 kg/m2, to stop
data errors from producing a number. These bounds are ours and documented in docs/scores.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np

from ehr_risk.scores.base import SEXES, RiskEquation, Var

Variant = Literal["lab", "bmi"]

# D'Agostino et al. 2008, laboratory and office/BMI models:
# (β ln age, β ln TC or ln BMI, β ln HDL, β ln SBP untreated, β ln SBP treated, β smoker, β diabetes,
#  mean Σβx, S0(10)).
COEFFICIENTS: dict[tuple[str, str], tuple[float, ...]] = {
    ("lab", "female"): (2.32888, 1.20904, -0.70833, 2.76157, 2.82263, 0.52873, 0.69154, 26.1931, 0.95012),
    ("lab", "male"): (3.06117, 1.12370, -0.93263, 1.93303, 1.99881, 0.65451, 0.57367, 23.9802, 0.88936),
    ("bmi", "female"): (2.72107, 0.51125, 0.0, 2.81291, 2.88267, 0.61868, 0.77763, 26.0145, 0.94833),
    ("bmi", "male"): (3.11296, 0.79277, 0.0, 1.85508, 1.92672, 0.70953, 0.53160, 23.9388, 0.88431),
}


class FraminghamGeneralCVD(RiskEquation):
    """10-year general CVD risk; `variant="lab"` uses lipids, `variant="bmi"` the office BMI model."""

    name: ClassVar[str] = "framingham"
    TARGET: ClassVar[str] = "cvd"
    HORIZON: ClassVar[int] = 10
    # 20 % is the conventional "high risk" cut-off of Framingham-based guidance (NCEP ATP III).
    default_threshold: ClassVar[float] = 0.20

    def __init__(
        self,
        variant: Variant = "lab",
        out_of_range: Literal["missing", "clip"] = "missing",
        threshold: float | None = None,
    ) -> None:
        super().__init__(out_of_range=out_of_range, threshold=threshold)
        self.variant = variant

    def _check_params(self) -> None:
        super()._check_params()
        if self.variant not in ("lab", "bmi"):
            raise ValueError(f"Framingham variant must be 'lab' or 'bmi', not {self.variant!r}")

    def variables(self) -> tuple[Var, ...]:
        common = (
            Var("age_years", low=30, high=74),
            Var("sex", "category", categories=SEXES),
            Var("systolic_bp_mm_hg", low=90, high=200),
            Var("on_bp_treatment", "flag"),
            Var("current_smoker", "flag"),
            Var("diabetes", "flag"),
        )
        if self.variant == "bmi":
            return (*common, Var("bmi_kg_m2", low=15, high=50))
        lipids = (Var("total_cholesterol_mg_dl", low=100, high=405), Var("hdl_mg_dl", low=10, high=100))
        return (*common, *lipids)

    def linear_predictor(self, v: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Σ β·x, the sex-specific mean Σβx and S0(10), per row."""
        n = len(v["age_years"])
        total, mean, s0 = np.zeros(n), np.zeros(n), np.zeros(n)
        ln_age, ln_sbp = np.log(v["age_years"]), np.log(v["systolic_bp_mm_hg"])
        treated = v["on_bp_treatment"] == 1
        if self.variant == "bmi":
            ln_second, ln_hdl = np.log(v["bmi_kg_m2"]), np.zeros(n)
        else:
            ln_second, ln_hdl = np.log(v["total_cholesterol_mg_dl"]), np.log(v["hdl_mg_dl"])
        for sex in SEXES:
            rows = v["sex"] == sex
            coef = COEFFICIENTS[(self.variant, sex)]
            b_age, b_second, b_hdl, b_untr, b_tr, b_smk, b_dm, group_mean, base = coef
            b_sbp = np.where(treated, b_tr, b_untr)
            total[rows] = (
                b_age * ln_age
                + b_second * ln_second
                + b_hdl * ln_hdl
                + b_sbp * ln_sbp
                + b_smk * v["current_smoker"]
                + b_dm * v["diabetes"]
            )[rows]
            mean[rows], s0[rows] = group_mean, base
        return total, mean, s0

    def _risk(self, v: Mapping[str, np.ndarray]) -> np.ndarray:
        total, mean, s0 = self.linear_predictor(v)
        return 1.0 - np.power(s0, np.exp(total - mean))
