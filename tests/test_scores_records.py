"""Scores for every cohort row from the clinical-variables table (hand-made frames in the contract's
column layout), and the fitted T2D / CKD logistic fallbacks."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.exceptions import NotFittedError

from ehr_risk.errors import ConfigError, InputDataError
from ehr_risk.scores import CKDOnsetLogistic, DiabetesOnsetLogistic, coverage, score_frame
from ehr_risk.scores.registry import FIXED_SCORES, make_score, resolve_cli_name


def clinical_table() -> pl.DataFrame:
    """Three prediction times in the layout of DS/features/clinical.parquet (nullable flags as int8)."""
    t = datetime(2020, 1, 1)
    return pl.DataFrame(
        {
            "subject_id": [1, 2, 3],
            "prediction_time": [t, t, t],
            "age_years": [55.0, 62.5, 35.0],
            "sex": ["female", "male", None],
            "race": ["black", "other", "white"],
            "total_cholesterol_mg_dl": [213.0, 180.0, 190.0],
            "hdl_mg_dl": [50.0, None, 60.0],
            "ldl_mg_dl": [120.0, 100.0, None],
            "systolic_bp_mm_hg": [120.0, 150.0, 118.0],
            "diastolic_bp_mm_hg": [80.0, 90.0, 70.0],
            "bmi_kg_m2": [27.0, 31.0, 22.0],
            "egfr_ml_min_1_73m2": [95.0, 55.0, 110.0],
            "hba1c_pct": [5.4, 6.1, None],
            "glucose_mg_dl": [95.0, 110.0, 88.0],
            "triglycerides_mg_dl": [120.0, 200.0, 90.0],
            "on_bp_treatment": pl.Series([0, 1, 0], dtype=pl.Int8),
            "on_statin": pl.Series([0, 1, None], dtype=pl.Int8),
            "current_smoker": pl.Series([0, 1, 0], dtype=pl.Int8),
            "diabetes": pl.Series([0, 0, None], dtype=pl.Int8),
            "hdl_mg_dl_age_days": [10.0, None, 200.0],
        }
    )


def test_every_row_gets_every_score_or_a_reason() -> None:
    table = clinical_table()
    scores = score_frame(table)
    assert list(scores["subject_id"]) == [1, 2, 3]
    assert "prediction_time" in scores.columns
    for name in FIXED_SCORES:
        risk, reason = scores[f"{name}_risk"].to_numpy(dtype=float), scores[f"{name}_reason"]
        has_risk = np.isfinite(risk)
        assert (has_risk == (reason == "")).all(), name
    # Row 1 (female, black, complete) has a PCE risk equal to the equation on the same inputs.
    direct = make_score("pce").predict_risk(table.to_pandas().iloc[[0]]).risk[0]
    assert scores.loc[0, "pce_risk"] == pytest.approx(direct)
    # Row 2: HDL missing; PREVENT HF does not need HDL and eGFR 55 is in range.
    assert scores.loc[1, "pce_reason"] == "missing hdl_mg_dl"
    assert np.isfinite(scores["prevent_hf_10y_risk"].iloc[1])
    # Row 3: sex and diabetes null, age 35 outside the PCE range, statin unknown.
    assert scores.loc[2, "pce_reason"] == "age_years out of range 40-79; missing sex; missing diabetes"
    assert "missing on_statin" in str(scores["prevent_cvd_10y_reason"].iloc[2])


def test_absent_column_does_not_stop_other_scores() -> None:
    table = clinical_table().drop("bmi_kg_m2")
    scores = score_frame(table.to_pandas(), names=["pce", "framingham_bmi"])
    assert (scores["framingham_bmi_reason"] == "missing column bmi_kg_m2").all()
    assert np.isfinite(scores["pce_risk"].iloc[0])


def test_clip_policy_adds_flag_columns() -> None:
    scores = score_frame(clinical_table(), names=["pce"], out_of_range="clip")
    assert scores["pce_flag"].tolist() == [False, False, False]  # row 3 is not computed (sex missing)
    assert "clipped age_years to 40-79" in str(scores["pce_reason"].iloc[2])


def test_coverage_counts_reasons_without_values() -> None:
    report = coverage(score_frame(clinical_table(), names=["pce"]))
    assert report["pce"]["rows"] == 3 and report["pce"]["computed"] == 1
    assert report["pce"]["reasons"]["missing hdl_mg_dl"] == 1
    assert set(report["pce"]["reasons"]) == {
        "missing hdl_mg_dl",
        "age_years out of range 40-79",
        "missing sex",
        "missing diabetes",
    }


def test_registry_names_and_cli_resolution() -> None:
    assert resolve_cli_name("prevent", None, None) == "prevent_cvd_10y"
    assert resolve_cli_name("prevent", "hf", 30) == "prevent_hf_30y"
    assert resolve_cli_name("framingham-bmi", "cvd", 10) == "framingham_bmi"
    for bad in [("pce", "hf", None), ("prevent", "stroke", None), ("t2d", None, None), ("qrisk", None, None)]:
        with pytest.raises(ConfigError):
            resolve_cli_name(*bad)
    with pytest.raises(ConfigError, match="unknown risk score"):
        make_score("qrisk3")


def synthetic_cohort(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A cohort whose T2D / CKD labels depend on glucose / eGFR, for the fitted fallbacks."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age_years": rng.uniform(30, 80, n),
            "sex": rng.choice(["female", "male"], n),
            "bmi_kg_m2": rng.normal(28, 5, n).clip(16, 60),
            "systolic_bp_mm_hg": rng.normal(130, 15, n),
            "on_bp_treatment": rng.integers(0, 2, n),
            "hdl_mg_dl": rng.normal(52, 12, n).clip(15, 120),
            "triglycerides_mg_dl": rng.lognormal(4.9, 0.4, n),
            "glucose_mg_dl": rng.normal(100, 15, n).clip(50, 300),
            "diabetes": rng.choice([0, 1], n, p=[0.9, 0.1]),
            "egfr_ml_min_1_73m2": rng.normal(85, 20, n).clip(10, 150),
            "current_smoker": rng.integers(0, 2, n),
        }
    )
    t2d_logit = -3 + 0.08 * (df["glucose_mg_dl"] - 100) + 0.08 * (df["bmi_kg_m2"] - 28)
    ckd_logit = -2 - 0.08 * (df["egfr_ml_min_1_73m2"] - 85) + 0.04 * (df["age_years"] - 55)
    t2d = rng.random(n) < 1 / (1 + np.exp(-t2d_logit))
    ckd = rng.random(n) < 1 / (1 + np.exp(-ckd_logit))
    return df, t2d, ckd


def test_t2d_and_ckd_fallbacks_fit_on_complete_rows_and_give_reasons() -> None:
    train, t2d, ckd = synthetic_cohort(600, seed=0)
    train.loc[:9, "glucose_mg_dl"] = np.nan  # incomplete rows are left out of the fit, not imputed
    labels = pd.array(t2d, dtype="boolean")
    labels[10:15] = pd.NA  # censored rows are left out too
    model = DiabetesOnsetLogistic(horizon=5).fit(train, labels)
    eligible = (train["diabetes"] == 0) & train["glucose_mg_dl"].notna()
    assert model.n_train_ == int(eligible.sum()) - int(eligible.iloc[10:15].sum())
    assert model.odds_ratios_["glucose_mg_dl"] > 1.0 and model.odds_ratios_["bmi_kg_m2"] > 1.0

    test, _, _ = synthetic_cohort(50, seed=1)
    result = model.predict_risk(test)
    prevalent = test["diabetes"].to_numpy() == 1
    assert all(r == "diabetes already present" for r in np.array(result.reason)[prevalent])
    assert np.isfinite(result.risk[~prevalent]).all()
    low, high = (
        test.iloc[[0]].assign(glucose_mg_dl=85, diabetes=0),
        test.iloc[[0]].assign(glucose_mg_dl=120, diabetes=0),
    )
    assert model.predict_risk(high).risk[0] > model.predict_risk(low).risk[0]

    ckd_model = CKDOnsetLogistic().fit(train, ckd)
    ckd_result = ckd_model.predict_risk(test)
    prevalent_ckd = test["egfr_ml_min_1_73m2"].to_numpy() < 60
    assert all(r == "egfr below 60: CKD already present" for r in np.array(ckd_result.reason)[prevalent_ckd])
    assert ckd_model.odds_ratios_["egfr_ml_min_1_73m2"] < 1.0

    # fitted models plug into score_frame under their own prefixes
    scores = score_frame(test, names=["pce"], fitted={"t2d_5y": model, "ckd_5y": ckd_model})
    assert {"t2d_5y_risk", "ckd_5y_reason", "pce_reason"} <= set(scores.columns)


def test_fallback_needs_fit_and_usable_labels() -> None:
    df, t2d, _ = synthetic_cohort(40, seed=2)
    with pytest.raises(NotFittedError):
        DiabetesOnsetLogistic().predict_risk(df)
    with pytest.raises(InputDataError, match="both outcomes"):
        DiabetesOnsetLogistic().fit(df, np.zeros(len(df), dtype=bool))
    with pytest.raises(InputDataError, match="labels"):
        DiabetesOnsetLogistic().fit(df, t2d[:-1])


def test_scores_from_events_end_to_end() -> None:
    """Events → clinical variables (ehr_risk.features.clinical) → scores, one row per prediction time."""
    from ehr_risk.scores import scores_from_events

    d = datetime
    lab_time = d(2019, 6, 1)
    events = pl.DataFrame(
        {
            "subject_id": [1, 1, 1, 1, 1, 1, 1, 1, 2, 2],
            "time": [d(1965, 3, 1), None, None, *[lab_time] * 5, d(1960, 1, 1), None],
            "code": ["MEDS_BIRTH", "GENDER/female", "RACE/2106-3", "LOINC/2093-3", "LOINC/2085-9",
                     "LOINC/8480-6", "LOINC/72166-2", "LOINC/39156-5", "MEDS_BIRTH", "GENDER/male"],
            "numeric_value": [None, None, None, 213.0, 50.0, 120.0, None, 27.0, None, None],
            "text_value": [None, None, None, None, None, None, "SNOMED/266919005", None, None, None],
            "unit": [None, None, None, "mg/dL", "mg/dL", "mm[Hg]", None, "kg/m2", None, None],
        },
        schema_overrides={"numeric_value": pl.Float32, "time": pl.Datetime("us")},
    )  # fmt: skip
    times = pl.DataFrame(
        {"subject_id": [2, 1], "prediction_time": [d(2020, 3, 1), d(2020, 3, 1)]},
        schema_overrides={"prediction_time": pl.Datetime("us")},
    )
    scores = scores_from_events(events, times, names=["pce"])
    assert scores["subject_id"].tolist() == [2, 1]  # row order = times
    # Subject 1 is the Goff et al. Table A profile (55 y, TC 213, HDL 50, SBP 120, never smoker): 2.1 %.
    assert round(float(scores["pce_risk"].iloc[1]) * 100, 1) == 2.1
    # Subject 2 has no labs, no smoking status and no race: no risk, and each missing input is named.
    reason = str(scores["pce_reason"].iloc[0])
    assert np.isnan(scores["pce_risk"].iloc[0])
    assert {"missing race", "missing total_cholesterol_mg_dl", "missing current_smoker"} <= set(
        reason.split("; ")
    )


def test_scores_from_events_use_medication_hba1c_and_smoking_status() -> None:
    """BP treatment from a medication code, diabetes from HbA1c >= 6.5 % and current smoking from the
    LOINC 72166-2 observation reach the equations: the risk equals the equation on those flags."""
    from ehr_risk.scores import scores_from_events

    d = datetime
    lab_time, t = d(2019, 6, 1), d(2020, 3, 1)
    base = [
        (d(1965, 3, 1), "MEDS_BIRTH", None, None, None),
        (None, "GENDER/male", None, None, None),
        (None, "RACE/2106-3", None, None, None),
        (lab_time, "LOINC/2093-3", 213.0, None, "mg/dL"),
        (lab_time, "LOINC/2085-9", 50.0, None, "mg/dL"),
        (lab_time, "LOINC/8480-6", 140.0, None, "mm[Hg]"),
        (lab_time, "LOINC/39156-5", 27.0, None, "kg/m2"),
        (lab_time, "LOINC/33914-3", 85.0, None, "mL/min/{1.73_m2}"),
    ]
    exposures = [
        (d(2019, 9, 1), "RxNorm/314076", None, None, None),  # lisinopril 10 mg, within the 1-year window
        (lab_time, "LOINC/4548-4", 7.0, None, "%"),  # HbA1c >= 6.5 %: diabetes
        (lab_time, "LOINC/72166-2", None, "SNOMED/449868002", None),  # smokes tobacco daily
    ]
    rows = [(1, *r) for r in base] + [(2, *r) for r in base + exposures]
    events = pl.DataFrame(
        rows,
        schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                "numeric_value": pl.Float32, "text_value": pl.String, "unit": pl.String},
        orient="row",
    )  # fmt: skip
    times = pl.DataFrame({"subject_id": [1, 2], "prediction_time": [t, t]})
    times = times.with_columns(pl.col("prediction_time").cast(pl.Datetime("us")))
    scores = scores_from_events(events, times, names=["pce", "framingham", "prevent_cvd_10y"])

    # Subject 1 has no smoking status: every score that needs it says so instead of assuming a non-smoker.
    assert all("missing current_smoker" in str(scores.loc[0, f"{n}_reason"]) for n in ("pce", "framingham"))
    assert np.isnan(scores["pce_risk"].to_numpy(dtype=float)[0])
    # Subject 2: treated, diabetic, current smoker; the score equals the equation on exactly those inputs.
    assert scores.loc[1, "pce_reason"] == "" and scores.loc[1, "framingham_reason"] == ""
    expected = dict(age_years=(t - d(1965, 3, 1)).days / 365.25, sex="male", race="white",
                    total_cholesterol_mg_dl=213.0, hdl_mg_dl=50.0, systolic_bp_mm_hg=140.0,
                    on_bp_treatment=1, current_smoker=1, diabetes=1, on_statin=0,
                    egfr_ml_min_1_73m2=85.0, bmi_kg_m2=27.0)  # fmt: skip
    for name in ("pce", "framingham", "prevent_cvd_10y"):
        direct = make_score(name).predict_risk(pd.DataFrame([expected])).risk[0]
        assert scores.loc[1, f"{name}_risk"] == pytest.approx(direct, rel=1e-4), name
        untreated = make_score(name).predict_risk(pd.DataFrame([{**expected, "on_bp_treatment": 0}])).risk[0]
        assert direct > untreated, name  # the flag matters: treated SBP carries more risk
