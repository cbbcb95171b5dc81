"""The fast CSV paths give what the exact ones give: polars blocks vs pyarrow, hashed vs sorted ordinals,
one spill file vs many, per-column date formats learnt once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehr_risk.ingest import csv_read
from ehr_risk.ingest.csv_emit import CsvFile
from ehr_risk.ingest.csv_read import NA_MARKERS, BadRows, iter_batches
from ehr_risk.ingest.run import IngestOptions, ingest

FIXTURES = Path(__file__).parent / "fixtures" / "csv"
HEADER = ["a", "b", "c"]
# fields that stress the reader: NA markers, white space, text that looks like a marker, quotes
FIELDS = st.sampled_from(
    ["1", "x y", "", "NA", " NA", "null", "-", "-1", ".5", "?", "é", '"q,1"', '""', "a\tb"]
)


@st.composite
def csv_lines(draw: st.DrawFn) -> list[str]:
    """Lines of a 3-column CSV body: mostly well-formed, some short, long, blank or carriage-returned."""
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        n = draw(st.sampled_from([3, 3, 3, 3, 2, 4, 1]))
        line = ",".join(draw(st.lists(FIELDS, min_size=n, max_size=n)))
        lines.append(line + draw(st.sampled_from(["", "", "", "\r"])))
    return lines


def _read(path: Path, columns: list[str]) -> tuple[list[tuple[object, ...]], list[str]]:
    bad = BadRows()
    frames = list(iter_batches(path, HEADER, columns, bad))
    rows = [row for frame in frames for row in frame.select(*columns, csv_read.LINE).iter_rows()]
    return rows, bad.texts


@settings(max_examples=80, deadline=None)
@given(lines=csv_lines(), columns=st.sampled_from([HEADER, ["c", "a"], ["b"]]), tiny=st.booleans())
def test_polars_blocks_equal_pyarrow_blocks(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], columns: list[str], tiny: bool
) -> None:
    """Whatever the bytes, a block the fast path accepts reads exactly as pyarrow reads it."""
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    path.write_bytes(("a,b,c\n" + "\n".join(lines) + "\n").encode())
    old_block = csv_read.BLOCK_BYTES
    try:
        csv_read.BLOCK_BYTES = 16 if tiny else old_block  # many blocks: some fast, some not
        fast = _read(path, columns)
        original = csv_read._fast_block
        csv_read._fast_block = lambda *_args: None
        try:
            exact = _read(path, columns)
        finally:
            csv_read._fast_block = original
    finally:
        csv_read.BLOCK_BYTES = old_block
    assert fast == exact
    if columns == HEADER:  # tables that are only counted: the same rows, counted without converting
        bad = BadRows()
        assert csv_read.count_rows(path, HEADER, bad) == len(exact[0]) and bad.texts == exact[1]


@settings(max_examples=60, deadline=None)
@given(lines=csv_lines(), taken=st.lists(st.booleans(), min_size=1, max_size=8))
def test_blocks_a_reader_takes_keep_the_other_rows_and_lines(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], taken: list[bool]
) -> None:
    """`iter_batches` hands raw blocks to `take` first: the blocks it takes are not yielded, and every
    other row keeps the line number (and malformed rows the texts) that it has without `take`."""
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    path.write_bytes(("a,b,c\n" + "\n".join(lines) + "\n").encode())
    got: list[tuple[object, ...]] = []
    decisions = iter(taken * 100)

    def take(blocks: list[bytes]) -> int | None:
        frames = [csv_read.plain_block(block, len(HEADER)) for block in blocks]
        if any(f is None for f in frames) or not next(decisions):  # declined: read the usual way
            return None
        frame = pl.concat([f for f in frames if f is not None])
        # raw fields: NA markers are left to the taker
        values = [tuple(None if v in NA_MARKERS else v for v in r) for r in frame.iter_rows()]
        got.extend(v for v in values if v != (None, None, None))  # a blank row is no row
        return frame.height

    old_block = csv_read.BLOCK_BYTES
    try:
        csv_read.BLOCK_BYTES = 16
        exact, exact_bad = _read(path, HEADER)
        bad = BadRows()
        frames = list(iter_batches(path, HEADER, HEADER, bad, take))
    finally:
        csv_read.BLOCK_BYTES = old_block
    yielded = [row for frame in frames for row in frame.select(*HEADER, csv_read.LINE).iter_rows()]
    assert bad.texts == exact_bad
    remaining = list(exact)
    for row in yielded:  # each yielded row is a row of the plain read, same values and line
        remaining.remove(row)
    assert sorted((r[:3] for r in remaining), key=repr) == sorted(got, key=repr)  # the rest: taken


def test_fast_path_is_taken_for_plain_blocks_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    original = csv_read._fast_block

    def spy(*args: object) -> pl.DataFrame | None:
        got = original(*args)  # type: ignore[arg-type]
        calls.append(got is not None)
        return got

    monkeypatch.setattr(csv_read, "_fast_block", spy)
    for body, fast in (
        ("1,2,3\n4,NA,6\n", True),
        ("1,2,\n4,5,6\n", True),  # empty last field: commas counted, all there
        ("1,2\n4,5,6\n", False),  # a short row
        ('1,"2,5",3\n', False),  # quotes
        ("1,2,3\r\n4,5,6\r\n", True),
        ("1,2,3\r4,5,6\n", False),  # a bare carriage return
    ):
        calls.clear()
        path = tmp_path / "t.csv"
        path.write_text("a,b,c\n" + body)
        list(iter_batches(path, HEADER, HEADER, BadRows()))
        assert calls == [fast], body


def _reference_ordinals(batches: list[np.ndarray]) -> list[list[int]]:
    """Rank among earlier same-key rows of this batch, after the previous batch's rows with that key."""
    out: list[list[int]] = []
    carried: dict[int, int] = {}
    for keys in batches:
        seen: dict[int, int] = {}
        ranks = []
        for k in keys.tolist():
            c = seen.get(k, carried.get(k, 0))
            ranks.append(c)
            seen[k] = c + 1
        carried = seen
        out.append(ranks)
    return out


