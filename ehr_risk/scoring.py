"""Batch scoring: every eligible subject as of a date, from the events at or before it.

One job = (model version, as-of date). It holds a lock for that pair, scores shard by shard (shards hold
whole subjects; `workers` shards in flight at once, each written as soon as it is done, so memory stays
flat), writes into a scratch folder and swaps it in as the partition `OUT/as_of_date=YYYY-MM-DD/
model_version=N/` in one rename: a rerun replaces the partition with the same rows, a crash leaves the
previous partition (or none), and a concurrent run of the same job fails fast.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import orjson
import polars as pl
import pyarrow.parquet as pq

from ehr_risk.dataset import event_shards
from ehr_risk.errors import SchemaError
from ehr_risk.events import scan_events, visible
from ehr_risk.jobs import atomic_directory, exclusive_lock
from ehr_risk.predictor import FACTOR_EFFECTS, FACTORS
from ehr_risk.tables import load_schema, write_table

SUBJECT_ID_SYSTEM = "urn:ehr-risk:subject-id"
_T = TypeVar("_T")


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    run_id: str
    uri: str


@dataclass
class ScoreResult:
    partition: Path
    subjects_scored: int
    subjects_in_data: int
    fhir_file: Path | None
    seconds: float = 0.0


def partition_dir(out: Path, as_of: dt.date, version: str) -> Path:
    return out / f"as_of_date={as_of.isoformat()}" / f"model_version={version}"


def check_schema_compatible(predictor: Any) -> None:
    """Refuse a model trained on another major version of the event schema."""
    trained = str(predictor.metadata.get("schema_versions", {}).get("events", ""))
    current = load_schema("events").version
    if trained and trained.split("@")[-1].split(".")[0] != current.split(".")[0]:
        raise SchemaError(
            f"model was trained on event schema {trained}, this table is events@{current}: retrain the model"
        )


def eligible_times(events: pl.DataFrame, task: Any, as_of: dt.datetime) -> pl.DataFrame:
    """(subject_id, prediction_time = as_of) for the subjects in the task's population at `as_of`.

    The task's own cohort steps decide (alive, look-back, age, sex, prior-outcome and other exclusions),
    at a single landmark just after the as-of date; follow-up cannot be required of people being scored,
    so the end of follow-up is set past the landmark. `events` must already be cut at `as_of`.
    """
    from ehr_risk.cohort import build_cohort
    from ehr_risk.tasks import Censoring, LandmarkTimes

    landmark = as_of.date() + dt.timedelta(days=1)
    scoring_task = task.model_copy(
        update={
            "prediction_times": LandmarkTimes(type="landmark", dates=[landmark]),
            "censoring": Censoring(end_of_followup="data_end", data_end_date=landmark + dt.timedelta(days=1)),
        }
    )
    rows, _ = build_cohort(events, scoring_task)
    return (
        rows.select("subject_id")
        .unique()
        .sort("subject_id")
        .with_columns(pl.lit(as_of, pl.Datetime("us")).alias("prediction_time"))
    )


def score_shard(
    predictor: Any, task: Any, shard: Path, as_of: dt.datetime, model: ModelRef, explain: int = 0
) -> tuple[pl.DataFrame, int]:
    """Scores of one shard's eligible subjects (with the top `explain` factors each), and the number of
    subjects in the shard."""
    events = visible(scan_events(shard), as_of).collect()
    n_subjects = events["subject_id"].n_unique()
    times = eligible_times(events, task, as_of)
    if times.height == 0:
        return pl.DataFrame(), n_subjects
    # features are per subject: the events of people not being scored (often half the shard) are dropped
    # before the featurizers tokenize, sort and join them
    events = events.join(times.select("subject_id"), on="subject_id", how="semi")
    risks = predictor.predict(events, times, explain=explain)
    if not explain:  # the columns are in the scores schema either way: one table layout for readers
        risks = risks.with_columns(
            pl.lit(None, pl.List(pl.String)).alias(FACTORS),
            pl.lit(None, pl.List(pl.Float64)).alias(FACTOR_EFFECTS),
        )
    n_inputs = (
        events.group_by("subject_id").len(name="n_inputs").with_columns(pl.col("n_inputs").cast(pl.Int64))
    )
    scored = risks.join(n_inputs, on="subject_id", how="left").with_columns(
        pl.lit(model.name).alias("model_name"),
        pl.lit(model.version).alias("model_version"),
        pl.lit(model.run_id).alias("run_id"),
    )
    return scored, n_subjects


def risk_assessments(
    scores: pl.DataFrame,
    model: ModelRef,
    task: Any,
    id_map: dict[int, str] | None,
    explained_column: str | None = None,
) -> Iterator[dict[str, Any]]:
    """FHIR R4 RiskAssessment resources, one per scored subject, for write-back to the EHR. With
    explanations, the explained prediction's `rationale` lists the top factors and their effects."""
    risk_cols = [c for c in scores.columns if c.startswith("risk_")]
    explained_col = explained_column or (risk_cols[-1] if risk_cols else "")
    for row in scores.iter_rows(named=True):
        sid = row["subject_id"]
        source = id_map.get(sid) if id_map else None
        subject: dict[str, Any] = (
            {"reference": f"Patient/{source}"}
            if source
            else {"identifier": {"system": SUBJECT_ID_SYSTEM, "value": str(sid)}}
        )
        predictions: dict[str, dict[str, Any]] = {}
        for col in risk_cols:
            years = float(col.rsplit("_", 1)[-1].rstrip("y"))
            predictions[col] = {
                "outcome": {"text": task.description or task.name},
                "probabilityDecimal": round(float(row[col]), 6),
                "whenRange": {
                    "high": {"value": years, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}
                },
            }
        factors = row.get(FACTORS)
        if factors and explained_col in predictions:  # feature names and effects, never patient values
            effects = row[FACTOR_EFFECTS]
            predictions[explained_col]["rationale"] = (
                "Top contributing factors (change in risk against the training reference): "
                + "; ".join(
                    f"{name} {100 * effect:+.2f} percentage points"
                    for name, effect in zip(factors, effects, strict=True)
                )
            )
        yield {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": subject,
            "occurrenceDateTime": row["prediction_time"].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "method": {"text": f"{model.name} version {model.version} (run {model.run_id})"},
            "prediction": list(predictions.values()),
        }


