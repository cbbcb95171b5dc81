"""Prediction task definitions: frozen pydantic models loaded from reviewable YAML files.

A task says who is at risk and when (population, prediction times), what counts as the outcome (code lists,
numeric criteria, cause of death), what excludes a row (prior outcome, other conditions, outcome inside the
washout gap), and how follow-up ends (end of data, death from another cause as a competing event).
Shipped tasks live in `pipelines/tasks/<name>.yaml`; `load_task` takes a name or a path.

Time conventions (documented once, used everywhere):
- A date given for a prediction time means midnight at the start of that day (events later that day are
  after t and not visible).
- Age at t is (t − birth) / 365.25 days; the population keeps floor(age) in [min_age_years, max_age_years].
- Horizon h years ends at t + round(365.25·h) days.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ehr_risk.errors import ConfigError
from ehr_risk.features.codelists import CODELIST_DIR, CodeList, load_codelist

TASK_DIR = Path(__file__).resolve().parent.parent / "pipelines" / "tasks"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Population(_Frozen):
    min_age_years: int = Field(default=0, ge=0, le=130)
    max_age_years: int = Field(default=130, ge=0, le=130, description="inclusive, in completed years")
    lookback_days: int = Field(default=365, ge=0, description="first record at least this many days before t")
    sex: Literal["female", "male"] | None = None
    min_followup_days: int = Field(
        default=0,
        ge=0,
        description="rows need follow-up beyond t + this many days (0: any follow-up after t)",
    )

    @model_validator(mode="after")
    def _ages(self) -> Population:
        if self.max_age_years < self.min_age_years:
            raise ValueError("max_age_years is below min_age_years")
        return self


class LandmarkTimes(_Frozen):
    """One or more fixed landmark dates (every eligible subject gets each of them). `training_dates` add
    landmarks for the train split's subjects only ("landmark stacking": more training rows from the same
    people); the tuning and held-out rows, and the featurizers' fit, stay at `dates`, so every evaluation
    and recalibration is as without them."""

    type: Literal["landmark"]
    dates: list[dt.date] = Field(min_length=1)
    training_dates: list[dt.date] = Field(
        default_factory=list, description="extra landmarks for the train split only (classical models)"
    )


class PeriodicTimes(_Frozen):
    """Every `every_years` from `start` up to and including `end`."""

    type: Literal["periodic"]
    start: dt.date
    end: dt.date
    every_years: int = Field(ge=1, le=50)

    @model_validator(mode="after")
    def _order(self) -> PeriodicTimes:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self

    @property
    def dates(self) -> list[dt.date]:
        out: list[dt.date] = []
        year = self.start.year
        while True:
            d = _shift_years(self.start, year - self.start.year)
            if d > self.end:
                return out
            out.append(d)
            year += self.every_years


class EncounterTimes(_Frozen):
    """At qualifying encounters (codes / code lists / resource types), at most `max_per_subject` each.

    Candidates are the encounter times within [start, end]; several on one day count once; encounters
    closer than `min_gap_days` to an earlier kept one of the same subject are dropped (greedy by time);
    then `max_per_subject` are chosen: the first ones, the last ones, or a random but reproducible subset
    (keyed hash of subject and time, so the choice does not depend on the other subjects).
    """

    type: Literal["encounter"]
    codelists: list[str] = Field(default_factory=list)
    codes: list[str] = Field(default_factory=list)
    resource_types: list[str] = Field(default_factory=list)
    start: dt.date | None = None
    end: dt.date | None = None
    max_per_subject: int = Field(default=1, ge=1, le=1000)
    min_gap_days: int = Field(default=0, ge=0)
    selection: Literal["first", "last", "random"] = "random"

    @model_validator(mode="after")
    def _something(self) -> EncounterTimes:
        if not (self.codelists or self.codes or self.resource_types):
            raise ValueError("give codelists, codes or resource_types for qualifying encounters")
        return self


PredictionTimeSpec = Annotated[LandmarkTimes | PeriodicTimes | EncounterTimes, Field(discriminator="type")]


class ValueCriterion(_Frozen):
    """A numeric criterion: a value of one of `codes` compared to `threshold`.

    With `min_count` 2 the criterion is met at the first qualifying value that lies at least
    `min_separation_days` after an earlier qualifying value (e.g. eGFR < 60 twice, ≥ 90 days apart).
    """

    codes: list[str] = Field(min_length=1)
    op: Literal["<", "<=", ">", ">="]
    threshold: float
    min_count: Literal[1, 2] = 1
    min_separation_days: int = Field(default=0, ge=0)
    units: list[str] | None = Field(
        default=None, description="count only values in these units (the canonical unit after ingest)"
    )


class Criterion(_Frozen):
    """Code lists + explicit codes + numeric criteria; met at the time of any matching event."""

    name: str = "criterion"
    codelists: list[str] = Field(default_factory=list)
    codes: list[str] = Field(default_factory=list)
    values: list[ValueCriterion] = Field(default_factory=list)
    cause_of_death: bool = Field(
        default=True,
        description="also match the cause-of-death answer (LOINC/69453-9 text_value) against the codes",
    )
    cause_of_death_codelists: list[str] | None = Field(
        default=None,
        description="lists for the cause of death when they differ (e.g. coronary death for ASCVD)",
    )
    lookback_days: int | None = Field(
        default=None,
        ge=1,
        description="exclusions only: look back this many days before t (None: all history)",
    )

    @model_validator(mode="after")
    def _something(self) -> Criterion:
        if not (self.codelists or self.codes or self.values):
            raise ValueError(f"criterion {self.name!r} needs codelists, codes or values")
        return self


class Washout(_Frozen):
    """Outcomes in (t, t + days]: `ignore` skips them (the first outcome after the gap counts),
    `exclude` drops the row (the outcome was probably already present, undiagnosed, at t)."""

    days: int = Field(default=0, ge=0)
    mode: Literal["ignore", "exclude"] = "ignore"


class Censoring(_Frozen):
    """End of follow-up: `last_record` = the subject's last event (conservative: no records, no follow-up);
    `data_end` = a global end date (`data_end_date`, default the last event time in the data) — for
    sources that capture every subject until that date (registries, claims with enrolment).
    Death always ends follow-up; a death not caused by the outcome is a competing event unless
    `competing_death` is false, when it only censors."""

    end_of_followup: Literal["last_record", "data_end"] = "last_record"
    data_end_date: dt.date | None = None
    competing_death: bool = True


class Task(_Frozen):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    population: Population = Population()
    prediction_times: PredictionTimeSpec
    horizons_years: list[float] = Field(min_length=1)
    primary_horizon_years: float | None = None
    outcome: Criterion
    exclude_prior_outcome: bool = True
    exclusions: list[Criterion] = Field(default_factory=list)
    washout: Washout = Washout()
    censoring: Censoring = Censoring()
    codelist_dir: Path | None = Field(
        default=None, description="where code lists live (default pipelines/codelists)"
    )

    @model_validator(mode="after")
    def _horizons(self) -> Task:
        if any(h <= 0 or h > 50 for h in self.horizons_years):
            raise ValueError("horizons_years must lie in (0, 50]")
        if len(set(self.horizons_years)) != len(self.horizons_years):
            raise ValueError("horizons_years has duplicates")
        if self.primary_horizon_years is not None and self.primary_horizon_years not in self.horizons_years:
            raise ValueError("primary_horizon_years must be one of horizons_years")
        return self

    @property
    def primary_horizon(self) -> float:
        return (
            self.primary_horizon_years if self.primary_horizon_years is not None else max(self.horizons_years)
        )

    def codes_of(self, criterion: Criterion) -> CodeList:
        return codes(criterion.codelists, criterion.codes, self.codelist_dir, criterion.name)

    def cause_of_death_codes(self, criterion: Criterion) -> CodeList:
        """Codes matched against cause-of-death answers: the criterion's own, or its dedicated lists."""
        if criterion.cause_of_death_codelists is None:
            return self.codes_of(criterion)
        return codes(criterion.cause_of_death_codelists, [], self.codelist_dir, criterion.name)

    def codelist_files(self) -> dict[str, Path]:
        """Every code list file the task reads (for provenance hashes in dataset.json)."""
        base = Path(self.codelist_dir) if self.codelist_dir is not None else CODELIST_DIR
        names = [n for c in [self.outcome, *self.exclusions] for n in c.codelists]
        names += [n for c in [self.outcome, *self.exclusions] for n in c.cause_of_death_codelists or []]
        if isinstance(self.prediction_times, EncounterTimes):
            names += self.prediction_times.codelists
        return {n: base / f"{n}.csv" for n in sorted(set(names))}

    @property
    def training_only_times(self) -> list[dt.datetime]:
        """Prediction times that only the train split gets (`LandmarkTimes.training_dates`)."""
        spec = self.prediction_times
        if not isinstance(spec, LandmarkTimes):
            return []
        return sorted(midnight(d) for d in set(spec.training_dates) - set(spec.dates))

    @cached_property
    def outcome_codes(self) -> CodeList:
        return self.codes_of(self.outcome)


