"""The cohort report: inclusion/exclusion flow and outcome, censoring and competing-event rates per split
(and for the temporal hold-out subjects, when one is configured).

Rates at horizon h are shares of the task's rows:
  event_rate       label_<h>y is True among rows whose label is known (the observed risk; no weighting)
  censored_rate    label_<h>y is null: follow-up ended before t + h without event or competing death
  competing_rate   a death from another cause came first, before t + h
Counts only; no identifiers or dates of any subject appear in the report.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from ehr_risk.cohort import Flow
from ehr_risk.splits import SPLITS, temporal_holdout_subjects
from ehr_risk.tasks import Task, horizon_days, label_column


def horizon_stats(labels: pl.DataFrame, task: Task) -> dict[str, Any]:
    """Counts and rates per horizon for one set of label rows."""
    n = labels.height
    out: dict[str, Any] = {"rows": n, "subjects": labels["subject_id"].n_unique() if n else 0}
    if n:
        follow = (pl.col("censor_time") - pl.col("prediction_time")).dt.total_days() / 365.25
        out["median_followup_years"] = round(float(labels.select(follow.median()).item()), 3)
    for h in task.horizons_years:
        col = pl.col(label_column(h))
        end = pl.col("prediction_time") + pl.duration(days=horizon_days(h))
        competing_first = (
            pl.col("competing_time").is_not_null()
            & (pl.col("competing_time") <= end)
            & (pl.col("event_time").is_null() | (pl.col("event_time") > end))
        )
        row = labels.select(
            col.is_not_null().sum().alias("known"),
            col.fill_null(False).sum().alias("events"),
            col.is_null().sum().alias("censored"),
            competing_first.sum().alias("competing"),
        ).row(0, named=True)
        known, events, censored, competing = (
            int(row[k] or 0) for k in ("known", "events", "censored", "competing")
        )
        out[f"{h:g}y"] = {
            "known": known,
            "events": events,
            "censored": censored,
            "competing": competing,
            "event_rate": _rate(events, known),
            "censored_rate": _rate(censored, n),
            "competing_rate": _rate(competing, n),
        }
    return out


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 6) if den else None


def task_report(labels: pl.DataFrame, flow: Flow, splits: pl.DataFrame, task: Task) -> dict[str, Any]:
    """Flow steps (rows and subjects left after each), then overall and per-split statistics."""
    steps = []
    previous: int | None = None
    for i, (step, rows, subjects) in enumerate(flow.steps):
        entry: dict[str, Any] = {"step": step, "rows": rows, "subjects": subjects}
        if i < len(flow.by_group) and flow.by_group[i]:
            entry["by_split"] = {
                s: dict(zip(("rows", "subjects"), flow.by_group[i].get(s, (0, 0)), strict=True))
                for s in SPLITS
            }
        if previous is not None and step != "candidate prediction times":
            entry["removed_rows"] = previous - rows
        steps.append(entry)
        if step != "subjects in data":
            previous = rows
    with_split = labels.join(splits.select("subject_id", "split"), on="subject_id", how="left")
    per_split = {s: horizon_stats(with_split.filter(pl.col("split") == s), task) for s in SPLITS}
    report = {
        "task": task.name,
        "primary_horizon_years": task.primary_horizon,
        "flow": steps,
        "overall": horizon_stats(labels, task),
        "splits": per_split,
    }
    late = temporal_holdout_subjects(splits)
    if late is not None:
        # A part of held_out (see ehr_risk.splits), reported on its own.
        report["temporal_holdout"] = horizon_stats(labels.join(late, on="subject_id", how="semi"), task)
    return report