def _write_fhir(fh: BinaryIO, resources: Iterator[dict[str, Any]]) -> int:
    from fhir.resources.R4B.riskassessment import RiskAssessment

    n = 0
    for res in resources:
        RiskAssessment.model_validate(res)  # a resource the EHR would refuse is a bug: fail loudly
        fh.write(orjson.dumps(res) + b"\n")
        n += 1
    return n


def _read_id_map(events_dir: Path) -> dict[int, str] | None:
    path = events_dir / "private" / "subject_ids.parquet"
    try:
        table = pq.read_table(path)
    except OSError:
        return None
    return dict(
        zip(table.column("subject_id").to_pylist(), table.column("source_id").to_pylist(), strict=True)
    )


@contextmanager
def torch_threads(predictor: Any, threads: int | None) -> Iterator[None]:
    """Run a network's inference on `threads` torch threads, restoring the process setting afterwards.

    The networks step through time in small kernels, each ending at a thread barrier: on a shared host
    a second thread that gets preempted stalls every step, so 2 threads measured 10x slower than 1 on a
    busy 2-core machine (and barely faster on an idle one). None keeps torch's own setting.
    """
    if threads is None or not predictor.uses_torch:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def in_order(work: Callable[[Path], _T], items: list[Path], workers: int) -> Generator[_T, None, None]:
    """`work(item)` for each item, yielded in item order, with up to `workers` items in flight.

    Threads suffice: polars and torch release the GIL, so one shard's featurization overlaps another's
    network pass. At most `workers` shards are held at once, so memory stays flat however many there are.
    """
    if workers <= 1:
        yield from (work(item) for item in items)
        return
    from concurrent.futures import Future, ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ehr-risk-score")
    pending: deque[Future[_T]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True)


def score(
    predictor: Any,
    task: Any,
    events_dir: Path,
    as_of: dt.date,
    out: Path,
    model: ModelRef,
    fhir: bool = False,
    progress: Callable[[int, int], None] = lambda _d, _t: None,
    threads: int | None = 1,
    workers: int = 2,
    explain: int = 0,
) -> ScoreResult:
    """Score every eligible subject of `events_dir` as of `as_of` into the partition of (`as_of`, model
    version). `workers` shards are scored at once (threads; 2 suits a 2-core host), each network pass on
    `threads` torch threads; output does not depend on either. `explain` > 0 adds each subject's top
    `explain` contributing factors (ehr_risk.explanations; off by default: it costs time)."""
    import time

    check_schema_compatible(predictor)
    start = time.monotonic()
    as_of_time = dt.datetime.combine(as_of, dt.time.max).replace(microsecond=999_999)
    final = partition_dir(out, as_of, model.version)
    shards = event_shards(events_dir)
    lock = out / f".lock-{model.name}-{model.version}-{as_of.isoformat()}"
    predictor.prepare()  # networks built once here, not by two workers at the same time
    with (
        exclusive_lock(lock),
        atomic_directory(final) as tmp,
        torch_threads(predictor, threads),
        ExitStack() as files,
    ):
        scored = n_subjects = 0
        fhir_file = final / "risk_assessments.ndjson" if fhir else None
        fhir_out = files.enter_context((tmp / "risk_assessments.ndjson").open("wb")) if fhir else None
        id_map = _read_id_map(events_dir) if fhir else None

        def work(shard: Path) -> tuple[pl.DataFrame, int]:
            return score_shard(predictor, task, shard, as_of_time, model, explain)

        results = files.enter_context(closing(in_order(work, shards, workers)))  # stop workers on errors
        for i, (frame, n) in enumerate(results):
            n_subjects += n
            if frame.height:
                write_table(frame.to_arrow(), tmp / f"part-{i:04d}.parquet", "scores")
                scored += frame.height
                if fhir_out is not None:  # streamed shard by shard: memory stays flat
                    explained = predictor.explained_column if explain else None
                    _write_fhir(fhir_out, risk_assessments(frame, model, task, id_map, explained))
            progress(i + 1, len(shards))
        manifest = {
            "model": model.__dict__,
            "as_of_date": as_of.isoformat(),
            "subjects_in_data": n_subjects,
            "subjects_scored": scored,
            "events_schema": f"events@{load_schema('events').version}",
        }
        if explain:
            manifest["explained"] = {"column": predictor.explained_column, "top_factors": explain}
        (tmp / "_manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return ScoreResult(final, scored, n_subjects, fhir_file, time.monotonic() - start)
