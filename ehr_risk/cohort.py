"""Cohorts: prediction times, inclusion/exclusion steps and the flow counts behind them.

`build_cohort(events, task)` works on one frame of whole subjects (one event shard), so the dataset
builder runs it shard by shard with flat memory. It returns the label rows (see `labels.py`) and the
number of rows and subjects left after every inclusion/exclusion step, in order, for the cohort report.

Steps, in order: candidate prediction times → birth date known and before t → alive at t → look-back
(first record at least `lookback_days` before t) → age range → sex → follow-up after t → no prior outcome
known at t → each exclusion criterion known at t → no outcome inside the washout gap (`exclude` mode).
"Known at t" is the project's one visibility rule (`ehr_risk.events`): time ≤ t and recorded time ≤ t
where recorded. Birth, death and the record span use event times only: they define who is at risk,
not what a model may see.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from ehr_risk.events import visible_expr
from ehr_risk.labels import CAUSE_OF_DEATH, DistinctCodes, censor_expr, criterion_times, label_rows
from ehr_risk.tasks import EncounterTimes, LandmarkTimes, PeriodicTimes, Task, midnight

_NOT_RECORDS = ("MEDS_BIRTH",)  # the birth row is not a record of care; it does not open the look-back
_US_PER_DAY = 86_400 * 1_000_000


@dataclass
class Flow:
    """Rows and subjects left after each step (a list keeps the order), overall and per group.

    `groups` (subject_id, split) breaks every step down by split; subjects are disjoint across shards, so
    flows of different shards add up.
    """

    steps: list[tuple[str, int, int]] = field(default_factory=list)
    by_group: list[dict[str, tuple[int, int]]] = field(default_factory=list)
    groups: pl.DataFrame | None = None

    def add(self, step: str, frame: pl.DataFrame) -> None:
        self.steps.append((step, frame.height, frame["subject_id"].n_unique() if frame.height else 0))
        counts: dict[str, tuple[int, int]] = {}
        if self.groups is not None and frame.height:
            per = (
                frame.select("subject_id")
                .join(self.groups, on="subject_id", how="inner")
                .group_by("split")
                .agg(pl.len().alias("rows"), pl.col("subject_id").n_unique().alias("subjects"))
            )
            counts = {g: (int(r), int(n)) for g, r, n in per.iter_rows()}
        self.by_group.append(counts)

    def merge(self, other: Flow) -> Flow:
        if not self.steps:
            return Flow(list(other.steps), list(other.by_group))
        if [s for s, _, _ in self.steps] != [s for s, _, _ in other.steps]:
            raise ValueError("cohort flows with different steps cannot be merged")
        steps = [(s, r + r2, n + n2) for (s, r, n), (_, r2, n2) in zip(self.steps, other.steps, strict=True)]
        by_group: list[dict[str, tuple[int, int]]] = []
        for mine, theirs in zip(self.by_group, other.by_group, strict=True):
            merged = dict(mine)
            for key, (r, n) in theirs.items():
                r0, n0 = merged.get(key, (0, 0))
                merged[key] = (r0 + r, n0 + n)
            by_group.append(merged)
        return Flow(steps, by_group)


def subject_summary(events: pl.DataFrame) -> pl.DataFrame:
    """One row per subject: birth, death, first/last record time, administrative sex (one pass)."""
    return subject_summary_query(events.lazy()).collect().sort("subject_id")


def subject_summary_query(events: pl.LazyFrame) -> pl.LazyFrame:
    """The subject summary as a lazy aggregation (streamable over a whole shard)."""
    code, time = pl.col("code"), pl.col("time")
    record = time.is_not_null() & ~code.is_in(_NOT_RECORDS)
    out = events.group_by("subject_id").agg(
        time.filter(record).min().alias("first_time"),
        time.filter(record).max().alias("last_time"),
        time.filter(code == "MEDS_BIRTH").min().alias("birth_time"),
        time.filter(code == "MEDS_DEATH").min().alias("death_time"),
        # A cause-of-death answer without a MEDS_DEATH row still means the subject died (at that time).
        time.filter(code == CAUSE_OF_DEATH).min().alias("_cod"),
        code.filter(code.is_in(["GENDER/female", "GENDER/male"]))
        .first()
        .str.strip_prefix("GENDER/")
        .alias("sex"),
    )
    return (
        out.with_columns(pl.coalesce("death_time", "_cod").alias("death_time"))
        .drop("_cod")
        .sort("subject_id")
    )


def _cross(subjects: pl.DataFrame, times: list[dt.datetime]) -> pl.DataFrame:
    table = pl.DataFrame({"prediction_time": times}, schema={"prediction_time": pl.Datetime("us")})
    return subjects.select("subject_id").join(table, how="cross")


def candidate_times(
    events: pl.DataFrame,
    summary: pl.DataFrame,
    task: Task,
    distinct: DistinctCodes | None = None,
    groups: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """(subject_id, prediction_time) before any inclusion step; with `groups` (subject_id, split), the
    train split's subjects also get the task's training-only landmarks."""
    spec = task.prediction_times
    if isinstance(spec, LandmarkTimes | PeriodicTimes):
        dates = sorted(set(spec.dates))
        times = _cross(summary, [midnight(d) for d in dates])
        extra = task.training_only_times
        if not extra or groups is None:
            return times
        train = summary.join(groups.filter(pl.col("split") == "train"), on="subject_id", how="semi")
        return pl.concat([times, _cross(train, extra)]).sort("subject_id", "prediction_time")
    assert isinstance(spec, EncounterTimes)
    return encounter_times(events, spec, task, distinct or DistinctCodes.of(events))


def encounter_times(
    events: pl.DataFrame, spec: EncounterTimes, task: Task, distinct: DistinctCodes
) -> pl.DataFrame:
    from ehr_risk.splits import keyed_uniform
    from ehr_risk.tasks import codes

    match = pl.lit(False)
    if spec.codelists or spec.codes:
        wanted = distinct.matching(codes(spec.codelists, spec.codes, task.codelist_dir))
        match = match | pl.col("code").is_in(wanted)
    if spec.resource_types:
        match = match | pl.col("resource_type").is_in(spec.resource_types)
    enc = events.filter(match & pl.col("time").is_not_null()).select(
        "subject_id", pl.col("time").alias("prediction_time")
    )
    if spec.start is not None:
        enc = enc.filter(pl.col("prediction_time") >= midnight(spec.start))
    if spec.end is not None:
        enc = enc.filter(pl.col("prediction_time") < midnight(spec.end) + dt.timedelta(days=1))
    # Several encounters on one day: keep the day's first one.
    enc = (
        enc.with_columns(pl.col("prediction_time").dt.date().alias("_day"))
        .group_by("subject_id", "_day")
        .agg(pl.col("prediction_time").min())
        .drop("_day")
        .sort("subject_id", "prediction_time")
    )
    if spec.min_gap_days > 0:
        enc = _thin_by_gap(enc, spec.min_gap_days)
    if spec.selection == "random":
        ids = enc["subject_id"].to_numpy().astype("uint64")
        times = enc["prediction_time"].cast(pl.Int64).to_numpy().astype("uint64")
        enc = enc.with_columns(pl.Series("_r", keyed_uniform(ids * 0x9E3779B97F4A7C15 + times, "encounter")))
        enc = (
            enc.sort("subject_id", "_r")
            .group_by("subject_id", maintain_order=True)
            .head(spec.max_per_subject)
        )
        enc = enc.drop("_r")
    else:
        enc = enc.sort("subject_id", "prediction_time", descending=[False, spec.selection == "last"])
        enc = enc.group_by("subject_id", maintain_order=True).head(spec.max_per_subject)
    return enc.select("subject_id", "prediction_time").sort("subject_id", "prediction_time")


def _thin_by_gap(enc: pl.DataFrame, gap_days: int) -> pl.DataFrame:
    """Greedy: keep an encounter when it is at least `gap_days` after the last kept one of the subject."""
    if enc.height == 0:
        return enc
    subj = enc["subject_id"].to_numpy()
    t = enc["prediction_time"].cast(pl.Int64).to_numpy()
    gap = gap_days * _US_PER_DAY
    keep = [True] * len(t)
    last_kept = t[0]
    for i in range(1, len(t)):  # one pass over encounters (not events); cheap at cohort scale
        if subj[i] != subj[i - 1] or t[i] - last_kept >= gap:
            last_kept = t[i]
        else:
            keep[i] = False
    return enc.filter(pl.Series(keep))


def needed_codes(task: Task, distinct: DistinctCodes) -> tuple[set[str], set[str]]:
    """(event codes, resource types) that `build_cohort(task)` reads beyond the subject summary."""
    from ehr_risk.tasks import codes

    wanted: set[str] = set()
    for crit in [task.outcome, *task.exclusions]:
        wanted |= set(distinct.matching(task.codes_of(crit)))
        wanted |= {c for v in crit.values for c in v.codes}
        if crit.cause_of_death:
            wanted.add(CAUSE_OF_DEATH)
    spec = task.prediction_times
    if isinstance(spec, EncounterTimes):
        wanted |= set(distinct.matching(codes(spec.codelists, spec.codes, task.codelist_dir)))
        return wanted, set(spec.resource_types)
    return wanted, set()


def _age_years(t: pl.Expr, birth: pl.Expr) -> pl.Expr:
    return (t - birth).dt.total_days() / 365.25


def build_cohort(
    events: pl.DataFrame,
    task: Task,
    data_end: dt.datetime | None = None,
    summary: pl.DataFrame | None = None,
    distinct: DistinctCodes | None = None,
    groups: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, Flow]:
    """Label rows of `task` for the subjects in `events` (whole subjects), and the cohort flow.

    `summary` and `distinct` depend on the events only: pass them when building several tasks; `groups`
    (subject_id, split) adds per-split counts to the flow and the training-only landmarks (train split)."""
    if summary is None:
        summary = subject_summary(events)
    distinct = distinct or DistinctCodes.of(events)
    flow = Flow(groups=groups)
    flow.add("subjects in data", summary)
    pop = task.population
    rows = candidate_times(events, summary, task, distinct, groups)
    rows = rows.join(summary, on="subject_id", how="left")
    t = pl.col("prediction_time")
    flow.add("candidate prediction times", rows)
    rows = rows.filter(pl.col("birth_time").is_not_null() & (pl.col("birth_time") <= t))
    flow.add("birth date known, born by t", rows)
    rows = rows.filter(pl.col("death_time").is_null() | (pl.col("death_time") > t))
    flow.add("alive at t", rows)
    rows = rows.filter(pl.col("first_time") <= t - pl.duration(days=pop.lookback_days))
    flow.add(f"first record >= {pop.lookback_days} days before t", rows)
    age = _age_years(t, pl.col("birth_time")).floor()
    rows = rows.filter((age >= pop.min_age_years) & (age <= pop.max_age_years))
    flow.add(f"age {pop.min_age_years}-{pop.max_age_years} at t", rows)
    if pop.sex is not None:
        rows = rows.filter(pl.col("sex") == pop.sex)
        flow.add(f"sex {pop.sex}", rows)
    rows = rows.with_columns(censor_expr(task, data_end).alias("censor_time"))
    rows = rows.filter(pl.col("censor_time") > t + pl.duration(days=pop.min_followup_days))
    flow.add("follow-up after t", rows)

    outcome = criterion_times(
        events, summary, task.outcome, task.outcome_codes, task.cause_of_death_codes(task.outcome), distinct
    )
    if task.exclude_prior_outcome:
        rows = _exclude_known(rows, outcome, None)
        flow.add("no prior outcome known at t", rows)
    for crit in task.exclusions:
        occ = criterion_times(
            events, summary, crit, task.codes_of(crit), task.cause_of_death_codes(crit), distinct
        )
        rows = _exclude_known(rows, occ, crit.lookback_days)
        flow.add(f"exclusion: {crit.name}", rows)
    labels, in_gap = label_rows(rows, outcome, summary, task)
    if task.washout.mode == "exclude" and task.washout.days > 0:
        labels = labels.join(in_gap, on=["subject_id", "prediction_time"], how="anti")
        flow.add(f"no outcome within {task.washout.days} days after t", labels)
    return labels.sort("subject_id", "prediction_time"), flow


def _exclude_known(rows: pl.DataFrame, occ: pl.DataFrame, lookback_days: int | None) -> pl.DataFrame:
    """Drop rows where a criterion occurrence is visible at t (optionally within a look-back window)."""
    if rows.height == 0 or occ.height == 0:
        return rows
    keys = rows.select("subject_id", "prediction_time")
    hit = keys.join(occ, on="subject_id", how="inner").filter(visible_expr("prediction_time"))
    if lookback_days is not None:
        hit = hit.filter(pl.col("time") > pl.col("prediction_time") - pl.duration(days=lookback_days))
    hit = hit.select("subject_id", "prediction_time").unique()
    return rows.join(hit, on=["subject_id", "prediction_time"], how="anti")
