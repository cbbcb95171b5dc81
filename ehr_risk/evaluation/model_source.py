"""The predictions table and model-card context for a registered model (or run) on a dataset folder: what
`ehr-risk evaluate --model … --dataset …` evaluates.

The table comes from `ehr_risk.holdout.predictions_table` (the model and the clinical scores on the same
rows), with the model's risks at the task's other horizons too, which the time-dependent AUC needs.
The context carries metadata only (dataset description, cohort flow counts, missingness fractions), never
patient-level values.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ehr_risk.errors import InputDataError

KEYS = ["subject_id", "prediction_time"]
# Score families a user may name without the variant: the variant that estimates the task's outcome.
FAMILIES = ("prevent", "framingham")


@dataclass
class ModelPredictions:
    table: pl.DataFrame
    context: dict[str, Any]
    run_id: str
    horizon_years: float
    horizons: list[float] = field(default_factory=list)  # the task's horizons the model has a risk for
    horizon_risks: dict[float, str] = field(default_factory=dict)  # horizon -> model risk column


def resolve_compare(task: str, names: Sequence[str]) -> list[str]:
    """Score names as given, except a bare family name (`prevent`) becomes the task's variant of it
    (`prevent_ascvd_10y` for ascvd_10y); a family with no variant for the task is an input error."""
    from ehr_risk.holdout import DEFAULT_COMPARE

    defaults = DEFAULT_COMPARE.get(task, ())
    out = []
    for name in names:
        if name in FAMILIES and name not in defaults:
            variants = [d for d in defaults if d.startswith(f"{name}_")]
            if len(variants) != 1:
                raise InputDataError(
                    f"--compare {name}: no single {name} score for task {task!r}; name one, e.g. "
                    f"{name}_ascvd_10y (see `ehr-risk risk-score --help`)"
                )
            name = variants[0]
        out.append(name)
    return list(dict.fromkeys(out))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{path}: cannot read ({type(exc).__name__})") from exc
    return data if isinstance(data, dict) else {}


def cohort_flow(report: dict[str, Any], split: str) -> list[dict[str, Any]]:
    """The task's cohort-report steps as flat rows (counts overall and in the evaluated split)."""
    rows = []
    for step in report.get("flow") or []:
        if not isinstance(step, dict):
            continue
        row = {"step": step.get("step"), "rows": step.get("rows"), "subjects": step.get("subjects")}
        in_split = (step.get("by_split") or {}).get(split)
        if isinstance(in_split, dict):
            row[f"{split} rows"] = in_split.get("rows")
            row[f"{split} subjects"] = in_split.get("subjects")
        rows.append(row)
    return rows


def missingness(dataset: Path, keys: pl.DataFrame) -> dict[str, float]:
    """Share of the evaluated rows without each clinical variable (the model's named inputs)."""
    path = dataset / "features" / "clinical.parquet"
    if not path.exists() or keys.height == 0:
        return {}
    clinical = keys.join(pl.read_parquet(path), on=KEYS, how="left")
    columns = [c for c in clinical.columns if c not in KEYS and not c.endswith("_age_days")]
    nulls = clinical.select(pl.col(c).is_null().mean() for c in columns).row(0)
    return {c: round(float(v), 4) for c, v in zip(columns, nulls, strict=True)}


def _dataset_context(dataset: Path, meta: dict[str, Any], task: str, split: str) -> dict[str, Any]:
    task_meta = (meta.get("tasks") or {}).get(task) or {}
    events = meta.get("events") or {}
    return {
        "folder": str(dataset),
        "built": meta.get("created_at"),
        "events": {"events": events.get("n_events"), "fingerprint": events.get("fingerprint")},
        "data_end": meta.get("data_end") or "last record",
        "prediction_times": (task_meta.get("prediction_times") or {}).get("dates"),
        "counts": meta.get("counts"),
        "split evaluated": split,
        "split fractions": {
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in (meta.get("splits") or {}).items()
            if k != "observed"
        },
    }


def model_predictions(
    model: str,
    dataset: Path,
    task: str | None = None,
    split: str = "held_out",
    events: Path | None = None,
    compare: Sequence[str] | None = None,
    tracking_uri: str | None = None,
) -> ModelPredictions:
    """Score `model` (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/… or a bare run id) on `dataset`."""
    from ehr_risk import registry
    from ehr_risk.holdout import MODEL_COLUMN, predictions_table
    from ehr_risk.predictor import risk_column
    from ehr_risk.tasks import load_task

    uri = model if ":/" in model else f"runs:/{model}/predictor"  # a bare run id
    predictor = registry.load_predictor(uri, tracking_uri)
    name = task or predictor.tasks[0]
    task_def = load_task(name)
    names = None if compare is None else resolve_compare(name, compare)
    primary = task_def.primary_horizon
    horizons = [float(h) for h in task_def.horizons_years if risk_column(name, h) in predictor.output_columns]
    table = predictions_table(
        predictor, dataset, name, split=split, compare=names, events=events, horizons=horizons
    )
    horizon_risks = {primary: MODEL_COLUMN} | {h: f"{MODEL_COLUMN}_{h:g}y" for h in horizons if h != primary}
    reg_name, version, reg_run = registry.describe_model(uri, tracking_uri)
    run_id = str(predictor.metadata.get("run_id") or reg_run or "")
    meta = _read_json(dataset / "dataset.json")
    report = _read_json(dataset / "cohort_report.json").get(name) or {}
    population = task_def.population
    context: dict[str, Any] = {
        "model": {
            "name": reg_name or uri,
            "version": version or None,
            "uri": uri,
            "run_id": run_id or None,
            "type": predictor.model_kind,
            "trained_at": predictor.metadata.get("trained_at"),
            "training dataset fingerprint": predictor.metadata.get("dataset_fingerprint"),
            "outputs": ", ".join(predictor.output_columns),
        },
        "task": {
            "name": name,
            "outcome": task_def.description or name,
            "horizon_years": primary,
            "population": f"ages {population.min_age_years:g}-{population.max_age_years:g}",
        },
        "dataset": _dataset_context(dataset, meta, name, split),
        "cohort_report": {"flow": cohort_flow(report, split)},
        "missingness": missingness(dataset, table.select(KEYS)),
    }
    return ModelPredictions(table, context, run_id, primary, horizons, horizon_risks)
