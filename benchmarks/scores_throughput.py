"""Throughput of the clinical risk scores over a synthetic clinical-variables table; prints JSON.

    .venv/bin/python benchmarks/scores_throughput.py [--rows 200000]

Measures `score_frame` (every fixed-coefficient score: PCE, 6 PREVENT, 2 Framingham) end to end,
including input validation and per-row reasons. About 10 % of rows carry a missing or out-of-range input.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import pandas as pd

from ehr_risk.scores import FIXED_SCORES, score_frame


def synthetic(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "subject_id": np.arange(n, dtype=np.int64),
            "age_years": rng.uniform(30, 85, n),
            "sex": rng.choice(["female", "male"], n),
            "race": rng.choice(["white", "black", "other"], n),
            "total_cholesterol_mg_dl": rng.normal(200, 35, n),
            "hdl_mg_dl": rng.normal(52, 14, n),
            "systolic_bp_mm_hg": rng.normal(128, 17, n),
            "on_bp_treatment": rng.integers(0, 2, n).astype(np.int8),
            "current_smoker": rng.integers(0, 2, n).astype(np.int8),
            "diabetes": rng.integers(0, 2, n).astype(np.int8),
            "on_statin": rng.integers(0, 2, n).astype(np.int8),
            "egfr_ml_min_1_73m2": rng.normal(88, 18, n),
            "bmi_kg_m2": rng.normal(28, 5, n),
        }
    )
    df.loc[rng.random(n) < 0.05, "hdl_mg_dl"] = np.nan
    return df


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    table = synthetic(args.rows)
    start = time.perf_counter()
    scores = score_frame(table)
    seconds = time.perf_counter() - start
    computed = {n: int(np.isfinite(scores[f"{n}_risk"].to_numpy(dtype=float)).sum()) for n in FIXED_SCORES}
    print(
        json.dumps(
            {
                "benchmark": "scores_throughput",
                "rows": args.rows,
                "scores": len(FIXED_SCORES),
                "seconds": round(seconds, 3),
                "rows_per_second_all_scores": round(args.rows / seconds),
                "score_rows_per_second": round(args.rows * len(FIXED_SCORES) / seconds),
                "computed_fraction": {n: round(c / args.rows, 3) for n, c in computed.items()},
                "python": platform.python_version(),
                "cpus": __import__("os").cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
