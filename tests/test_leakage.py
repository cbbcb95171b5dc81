"""Leakage properties (Hypothesis) of every featurizer: what happens after t cannot change features at t.

For random records and prediction times:
- adding any events after t (or known only after t: recorded_time > t) leaves tabular, sequence and
  clinical features at t unchanged, and leaves the fitted vocabulary / columns unchanged;
- removing the outcome code from all records after t (or recorded after t) changes no feature.
Labels never counting an event at or before t is a property test in test_cohort.py.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from featuredata import write_codelists
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from ehr_risk.events import EVENT_DTYPES
from ehr_risk.features import SequenceFeaturizer, TabularFeaturizer, clinical_variables

D = dt.datetime
OUTCOME = "SNOMED/22298006"
POOL: list[tuple[str, str | None, float, float, str | None]] = [
    # code, unit, low, high, text_value
    ("LOINC/2093-3", "mg/dL", 100, 320, None),
    ("LOINC/2085-9", "mg/dL", 20, 100, None),
    ("LOINC/8480-6", "mm[Hg]", 90, 200, None),
    ("LOINC/4548-4", "%", 4, 12, None),
    ("LOINC/1558-6", "mg/dL", 70, 200, None),
    ("LOINC/2093-3", "mmol/L", 3, 8, None),  # wrong unit
    ("LOINC/72166-2", None, 0, 0, "SNOMED/449868002"),
    ("LOINC/72166-2", None, 0, 0, "SNOMED/8517006"),
    ("RxNorm/314076", None, 0, 0, None),
    ("RxNorm/617312", None, 0, 0, None),
    ("RxNorm/860975", None, 0, 0, None),
    ("SNOMED/44054006", None, 0, 0, None),
    ("ICD10CM/E11.9", None, 0, 0, None),
    ("SNOMED/59621000", None, 0, 0, None),
    (OUTCOME, None, 0, 0, None),
    ("ENCOUNTER/AMB", None, 0, 0, None),
]
NEW_CODES = ["SNOMED/999999999", "LOINC/0000-0", "RxNorm/1"]  # only ever in the future
SCHEMA = {c: t for c, t in EVENT_DTYPES.items() if c not in ("resource_type", "record_id")}
SUBJECTS = (1, 2, 3)
T = D(2020, 1, 1)


@st.composite
def event_rows(draw: st.DrawFn, lo: D, hi: D, codes: list[str] | None = None) -> dict[str, Any]:
    """One timed event between lo and hi, maybe with a value, an end time and a late recorded time."""
    time = draw(st.datetimes(min_value=lo, max_value=hi))
    if codes is None:
        code, unit, low, high, text = draw(st.sampled_from(POOL))
    else:
        code, unit, low, high, text = draw(st.sampled_from(codes)), None, 0, 0, None
    value = draw(st.floats(low, high, width=32)) if high > 0 else None
    end = draw(st.one_of(st.none(), st.datetimes(min_value=time, max_value=D(2035, 1, 1))))
    recorded = draw(st.one_of(st.none(), st.datetimes(min_value=time, max_value=D(2035, 1, 1))))
    return {
        "subject_id": draw(st.sampled_from(SUBJECTS)),
        "time": time,
        "code": code,
        "numeric_value": value,
        "text_value": text,
        "unit": unit,
        "end_time": end,
        "recorded_time": recorded,
    }


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    static = [
        {"subject_id": 1, "code": "GENDER/female"},
        {"subject_id": 2, "code": "GENDER/male"},
        {"subject_id": 1, "time": D(1955, 3, 1), "code": "MEDS_BIRTH"},
        {"subject_id": 2, "time": D(1970, 7, 1), "code": "MEDS_BIRTH"},
    ]
    return pl.DataFrame([{k: r.get(k) for k in SCHEMA} for r in [*static, *rows]], schema=SCHEMA)


past = st.lists(event_rows(D(2000, 1, 1), D(2022, 1, 1)), min_size=0, max_size=40)
future = st.lists(
    st.one_of(
        event_rows(D(2020, 1, 1, 0, 0, 1), D(2030, 1, 1)),
        event_rows(D(2020, 1, 1, 0, 0, 1), D(2030, 1, 1), codes=NEW_CODES),
    ),
    min_size=1,
    max_size=20,
)
TIMES = pl.DataFrame({"subject_id": list(SUBJECTS), "prediction_time": [T] * len(SUBJECTS)})
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture()
def lists(tmp_path: Path) -> Path:
    return write_codelists(tmp_path / "codelists")


def _all_features(events: pl.DataFrame, train: pl.DataFrame, lists: Path) -> dict[str, Any]:
    tab = TabularFeaturizer(top_k=30, windows_days=(30, 365, None), codelist_dir=lists).fit(events, train)
    seq = SequenceFeaturizer(max_len=12, n_value_bins=3, min_count=1).fit(events, train)
    return {
        "tabular": tab.transform(events, TIMES),
        "columns": tab.feature_names_,
        "sequence": seq.transform(events, TIMES),
        "vocab": seq.vocab_,
        "edges": seq.value_edges_,
        "clinical": clinical_variables(events, TIMES, codelist_dir=lists),
    }


def _assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["columns"] == b["columns"]
    assert a["vocab"] == b["vocab"]
    assert a["edges"] == b["edges"]
    for name in ("tabular", "sequence", "clinical"):
        assert_frame_equal(a[name], b[name], check_exact=True)


@SETTINGS
@given(base=past, extra=future)
def test_adding_events_after_t_changes_nothing_at_t(
    lists: Path, base: list[dict[str, Any]], extra: list[dict[str, Any]]
) -> None:
    before = _all_features(_frame(base), TIMES, lists)
    after = _all_features(_frame(base + extra), TIMES, lists)
    _assert_same(before, after)


@SETTINGS
@given(base=past, late=st.lists(event_rows(D(2000, 1, 1), T), min_size=1, max_size=10), data=st.data())
def test_events_recorded_after_t_are_invisible(
    lists: Path, base: list[dict[str, Any]], late: list[dict[str, Any]], data: st.DataObject
) -> None:
    for row in late:  # happened by t, but known only after t
        row["recorded_time"] = data.draw(
            st.datetimes(min_value=D(2020, 1, 1, 0, 0, 1), max_value=D(2030, 1, 1))
        )
    _assert_same(_all_features(_frame(base), TIMES, lists), _all_features(_frame(base + late), TIMES, lists))


@SETTINGS
@given(
    base=past,
    outcomes=st.lists(
        event_rows(D(2020, 1, 1, 0, 0, 1), D(2030, 1, 1), codes=[OUTCOME]), min_size=1, max_size=5
    ),
    late=st.lists(event_rows(D(2000, 1, 1), T, codes=[OUTCOME]), max_size=3),
    data=st.data(),
)
def test_removing_the_outcome_after_t_changes_nothing(
    lists: Path,
    base: list[dict[str, Any]],
    outcomes: list[dict[str, Any]],
    late: list[dict[str, Any]],
    data: st.DataObject,
) -> None:
    """Every example holds outcome records after t (and some dated by t but recorded after it)."""
    for row in late:
        row["recorded_time"] = data.draw(
            st.datetimes(min_value=D(2020, 1, 1, 0, 0, 1), max_value=D(2030, 1, 1))
        )
    events = _frame(base + outcomes + late)
    after_t = (pl.col("time") > T) | (pl.col("recorded_time") > T).fill_null(False)
    without = events.filter(~((pl.col("code") == OUTCOME) & after_t))
    assert events.height - without.height >= len(outcomes) + len(late)
    _assert_same(_all_features(events, TIMES, lists), _all_features(without, TIMES, lists))


def test_featurizers_fit_on_training_subjects_only(lists: Path) -> None:
    """A code seen only in held-out subjects is not a tabular column and is UNK in sequences."""
    rows = [
        {"subject_id": 1, "time": D(2019, 1, 1), "code": "SNOMED/59621000"},
        {"subject_id": 2, "time": D(2019, 1, 1), "code": "SNOMED/59621000"},
        {"subject_id": 3, "time": D(2019, 1, 1), "code": "SNOMED/49436004"},  # held-out only
    ]
    events = _frame(rows)
    train = TIMES.filter(pl.col("subject_id") != 3)
    feats = _all_features(events, train, lists)
    assert not any("49436004" in c for c in feats["columns"])
    assert "SNOMED/49436004" not in feats["vocab"]
    held_out = feats["sequence"].filter(pl.col("subject_id") == 3)
    assert held_out["tokens"].to_list() == [[1]]  # UNK
    assert any("59621000" in c for c in feats["columns"])
