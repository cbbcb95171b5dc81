"""Properties of the equations (Hypothesis), the missing / out-of-range policy and the estimator contract.

Monotonicity is asserted on the sub-domains where the published coefficients imply it. It is not global:
the equations carry negative age interactions (PCE white women: ln age × ln TC and ln age × smoking;
PREVENT: age × non-HDL, × SBP, × diabetes, × eGFR) and PREVENT's SBP spline below 110 mmHg has a negative
slope, so e.g. PCE risk for a 40-year-old white woman smoker with TC 320 / HDL 20 falls with age, and
PREVENT risk (30-year models most, through their negative age² term) falls with age for diabetic smokers
with a high SBP. Those cases are the published models' behaviour, not bugs, and are excluded from the
strategies below (PCE: non-smokers with TC 200 / HDL 55; PREVENT: people without diabetes).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from ehr_risk.errors import InputDataError
from ehr_risk.scores.framingham import FraminghamGeneralCVD
from ehr_risk.scores.pce import PooledCohortEquations
from ehr_risk.scores.prevent import PreventEquations
from ehr_risk.scores.registry import FIXED_SCORES, make_score

FAST = settings(max_examples=60, deadline=None)


@st.composite
def profiles(draw: st.DrawFn) -> dict[str, object]:
    """A typical primary-prevention profile, inside every equation's valid range."""
    return {
        "age_years": draw(st.floats(40, 74)),
        "sex": draw(st.sampled_from(["female", "male"])),
        "race": draw(st.sampled_from(["white", "black", "other"])),
        "total_cholesterol_mg_dl": draw(st.floats(140, 260)),
        "hdl_mg_dl": draw(st.floats(35, 80)),
        "systolic_bp_mm_hg": draw(st.floats(110, 180)),
        "on_bp_treatment": draw(st.integers(0, 1)),
        "current_smoker": draw(st.integers(0, 1)),
        "diabetes": draw(st.integers(0, 1)),
        "on_statin": draw(st.integers(0, 1)),
        "egfr_ml_min_1_73m2": draw(st.floats(60, 120)),
        "bmi_kg_m2": draw(st.floats(19, 39)),
    }


def _risk(name: str, rows: list[dict[str, object]]) -> np.ndarray:
    return make_score(name).predict_risk(pd.DataFrame(rows)).risk


@FAST
@given(profile=profiles(), name=st.sampled_from(FIXED_SCORES))
def test_risk_is_a_probability(profile: dict[str, object], name: str) -> None:
    if name.endswith("_30y"):
        profile = {**profile, "age_years": min(float(profile["age_years"]), 59.0)}  # type: ignore[arg-type]
    risk = _risk(name, [profile])
    assert np.isfinite(risk).all()
    assert ((risk > 0) & (risk < 1)).all()


@FAST
@given(profile=profiles(), name=st.sampled_from(FIXED_SCORES))
def test_risk_rises_with_age(profile: dict[str, object], name: str) -> None:
    if name == "pce":  # see module docstring: keep PCE women's age interactions in their positive region
        profile = {**profile, "current_smoker": 0, "total_cholesterol_mg_dl": 200.0, "hdl_mg_dl": 55.0}
    if name.startswith("prevent"):  # PREVENT's age × diabetes interaction: see the module docstring
        profile = {**profile, "diabetes": 0}
    ages = (35.0, 55.0) if name.endswith("_30y") else (45.0, 65.0)  # 30-year models: ages 30-59
    risk = _risk(name, [{**profile, "age_years": ages[0]}, {**profile, "age_years": ages[1]}])
    assert risk[1] > risk[0]


@FAST
@given(profile=profiles(), name=st.sampled_from(FIXED_SCORES))
def test_risk_rises_with_systolic_bp(profile: dict[str, object], name: str) -> None:
    profile = {**profile, "age_years": 50.0}
    lower = {**profile, "systolic_bp_mm_hg": 120.0}
    higher = {**profile, "systolic_bp_mm_hg": 170.0}
    risk = _risk(name, [lower, higher])
    assert risk[1] > risk[0]


@FAST
@given(profile=profiles(), name=st.sampled_from(FIXED_SCORES))
def test_smoking_raises_risk(profile: dict[str, object], name: str) -> None:
    # PCE white men: ln age × smoker makes smoking's effect vanish at ~79 years; stay below 75.
    profile = {**profile, "age_years": min(float(profile["age_years"]), 59.0)}  # type: ignore[arg-type]
    risk = _risk(name, [{**profile, "current_smoker": 0}, {**profile, "current_smoker": 1}])
    assert risk[1] > risk[0]


def test_pce_age_interaction_is_not_monotone_for_high_risk_white_women() -> None:
    """Documents the published PCE behaviour excluded above (ln age × ln TC, ln age × smoker)."""
    base = dict(sex="female", race="white", total_cholesterol_mg_dl=320, hdl_mg_dl=20, systolic_bp_mm_hg=120,
                on_bp_treatment=0, current_smoker=1, diabetes=0)  # fmt: skip
    risk = _risk("pce", [{**base, "age_years": 40}, {**base, "age_years": 45}])
    assert risk[1] < risk[0]


