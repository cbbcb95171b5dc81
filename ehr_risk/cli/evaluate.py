"""`ehr-risk evaluate`: metrics with bootstrap intervals, comparison with clinical scores, subgroups, HTML
report, plots, metrics.json and model card, from a predictions table.

The command is two steps: get a predictions table (today from `--predictions`; scoring a registered model
on a dataset plugs in as another source in `load_predictions`), then `ehr_risk.evaluation.evaluate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ehr_risk.cli import app


def load_predictions(predictions: Path | None) -> tuple[Any, dict[str, Any]]:
    """The predictions table and model-card context from the chosen source."""
    import polars as pl

    from ehr_risk.errors import InputDataError

    if predictions is None:
        raise InputDataError("evaluate: give --predictions FILE.parquet")
    if not predictions.exists():
        raise InputDataError(f"{predictions}: predictions file not found")
    try:
        if predictions.suffix.lower() == ".csv":
            df = pl.read_csv(predictions, try_parse_dates=True)
        else:
            df = pl.read_parquet(predictions)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputDataError(
            f"{predictions}: cannot read the predictions table ({type(exc).__name__})"
        ) from exc
    return df, {}


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@app.command()
def evaluate(
    predictions: Path | None = typer.Option(
        None, "--predictions", help="Parquet (or CSV) with one row per subject_id, prediction_time."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output folder (report.html, metrics.json, plots/, model card)."
    ),
    compare: str | None = typer.Option(
        None, "--compare", help="Comma-separated score columns to compare with, e.g. pce,prevent."
    ),
    label: str = typer.Option(
        "label", "--label", help="Binary label column (null = censored before horizon)."
    ),
    model_column: str = typer.Option("model_risk", "--model-column", help="The model's risk column."),
    thresholds: str = typer.Option(
        "0.05,0.075,0.10,0.20", "--thresholds", help="Risk thresholds, comma-separated."
    ),
    horizon_years: float | None = typer.Option(
        None, "--horizon-years", help="Horizon of the label, in years."
    ),
    horizons: str | None = typer.Option(None, "--horizons", help="Horizons (years) for time-dependent AUC."),
    time_to_event: bool | None = typer.Option(
        None,
        "--time-to-event/--no-time-to-event",
        help="C-indices and time-dependent AUC from event_time/censor_time (default: if the columns exist).",
    ),
    subgroups: str = typer.Option(
        "sex,race,age_band", "--subgroups", help="Subgroup columns, comma-separated."
    ),
    n_boot: int = typer.Option(1000, "--n-boot", min=0, help="Bootstrap resamples (subject level)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    context: Path | None = typer.Option(
        None, "--context", help="JSON with model-card metadata (model, task, …)."
    ),
) -> None:
    """Evaluate predictions against outcomes and clinical scores; write the report to OUT."""
    import json

    from ehr_risk.errors import InputDataError
    from ehr_risk.evaluation import TimeToEvent
    from ehr_risk.evaluation import evaluate as run_evaluation

    df, ctx = load_predictions(predictions)
    if context is not None:
        try:
            ctx |= json.loads(context.read_text())
        except (OSError, ValueError) as exc:
            raise InputDataError(f"{context}: cannot read the context JSON ({type(exc).__name__})") from exc
    try:
        thr = [float(t) for t in _split(thresholds)]
        hs = [float(h) for h in _split(horizons)] or None
    except ValueError as exc:
        raise InputDataError("evaluate: --thresholds and --horizons take comma-separated numbers") from exc
    tte_cols = TimeToEvent()
    has_tte = all(
        c in df.columns for c in (tte_cols.event_time, tte_cols.censor_time, tte_cols.prediction_time)
    )
    use_tte = has_tte if time_to_event is None else time_to_event
    result = run_evaluation(
        df,
        label=label,
        model=model_column,
        compare=_split(compare),
        thresholds=thr,
        horizon_years=horizon_years,
        horizons=hs,
        time_to_event=tte_cols if use_tte else None,
        subgroups=_split(subgroups),
        n_boot=n_boot,
        seed=seed,
        out_dir=out,
        context=ctx,
    )
    m = result.metrics
    c = m["counts"]
    print(
        f"evaluate: {c['rows_evaluated']:,} rows ({c['events']:,} events) evaluated; "
        f"{c['rows_censored_before_horizon']:,} censored before the horizon, "
        f"{c['rows_without_model_risk']:,} without a model risk"
    )
    for name, entry in m["scores"].items():
        auc = entry["metrics"].get("auroc", {})
        missing = f", {entry['n_missing']:,} rows without it" if entry["n_missing"] else ""
        if auc.get("estimate") is not None and auc.get("ci_low") is not None:
            print(
                f"  {name}: AUROC {auc['estimate']:.3f} ({auc['ci_low']:.3f}-{auc['ci_high']:.3f}){missing}"
            )
        elif auc.get("estimate") is not None:
            print(f"  {name}: AUROC {auc['estimate']:.3f}{missing}")
    tte = m.get("time_to_event", {}).get("scores", {}).get(model_column, {})
    if tte.get("harrell_c", {}).get("estimate") is not None:
        harrell, uno = tte["harrell_c"]["estimate"], tte.get("uno_c", {}).get("estimate") or float("nan")
        print(f"  {model_column}: Harrell's C {harrell:.3f}, Uno's C {uno:.3f}")
    print(f"evaluate: report in {out / 'report.html'}")
