"""The event loader and THE visibility rule (ehr_risk.events)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehr_risk.errors import InputDataError, SchemaError
from ehr_risk.events import (
    EVENT_COLUMNS,
    EVENT_DTYPES,
    ROW,
    available_time_expr,
    check_times,
    ensure_event_columns,
    events_at,
    events_at_last,
    first_available_time,
    scan_events,
    unique_times,
    visible,
    visible_expr,
)
from ehr_risk.tables import load_schema, read_table, write_table

D = dt.datetime
T = D(2020, 1, 1)


def _frame(rows: list[tuple[D | None, D | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "subject_id": [1] * len(rows),
            "time": [r[0] for r in rows],
            "recorded_time": [r[1] for r in rows],
            "code": [f"X/{i}" for i in range(len(rows))],
        },
        schema={
            "subject_id": pl.Int64,
            "time": pl.Datetime("us"),
            "recorded_time": pl.Datetime("us"),
            "code": pl.String,
        },
    )


@pytest.mark.parametrize(
    ("time", "recorded", "expected"),
    [
        (None, None, True),  # static fact
        (None, D(2030, 1, 1), True),  # static, whatever its recorded time
        (D(2019, 1, 1), None, True),
        (T, None, True),  # at t counts as before
        (T, T, True),
        (D(2020, 1, 1, 0, 0, 1), None, False),  # one second after t
        (D(2019, 1, 1), D(2019, 6, 1), True),
        (D(2019, 1, 1), D(2020, 1, 2), False),  # happened before t, known only after
        (D(2021, 1, 1), D(2019, 1, 1), False),  # recorded before it happened (planned): not yet happened
    ],
)
def test_visible_rule(time: D | None, recorded: D | None, expected: bool) -> None:
    frame = _frame([(time, recorded)]).with_columns(
        pl.lit(T, dtype=pl.Datetime("us")).alias("prediction_time")
    )
    assert frame.select(visible_expr()).item() is expected
    assert visible(frame, T).collect().height == int(expected)


datetimes = st.one_of(st.none(), st.datetimes(min_value=D(2000, 1, 1), max_value=D(2030, 1, 1)))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(datetimes, datetimes), min_size=1, max_size=20),
    st.datetimes(D(2000, 1, 1), D(2030, 1, 1)),
)
def test_available_time_is_the_rule(rows: list[tuple[D | None, D | None]], t: D) -> None:
    """max(time, recorded_time) <= t  <=>  visible at t, for timed events."""
    frame = _frame(rows).with_columns(pl.lit(t, dtype=pl.Datetime("us")).alias("prediction_time"))
    out = frame.filter(pl.col("time").is_not_null()).select(
        visible_expr().alias("rule"), (available_time_expr() <= pl.col("prediction_time")).alias("available")
    )
    assert out["rule"].to_list() == out["available"].to_list()


def test_events_at_joins_each_time_to_its_visible_events() -> None:
    events = pl.DataFrame(
        {
            "subject_id": [1, 1, 1, 2, 2],
            "time": [None, D(2019, 1, 1), D(2021, 1, 1), D(2015, 1, 1), D(2019, 12, 1)],
            "code": ["GENDER/male", "A/1", "A/2", "B/1", "B/2"],
            "recorded_time": [None, None, None, None, D(2020, 3, 1)],
        }
    )
    times = pl.DataFrame({"subject_id": [2, 1, 1, 3], "prediction_time": [T, T, D(2022, 1, 1), T]})
    keys, index = unique_times(times)
    got = events_at(events, keys, ["code"]).collect().sort([ROW, "code"])
    pairs = {(r, c) for r, c in got.select(ROW, "code").iter_rows()}
    assert pairs == {(0, "B/1"), (1, "GENDER/male"), (1, "A/1"), (2, "GENDER/male"), (2, "A/1"), (2, "A/2")}
    assert index.to_list() == [0, 1, 2, 3]
    no_static = events_at(events, keys, ["code"], static=False).collect()
    assert "GENDER/male" not in no_static["code"].to_list()
    only_a = events_at(events, keys, ["code"], codes=pl.col("code").str.starts_with("A/")).collect()
    assert set(only_a["code"]) == {"A/1", "A/2"}


def test_events_at_last_is_the_union_over_a_subjects_times() -> None:
    events = pl.DataFrame(
        {
            "subject_id": [1, 1, 1],
            "time": [D(2010, 1, 1), D(2015, 1, 1), D(2022, 1, 1)],
            "code": ["a/1", "a/2", "a/3"],
        }
    )
    times = pl.DataFrame({"subject_id": [1, 1], "prediction_time": [D(2012, 1, 1), D(2016, 1, 1)]})
    got = events_at_last(events, times).collect()
    assert sorted(got["code"]) == ["a/1", "a/2"]  # each once, nothing after the last time


def test_first_available_time_uses_recorded_time() -> None:
    events = _frame([(D(2010, 1, 1), D(2011, 1, 1)), (D(2010, 6, 1), None), (None, None)])
    got = first_available_time(events).collect()
    assert got["first_available_time"].to_list() == [D(2010, 6, 1)]


def test_unique_times_maps_duplicates_to_one_row() -> None:
    times = pl.DataFrame({"subject_id": [5, 5, 6, 5], "prediction_time": [T, T, T, D(2021, 1, 1)]})
    keys, index = unique_times(times)
    assert keys.height == 3
    assert index.to_list() == [0, 0, 1, 2]


def test_check_times_errors() -> None:
    with pytest.raises(InputDataError, match="missing column 'prediction_time'"):
        check_times(pl.DataFrame({"subject_id": [1]}))
    with pytest.raises(InputDataError, match="null"):
        check_times(pl.DataFrame({"subject_id": [1, None], "prediction_time": [T, T]}))


def test_ensure_event_columns_adds_optional_columns_and_requires_the_core() -> None:
    lf = ensure_event_columns(pl.DataFrame({"subject_id": [1], "time": [T], "code": ["A/1"]}))
    schema = lf.collect_schema()
    assert schema["recorded_time"] == pl.Datetime("us")
    assert schema["numeric_value"] == pl.Float32
    with pytest.raises(InputDataError, match="'code'"):
        ensure_event_columns(pl.DataFrame({"subject_id": [1], "time": [T]}))


def test_scan_events_reads_an_ingest_folder_a_shard_folder_or_a_file(tmp_path: Path) -> None:
    shards = tmp_path / "out" / "events"
    shards.mkdir(parents=True)
    for k in range(2):
        pl.DataFrame({"subject_id": [k], "time": [T], "code": ["A/1"]}).write_parquet(
            shards / f"shard-{k:04d}.parquet"
        )
    assert scan_events(tmp_path / "out").collect().height == 2
    assert scan_events(shards).collect().height == 2
    assert scan_events(shards / "shard-0000.parquet").collect().height == 1
    with pytest.raises(InputDataError, match="not found"):
        scan_events(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="no event shards"):
        scan_events(tmp_path / "empty")


def test_visible_with_a_frame_of_prediction_times() -> None:
    events = pl.DataFrame(
        {
            "subject_id": [1, 1, 2],
            "time": [D(2019, 1, 1), D(2021, 1, 1), D(2019, 1, 1)],
            "code": ["a/1", "a/2", "b/1"],
        }
    )
    times = pl.DataFrame({"subject_id": [1, 1], "prediction_time": [T, D(2022, 1, 1)]})
    got = visible(events, times).collect().sort("prediction_time", "code")
    assert got.select("prediction_time", "code").rows() == [
        (T, "a/1"),
        (D(2022, 1, 1), "a/1"),
        (D(2022, 1, 1), "a/2"),
    ]


def _event_rows() -> pl.DataFrame:
    """Two events in the canonical column types (a static fact and a lab value)."""
    return pl.DataFrame(
        {
            "subject_id": [7, 7],
            "time": [None, D(2020, 3, 1, 8, 30)],
            "code": ["GENDER/female", "LOINC/2093-3"],
            "numeric_value": [None, 201.5],
            "text_value": [None, None],
            "unit": [None, "mg/dL"],
            "end_time": [None, None],
            "recorded_time": [None, D(2020, 3, 2)],
            "resource_type": ["Patient", "Observation"],
            "record_id": [11, 12],
        },
        schema=EVENT_DTYPES,
    )


def test_event_table_schema_is_enforced_on_write_and_read(tmp_path: Path) -> None:
    schema = load_schema("events")
    assert tuple(schema.columns) == EVENT_COLUMNS
    assert schema.arrow.field("time").type == pa.timestamp("us")  # naive (UTC by convention), as MEDS
    assert schema.arrow.field("numeric_value").type == pa.float32()
    # a castable frame (float64 values, columns out of order) is written in the schema's types and order
    loose = (
        _event_rows()
        .with_columns(pl.col("numeric_value").cast(pl.Float64))
        .select(list(reversed(EVENT_COLUMNS)))
    )
    path = write_table(loose.to_arrow(), tmp_path / "ok.parquet", "events")
    written = pq.read_schema(path)
    assert written.names == list(EVENT_COLUMNS)
    assert written.field("numeric_value").type == pa.float32()
    assert written.metadata[b"ehr_risk.schema"] == f"events@{schema.version}".encode()
    back = pl.from_arrow(read_table(path, "events"))
    assert isinstance(back, pl.DataFrame) and back.equals(_event_rows())

    good = _event_rows()
    bad_tables = {
        "missing column": good.drop("code"),
        "unexpected column": good.with_columns(pl.lit("x").alias("patient_name")),
        "'subject_id' has 1 null": good.with_columns(pl.Series("subject_id", [1, None], pl.Int64)),
        "'code' has 1 null": good.with_columns(pl.Series("code", ["A/1", None], pl.String)),
        "cannot be cast": good.with_columns(pl.Series("time", [[1], [2]], pl.List(pl.Int64))),
    }
    for message, table in bad_tables.items():
        target = tmp_path / "bad.parquet"
        with pytest.raises(SchemaError, match=message):
            write_table(table.to_arrow(), target, "events")
        assert not target.exists() and not list(tmp_path.glob(".bad.parquet.tmp-*"))
    # reading checks the same contract: a parquet file that is not an event table is refused
    pq.write_table(good.drop("resource_type").to_arrow(), tmp_path / "foreign.parquet")
    with pytest.raises(SchemaError, match="missing column"):
        read_table(tmp_path / "foreign.parquet", "events")