@settings(max_examples=120, deadline=None)
@given(st.lists(st.lists(st.integers(0, 12), min_size=1, max_size=40), min_size=1, max_size=5))
def test_ordinals_match_a_plain_count(batches: list[list[int]]) -> None:
    _check_ordinals(batches)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(0, 30), min_size=1, max_size=20, unique=True)
        | st.lists(st.integers(0, 30), min_size=1, max_size=20),
        min_size=1,
        max_size=6,
    )
)
def test_ordinals_of_batches_with_distinct_keys(batches: list[list[int]]) -> None:
    """Batches whose keys are all different, after batches with and without repeated keys."""
    _check_ordinals(batches)


def _check_ordinals(batches: list[list[int]]) -> None:
    arrays = [np.array(b, dtype=np.uint64) for b in batches]
    file = CsvFile.__new__(CsvFile)
    file._carry = None
    got = [file.ordinals(a).tolist() for a in arrays]
    assert got == _reference_ordinals(arrays)


def test_many_spills_one_file_and_incremental_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spills of a few rows over many shards, then an incremental load on top, give the tables that a
    load held in memory gives (rows in the same order, not only the same set)."""
    from ehr_risk.ingest import output

    src = FIXTURES / "synthea_current"
    for name, spill in (("big", None), ("small", 3)):
        if spill:
            monkeypatch.setattr(output, "MEMORY_BUDGET", 0)
            monkeypatch.setattr(output, "SPILL_ROWS", spill)
            monkeypatch.setattr(output, "SPILL_ROWS_PER_SHARD", 1)
        out = tmp_path / name
        ingest([src], out, IngestOptions(n_shards=4))
        ingest([src, src], out, IngestOptions(incremental=True))
    big = pl.read_parquet(tmp_path / "big" / "events" / "*.parquet")
    small = pl.read_parquet(tmp_path / "small" / "events" / "*.parquet")
    assert big.equals(small)
    assert big.select(pl.col("record_id").n_unique()).item() > 0
    assert not list((tmp_path / "small").glob(".ingest-tmp"))


def test_thousands_separators_in_observation_values(tmp_path: Path) -> None:
    """`1,070.5` is a number (found by the rare-path parser); `12,0` is not, and is rejected."""
    src = tmp_path / "in"
    shutil.copytree(FIXTURES / "synthea_current", src)
    obs = pl.read_csv(src / "observations.csv", infer_schema=False)
    obs = obs.with_columns(
        pl.when(pl.col("CODE") == "2708-6")
        .then(pl.lit("1,070.5"))
        .when(pl.col("CODE") == "8480-6")
        .then(pl.lit("12,0"))
        .otherwise(pl.col("VALUE"))
        .alias("VALUE")
    )
    obs.write_csv(src / "observations.csv")
    ingest([src], tmp_path / "out", IngestOptions())
    events = pl.read_parquet(tmp_path / "out" / "events" / "*.parquet")
    assert events.filter(pl.col("code") == "LOINC/2708-6")["numeric_value"].to_list() == [1070.5, 1070.5]
    assert events.filter(pl.col("code") == "LOINC/8480-6").is_empty()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rejected_reasons"] == {"non-numeric value for a numeric observation": 1}


def test_date_format_change_between_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain date format learnt from a column's first batch is only a first try."""
    monkeypatch.setattr(csv_read, "BLOCK_BYTES", 64)
    rows = [f"s{i},2020-01-{i + 1:02d}T10:00:00Z,LOINC/8480-6,{100 + i},,mm[Hg]" for i in range(6)]
    rows += [f"s{i},01/{i + 1:02d}/2021,LOINC/8480-6,{100 + i},,mm[Hg]" for i in range(6)]
    path = tmp_path / "long.csv"
    path.write_text("subject_id,time,code,numeric_value,text_value,unit\n" + "\n".join(rows) + "\n")
    ingest([path], tmp_path / "out", IngestOptions())
    events = pl.read_parquet(tmp_path / "out" / "events" / "*.parquet").sort("time")
    assert events["time"].dt.year().to_list() == [2020] * 6 + [2021] * 6
