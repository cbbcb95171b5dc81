"""`ehr-risk score`: batch-score the population as of a date with a registered model."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from ehr_risk.cli import app


@app.command()
def score(
    model: str = typer.Option(..., "--model", help="Model URI, e.g. models:/ehr-risk-ascvd_10y@champion."),
    events: Path = typer.Option(..., "--events", help="Ingest output folder (events/)."),
    as_of: str = typer.Option(
        ..., "--as-of", help="As-of date YYYY-MM-DD: only data at or before it is used."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Scores folder (partitioned by as-of date and model version)."
    ),
    task: str | None = typer.Option(
        None, "--task", help="Task whose population is scored (default: the model's)."
    ),
    fhir: bool = typer.Option(False, "--fhir", help="Also write FHIR R4 RiskAssessment NDJSON."),
    explain: int = typer.Option(
        0,
        "--explain",
        min=0,
        metavar="K",
        help=(
            "Add each patient's K top contributing factors (columns top_factors, top_factor_effects) for the "
            "risk at the primary horizon. Factors are named variables or feature groups (systolic_bp_mm_hg, "
            "'LOINC/4548-4 count', age_years, sex, 'event history'); the effect is the risk minus the risk "
            "with that factor at its training reference: coefficient x standardised value for logistic "
            "regression, tree-path contributions for gradient boosting, the static features set to their "
            "training means (and an empty history) for the networks. Off by default (slower)."
        ),
    ),
    workers: int = typer.Option(
        2, "--workers", min=1, help="Shards scored at once (threads); about one per CPU core."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Score every eligible subject as of a date; idempotent, atomic and locked per (model version, date)."""
    from ehr_risk import registry
    from ehr_risk.cli.common import Progress
    from ehr_risk.errors import ConfigError
    from ehr_risk.scoring import ModelRef
    from ehr_risk.scoring import score as run_score
    from ehr_risk.tasks import load_task

    try:
        as_of_date = dt.date.fromisoformat(as_of)
    except ValueError as exc:
        raise ConfigError(f"--as-of {as_of!r}: expected a date YYYY-MM-DD") from exc
    predictor = registry.load_predictor(model)
    name, version, run_id = registry.describe_model(model)
    task_name = task or predictor.tasks[0]
    ref = ModelRef(name=name, version=version, run_id=run_id, uri=model)
    bar = Progress("score: shards", quiet=quiet)
    result = run_score(
        predictor,
        load_task(task_name),
        events,
        as_of_date,
        out,
        ref,
        fhir=fhir,
        progress=lambda d, _t: bar(d),
        workers=workers,
        explain=explain,
    )
    print(
        f"score: {result.subjects_scored:,} of {result.subjects_in_data:,} subjects scored as of "
        f"{as_of_date} with {name} v{version} in {result.seconds:.1f}s -> {result.partition}"
    )
