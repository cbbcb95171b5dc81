"""Integration: the Framingham office (BMI) score on the Framingham teaching file (TenYearCHD).

Third-party data (../shared/data/framingham_tenyearchd, 4,238 people, 10-year CHD outcome); the file has
no HDL, so the laboratory model and PCE cannot run on it, and its outcome is CHD rather than general CVD.
A correctly implemented general-CVD score should still rank people well (D'Agostino 2008 report C 0.763
in men and 0.793 in women for the laboratory model in its derivation cohort; we measured 0.715 here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ehr_risk.scores import coverage, score_frame


@pytest.mark.shared_data
def test_framingham_bmi_discriminates_ten_year_chd(shared_data: Path) -> None:
    d = pd.read_csv(shared_data / "framingham_tenyearchd" / "framingham.csv")
    clinical = pd.DataFrame(
        {
            "subject_id": d["subj_id"],
            "age_years": d["age"],
            "sex": np.where(d["male"] == 1, "male", "female"),
            "systolic_bp_mm_hg": d["sysBP"],
            "on_bp_treatment": d["BPMeds"],
            "current_smoker": d["currentSmoker"],
            "diabetes": d["diabetes"],
            "bmi_kg_m2": d["BMI"],
        }
    )
    scores = score_frame(clinical, names=["framingham_bmi"])
    risk = scores["framingham_bmi_risk"].to_numpy(dtype=float)
    computed = np.isfinite(risk)
    report = coverage(scores)["framingham_bmi"]
    # Rows without a risk are exactly those with a missing BP-treatment flag or BMI, or an SBP/BMI
    # outside the valid range; every one of them carries a reason.
    assert report["computed"] == int(computed.sum()) > 0.95 * len(d)
    assert report["reasons"]["missing on_bp_treatment"] == int(d["BPMeds"].isna().sum())
    auc = roc_auc_score(d["TenYearCHD"][computed], risk[computed])
    assert auc > 0.68
    # Calibration in the large: general CVD (which includes CHD) should not be predicted far below CHD.
    assert risk[computed].mean() > 0.5 * d["TenYearCHD"][computed].mean()
