"""Reading a dataset folder (contracts.md layout) into aligned training tables for the model fitters.

Rows are the union of the tasks' label rows (subject_id, prediction_time); each task's labels, the split,
and the feature tables are left-joined onto them, so row i means the same prediction time everywhere.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import polars as pl
import pyarrow.parquet as pq

from ehr_risk.errors import InputDataError, SchemaError
from ehr_risk.models.targets import label_horizons, observed_time

KEYS = ["subject_id", "prediction_time"]
LABEL_TIMES = ["event_time", "competing_time", "censor_time"]
SPLITS = ("train", "tuning", "held_out")


@dataclass
class TaskLabels:
    """One task's labels aligned to the rows; `in_task` is False where the row is not in its cohort."""

    in_task: np.ndarray
    years: np.ndarray  # observed follow-up (years) to outcome, competing death or end of follow-up
    is_event: np.ndarray
    is_competing: np.ndarray
    labels: dict[float, np.ndarray]  # horizon → label values (NaN-free bool) ...
    known: dict[float, np.ndarray]  # ... and where they are known
    primary_horizon: float
    frame: pl.DataFrame  # the aligned label columns (event/competing/censor times) for hazard targets


@dataclass
class TrainingData:
    keys: pl.DataFrame
    split: np.ndarray
    tasks: dict[str, TaskLabels]
    tabular: pl.DataFrame | None
    sequence: pl.DataFrame | None
    featurizers: dict[str, Any]
    meta: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    training_only: np.ndarray | None = None  # rows at a training-only landmark (tasks.LandmarkTimes)

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)


def _read(path: Path, required: list[str]) -> pl.DataFrame:
    if not path.is_file():
        raise InputDataError(f"{path}: not found (is this a dataset folder made by `ehr-risk dataset`?)")
    df = pl.read_parquet(path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {', '.join(missing)}")
    return df.with_columns(
        pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us"))
    )


def _load_featurizer(ds: Path, name: str) -> Any | None:
    for suffix in (".pkl", ".pickle", ".joblib"):
        path = ds / "featurizers" / f"{name}{suffix}"
        if path.is_file():
            return joblib.load(path)
    return None


def _primary_horizon(task: str, labels: pl.DataFrame, meta: dict[str, Any], horizons: list[float]) -> float:
    """From dataset.json's task config where present, else the label column that boolean_value copies."""
    tasks = meta.get("tasks")
    cfg = tasks.get(task) if isinstance(tasks, dict) else None
    if isinstance(tasks, list):
        cfg = next((t for t in tasks if isinstance(t, dict) and t.get("name") == task), None)
    if isinstance(cfg, dict):
        for key in ("primary_horizon_years", "primary_horizon"):
            if isinstance(cfg.get(key), int | float):
                return float(cfg[key])
    if "boolean_value" in labels.columns:
        same = [
            h
            for h in horizons
            if labels.select((pl.col("boolean_value").eq_missing(pl.col(f"label_{h:g}y"))).all()).item()
        ]
        if same:
            return max(same)
    return max(horizons)


def load_training_data(ds: Path, tasks: list[str], need_tabular: bool, need_sequence: bool) -> TrainingData:
    ds = Path(ds)
    meta = json.loads((ds / "dataset.json").read_text()) if (ds / "dataset.json").is_file() else {}
    files: list[Path] = []
    raw: dict[str, pl.DataFrame] = {}
    for task in tasks:
        path = ds / "labels" / f"{task}.parquet"
        raw[task] = _read(path, KEYS + LABEL_TIMES).unique(KEYS, keep="first", maintain_order=True)
        files.append(path)
    keys = pl.concat([df.select(KEYS) for df in raw.values()]).unique(maintain_order=True).sort(KEYS)
    splits_path = ds / "splits.parquet"
    if not splits_path.is_file():
        raise InputDataError(f"{splits_path}: not found")
    splits = pl.read_parquet(splits_path).select(pl.col("subject_id").cast(pl.Int64), "split")
    files.append(splits_path)
    keys = keys.join(splits, on="subject_id", how="inner", maintain_order="left")
    if keys.height == 0:
        raise InputDataError(f"{ds}: no labelled prediction times with a split")
    split = keys.get_column("split").to_numpy().astype(str)
    keys = keys.select(KEYS)
    aligned: dict[str, TaskLabels] = {}
    for task, df in raw.items():
        horizons = label_horizons(df.columns)
        if not horizons:
            raise SchemaError(f"{ds / 'labels' / task}.parquet: no label_<h>y columns")
        frame = keys.join(
            df.with_columns(pl.lit(True).alias("_in")), on=KEYS, how="left", maintain_order="left"
        )
        years, is_event, is_comp = observed_time(
            *(frame.get_column(c).to_numpy() for c in ["prediction_time", *LABEL_TIMES])
        )
        labels, known = {}, {}
        for h in horizons:
            col = frame.get_column(f"label_{h:g}y")
            known[h] = col.is_not_null().to_numpy()
            labels[h] = col.fill_null(False).to_numpy().astype(bool)
        aligned[task] = TaskLabels(
            in_task=frame.get_column("_in").fill_null(False).to_numpy().astype(bool),
            years=years,
            is_event=is_event,
            is_competing=is_comp,
            labels=labels,
            known=known,
            primary_horizon=_primary_horizon(task, df, meta, horizons),
            frame=frame.select(["prediction_time", *LABEL_TIMES]),
        )
    tables: dict[str, pl.DataFrame | None] = {"tabular": None, "sequence": None}
    for name, needed in (("tabular", need_tabular), ("sequence", need_sequence)):
        if not needed:
            continue
        path = ds / "features" / f"{name}.parquet"
        table = _read(path, KEYS).unique(KEYS, keep="first", maintain_order=True)
        joined = keys.join(table, on=KEYS, how="left", maintain_order="left")
        n_missing = keys.height - keys.join(table.select(KEYS), on=KEYS, how="semi").height
        if n_missing:
            raise InputDataError(f"{path}: {n_missing} labelled prediction time(s) have no feature row")
        tables[name] = joined
        files.append(path)
    featurizers = {n: f for n in ("tabular", "sequence") if (f := _load_featurizer(ds, n)) is not None}
    extra = pl.Series([dt.datetime.fromisoformat(x) for x in meta.get("training_only_times", [])])
    only = keys.get_column("prediction_time").is_in(extra.cast(pl.Datetime("us")).implode()).to_numpy()
    return TrainingData(
        keys, split, aligned, tables["tabular"], tables["sequence"], featurizers, meta, files, only
    )


def fingerprint(files: list[Path]) -> str:
    """sha256 over the content of the dataset files a model was trained on (names + bytes)."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def schema_versions(files: list[Path], meta: dict[str, Any]) -> dict[str, str]:
    """Schema versions stamped in the parquet files by ehr_risk.tables, plus those dataset.json records."""
    out: dict[str, str] = {}
    for key in ("schemas", "schema_versions"):
        declared = meta.get(key)
        if isinstance(declared, dict):
            out.update({str(k): str(v) for k, v in declared.items()})
    for path in files:
        stamp = (pq.read_schema(path).metadata or {}).get(b"ehr_risk.schema")
        if stamp:
            name, _, version = stamp.decode().partition("@")
            out[name] = version
    return out
