"""Learned models vs clinical scores on the Framingham teaching table (10-year CHD), same rows. Prints JSON.

Logistic regression and gradient boosting (the project's estimators and training defaults) get 5-fold
cross-validated (out-of-fold) risks; Framingham 2008 (BMI version: the file has no HDL) and the Pooled
Cohort Equations are computed from the same rows. The file records neither HDL nor race, so the PCE has
no score for any row: reported with its reason, not imputed.

    .venv/bin/python benchmarks/framingham_teaching.py [--csv PATH/framingham.csv] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CSV = REPO.parent / "shared" / "data" / "framingham_tenyearchd" / "framingham.csv"
FEATURES = [
    "male", "age", "education", "currentSmoker", "cigsPerDay", "BPMeds", "prevalentStroke", "prevalentHyp",
    "diabetes", "totChol", "sysBP", "diaBP", "BMI", "heartRate", "glucose",
]  # fmt: skip


def score_inputs(df: pd.DataFrame) -> pd.DataFrame:
    """The teaching file's columns under the clinical-score names (NA stays missing)."""
    return pd.DataFrame(
        {
            "age_years": df["age"],
            "sex": np.where(df["male"] == 1, "male", "female"),
            "race": None,  # not recorded in the file
            "total_cholesterol_mg_dl": df["totChol"],
            "hdl_mg_dl": np.nan,  # not recorded in the file
            "systolic_bp_mm_hg": df["sysBP"],
            "on_bp_treatment": df["BPMeds"],
            "current_smoker": df["currentSmoker"],
            "diabetes": df["diabetes"],
            "bmi_kg_m2": df["BMI"],
        }
    )


def cross_validated(df: pd.DataFrame, kind: str, seed: int) -> np.ndarray:
    """Out-of-fold risks of the project's own estimator (`models.classical`, pipelines/train.yaml's
    defaults), trained as `ehr-risk train` does: in each fold a fifth of the training rows is the tuning
    split that picks LR's C and stops the boosting."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    from ehr_risk.models.classical import BinaryTarget, ClassicalSettings, fit_binary

    x, y = df[FEATURES].to_numpy(float), df["TenYearCHD"].to_numpy(int)
    settings = ClassicalSettings(kind=cast(Literal["lr", "gbm"], kind), seed=seed)
    out = np.full(len(df), np.nan)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y):
        fit, tune = train_test_split(train, test_size=0.2, stratify=y[train], random_state=seed)
        targets = [BinaryTarget(rows, y[rows].astype(bool), np.ones(len(rows))) for rows in (fit, tune)]
        model, _ = fit_binary(settings, x, targets[0], x, targets[1])
        out[test] = model.predict_proba(x[test])[:, 1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None, help="write the HTML reports here")
    args = ap.parse_args()

    from ehr_risk.evaluation import evaluate
    from ehr_risk.scores.from_records import score_frame

    df = pd.read_csv(args.csv, na_values=["NA"])
    scores = score_frame(score_inputs(df), names=["framingham_bmi", "pce"])
    table = pd.DataFrame(
        {
            "subject_id": df["subj_id"],
            "label": df["TenYearCHD"].astype(float),
            "sex": np.where(df["male"] == 1, "male", "female"),
            "age_years": df["age"].astype(float),
        }
    )
    for name in ("framingham_bmi", "pce"):
        table[name], table[f"{name}_reason"] = scores[f"{name}_risk"], scores[f"{name}_reason"]
    results: dict[str, Any] = {"rows": len(df), "events": int(df["TenYearCHD"].sum())}
    for kind in ("lr", "gbm"):
        table["model_risk"] = cross_validated(df, kind, seed=0)
        ev = evaluate(
            table,
            compare=["framingham_bmi", "pce"],
            subgroups=("sex", "age_band"),
            time_to_event=None,
            n_boot=args.n_boot,
            out_dir=args.out / kind if args.out else None,
            context={"task": "Framingham teaching file, 10-year CHD", "model_kind": kind},
        )
        m = ev.metrics
        fram = m["comparisons"]["framingham_bmi"]
        results[kind] = {
            "auroc": m["scores"]["model_risk"]["metrics"]["auroc"],
            "calibration_slope": m["scores"]["model_risk"]["metrics"].get("calibration_slope"),
            "vs_framingham_bmi": {
                "n_rows_paired": fram["n_rows_paired"],
                **{k: fram["paired"][k] for k in ("model_auroc", "score_auroc", "delta_auroc")},
            },
            "pce": {
                "n_rows": m["scores"]["pce"]["n_rows"],
                "missing_reasons": m["scores"]["pce"]["missing_reasons"],
            },
        }
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
