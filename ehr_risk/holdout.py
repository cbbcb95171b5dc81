"""The predictions table that evaluation reads: a model and the clinical scores on the very same rows.

One row per (subject_id, prediction_time) of a task's labels in one split, with the binary label at the
task's primary horizon (null = censored before it), the model's risk, every compared clinical score's risk
and reason (computed from the same rows' clinical variables), the subgroup columns and the follow-up times.

The model scores either the dataset's stored feature tables (fast; only valid for a model whose
featurizers built them, i.e. one trained on this dataset) or, given the event table, the events themselves
through its own fitted featurizers, shard by shard (what a champion trained on an older build needs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from ehr_risk.errors import InputDataError
from ehr_risk.predictor import risk_column
from ehr_risk.splits import temporal_holdout_subjects
from ehr_risk.tasks import label_column

KEYS = ["subject_id", "prediction_time"]
MODEL_COLUMN = "model_risk"
LABEL_COLUMN = "label"
# Published scores that estimate (about) the same outcome as each shipped task.
DEFAULT_COMPARE: dict[str, tuple[str, ...]] = {
    "ascvd_10y": ("pce", "prevent_ascvd_10y", "framingham"),
    "heart_failure_5y": ("prevent_hf_10y",),
}


def _read(path: Path, what: str) -> pl.DataFrame:
    if not path.exists():
        raise InputDataError(f"{path}: {what} not found (build the dataset with `ehr-risk dataset`)")
    return pl.read_parquet(path)


def split_rows(dataset: Path, task: str, split: str) -> pl.DataFrame:
    """The task's label rows in `split` ('all' for every row, 'temporal_holdout' for the subjects of the
    temporal hold-out, a part of held_out), sorted by subject and time."""
    labels = _read(dataset / "labels" / f"{task}.parquet", f"labels of task {task!r}")
    if split == "all":
        return labels.sort(KEYS)
    splits = _read(dataset / "splits.parquet", "splits")
    if split == "temporal_holdout":
        late = temporal_holdout_subjects(splits)
        if late is None:
            raise InputDataError(
                f"{dataset}: built without a temporal hold-out (ehr-risk dataset --temporal-holdout)"
            )
        rows = labels.join(late, on="subject_id", how="semi")
    else:
        rows = labels.join(splits.select("subject_id", "split"), on="subject_id", how="inner")
        rows = rows.filter(pl.col("split") == split).drop("split")
    if rows.height == 0:
        raise InputDataError(f"{dataset}: no {task} rows in split {split!r}")
    return rows.sort(KEYS)


def _aligned(dataset: Path, kind: str, keys: pl.DataFrame) -> pl.DataFrame | None:
    path = dataset / "features" / f"{kind}.parquet"
    if not path.exists():
        return None
    table = pl.read_parquet(path)
    joined = keys.join(table, on=KEYS, how="left", maintain_order="left")
    if joined.height != keys.height:
        raise InputDataError(f"{path}: duplicate (subject_id, prediction_time) rows")
    return joined


def model_risks(predictor: Any, keys: pl.DataFrame, dataset: Path, events: Path | None) -> pl.DataFrame:
    """The predictor's risks at `keys`, from the events (own featurizers) or the stored features."""
    if events is None:
        tab = _aligned(dataset, "tabular", keys) if predictor.tabular is not None else None
        seq = _aligned(dataset, "sequence", keys) if predictor.sequence is not None else None
        return predictor.predict_features(keys, tab, seq)
    from ehr_risk.dataset import event_shards

    parts = []
    for shard in event_shards(events):
        ev = pl.read_parquet(shard)
        mine = keys.filter(pl.col("subject_id").is_in(ev.get_column("subject_id").unique().implode()))
        if mine.height:
            parts.append(predictor.predict(ev, mine))
    if not parts:
        raise InputDataError(f"{events}: none of the evaluated subjects is in this event table")
    found = pl.concat(parts)
    return keys.join(found, on=KEYS, how="left", maintain_order="left")


def predictions_table(
    predictor: Any,
    dataset: Path,
    task: str,
    split: str = "held_out",
    compare: Sequence[str] | None = None,
    events: Path | None = None,
    horizons: Sequence[float] = (),
) -> pl.DataFrame:
    """The table of the module docstring. `horizons`: other horizons of the task whose risks the table
    also holds, as `model_risk_<h>y` (last columns), from the same scoring pass."""
    from ehr_risk.scores.from_records import score_frame
    from ehr_risk.tasks import load_task

    if task not in predictor.tasks:
        raise InputDataError(f"the model predicts {', '.join(predictor.tasks)}, not task {task!r}")
    horizon = load_task(task).primary_horizon
    rows = split_rows(dataset, task, split)
    keys = rows.select(KEYS)
    risk = risk_column(task, horizon)
    if risk not in predictor.output_columns:
        raise InputDataError(f"the model has no risk at the task's {horizon:g}-year horizon ({risk})")
    extra = {h: f"{MODEL_COLUMN}_{h:g}y" for h in horizons if h != horizon}
    lacking = [risk_column(task, h) for h in extra if risk_column(task, h) not in predictor.output_columns]
    if lacking:
        raise InputDataError(f"the model has no risk column {', '.join(lacking)}")
    risks = model_risks(predictor, keys, dataset, events)
    others = [risks.get_column(risk_column(task, h)).alias(c) for h, c in extra.items()]
    out = rows.select(
        *KEYS,
        pl.col(label_column(horizon)).cast(pl.Float64).alias(LABEL_COLUMN),
        "event_time",
        "censor_time",
    ).with_columns(risks.get_column(risk).alias(MODEL_COLUMN))
    clinical = _aligned(dataset, "clinical", keys)
    names = list(DEFAULT_COMPARE.get(task, ()) if compare is None else compare)
    if clinical is None:
        if names:
            raise InputDataError(f"{dataset}: features/clinical.parquet is needed to compare with {names}")
        return out.with_columns(others)
    scored = pl.from_pandas(score_frame(clinical, names=names))
    score_cols = []
    for name in names:
        score_cols += [
            scored.get_column(f"{name}_risk").cast(pl.Float64).alias(name),
            scored.get_column(f"{name}_reason").cast(pl.String).alias(f"{name}_reason"),
        ]
    groups = clinical.select(
        pl.col("sex").cast(pl.String), pl.col("race").cast(pl.String), pl.col("age_years").cast(pl.Float64)
    )
    return pl.concat([out, groups, pl.DataFrame(score_cols)], how="horizontal").with_columns(others)
