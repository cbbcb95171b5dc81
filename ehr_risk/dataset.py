"""Build a dataset folder from the event table and one or more tasks.

    DS/prediction_times.parquet        every (subject, t) of any task          schema prediction_times
    DS/labels/<task>.parquet           labels with time-to-event columns        schema labels
    DS/labels/<task>.meds.parquet      MEDS label layout, known labels only     schema labels_meds
    DS/splits.parquet                  train / tuning / held_out per subject    schema splits
                                       (+ temporal_holdout flag; flagged subjects are all held_out)
    DS/features/{tabular,sequence,clinical}.parquet   one row per prediction time
    DS/featurizers/                    fitted featurizers (pickle) + vocab.json
    DS/cohort_report.json, DS/dataset.json   flow and rates; configs, data fingerprint, versions, counts

Two passes over the event shards (shards hold whole subjects, so every step is per shard, memory flat):

1. cohort pass: per shard, the subject summary, every task's cohort and labels, and the subject splits.
2. feature pass: featurizers are fitted once on train-split prediction times (a bounded, reproducible
   sample of train subjects: vocabularies and quantiles need not see every subject), then each shard's
   prediction times are transformed in batches of subjects and written as parts, merged at the end.

Row order: `prediction_times.parquet` and every `features/*.parquet` share one order (event shard, then
subject_id, then prediction_time); label files are sorted by (subject_id, prediction_time).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import pickle
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ehr_risk.cohort import CAUSE_OF_DEATH, Flow, build_cohort, needed_codes, subject_summary_query
from ehr_risk.cohort_report import task_report
from ehr_risk.errors import ConfigError, InputDataError
from ehr_risk.events import EVENT_DTYPES, visible_expr
from ehr_risk.labels import DistinctCodes
from ehr_risk.splits import (
    SplitConfig,
    assign_splits,
    keyed_uniform,
    split_summary,
    temporal_holdout,
    with_temporal_holdout,
)
from ehr_risk.tables import load_schema, write_table
from ehr_risk.tasks import Task, training_only_times

FEATURE_KINDS = ("tabular", "sequence", "clinical")
_COHORT_COLUMNS = ("subject_id", "time", "code", "numeric_value", "text_value", "unit", "recorded_time")
_DTYPES = {c: t for c, t in EVENT_DTYPES.items() if c != "record_id"}
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DatasetOptions:
    splits: SplitConfig = field(default_factory=SplitConfig)
    features: tuple[str, ...] = FEATURE_KINDS
    top_k: int = 200
    windows_days: tuple[int | None, ...] = (30, 365, 1825, None)
    max_len: int = 256
    n_value_bins: int = 10
    min_count: int = 5
    fit_max_subjects: int | None = 25_000
    batch_subjects: int = 20_000


def event_shards(events: str | Path) -> list[Path]:
    """The shard files: an ingest output folder (events/*.parquet), a folder of shards, or one file."""
    path = Path(events)
    if path.is_file():
        return [path]
    folder = path / "events" if (path / "events").is_dir() else path
    shards = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
    if not shards:
        raise InputDataError(f"{folder}: no event shards (*.parquet)")
    return shards


def scan_shard(path: Path, columns: Sequence[str] | None = None) -> pl.LazyFrame:
    """One shard, lazily, with the canonical event columns (missing optional ones as nulls)."""
    lf = pl.scan_parquet(path)
    names = lf.collect_schema().names()
    for required in ("subject_id", "time", "code"):
        if required not in names:
            raise InputDataError(f"{path}: event shard lacks column {required!r}")
    wanted = columns if columns is not None else list(_DTYPES)
    return lf.select([(pl.col(c) if c in names else pl.lit(None)).cast(_DTYPES[c]).alias(c) for c in wanted])


def cohort_inputs(path: Path, tasks: list[Task]) -> tuple[pl.DataFrame, pl.DataFrame, DistinctCodes, int]:
    """(events the tasks' criteria can match, subject summary, distinct codes, number of events).

    The summary and the distinct codes come from streaming aggregations over the shard; only the rows
    whose code some criterion (or encounter definition) matches are materialised — a small share of the
    shard — so the cohort pass holds little more than its outputs in memory.
    """
    lf = scan_shard(path, [*_COHORT_COLUMNS, "resource_type"])
    code = pl.col("code")
    summary, codes, answers, count = pl.collect_all(
        [
            subject_summary_query(lf),
            lf.select(code.drop_nulls().unique()),
            lf.filter(code == CAUSE_OF_DEATH).select(pl.col("text_value").drop_nulls().unique()),
            lf.select(pl.len()),
        ],
        engine="streaming",
    )
    distinct = DistinctCodes(codes.to_series(), answers.to_series())
    wanted: set[str] = set()
    resource_types: set[str] = set()
    for task in tasks:
        task_codes, task_types = needed_codes(task, distinct)
        wanted |= task_codes
        resource_types |= task_types
    match = code.is_in(sorted(wanted)) | pl.col("resource_type").is_in(sorted(resource_types)).fill_null(
        False
    )
    return lf.filter(match).collect(), summary.sort("subject_id"), distinct, int(count.item())


def fingerprint(shards: list[Path]) -> str:
    """Content hash of the event shards (blake2b over names and bytes): identifies the data a dataset saw."""
    h = hashlib.blake2b(digest_size=16)
    for p in shards:
        h.update(p.name.encode())
        with p.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _data_end(shards: list[Path]) -> dt.datetime | None:
    value = pl.scan_parquet([str(p) for p in shards]).select(pl.col("time").max()).collect().item()
    return value if isinstance(value, dt.datetime) else None


def build_dataset(
    events: str | Path,
    tasks: list[Task],
    out: str | Path,
    options: DatasetOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the dataset folder `out`; returns the content of `dataset.json`."""
    options = options or DatasetOptions()
    unknown = set(options.features) - set(FEATURE_KINDS)
    if unknown:
        raise ConfigError(f"unknown feature kind(s) {sorted(unknown)}; choose from {list(FEATURE_KINDS)}")
    if len({t.name for t in tasks}) != len(tasks) or not tasks:
        raise ConfigError("give at least one task, each once")
    out = Path(out)
    shards = event_shards(events)
    report = progress or (lambda stage, done, total: None)
    started = time.monotonic()
    needs_end = any(
        t.censoring.end_of_followup == "data_end" and t.censoring.data_end_date is None for t in tasks
    )
    data_end = _data_end(shards) if needs_end else None

    # ---- pass 1: cohorts, labels, splits
    labels: dict[str, list[pl.DataFrame]] = {t.name: [] for t in tasks}
    flows = {t.name: Flow() for t in tasks}
    split_parts: list[pl.DataFrame] = []
    shard_times: list[pl.DataFrame] = []
    n_events = 0
    for k, shard in enumerate(shards):
        df, summary, distinct, count = cohort_inputs(shard, tasks)
        n_events += count
        shard_splits = _splits(summary, options.splits)
        union: list[pl.DataFrame] = []
        for task in tasks:
            rows, flow = build_cohort(
                df, task, data_end, summary, distinct, shard_splits.select("subject_id", "split")
            )
            labels[task.name].append(rows)
            flows[task.name] = flows[task.name].merge(flow)
            union.append(rows.select("subject_id", "prediction_time"))
        shard_times.append(pl.concat(union).unique().sort("subject_id", "prediction_time"))
        split_parts.append(shard_splits)
        del df
        report("cohort", k + 1, len(shards))
    splits = pl.concat(split_parts).sort("subject_id")
    times = pl.concat(shard_times)
    _clear(out)
    write_table(times.to_arrow(), out / "prediction_times.parquet", "prediction_times")
    write_table(splits.to_arrow(), out / "splits.parquet", "splits")
    task_labels = {
        name: pl.concat(parts).sort("subject_id", "prediction_time") for name, parts in labels.items()
    }
    cohort = {}
    for task in tasks:
        _write_labels(task_labels[task.name], out / "labels", task.name)
        cohort[task.name] = task_report(task_labels[task.name], flows[task.name], splits, task)
    (out / "cohort_report.json").write_text(json.dumps(cohort, indent=2) + "\n")
    cohort_seconds = time.monotonic() - started

    # ---- pass 2: features
    extra = training_only_times(tasks)
    feature_info: dict[str, Any] = {}
    if options.features and times.height:
        feature_info = _features(shards, shard_times, splits, out, options, report, extra)
    meta: dict[str, Any] = {
        "created_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "events": {
            "shards": [p.name for p in shards],
            "n_events": n_events,
            "fingerprint": fingerprint(shards),
        },
        "tasks": {t.name: t.model_dump(mode="json") for t in tasks},
        "training_only_times": [x.isoformat() for x in extra],
        "codelists": {
            name: hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
            for t in tasks
            for name, path in t.codelist_files().items()
        },
        "splits": {**options.splits.model_dump(mode="json"), "observed": split_summary(splits)},
        "row_order": "prediction_times and features: event shard, then subject_id, prediction_time",
        "data_end": data_end.isoformat() if data_end else None,
        "counts": {
            "subjects": splits.height,
            "prediction_times": times.height,
            "labels": {name: frame.height for name, frame in task_labels.items()},
        },
        "features": feature_info,
        "schemas": {
            name: load_schema(name).version
            for name in ("events", "labels", "labels_meds", "splits", "prediction_times")
        },
        "seconds": {
            "cohort": round(cohort_seconds, 2),
            **feature_info.pop("seconds", {}),
            "total": round(time.monotonic() - started, 2),
        },
    }
    for kind in options.features:
        meta["schemas"][f"features_{kind}"] = load_schema(f"features_{kind}").version
    (out / "dataset.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta


def _clear(out: Path) -> None:
    """Remove what an earlier build wrote to `out` (stale labels of other tasks would mislead)."""
    out.mkdir(parents=True, exist_ok=True)
    for folder in ("labels", "features", "featurizers"):
        shutil.rmtree(out / folder, ignore_errors=True)
    for name in ("prediction_times.parquet", "splits.parquet", "cohort_report.json", "dataset.json"):
        (out / name).unlink(missing_ok=True)


def _splits(summary: pl.DataFrame, config: SplitConfig) -> pl.DataFrame:
    splits = assign_splits(summary["subject_id"], config)
    if config.temporal_holdout_date is None:
        return splits.with_columns(pl.lit(None, pl.Boolean).alias("temporal_holdout"))
    return with_temporal_holdout(splits, temporal_holdout(summary, config.temporal_holdout_date))


def _write_labels(frame: pl.DataFrame, folder: Path, name: str) -> None:
    write_table(frame.to_arrow(), folder / f"{name}.parquet", "labels")
    # MEDS' optional label columns must hold no nulls when present, so the unused ones are left out.
    meds = frame.filter(pl.col("boolean_value").is_not_null()).select(
        "subject_id", "prediction_time", "boolean_value"
    )
    write_table(meds.to_arrow(), folder / f"{name}.meds.parquet", "labels_meds")


def _fit_times(
    times: pl.DataFrame, splits: pl.DataFrame, options: DatasetOptions, extra: list[dt.datetime]
) -> pl.DataFrame:
    """Train-split prediction times other than the training-only landmarks `extra` (so that those leave
    the featurizers as they are); at most `fit_max_subjects` subjects, chosen by a keyed hash."""
    train = splits.filter(pl.col("split") == "train").select("subject_id")
    fit = times.join(train, on="subject_id", how="semi")
    if extra:
        only = pl.Series(extra, dtype=pl.Datetime("us")).implode()
        fit = fit.filter(~pl.col("prediction_time").is_in(only))
    ids = fit["subject_id"].unique()
    if options.fit_max_subjects is not None and ids.len() > options.fit_max_subjects:
        u = pl.Series("u", keyed_uniform(ids.to_numpy(), "fit-sample"))
        keep = pl.DataFrame({"subject_id": ids, "u": u}).sort("u").head(options.fit_max_subjects)
        fit = fit.join(keep.select("subject_id"), on="subject_id", how="semi")
    return fit.sort("subject_id", "prediction_time")


def _features(
    shards: list[Path],
    shard_times: list[pl.DataFrame],
    splits: pl.DataFrame,
    out: Path,
    options: DatasetOptions,
    report: Progress,
    extra: list[dt.datetime],
) -> dict[str, Any]:
    from ehr_risk.features import SequenceFeaturizer, TabularFeaturizer, clinical_variables

    times = pl.concat(shard_times)
    fit_times = _fit_times(times, splits, options, extra)
    if fit_times.height == 0:
        raise InputDataError("no prediction times in the train split: cannot fit the featurizers")
    ids = fit_times["subject_id"].unique()
    fit_events = pl.scan_parquet([str(p) for p in shards]).filter(pl.col("subject_id").is_in(ids.implode()))
    fitted: dict[str, Any] = {}
    if "tabular" in options.features:
        fitted["tabular"] = TabularFeaturizer(top_k=options.top_k, windows_days=options.windows_days)
    if "sequence" in options.features:
        fitted["sequence"] = SequenceFeaturizer(options.max_len, options.n_value_bins, options.min_count)
    started = time.monotonic()
    for name, featurizer in fitted.items():
        featurizer.fit(fit_events, fit_times)  # lazy: each fit scans only the sampled subjects' events
        report(f"fit {name}", 1, 1)
    fit_seconds = time.monotonic() - started
    folder = out / "featurizers"
    folder.mkdir(parents=True, exist_ok=True)
    for name, featurizer in fitted.items():
        with (folder / f"{name}.pkl").open("wb") as fh:
            pickle.dump(featurizer, fh, protocol=pickle.HIGHEST_PROTOCOL)
    if "sequence" in fitted:
        fitted["sequence"].save_vocab(folder / "vocab.json")

    parts = out / "features" / ".parts"
    shutil.rmtree(parts, ignore_errors=True)
    written: dict[str, list[Path]] = {kind: [] for kind in options.features}
    kind_seconds = dict.fromkeys(options.features, 0.0)
    done = 0
    for k, (shard, shard_t) in enumerate(zip(shards, shard_times, strict=True)):
        if shard_t.height == 0:
            continue
        events = _visible_by_last_time(scan_shard(shard), shard_t)
        subjects = shard_t["subject_id"].unique(maintain_order=True)
        for b, start in enumerate(range(0, subjects.len(), options.batch_subjects)):
            batch_ids = subjects.slice(start, options.batch_subjects)
            batch_t = shard_t.filter(pl.col("subject_id").is_in(batch_ids.implode()))
            batch_ev = events.filter(pl.col("subject_id").is_in(batch_ids.implode()))
            for kind in options.features:
                tick = time.monotonic()
                if kind == "clinical":
                    table = clinical_variables(batch_ev, batch_t)
                else:
                    table = fitted[kind].transform(batch_ev, batch_t)
                path = parts / f"{kind}-{k:04d}-{b:04d}.parquet"
                write_table(table.to_arrow(), path, f"features_{kind}")
                written[kind].append(path)
                kind_seconds[kind] += time.monotonic() - tick
            done += batch_t.height
            report("features", done, times.height)
        del events
    for kind, paths in written.items():
        _merge_parts(paths, out / "features" / f"{kind}.parquet")
    shutil.rmtree(parts, ignore_errors=True)
    info: dict[str, Any] = {
        "fit_subjects": ids.len(),
        "fit_rows": fit_times.height,
        "seconds": {
            "fit": round(fit_seconds, 2),
            "transform": round(time.monotonic() - started - fit_seconds, 2),
            **{f"transform_{kind}": round(sec, 2) for kind, sec in kind_seconds.items()},
        },
    }
    if "tabular" in fitted:
        info["tabular_columns"] = len(fitted["tabular"].feature_names_)
    if "sequence" in fitted:
        info["vocab_size"] = fitted["sequence"].n_tokens_
    return info


def _visible_by_last_time(events: pl.LazyFrame, times: pl.DataFrame) -> pl.DataFrame:
    """The events of `times`' subjects visible at the subject's latest prediction time.

    Visibility is monotone in t, so nothing dropped here is visible at any of the subject's prediction
    times: the featurizers see exactly the same inputs, minus the (often large) future part of the record,
    which is never materialised.
    """
    last = times.group_by("subject_id").agg(pl.col("prediction_time").max().alias("_last"))
    kept = events.join(last.lazy(), on="subject_id", how="inner", maintain_order="left")
    return kept.filter(visible_expr("_last")).drop("_last").collect()


def _merge_parts(paths: list[Path], target: Path) -> None:
    """Concatenate schema-conformed parts into one Parquet file, one part in memory at a time."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    schema = pq.read_schema(paths[0])
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for p in paths:
            table: pa.Table = pq.read_table(p)
            writer.write_table(table.cast(schema))
    tmp.replace(target)
