"""Vectorised CSV value parsing: dates (ISO, US, zones), numbers, NA markers, record-id ordinals."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ehr_risk.ingest.csv_read import NA_MARKERS, BadRows, iter_batches, relocate
from ehr_risk.ingest.csv_values import convert_values, parse_numbers, parse_times


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2013-12-18", datetime(2013, 12, 18)),
        ("2013-12-18T14:05:00Z", datetime(2013, 12, 18, 14, 5)),
        ("2013-12-18T14:05:00.250Z", datetime(2013, 12, 18, 14, 5, 0, 250000)),
        ("2013-12-18T14:05:00-08:00", datetime(2013, 12, 18, 22, 5)),
        ("2013-12-18T01:05:00+0200", datetime(2013, 12, 17, 23, 5)),
        ("2013-12-18 14:05:00", datetime(2013, 12, 18, 14, 5)),
        ("2013-12-18T14:05", datetime(2013, 12, 18, 14, 5)),
        ("12/18/2013", datetime(2013, 12, 18)),
        ("1/2/2013", datetime(2013, 1, 2)),
        ("12/18/2013 14:05", datetime(2013, 12, 18, 14, 5)),
        ("12/18/2013 14:05:09", datetime(2013, 12, 18, 14, 5, 9)),
        ("12/18/2013 2:05 PM", datetime(2013, 12, 18, 14, 5)),
        ("20131218", datetime(2013, 12, 18)),
        ("2013-12", datetime(2013, 12, 1)),
        ("2013", datetime(2013, 1, 1)),
        (" 2013-12-18 ", datetime(2013, 12, 18)),
    ],
)
def test_parse_times_formats_to_naive_utc(text: str, expected: datetime) -> None:
    assert parse_times(pl.Series([text])).to_list() == [expected]


@pytest.mark.parametrize("text", ["2013-02-30", "18/12/2013", "yesterday", "2013-13-01", "12/18/13x"])
def test_parse_times_rejects_non_dates(text: str) -> None:
    assert parse_times(pl.Series([text])).to_list() == [None]


def test_parse_times_mixed_column_and_local_zone() -> None:
    values = pl.Series(["2020-07-01 12:00:00", "2020-01-01 12:00:00", None, "2020-07-01T12:00:00Z"])
    got = parse_times(values, tz="America/New_York").to_list()
    # summer is UTC-4, winter UTC-5; an explicit Z is not moved
    assert got == [datetime(2020, 7, 1, 16), datetime(2020, 1, 1, 17), None, datetime(2020, 7, 1, 12)]
    assert parse_times(pl.Series(["18/12/2013"]), fmt="%d/%m/%Y").to_list() == [datetime(2013, 12, 18)]


def test_parse_numbers() -> None:
    got = parse_numbers(pl.Series([" 1.5", "-2", "1e3", "1,234.5", "abc", None, "12,34"])).to_list()
    assert got == [1.5, -2.0, 1000.0, 1234.5, None, None, None]


def test_na_markers_are_null_not_zero(tmp_path: Path) -> None:
    path = tmp_path / "na.csv"
    rows = "".join(f"{m},x\n" for m in NA_MARKERS if m)
    path.write_text("v,w\n" + rows + ",x\n0,x\n")
    frame = pl.concat(list(iter_batches(path, ["v", "w"], ["v", "w"], BadRows())))
    assert frame["v"].to_list() == [None] * (len(NA_MARKERS) + 0) + ["0"]
    assert frame["_line"].to_list() == list(range(2, len(NA_MARKERS) + 3))
    assert parse_numbers(frame["v"]).to_list()[-1] == 0.0


def test_relocate_lines_after_malformed_rows() -> None:
    provisional = np.array([2, 3, 4, 5])  # rows counted without the malformed lines 3 and 4
    assert relocate(provisional, [3, 4]).tolist() == [2, 5, 6, 7]
    assert relocate(provisional, []).tolist() == [2, 3, 4, 5]


def test_unit_conversion_and_plausibility() -> None:
    frame = pl.DataFrame(
        {
            "code": ["LOINC/2093-3", "LOINC/2093-3", "LOINC/4548-4", "LOINC/8480-6", "LOINC/9999-9"],
            "numeric_value": [5.0, 180.0, 53.0, 2000.0, 7.0],
            "unit": ["mmol/L", "mg/dL", "mmol/mol", None, "kg"],
        }
    )
    out = convert_values(frame)
    values = out["numeric_value"].to_list()
    assert values[0] == pytest.approx(5 * 38.67) and values[1] == 180.0
    assert values[2] == pytest.approx(0.09148 * 53 + 2.152)  # IFCC → NGSP, an affine conversion
    assert out["unit"].to_list() == ["mg/dL", "mg/dL", "%", "mm[Hg]", "kg"]
    assert out["_unit_error"].null_count() == 5
    assert out["_implausible"].to_list() == [False, False, False, True, False]
    bad = convert_values(pl.DataFrame({"code": ["LOINC/2093-3"], "numeric_value": [1.0], "unit": ["parsec"]}))
    assert bad["_unit_error"].to_list() == ["unit 'parsec' not convertible to mg/dL for LOINC/2093-3"]
    assert bad["numeric_value"].to_list() == [1.0]  # left as read: the caller rejects the row


def test_blocks_cut_at_line_ends_keep_exact_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    from ehr_risk.ingest import csv_read

    monkeypatch.setattr(csv_read, "BLOCK_BYTES", 50)  # many tiny blocks
    header = "subject_id,time,code,numeric_value,text_value,unit"
    rows = [f"s{i},2020-01-{i % 28 + 1:02d},LOINC/8480-6,{100 + i},,mm[Hg]" for i in range(200)]
    rows[57] = "broken,row"
    text = header + "\n" + "\n".join(rows)  # no newline at the end
    for name, data in (("plain.csv", text.encode()), ("packed.csv.gz", gzip.compress(text.encode()))):
        path = tmp_path / name
        path.write_bytes(data)
        bad = BadRows()
        frames = list(iter_batches(path, header.split(","), ["subject_id", "numeric_value"], bad))
        frame = pl.concat(frames)
        assert len(frames) > 10
        assert bad.texts == ["broken,row"]
        assert frame.height == 199
        # provisional lines count rows without the malformed one; relocate() puts them back in place
        fixed = relocate(frame["_line"].to_numpy(), [59]).tolist()
        assert fixed == [i + 2 for i in range(200) if i != 57]
        assert frame["numeric_value"].to_list()[-1] == "299"
