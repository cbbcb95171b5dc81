"""`ehr-risk risk-score`: a published clinical risk equation over a CSV of clinical variables."""

from __future__ import annotations

from pathlib import Path

import typer

from ehr_risk.cli import app


@app.command("risk-score")
def risk_score(
    name: str = typer.Argument(..., help="Score: pce, prevent, framingham or framingham-bmi."),
    input_csv: Path = typer.Option(..., "--input", help="CSV with the clinical-variable columns."),
    out: Path = typer.Option(..., "--out", help="Output CSV: the input plus `risk` (0-1) and `reason`."),
    outcome: str | None = typer.Option(None, "--outcome", help="prevent: cvd (default), ascvd or hf."),
    horizon: int | None = typer.Option(None, "--horizon", help="prevent: 10 (default) or 30 years."),
    out_of_range: str = typer.Option(
        "missing",
        "--out-of-range",
        help="missing: no risk for out-of-range inputs (default); clip: clamp into range and flag the row.",
    ),
) -> None:
    """Compute a clinical risk score for every row of a CSV.

    Input columns: age_years, sex (female|male), race (white|black|other), total_cholesterol_mg_dl,
    hdl_mg_dl, systolic_bp_mm_hg, on_bp_treatment, current_smoker, diabetes (0/1), plus
    egfr_ml_min_1_73m2, bmi_kg_m2 and on_statin where the equation needs them. Rows with missing or
    out-of-range inputs get an empty risk and the reason.
    """
    import numpy as np

    from ehr_risk.errors import ConfigError
    from ehr_risk.scores.csv_io import read_score_input, write_score_output
    from ehr_risk.scores.from_records import reason_counts
    from ehr_risk.scores.registry import make_score, resolve_cli_name

    if out_of_range not in ("missing", "clip"):
        raise ConfigError("--out-of-range must be 'missing' or 'clip'")
    key = resolve_cli_name(name, outcome, horizon)
    estimator = make_score(key, out_of_range=out_of_range)
    raw, parsed = read_score_input(input_csv, estimator)
    result = estimator.fit(parsed).predict_risk(parsed)
    write_score_output(out, raw, result, flag=out_of_range == "clip")

    computed = int(np.isfinite(result.risk).sum())
    top = list(reason_counts(result.reason).items())[:3]
    why = "; ".join(f"{reason} ({count})" for reason, count in top)
    print(
        f"risk-score {key}: {len(result.risk):,} rows, {computed:,} with a risk"
        + (f", {int(result.flag.sum()):,} clipped and flagged" if out_of_range == "clip" else "")
        + (f"; most common reasons: {why}" if why else "")
        + f"; wrote {out}"
    )