def midnight(d: dt.date) -> dt.datetime:
    """A landmark date's prediction time: the midnight that starts it."""
    return dt.datetime.combine(d, dt.time())


def training_only_times(tasks: list[Task]) -> list[dt.datetime]:
    """Times that are a training-only landmark of some task and a regular landmark of none: their rows
    are train-split rows added for the classical models (see `LandmarkTimes`)."""
    regular = {
        midnight(d)
        for t in tasks
        if isinstance(t.prediction_times, LandmarkTimes | PeriodicTimes)
        for d in t.prediction_times.dates
    }
    return sorted({x for t in tasks for x in t.training_only_times} - regular)


def codes(names: list[str], extra: list[str], directory: Path | None, name: str = "inline") -> CodeList:
    """Union of named code lists and explicit `VOCAB/code` strings (ICD codes match their descendants)."""
    lists = [load_codelist(n, directory) for n in names] + [CodeList.of(name, extra)]
    return CodeList(
        name,
        frozenset().union(*(c.exact for c in lists)),
        frozenset().union(*(c.icd_prefixes for c in lists)),
    )


def label_column(h: float) -> str:
    """`label_10y`, `label_2.5y`."""
    return f"label_{h:g}y"


def horizon_days(h: float) -> int:
    return round(365.25 * h)


