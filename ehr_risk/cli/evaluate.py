"""`ehr-risk evaluate`: metrics with bootstrap intervals, comparison with clinical scores, subgroups, HTML
report, plots, metrics.json and model card, from a predictions table.

The command is two steps: get a predictions table (a registered model scored on a dataset folder, through
`ehr_risk.evaluation.model_source`, or a `--predictions` file), then `ehr_risk.evaluation.evaluate`. With
`--model`, the report is logged to the model's MLflow run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ehr_risk.cli import app


def load_predictions(predictions: Path | None) -> tuple[Any, dict[str, Any]]:
    """The predictions table and model-card context from a file."""
    import polars as pl

    from ehr_risk.errors import InputDataError

    if predictions is None:
        raise InputDataError("evaluate: give --model with --dataset, or --predictions FILE.parquet")
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
    model: str | None = typer.Option(
        None, "--model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a run id (with --dataset)."
    ),
    dataset: Path | None = typer.Option(None, "--dataset", help="Dataset folder made by `ehr-risk dataset`."),
    task: str | None = typer.Option(None, "--task", help="Task to evaluate (default: the model's first)."),
    split: str = typer.Option("held_out", "--split", help="held_out | tuning | train | all."),
    events: Path | None = typer.Option(
        None,
        "--events",
        help="Score from the events with the model's own featurizers (a model trained on "
        "another build of the dataset needs this).",
    ),
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
    horizons: str | None = typer.Option(
        None,
        "--horizons",
        help="Horizons (years) for time-dependent AUC (with --model: the task's horizons, each with the "
        "model's risk at that horizon).",
    ),
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

    run_id = ""
    horizon_risks: dict[float, str] = {}
    if model is not None:
        from ehr_risk.evaluation.model_source import model_predictions

        if dataset is None:
            raise InputDataError("evaluate: --model needs --dataset DIR")
        if predictions is not None:
            raise InputDataError("evaluate: give --model (with --dataset) or --predictions, not both")
        source = model_predictions(model, dataset, task, split, events, _split(compare) if compare else None)
        df, ctx, run_id = source.table, source.context, source.run_id
        horizon_years = horizon_years or source.horizon_years
        # Time-dependent AUC at each of the task's horizons, with the model's risk at that horizon.
        horizons = horizons or ",".join(f"{h:g}" for h in source.horizons)
        compare = ",".join(c for c in df.columns if f"{c}_reason" in df.columns)
    else:
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
    if model is not None and hs:
        horizon_risks = {h: c for h, c in source.horizon_risks.items() if h in hs}
    result = run_evaluation(
        df,
        label=label,
        model=model_column,
        compare=_split(compare),
        thresholds=thr,
        horizon_years=horizon_years,
        horizons=hs,
        horizon_risks=horizon_risks if use_tte else None,
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
        td = [
            f"{k.removeprefix('td_auc@')} {v['estimate']:.3f}"
            for k, v in tte.items()
            if k.startswith("td_auc@") and v.get("estimate") is not None
        ]
        extra = f"; time-dependent AUC {', '.join(td)}" if td else ""
        print(f"  {model_column}: Harrell's C {harrell:.3f}, Uno's C {uno:.3f}{extra}")
    if run_id:
        from ehr_risk import registry

        # The held-out evaluation is the model's; another split's must not overwrite it in the run.
        where = "evaluation" if split == "held_out" else f"evaluation_{split}"
        registry.log_artifacts(run_id, out, where)
        registry.log_metrics(
            run_id, evaluation_metrics(m, model_column, "eval" if split == "held_out" else where)
        )
        print(f"evaluate: report logged to MLflow run {run_id} (artifacts/{where})")
    print(f"evaluate: report in {out / 'report.html'}")


def evaluation_metrics(metrics: dict[str, Any], model_column: str, prefix: str = "eval") -> dict[str, float]:
    """Headline numbers for the MLflow run: the model's point estimates and interval bounds."""
    out: dict[str, float] = {}
    for name in (
        "auroc",
        "auprc",
        "brier",
        "scaled_brier",
        "calibration_slope",
        "calibration_intercept",
        "ici",
    ):
        entry = metrics["scores"][model_column]["metrics"].get(name, {})
        for key in ("estimate", "ci_low", "ci_high"):
            if entry.get(key) is not None:
                out[f"{prefix}_{name}" + ("" if key == "estimate" else f"_{key}")] = float(entry[key])
    return out
