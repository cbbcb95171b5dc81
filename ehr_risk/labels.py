"""Labels with horizons, censoring and competing death.

For a row (subject, t) with follow-up end C (censor_time: death, or the last record / the data end date):

- event_time: the first outcome occurrence strictly after t (after t + washout days in `ignore` mode) and
  no later than C. An occurrence at or before t is never an event (it may exclude the row instead).
  A death whose cause-of-death answer (LOINC/69453-9 text_value) is in the outcome list is an occurrence
  at the death time (coronary death counts for ASCVD).
- competing_time: death from another cause after t (null when the task does not treat death as competing).
- label at horizon h (H = t + h years): True if event_time ≤ H; else False if a competing death came at or
  before H; else False if follow-up reached H (C ≥ H); else null (censored before H, outcome unknown).
- boolean_value: the label at the task's primary horizon.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from ehr_risk.features.codelists import CodeList
from ehr_risk.tasks import Criterion, Task, ValueCriterion, horizon_days, label_column

CAUSE_OF_DEATH = "LOINC/69453-9"
_OPS: dict[str, Callable[[pl.Expr, float], pl.Expr]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_OCC_SCHEMA = pl.Schema(
    {
        "subject_id": pl.Int64(),
        "time": pl.Datetime("us"),
        "recorded_time": pl.Datetime("us"),
    }
)


def censor_expr(task: Task, data_end: dt.datetime | None) -> pl.Expr:
    """End of follow-up per row of a frame holding the subject summary columns."""
    c = task.censoring
    if c.end_of_followup == "data_end":
        end_date = c.data_end_date
        if end_date is not None:
            end = pl.lit(dt.datetime.combine(end_date, dt.time()) + dt.timedelta(days=1), pl.Datetime("us"))
        elif data_end is not None:
            end = pl.lit(data_end, pl.Datetime("us"))
        else:
            raise ValueError("data_end censoring needs the data end time")
        return pl.min_horizontal(end, pl.col("death_time"))
    return pl.min_horizontal(pl.col("last_time"), pl.col("death_time"))


@dataclass(frozen=True)
class DistinctCodes:
    """The distinct codes (and cause-of-death answers) of an event frame.

    Code-list expressions (ICD hierarchy matching: string slicing) are evaluated on these few thousand
    distinct values, and the events are then filtered with an exact `is_in` — the slicing never runs
    over millions of event rows.
    """

    codes: pl.Series
    answers: pl.Series

    @classmethod
    def of(cls, events: pl.DataFrame) -> DistinctCodes:
        answers = events.filter(pl.col("code") == CAUSE_OF_DEATH).get_column("text_value")
        return cls(events.get_column("code").drop_nulls().unique(), answers.drop_nulls().unique())

    def matching(self, codes: CodeList) -> list[str]:
        return codes.among(self.codes)

    def matching_answers(self, codes: CodeList) -> list[str]:
        return codes.among(self.answers)


def criterion_times(
    events: pl.DataFrame,
    summary: pl.DataFrame,
    crit: Criterion,
    codes: CodeList,
    death_codes: CodeList,
    distinct: DistinctCodes | None = None,
) -> pl.DataFrame:
    """Every time a subject meets `crit`: (subject_id, time, recorded_time), sorted."""
    distinct = distinct or DistinctCodes.of(events)
    parts: list[pl.DataFrame] = []
    timed = pl.col("time").is_not_null()
    if len(codes):
        hit = events.filter(pl.col("code").is_in(distinct.matching(codes)) & timed)
        parts.append(hit.select(_OCC_SCHEMA.keys()))
    if crit.cause_of_death and len(death_codes):
        answers = distinct.matching_answers(death_codes)
        cod = events.filter((pl.col("code") == CAUSE_OF_DEATH) & pl.col("text_value").is_in(answers) & timed)
        cod = (
            cod.select("subject_id", "time", "recorded_time")
            .join(summary.select("subject_id", "death_time"), on="subject_id", how="left")
            .select("subject_id", pl.coalesce("death_time", "time").alias("time"), "recorded_time")
        )
        parts.append(cod)
    for value in crit.values:
        parts.append(_value_times(events, value))
    if not parts:
        return pl.DataFrame(schema=_OCC_SCHEMA)
    return pl.concat([p.cast(_OCC_SCHEMA) for p in parts]).sort("subject_id", "time")


def _value_times(events: pl.DataFrame, v: ValueCriterion) -> pl.DataFrame:
    match = pl.col("code").is_in(v.codes) & pl.col("time").is_not_null()
    match = match & _OPS[v.op](pl.col("numeric_value"), v.threshold).fill_null(False)
    if v.units is not None:
        match = match & pl.col("unit").is_in(v.units).fill_null(False)
    hits = events.filter(match).select(_OCC_SCHEMA.keys())
    if v.min_count == 1:
        return hits
    # Confirmed: a qualifying value at least min_separation_days after the subject's first qualifying value.
    first = pl.col("time").min().over("subject_id")
    return hits.filter(
        (pl.col("time") >= first + pl.duration(days=v.min_separation_days)) & (pl.col("time") > first)
    )


def label_rows(
    rows: pl.DataFrame, outcome: pl.DataFrame, summary: pl.DataFrame, task: Task
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Label columns for the included rows, and the (subject_id, prediction_time) keys with an outcome
    inside the washout gap (used by `exclude` mode)."""
    keys = rows.select("subject_id", "prediction_time", "censor_time", "death_time")
    t = pl.col("prediction_time")
    gap = task.washout.days
    after = keys.join(outcome.select("subject_id", "time"), on="subject_id", how="inner").filter(
        (pl.col("time") > t) & (pl.col("time") <= pl.col("censor_time"))
    )
    in_gap = (
        after.filter(pl.col("time") <= t + pl.duration(days=gap))
        .select("subject_id", "prediction_time")
        .unique()
    )
    start = t + pl.duration(days=gap) if task.washout.mode == "ignore" else t
    first = (
        after.filter(pl.col("time") > start)
        .group_by("subject_id", "prediction_time")
        .agg(pl.col("time").min().alias("event_time"))
    )
    out = keys.join(first, on=["subject_id", "prediction_time"], how="left")
    out = out.join(_outcome_deaths(outcome, summary), on="subject_id", how="left")
    death = pl.col("death_time")
    other_cause = death.is_not_null() & (death > t) & pl.col("_outcome_death").is_null()
    competing = pl.when(other_cause).then(death) if task.censoring.competing_death else pl.lit(None)
    out = out.with_columns(competing.cast(pl.Datetime("us")).alias("competing_time"))
    horizons = [label_column(h) for h in task.horizons_years]
    out = out.with_columns([_label_at(h).alias(label_column(h)) for h in task.horizons_years])
    out = out.with_columns(pl.col(label_column(task.primary_horizon)).alias("boolean_value"))
    ordered = [
        "subject_id",
        "prediction_time",
        "boolean_value",
        "event_time",
        "competing_time",
        "censor_time",
    ]
    return out.select(*ordered, *horizons), in_gap


def _outcome_deaths(outcome: pl.DataFrame, summary: pl.DataFrame) -> pl.DataFrame:
    """Subjects whose death is itself an outcome occurrence (cause of death in the outcome list)."""
    deaths = summary.filter(pl.col("death_time").is_not_null()).select("subject_id", "death_time")
    hit = outcome.join(deaths, on="subject_id", how="inner").filter(pl.col("time") == pl.col("death_time"))
    return hit.select("subject_id").unique().with_columns(pl.lit(True).alias("_outcome_death"))


def _label_at(h: float) -> pl.Expr:
    end = pl.col("prediction_time") + pl.duration(days=horizon_days(h))
    event_by_h = pl.col("event_time").is_not_null() & (pl.col("event_time") <= end)
    competing_by_h = pl.col("competing_time").is_not_null() & (pl.col("competing_time") <= end)
    return (
        pl.when(event_by_h)
        .then(True)
        .when(competing_by_h)
        .then(False)
        .when(pl.col("censor_time") >= end)
        .then(False)
        .otherwise(None)
    )