def _shift_years(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February in a non-leap year
        return d.replace(year=d.year + years, day=28)


def available_tasks(task_dir: Path = TASK_DIR) -> list[str]:
    return sorted(p.stem for p in task_dir.glob("*.yaml"))


def load_task(name_or_path: str | Path, task_dir: Path = TASK_DIR) -> Task:
    """Load a task by name (`ascvd_10y`) or YAML path; ConfigError with the file and field on problems.

    Code lists are resolved (and checked) here, so a bad list fails before any data is read.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = task_dir / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(
                f"unknown task {name_or_path!r}; shipped tasks: {', '.join(available_tasks(task_dir))}"
            )
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: task file not found") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: {where}invalid YAML") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a task file must be a mapping")
    doc.setdefault("name", path.stem)
    if doc.get("codelist_dir") is not None:
        doc["codelist_dir"] = str((path.parent / str(doc["codelist_dir"])).resolve())
    try:
        task = Task.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {loc}: {err['msg']} ({exc.error_count()} problem(s))") from exc
    try:
        for crit in [task.outcome, *task.exclusions]:
            task.codes_of(crit)
            task.cause_of_death_codes(crit)
        if isinstance(task.prediction_times, EncounterTimes):
            codes(task.prediction_times.codelists, task.prediction_times.codes, task.codelist_dir)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return task
