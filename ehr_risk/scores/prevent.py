"""AHA PREVENT base model: 10- and 30-year risk of total CVD, ASCVD and heart failure, both sexes.

Source: Khan SS, Matsushita K, Sang Y, et al. Development and Validation of the American Heart
Association's PREVENT Equations. Circulation 2024;149(6):430–449 (doi 10.1161/CIRCULATIONAHA.123.067626),
Supplemental Material: base-model coefficients, 10- and 30-year, by sex and outcome. We took the values
as transcribed term by term in the independent Stata implementation by A. Linden (SSC `prevent`,
prevent10i.ado / prevent30i.ado, 2024). Checks (tests/test_scores_published.py, sources in docs/scores.md):
the supplement's worked example (Table S12; 50 years, SBP 160 treated, diabetes, both sexes) for all twelve
equations, to the 4 (10-year) or 3 (30-year) decimals quoted by the PooledCohort and preventr R packages,
and the 10-year total-CVD coefficients of both sexes against the CDC Kidney Disease Surveillance System page.

The model is logistic: risk = 1 / (1 + exp(−logodds)), on centred and scaled predictors:
    age = (age − 55)/10 (30-year models also age²); non-HDL = (TC − HDL)·0.02586 − 3.5 (mmol/L);
    HDL = (HDL·0.02586 − 1.3)/0.3; SBP splines (min(SBP,110) − 110)/20 and (max(SBP,110) − 130)/20;
    BMI splines (min(BMI,30) − 25)/5 and (max(BMI,30) − 30)/5 (heart failure only);
    eGFR splines (min(eGFR,60) − 60)/−15 and (max(eGFR,60) − 90)/−15; and interactions with age,
    BP treatment and statin use.

Valid ranges: age 30–79 (30-year estimates only for ages 30–59), total cholesterol 130–320 mg/dL, HDL
20–100 mg/dL, SBP 90–200 mmHg, BMI 18.5–39.9 kg/m2, eGFR 15–140 mL/min/1.73 m2 — Khan et al. 2024 as
read by `preventr`, whose documentation says the equations "technically permit up to 200 mmHg" and that
it caps SBP at 180 by its own clinical choice; Linden's Stata module also uses 90–200. We keep 200 (the
AHA online calculator's own bound could not be checked). Some implementations accept eGFR up to 150; we
keep the stricter 140. Only the inputs an outcome's
equation uses are required: the heart-failure equations use BMI and no lipids or statin; the CVD and
ASCVD equations use lipids and statin and no BMI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np

from ehr_risk.scores.base import SEXES, RiskEquation, Var

MG_DL_TO_MMOL_L = 0.02586  # cholesterol, as in Khan et al. 2024 supplement

Outcome = Literal["cvd", "ascvd", "hf"]
OUTCOMES: tuple[Outcome, ...] = ("cvd", "ascvd", "hf")
HORIZONS = (10, 30)

# Term names; a coefficient table maps the terms its equation uses (others are 0).
TERMS = (
    "age", "age_sq", "non_hdl", "hdl", "sbp_lt_110", "sbp_gte_110", "diabetes", "smoker",
    "bmi_lt_30", "bmi_gte_30", "egfr_lt_60", "egfr_gte_60", "bp_tx", "statin",
    "bp_tx_x_sbp_gte_110", "statin_x_non_hdl", "age_x_non_hdl", "age_x_hdl", "age_x_sbp_gte_110",
    "age_x_diabetes", "age_x_smoker", "age_x_bmi_gte_30", "age_x_egfr_lt_60", "constant",
)  # fmt: skip

_LIPID_TERMS = ("non_hdl", "hdl", "statin", "statin_x_non_hdl", "age_x_non_hdl", "age_x_hdl")
_BMI_TERMS = ("bmi_lt_30", "bmi_gte_30", "age_x_bmi_gte_30")


def _lipid(*c: float) -> dict[str, float]:
    """CVD/ASCVD equations, coefficients in this order (Khan et al. 2024, supplement):
    age, non_hdl, hdl, sbp_lt_110, sbp_gte_110, diabetes, smoker, egfr_lt_60, egfr_gte_60, bp_tx, statin,
    bp_tx_x_sbp_gte_110, statin_x_non_hdl, age_x_non_hdl, age_x_hdl, age_x_sbp_gte_110, age_x_diabetes,
    age_x_smoker, age_x_egfr_lt_60, constant[, age_sq for 30-year]."""
    names = (
        "age", "non_hdl", "hdl", "sbp_lt_110", "sbp_gte_110", "diabetes", "smoker", "egfr_lt_60",
        "egfr_gte_60", "bp_tx", "statin", "bp_tx_x_sbp_gte_110", "statin_x_non_hdl", "age_x_non_hdl",
        "age_x_hdl", "age_x_sbp_gte_110", "age_x_diabetes", "age_x_smoker", "age_x_egfr_lt_60", "constant",
        "age_sq",
    )  # fmt: skip
    if len(c) not in (len(names) - 1, len(names)):  # 10-year tables have no age² term
        raise ValueError(f"PREVENT coefficient table has {len(c)} values for {len(names)} terms")
    return dict(zip(names, c, strict=False))


def _hf(*c: float) -> dict[str, float]:
    """Heart-failure equations, coefficients in this order (Khan et al. 2024, supplement):
    age, sbp_lt_110, sbp_gte_110, diabetes, smoker, bmi_lt_30, bmi_gte_30, egfr_lt_60, egfr_gte_60, bp_tx,
    bp_tx_x_sbp_gte_110, age_x_sbp_gte_110, age_x_diabetes, age_x_smoker, age_x_bmi_gte_30,
    age_x_egfr_lt_60, constant[, age_sq for 30-year]."""
    names = (
        "age", "sbp_lt_110", "sbp_gte_110", "diabetes", "smoker", "bmi_lt_30", "bmi_gte_30", "egfr_lt_60",
        "egfr_gte_60", "bp_tx", "bp_tx_x_sbp_gte_110", "age_x_sbp_gte_110", "age_x_diabetes",
        "age_x_smoker", "age_x_bmi_gte_30", "age_x_egfr_lt_60", "constant", "age_sq",
    )  # fmt: skip
    if len(c) not in (len(names) - 1, len(names)):  # 10-year tables have no age² term
        raise ValueError(f"PREVENT coefficient table has {len(c)} values for {len(names)} terms")
    return dict(zip(names, c, strict=False))


# (sex, outcome, horizon) → coefficients. Khan et al. 2024 supplement, base model.
# fmt: off
COEFFICIENTS: dict[tuple[str, str, int], dict[str, float]] = {
    ("female", "cvd", 10): _lipid(
        0.7939329, 0.0305239, -0.1606857, -0.2394003, 0.3600781, 0.8667604, 0.5360739, 0.6045917,
        0.0433769, 0.3151672, -0.1477655, -0.0663612, 0.1197879, -0.0819715, 0.0306769, -0.0946348,
        -0.27057, -0.078715, -0.1637806, -3.307728),
    ("male", "cvd", 10): _lipid(
        0.7688528, 0.0736174, -0.0954431, -0.4347345, 0.3362658, 0.7692857, 0.4386871, 0.5378979,
        0.0164827, 0.288879, -0.1337349, -0.0475924, 0.150273, -0.0517874, 0.0191169, -0.1049477,
        -0.2251948, -0.0895067, -0.1543702, -3.031168),
    ("female", "ascvd", 10): _lipid(
        0.719883, 0.1176967, -0.151185, -0.0835358, 0.3592852, 0.8348585, 0.4831078, 0.4864619,
        0.0397779, 0.2265309, -0.0592374, -0.0395762, 0.0844423, -0.0567839, 0.0325692, -0.1035985,
        -0.2417542, -0.0791142, -0.1671492, -3.819975),
    ("male", "ascvd", 10): _lipid(
        0.7099847, 0.1658663, -0.1144285, -0.2837212, 0.3239977, 0.7189597, 0.3956973, 0.3690075,
        0.0203619, 0.2036522, -0.0865581, -0.0322916, 0.114563, -0.0300005, 0.0232747, -0.0927024,
        -0.2018525, -0.0970527, -0.1217081, -3.500655),
    ("female", "hf", 10): _hf(
        0.8998235, -0.4559771, 0.3576505, 1.038346, 0.583916, -0.0072294, 0.2997706, 0.7451638,
        0.0557087, 0.3534442, -0.0981511, -0.0946663, -0.3581041, -0.1159453, -0.003878, -0.1884289,
        -4.310409),
    ("male", "hf", 10): _hf(
        0.8972642, -0.6811466, 0.3634461, 0.923776, 0.5023736, -0.0485841, 0.3726929, 0.6926917,
        0.0251827, 0.2980922, -0.0497731, -0.1289201, -0.3040924, -0.1401688, 0.0068126, -0.1797778,
        -3.946391),
    ("female", "cvd", 30): _lipid(
        0.5503079, 0.0409794, -0.1663306, -0.1628654, 0.3299505, 0.6793894, 0.3196112, 0.1857101,
        0.0553528, 0.2894, -0.075688, -0.056367, 0.1071019, -0.0751438, 0.0301786, -0.0998776,
        -0.3206166, -0.1607862, -0.1450788, -1.318827, -0.0928369),
    ("male", "cvd", 30): _lipid(
        0.4627309, 0.0836088, -0.1029824, -0.2140352, 0.2904325, 0.5331276, 0.2141914, 0.1155556,
        0.0603775, 0.232714, -0.0272112, -0.0384488, 0.134192, -0.0511759, 0.0165865, -0.1101437,
        -0.2585943, -0.1566406, -0.1166776, -1.148204, -0.0984281),
    ("female", "ascvd", 30): _lipid(
        0.4669202, 0.1256901, -0.1542255, -0.0018093, 0.322949, 0.6296707, 0.268292, 0.100106,
        0.0499663, 0.1875292, 0.0152476, -0.0276123, 0.0736147, -0.0521962, 0.0316918, -0.1046101,
        -0.2727793, -0.1530907, -0.1299149, -1.974074, -0.0893118),
    ("male", "ascvd", 30): _lipid(
        0.3994099, 0.1744643, -0.120203, -0.0665117, 0.2753037, 0.4790257, 0.1782635, -0.0218789,
        0.0602553, 0.1421182, 0.0135996, -0.0218265, 0.1013148, -0.0312619, 0.020673, -0.0920935,
        -0.2159947, -0.1548811, -0.0712547, -1.736444, -0.0937484),
    ("female", "hf", 30): _hf(
        0.6254374, -0.3919241, 0.3142295, 0.8330787, 0.3438651, 0.0594874, 0.2525536, 0.2981642,
        0.0667159, 0.333921, -0.0893177, -0.0974299, -0.404855, -0.1982991, -0.0035619, -0.1564215,
        -2.205379, -0.0983038),
    ("male", "hf", 30): _hf(
        0.5681541, -0.4761564, 0.30324, 0.6840338, 0.2656273, 0.0833107, 0.26999, 0.2541805,
        0.0638923, 0.2583631, -0.0391938, -0.1269124, -0.3273572, -0.2043019, -0.0182831, -0.1342618,
        -1.95751, -0.1048388),
}
# fmt: on


def prevent_terms(v: Mapping[str, np.ndarray], outcome: str) -> dict[str, np.ndarray]:
    """The transformed predictors of Khan et al. 2024 (supplement), by term name."""
    age = (v["age_years"] - 55.0) / 10.0
    sbp = v["systolic_bp_mm_hg"]
    egfr = v["egfr_ml_min_1_73m2"]
    t: dict[str, np.ndarray] = {
        "age": age,
        "age_sq": age**2,
        "sbp_lt_110": (np.minimum(sbp, 110.0) - 110.0) / 20.0,
        "sbp_gte_110": (np.maximum(sbp, 110.0) - 130.0) / 20.0,
        "diabetes": v["diabetes"],
        "smoker": v["current_smoker"],
        "egfr_lt_60": (np.minimum(egfr, 60.0) - 60.0) / -15.0,
        "egfr_gte_60": (np.maximum(egfr, 60.0) - 90.0) / -15.0,
        "bp_tx": v["on_bp_treatment"],
        "constant": np.ones_like(age),
    }
    t["bp_tx_x_sbp_gte_110"] = t["bp_tx"] * t["sbp_gte_110"]
    t["age_x_sbp_gte_110"] = age * t["sbp_gte_110"]
    t["age_x_diabetes"] = age * t["diabetes"]
    t["age_x_smoker"] = age * t["smoker"]
    t["age_x_egfr_lt_60"] = age * t["egfr_lt_60"]
    if outcome == "hf":
        bmi = v["bmi_kg_m2"]
        t["bmi_lt_30"] = (np.minimum(bmi, 30.0) - 25.0) / 5.0
        t["bmi_gte_30"] = (np.maximum(bmi, 30.0) - 30.0) / 5.0
        t["age_x_bmi_gte_30"] = age * t["bmi_gte_30"]
    else:
        tc, hdl = v["total_cholesterol_mg_dl"], v["hdl_mg_dl"]
        t["non_hdl"] = (tc - hdl) * MG_DL_TO_MMOL_L - 3.5
        t["hdl"] = (hdl * MG_DL_TO_MMOL_L - 1.3) / 0.3
        t["statin"] = v["on_statin"]
        t["statin_x_non_hdl"] = t["statin"] * t["non_hdl"]
        t["age_x_non_hdl"] = age * t["non_hdl"]
        t["age_x_hdl"] = age * t["hdl"]
    return t


class PreventEquations(RiskEquation):
    """PREVENT base model for one outcome (`cvd` | `ascvd` | `hf`) and horizon (10 | 30 years)."""

    name: ClassVar[str] = "prevent"
    default_threshold: ClassVar[float] = 0.075  # PREVENT 10-year CVD "intermediate" risk starts at 7.5 %

    def __init__(
        self,
        outcome: Outcome = "cvd",
        horizon: int = 10,
        out_of_range: Literal["missing", "clip"] = "missing",
        threshold: float | None = None,
    ) -> None:
        super().__init__(out_of_range=out_of_range, threshold=threshold)
        self.outcome = outcome
        self.horizon = horizon

    @property
    def target(self) -> str:
        return self.outcome

    @property
    def horizon_years(self) -> int:
        return self.horizon

    def _check_params(self) -> None:
        super()._check_params()
        if self.outcome not in OUTCOMES:
            raise ValueError(f"PREVENT outcome must be one of {', '.join(OUTCOMES)}, not {self.outcome!r}")
        if self.horizon not in HORIZONS:
            raise ValueError(f"PREVENT horizon must be 10 or 30 years, not {self.horizon!r}")

    def variables(self) -> tuple[Var, ...]:
        # 30-year estimates are published for ages 30–59 only (Khan et al. 2024).
        age_high = 79 if self.horizon == 10 else 59
        common = (
            Var("age_years", low=30, high=age_high),
            Var("sex", "category", categories=SEXES),
            Var("systolic_bp_mm_hg", low=90, high=200),
            Var("on_bp_treatment", "flag"),
            Var("current_smoker", "flag"),
            Var("diabetes", "flag"),
            Var("egfr_ml_min_1_73m2", low=15, high=140),
        )
        if self.outcome == "hf":
            return (*common, Var("bmi_kg_m2", low=18.5, high=39.9))
        return (
            *common,
            Var("total_cholesterol_mg_dl", low=130, high=320),
            Var("hdl_mg_dl", low=20, high=100),
            Var("on_statin", "flag"),
        )

    def log_odds(self, v: Mapping[str, np.ndarray]) -> np.ndarray:
        terms = prevent_terms(v, self.outcome)
        female = v["sex"] == "female"
        women = COEFFICIENTS[("female", self.outcome, self.horizon)]
        men = COEFFICIENTS[("male", self.outcome, self.horizon)]
        out = np.zeros(len(v["age_years"]))
        for term in (t for t in TERMS if t in women or t in men):  # fixed order: reproducible sums
            out += np.where(female, women.get(term, 0.0), men.get(term, 0.0)) * terms[term]
        return out

    def _risk(self, v: Mapping[str, np.ndarray]) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.log_odds(v)))
