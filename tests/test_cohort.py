"""Cohorts and labels on hand-written event tables: inclusion steps, horizons, censoring, competing death."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehr_risk.cohort import build_cohort, subject_summary
from ehr_risk.events import EVENT_DTYPES
from ehr_risk.tasks import Task

D = dt.datetime
T0 = D(2010, 1, 1)
_COLUMNS = (
    "subject_id",
    "time",
    "code",
    "numeric_value",
    "text_value",
    "unit",
    "recorded_time",
    "resource_type",
)
SCHEMA = pl.Schema({c: EVENT_DTYPES[c] for c in _COLUMNS})


def events(*rows: tuple[Any, ...]) -> pl.DataFrame:
    """Rows: (subject, time, code[, numeric_value[, text_value[, unit[, recorded_time]]]])."""
    full = [(*r, *([None] * (7 - len(r))), "Test") for r in rows]
    return pl.DataFrame(full, schema=SCHEMA, orient="row")


def person(sid: int, born: int = 1950, first: D = D(2000, 1, 1), last: D = D(2024, 1, 1), sex: str = "male"):
    """Static sex, birth, a first and a last record (the record span that sets look-back and censoring)."""
    return [
        (sid, None, f"GENDER/{sex}"),
        (sid, D(born, 6, 1), "MEDS_BIRTH"),
        (sid, first, "LOINC/2093-3", 200.0, None, "mg/dL"),
        (sid, last, "LOINC/2093-3", 190.0, None, "mg/dL"),
    ]


def task(**overrides: Any) -> Task:
    doc: dict[str, Any] = {
        "name": "t",
        "population": {"min_age_years": 40, "max_age_years": 79, "lookback_days": 365},
        "prediction_times": {"type": "landmark", "dates": ["2010-01-01"]},
        "horizons_years": [5, 10],
        "outcome": {"name": "mi", "codes": ["ICD10CM/I21", "SNOMED/22298006"]},
    }
    doc.update(overrides)
    return Task.model_validate(doc)


def labels_of(ev: pl.DataFrame, t: Task | None = None, **kw: Any) -> pl.DataFrame:
    return build_cohort(ev, t or task(), **kw)[0]


def one(ev: pl.DataFrame, t: Task | None = None) -> dict[str, Any]:
    rows = labels_of(ev, t)
    assert rows.height == 1
    return rows.row(0, named=True)


def test_event_after_t_counts_within_horizon_only() -> None:
    r = one(events(*person(1), (1, D(2016, 3, 1), "ICD10CM/I21.9")))  # ICD descendant of I21
    assert r["event_time"] == D(2016, 3, 1)
    assert r["label_5y"] is False and r["label_10y"] is True and r["boolean_value"] is True
    assert r["censor_time"] == D(2024, 1, 1) and r["competing_time"] is None


def test_event_at_or_before_t_is_never_counted_and_excludes() -> None:
    ev = events(*person(1), (1, T0, "SNOMED/22298006"), *person(2), (2, D(2005, 1, 1), "SNOMED/22298006"))
    rows, flow = build_cohort(ev, task())
    assert rows.height == 0  # both had a known prior outcome at t (an event exactly at t is "prior")
    assert dict((s, r) for s, r, _ in flow.steps)["no prior outcome known at t"] == 0
    kept = labels_of(ev, task(exclude_prior_outcome=False))
    assert kept.height == 2 and kept["event_time"].null_count() == 2
    assert kept["label_10y"].to_list() == [False, False]


def test_prior_outcome_recorded_after_t_is_not_known_at_t() -> None:
    """Visibility rule: an outcome dated before t but recorded after t neither excludes nor counts."""
    ev = events(*person(1), (1, D(2009, 6, 1), "SNOMED/22298006", None, None, None, D(2011, 1, 1)))
    r = one(ev)
    assert r["event_time"] is None and r["label_10y"] is False


def test_death_with_outcome_cause_is_an_event() -> None:
    death = D(2013, 5, 1)
    ev = events(
        *person(1, last=death),
        (1, death, "MEDS_DEATH"),
        (1, death, "LOINC/69453-9", None, "ICD10CM/I21.4"),
    )
    r = one(ev)
    assert r["event_time"] == death and r["competing_time"] is None
    assert r["censor_time"] == death and r["label_5y"] is True


def test_death_from_other_cause_is_competing_and_labels_false() -> None:
    death = D(2013, 5, 1)
    ev = events(
        *person(1, last=D(2024, 1, 1)),
        (1, death, "MEDS_DEATH"),
        (1, death, "LOINC/69453-9", None, "SNOMED/363346000"),
    )
    r = one(ev)
    assert r["event_time"] is None and r["competing_time"] == death
    assert r["censor_time"] == death  # death ends follow-up even with records after it
    assert r["label_5y"] is False and r["label_10y"] is False
    no_competing = one(ev, task(censoring={"competing_death": False}))
    assert no_competing["competing_time"] is None and no_competing["label_5y"] is None


def test_censored_before_horizon_is_null() -> None:
    r = one(events(*person(1, last=D(2017, 1, 1))))
    assert r["label_5y"] is False and r["label_10y"] is None and r["boolean_value"] is None


def test_data_end_censoring_uses_the_end_date() -> None:
    t = task(censoring={"end_of_followup": "data_end", "data_end_date": "2024-12-31"})
    r = one(events(*person(1, last=D(2012, 1, 1))), t)
    assert r["censor_time"] == D(2025, 1, 1) and r["label_10y"] is False
    t2 = task(censoring={"end_of_followup": "data_end"})
    r2 = labels_of(events(*person(1, last=D(2012, 1, 1))), t2, data_end=D(2016, 1, 1)).row(0, named=True)
    assert r2["censor_time"] == D(2016, 1, 1)
    assert r2["label_5y"] is False and r2["label_10y"] is None


def test_no_followup_after_t_is_dropped() -> None:
    rows, flow = build_cohort(events(*person(1, last=D(2009, 12, 31))), task())
    assert rows.height == 0
    assert dict((s, r) for s, r, _ in flow.steps)["follow-up after t"] == 0


def test_population_steps_age_sex_lookback_alive() -> None:
    ev = events(
        *person(1, born=1950),  # 59: in
        *person(2, born=1990),  # 19: too young
        *person(3, born=1950, first=D(2009, 6, 1)),  # < 365 days of history
        *person(4, born=1950, sex="female"),
        *person(5, born=1950),
        (5, D(2008, 1, 1), "MEDS_DEATH"),
    )
    rows, flow = build_cohort(ev, task(population={"min_age_years": 40, "max_age_years": 79, "sex": "male"}))
    assert rows["subject_id"].to_list() == [1]
    steps = [s for s, _, _ in flow.steps]
    assert steps[:4] == [
        "subjects in data",
        "candidate prediction times",
        "birth date known, born by t",
        "alive at t",
    ]
    counts = [r for _, r, _ in flow.steps[1:]]
    assert counts == sorted(counts, reverse=True)  # each step only removes rows
    assert dict((s, r) for s, r, _ in flow.steps)["sex male"] == 1


def test_age_bounds_are_inclusive_in_completed_years() -> None:
    ev = events(*person(1, born=1930), *person(2, born=1931))  # 79.6 and 78.6 at t
    assert labels_of(ev)["subject_id"].to_list() == [1, 2]
    assert labels_of(ev, task(population={"min_age_years": 40, "max_age_years": 78}))[
        "subject_id"
    ].to_list() == [2]


def test_exclusion_criteria_and_lookback_window() -> None:
    ev = events(
        *person(1), (1, D(2005, 1, 1), "ICD10CM/I48.91"), *person(2), (2, D(2009, 6, 1), "ICD10CM/I48.0")
    )
    crit = {"name": "af", "codes": ["ICD10CM/I48"], "cause_of_death": False}
    assert labels_of(ev, task(exclusions=[crit])).height == 0
    recent = labels_of(ev, task(exclusions=[{**crit, "lookback_days": 365}]))
    assert recent["subject_id"].to_list() == [1]  # subject 1's AF is older than the window


def test_washout_ignore_and_exclude() -> None:
    ev = events(*person(1), (1, D(2010, 1, 20), "SNOMED/22298006"), (1, D(2013, 1, 1), "SNOMED/22298006"))
    ignore = one(ev, task(washout={"days": 30, "mode": "ignore"}))
    assert ignore["event_time"] == D(2013, 1, 1)
    rows, flow = build_cohort(ev, task(washout={"days": 30, "mode": "exclude"}))
    assert rows.height == 0 and flow.steps[-1][0] == "no outcome within 30 days after t"
    assert one(ev)["event_time"] == D(2010, 1, 20)


def test_value_criterion_needs_confirmation() -> None:
    egfr = "LOINC/33914-3"
    unit = "mL/min/{1.73_m2}"
    outcome = {
        "name": "ckd",
        "values": [
            {
                "codes": [egfr],
                "op": "<",
                "threshold": 60,
                "units": [unit],
                "min_count": 2,
                "min_separation_days": 90,
            }
        ],
    }
    ev = events(
        *person(1),
        (1, D(2011, 1, 1), egfr, 55.0, None, unit),
        (1, D(2011, 2, 1), egfr, 50.0, None, unit),  # too soon to confirm
        (1, D(2011, 6, 1), egfr, 52.0, None, unit),  # confirms (>= 90 days after the first)
        *person(2),
        (2, D(2011, 1, 1), egfr, 55.0, None, unit),
        (2, D(2012, 1, 1), egfr, 55.0, None, "mL/min"),  # wrong unit: ignored
    )
    rows = labels_of(ev, task(outcome=outcome))
    assert rows["event_time"].to_list() == [D(2011, 6, 1), None]


def test_multiple_prediction_times_and_periodic() -> None:
    t = task(
        prediction_times={"type": "periodic", "start": "2006-01-01", "end": "2014-06-30", "every_years": 4}
    )
    rows = labels_of(events(*person(1), (1, D(2012, 1, 1), "SNOMED/22298006")), t)
    # 2006 and 2010 included (2014 has the prior MI): each row's label counts only what follows it
    assert rows["prediction_time"].to_list() == [D(2006, 1, 1), D(2010, 1, 1)]
    assert rows["label_5y"].to_list() == [False, True]
    assert rows["label_10y"].to_list() == [True, True]


def test_encounter_prediction_times() -> None:
    enc = "SNOMED/185349003"
    rows = [*person(1), *person(2)]
    for sid in (1, 2):
        rows += [(sid, D(2008 + k, 3, 1), enc) for k in range(8)]
        rows += [(sid, D(2008, 3, 1, 15), enc)]  # second visit the same day counts once
    spec = {
        "type": "encounter",
        "codes": [enc],
        "max_per_subject": 3,
        "min_gap_days": 700,
        "selection": "first",
    }
    got = labels_of(events(*rows), task(prediction_times=spec))
    first = got.filter(pl.col("subject_id") == 1)["prediction_time"].to_list()
    assert first == [D(2008, 3, 1), D(2010, 3, 1), D(2012, 3, 1)]
    rnd = {**spec, "selection": "random", "min_gap_days": 0}
    both = labels_of(events(*rows), task(prediction_times=rnd))
    alone = labels_of(events(*person(1), *[r for r in rows[8:] if r[0] == 1]), task(prediction_times=rnd))
    assert both.filter(pl.col("subject_id") == 1).equals(alone)  # choice independent of other subjects
    assert both.group_by("subject_id").len()["len"].to_list() == [3, 3]


def test_subject_summary() -> None:
    s = subject_summary(events(*person(7, born=1960, sex="female"), (7, D(2020, 1, 1), "MEDS_DEATH")))
    r = s.row(0, named=True)
    assert r["sex"] == "female" and r["birth_time"] == D(1960, 6, 1)
    assert r["first_time"] == D(2000, 1, 1) and r["death_time"] == D(2020, 1, 1)


@settings(max_examples=60, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=-4000, max_value=5000), min_size=0, max_size=6),
    last=st.integers(min_value=1, max_value=6000),
)
def test_labels_never_count_an_event_at_or_before_t(offsets: list[int], last: int) -> None:
    """Property: event_time is the first outcome strictly after t within follow-up; labels follow it."""
    end = T0 + dt.timedelta(days=last)
    rows = [*person(1, last=end)] + [(1, T0 + dt.timedelta(days=o), "SNOMED/22298006") for o in offsets]
    got = labels_of(events(*rows), task(exclude_prior_outcome=False))
    assert got.height == 1
    r = got.row(0, named=True)
    censor = max([end, *[T0 + dt.timedelta(days=o) for o in offsets]])
    after = sorted(T0 + dt.timedelta(days=o) for o in offsets if o > 0)
    assert r["event_time"] == (after[0] if after else None)
    if r["event_time"] is not None:
        assert r["event_time"] > r["prediction_time"]
    for h in (5, 10):
        horizon = T0 + dt.timedelta(days=round(365.25 * h))
        expected = True if after and after[0] <= horizon else (False if censor >= horizon else None)
        assert r[f"label_{h}y"] is expected


@pytest.mark.parametrize("death_cause, expected", [("ICD10CM/I21.9", True), ("SNOMED/254637007", False)])
def test_cause_of_death_uses_dedicated_lists(death_cause: str, expected: bool) -> None:
    death = D(2012, 1, 1)
    ev = events(*person(1), (1, death, "MEDS_DEATH"), (1, death, "LOINC/69453-9", None, death_cause))
    r = one(
        ev,
        task(
            outcome={
                "name": "mi",
                "codes": ["SNOMED/22298006"],
                "cause_of_death_codelists": ["coronary_death"],
            }
        ),
    )
    assert (r["event_time"] == death) is expected
    assert (r["competing_time"] == death) is not expected