def test_prevent_30_year_risk_can_fall_with_age_for_diabetic_smokers() -> None:
    """Documents the published PREVENT behaviour excluded above: with diabetes, smoking and a high SBP the
    negative age interactions (× diabetes, × smoker, × SBP) and the negative age² term of the 30-year
    model outweigh the age effect, so 30-year total-CVD risk is lower at 55 than at 45."""
    row = dict(sex="male", systolic_bp_mm_hg=180, on_bp_treatment=0, total_cholesterol_mg_dl=200,
               hdl_mg_dl=45, on_statin=0, diabetes=1, current_smoker=1, egfr_ml_min_1_73m2=90)  # fmt: skip
    risk = _risk("prevent_cvd_30y", [{**row, "age_years": 45}, {**row, "age_years": 55}])
    assert risk[1] < risk[0]
    without_diabetes = _risk("prevent_cvd_30y", [{**row, "age_years": a, "diabetes": 0} for a in (45, 55)])
    assert without_diabetes[1] > without_diabetes[0]


def test_missing_and_out_of_range_give_reasons_not_numbers() -> None:
    ok = dict(age_years=55, sex="male", race="white", total_cholesterol_mg_dl=213, hdl_mg_dl=50,
              systolic_bp_mm_hg=120, on_bp_treatment=0, current_smoker=0, diabetes=0)  # fmt: skip
    rows = [
        ok,
        {**ok, "hdl_mg_dl": None},
        {**ok, "age_years": 39},
        {**ok, "systolic_bp_mm_hg": 201, "sex": None},
        {**ok, "current_smoker": 2},
        {**ok, "sex": "unknown", "race": None},
    ]
    result = PooledCohortEquations().predict_risk(pd.DataFrame(rows))
    assert np.isfinite(result.risk[0]) and result.reason[0] == ""
    assert np.isnan(result.risk[1:]).all()
    assert result.reason[1:] == [
        "missing hdl_mg_dl",
        "age_years out of range 40-79",
        "missing sex; systolic_bp_mm_hg out of range 90-200",
        "current_smoker not 0/1",
        "sex not one of female|male; missing race",
    ]
    assert not result.flag.any()


def test_bounds_are_inclusive() -> None:
    edge = dict(age_years=79, sex="female", race="black", total_cholesterol_mg_dl=130, hdl_mg_dl=100,
                systolic_bp_mm_hg=200, on_bp_treatment=1, current_smoker=1, diabetes=1)  # fmt: skip
    result = PooledCohortEquations().predict_risk(pd.DataFrame([edge]))
    assert result.reason == [""] and np.isfinite(result.risk).all()


def test_clip_policy_computes_and_flags() -> None:
    row = dict(age_years=82, sex="male", race="white", total_cholesterol_mg_dl=213, hdl_mg_dl=50,
               systolic_bp_mm_hg=120, on_bp_treatment=0, current_smoker=0, diabetes=0)  # fmt: skip
    at_bound = {**row, "age_years": 79}
    clipped = PooledCohortEquations(out_of_range="clip").predict_risk(pd.DataFrame([row, at_bound]))
    assert clipped.flag.tolist() == [True, False]
    assert clipped.reason == ["clipped age_years to 40-79", ""]
    assert clipped.risk[0] == clipped.risk[1]
    # missing values are never imputed, even under the clip policy
    missing = PooledCohortEquations(out_of_range="clip").predict_risk(
        pd.DataFrame([{**row, "hdl_mg_dl": None}])
    )
    assert np.isnan(missing.risk[0]) and not missing.flag[0]


def test_prevent_30_year_is_limited_to_ages_30_to_59() -> None:
    row = dict(age_years=60, sex="female", systolic_bp_mm_hg=130, on_bp_treatment=0,
               total_cholesterol_mg_dl=200, hdl_mg_dl=50, on_statin=0, diabetes=0, current_smoker=0,
               egfr_ml_min_1_73m2=90)  # fmt: skip
    df = pd.DataFrame([row])
    assert np.isfinite(PreventEquations("cvd", 10).predict_risk(df).risk[0])
    assert PreventEquations("cvd", 30).predict_risk(df).reason == ["age_years out of range 30-59"]


def test_prevent_hf_needs_bmi_but_not_lipids() -> None:
    hf = PreventEquations("hf", 10)
    assert "bmi_kg_m2" in hf.required_columns
    assert "hdl_mg_dl" not in hf.required_columns and "on_statin" not in hf.required_columns
    assert "bmi_kg_m2" not in PreventEquations("ascvd", 10).required_columns


def test_sklearn_contract() -> None:
    rows = pd.DataFrame(
        [dict(age_years=a, sex="male", race="white", total_cholesterol_mg_dl=213, hdl_mg_dl=50,
              systolic_bp_mm_hg=140, on_bp_treatment=0, current_smoker=1, diabetes=d, bmi_kg_m2=27)
         for a, d in [(45, 0), (70, 1), (90, 0)]]
    )  # fmt: skip
    for estimator in (PooledCohortEquations(), FraminghamGeneralCVD(variant="bmi", threshold=0.2)):
        fitted = clone(estimator).fit(rows)
        assert fitted.get_params() == estimator.get_params()
        assert list(fitted.feature_names_in_) == estimator.required_columns
        proba = fitted.predict_proba(rows)
        assert proba.shape == (3, 2)
        np.testing.assert_allclose(proba[:2].sum(axis=1), 1.0)
        assert np.isnan(proba[2]).all()  # age 90 is outside both equations' ranges
        labels = fitted.predict(rows)
        assert np.isnan(labels[2]) and set(labels[:2]) <= {0.0, 1.0}


def test_missing_column_and_bad_params_are_errors() -> None:
    with pytest.raises(InputDataError, match="missing input column"):
        PooledCohortEquations().fit(pd.DataFrame({"age_years": [50]}))
    with pytest.raises(ValueError, match="horizon"):
        PreventEquations("cvd", 20).predict_risk(pd.DataFrame())
    with pytest.raises(ValueError, match="out_of_range"):
        PooledCohortEquations(out_of_range="impute").predict_risk(pd.DataFrame())  # type: ignore[arg-type]
