"""CSV ingestion: Synthea export layouts, long tables, rejects with lines, NA handling, incremental loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from ehr_risk.errors import InputDataError, RejectLimitError
from ehr_risk.ingest.run import IngestOptions, ingest

FIXTURES = Path(__file__).parent / "fixtures" / "csv"
KEY = "csv-test-key-0123456789"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EHR_RISK_ID_KEY", KEY)


def run(inputs: list[Path], out: Path, **options: object) -> tuple[pl.DataFrame, dict]:
    ingest(inputs, out, IngestOptions(**options))  # type: ignore[arg-type]
    events = pl.read_parquet(out / "events" / "*.parquet")
    return events, json.loads((out / "summary.json").read_text())


def rejects(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "rejects" / "*.parquet").sort("position")


def by_code(events: pl.DataFrame, code: str) -> pl.DataFrame:
    return events.filter(pl.col("code") == code)


def test_synthea_current_layout(tmp_path: Path) -> None:
    events, summary = run([FIXTURES / "synthea_current"], tmp_path / "out")
    assert summary["read"] == summary["converted"] + summary["skipped"] + summary["rejected"]
    assert summary["rejected"] == 0
    assert summary["by_resource_type"]["Observation"] == {
        "read": 10,
        "converted": 9,
        "skipped": 1,
        "rejected": 0,
    }
    assert summary["by_resource_type"]["Claim"]["skipped"] == 2
    # cholesterol 5.2 mmol/L → mg/dL (units.py factor 38.67)
    chol = by_code(events, "LOINC/2093-3")
    assert chol["numeric_value"].to_list() == [pytest.approx(201.084, rel=1e-5)]
    assert chol["unit"].to_list() == ["mg/dL"]
    # two same-instant oxygen saturations are two records, both kept
    assert sorted(by_code(events, "LOINC/2708-6")["numeric_value"].to_list()) == [97.0, 98.0]
    # coded answers: smoking status and cause of death as VOCAB/code text values
    assert sorted(by_code(events, "LOINC/72166-2")["text_value"].to_list()) == [
        "SNOMED/266919005",
        "SNOMED/449868002",
    ]
    assert by_code(events, "LOINC/69453-9")["text_value"].to_list() == ["SNOMED/22298006"]
    # NA is missing, not zero: the HDL row is kept without a value or unit
    hdl = by_code(events, "LOINC/2085-9")
    assert hdl.height == 1 and hdl["numeric_value"].to_list() == [None] and hdl["unit"].to_list() == [None]
    statics = events.filter(pl.col("time").is_null())["code"].sort().to_list()
    assert statics == sorted(
        ["GENDER/female", "GENDER/male", "RACE/2106-3", "RACE/2054-5", "ETHNICITY/2186-5", "ETHNICITY/2135-2"]
    )
    enc = events.filter(pl.col("resource_type") == "Encounter").sort("code")
    assert enc["code"].to_list() == ["ENCOUNTER/AMB", "ENCOUNTER/IMP", "SNOMED/162673000", "SNOMED/32485007"]
    assert enc.filter(pl.col("code") == "ENCOUNTER/IMP")["end_time"].dt.to_string(
        "%Y-%m-%dT%H:%M"
    ).to_list() == ["2019-05-04T10:00"]
    assert by_code(events, "CVX/08").height == 1
    assert by_code(events, "RxNorm/7980")["resource_type"].to_list() == ["AllergyIntolerance"]
    med = by_code(events, "RxNorm/314076")
    assert med["recorded_time"].to_list() == med["time"].to_list()
    assert by_code(events, "MEDS_DEATH")["time"].dt.to_string("%Y-%m-%d").to_list() == ["2020-06-01"]
    assert events["record_id"].null_count() == 0


def test_old_synthea_layout_detected_by_header(tmp_path: Path) -> None:
    """ID/DATE/no CATEGORY-TYPE/no SYSTEM layouts give the same events, bar what they cannot carry."""
    new, _ = run([FIXTURES / "synthea_current"], tmp_path / "new")
    old, summary = run([FIXTURES / "synthea_old"], tmp_path / "old")
    assert summary["rejected"] == 0
    keep = ~pl.col("resource_type").is_in(["AllergyIntolerance", "Procedure"])
    cols = [c for c in new.columns if c != "record_id"]
    assert new.filter(keep).select(cols).sort(cols).equals(old.filter(keep).select(cols).sort(cols))
    # procedures: DATE only (no STOP); allergies without SYSTEM are SNOMED
    assert by_code(old, "SNOMED/415070008")["end_time"].to_list() == [None]
    assert by_code(old, "SNOMED/7980").height == 1


def test_missing_required_column_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "export"
    shutil.copytree(FIXTURES / "synthea_current", src)
    obs = pl.read_csv(src / "observations.csv", infer_schema=False).drop("CODE", "VALUE")
    obs.write_csv(src / "observations.csv")
    with pytest.raises(InputDataError, match=r"observations\.csv: missing required column\(s\) CODE, VALUE"):
        ingest([src], tmp_path / "out", IngestOptions())
    from ehr_risk.cli import main

    with pytest.raises(SystemExit) as exc:
        _cli(main, ["ingest", str(src), "--out", str(tmp_path / "out2")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing required column(s) CODE, VALUE" in err[0]


def _cli(main: object, argv: list[str]) -> None:
    import sys

    old = sys.argv
    sys.argv = ["ehr-risk", *argv]
    try:
        main()  # type: ignore[operator]
    finally:
        sys.argv = old


def test_long_csv_events_and_rejects_with_lines(tmp_path: Path) -> None:
    out = tmp_path / "out"
    events, summary = run([FIXTURES / "long_mixed.csv"], out)
    assert summary["read"] == 14 and summary["rejected"] == 7 and summary["converted"] == 7
    got = {(r["position"], r["reason"]) for r in rejects(out).iter_rows(named=True)}
    assert got == {
        ("line 6", "implausible value for LOINC/8480-6 (outside 40-300 mm[Hg])"),
        ("line 7", "unparseable date in time"),
        ("line 8", "unknown code system"),
        ("line 9", "non-numeric value in numeric_value"),
        ("line 11", "unit 'furlongs' not convertible to mg/dL for LOINC/2093-3"),
        ("line 14", "missing time (only GENDER/RACE/ETHNICITY facts are static)"),
        ("line 15", "malformed row: field count differs from the header"),
    }
    assert summary["rejected_reasons"]["unknown code system"] == 1
    # vocabulary spelling normalised; offsets and US dates to UTC; NA → a value-less event, not 0
    mi = by_code(events, "SNOMED/22298006")
    assert mi["time"].dt.to_string("%Y-%m-%dT%H:%M").to_list() == ["2020-01-02T08:00"]
    assert by_code(events, "LOINC/8480-6")["time"].dt.to_string("%Y-%m-%dT%H:%M").to_list() == [
        "2020-01-15T14:30"
    ]
    chol = by_code(events, "LOINC/2093-3").sort("numeric_value", nulls_last=True)
    assert chol["numeric_value"].to_list() == [pytest.approx(201.084, rel=1e-5), None]
    assert by_code(events, "GENDER/female")["time"].to_list() == [None]
    assert by_code(events, "LOINC/72166-2")["text_value"].to_list() == ["SNOMED/449868002"]


def test_reject_record_keeps_the_row_and_lines_survive_blank_and_malformed_rows(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text(
        "subject_id,time,code,numeric_value,text_value,unit\n"
        "a,2020-01-01,LOINC/8480-6,120,,mm[Hg]\n"
        "a,2020-01-01,LOINC/8480-6\n"  # line 3: too few fields
        "\n"  # line 4: blank
        "a,2020-01-02,LOINC/8480-6,-5,,mm[Hg]\n"  # line 5: impossible
        'b,"2020-01-03",LOINC/8462-4,80,,mm[Hg],extra\n'  # line 6: too many fields
        "b,2020-01-04,LOINC/8462-4,ninety,,mm[Hg]\n"  # line 7
    )
    out = tmp_path / "out"
    events, summary = run([path], out)
    assert events.height == 1
    got = rejects(out).select("position", "reason").rows()
    assert got == [
        ("line 3", "malformed row: field count differs from the header"),
        ("line 5", "implausible value for LOINC/8480-6 (outside 40-300 mm[Hg])"),
        ("line 6", "malformed row: field count differs from the header"),
        ("line 7", "non-numeric value in numeric_value"),
    ]
    record = json.loads(rejects(out).filter(pl.col("position") == "line 7")["record"][0])
    assert record["numeric_value"] == "ninety"
    assert summary["read"] == 5


def test_strict_and_max_reject_fraction(tmp_path: Path) -> None:
    with pytest.raises(RejectLimitError, match=r"line 6: implausible value"):
        ingest([FIXTURES / "long_mixed.csv"], tmp_path / "a", IngestOptions(strict=True))
    with pytest.raises(RejectLimitError, match="max-reject-fraction"):
        ingest([FIXTURES / "long_mixed.csv"], tmp_path / "b", IngestOptions(max_reject_fraction=0.1))
    ingest([FIXTURES / "long_mixed.csv"], tmp_path / "c", IngestOptions(max_reject_fraction=0.6))


def test_unrecognised_csv_layout_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "weird.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputDataError, match=r"weird\.csv: unrecognised CSV layout"):
        ingest([path], tmp_path / "out", IngestOptions())


def test_single_synthea_table_file_and_gzip(tmp_path: Path) -> None:
    import gzip

    gz = tmp_path / "observations.csv.gz"
    gz.write_bytes(gzip.compress((FIXTURES / "synthea_current" / "observations.csv").read_bytes()))
    events, summary = run([gz], tmp_path / "out")
    assert summary["by_resource_type"]["Observation"]["converted"] == 9
    assert by_code(events, "LOINC/8480-6")["numeric_value"].to_list() == [142.0]


def test_same_input_twice_gives_the_same_table(tmp_path: Path) -> None:
    a, _ = run([FIXTURES / "synthea_current"], tmp_path / "a")
    b, _ = run([FIXTURES / "synthea_current"], tmp_path / "b")
    assert a.equals(b)
    both, summary = run([FIXTURES / "synthea_current", FIXTURES / "synthea_current"], tmp_path / "c")
    assert both.sort(both.columns).equals(a.sort(a.columns))
    assert summary["skipped_reasons"]["duplicate record (same type and id)"] == summary["converted"]


def test_tiny_spills_and_many_shards_give_the_same_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's spill size is an implementation detail: one spill per few rows across several shards
    (duplicates spread over spills) must give the table and summary of the load held in memory."""
    from ehr_risk.ingest import output

    inputs = [FIXTURES / "synthea_current", FIXTURES / "synthea_current"]  # every record twice
    big, big_summary = run(inputs, tmp_path / "big", n_shards=3)
    monkeypatch.setattr(output, "MEMORY_BUDGET", 0)
    monkeypatch.setattr(output, "SPILL_ROWS", 5)
    monkeypatch.setattr(output, "SPILL_ROWS_PER_SHARD", 1)
    small, small_summary = run(inputs, tmp_path / "small", n_shards=3)
    assert len(list((tmp_path / "small" / "events").glob("*.parquet"))) > 1
    assert small.equals(big)
    assert small_summary == big_summary
    assert big_summary["skipped_reasons"]["duplicate record (same type and id)"] == big_summary["converted"]


def _write_extract(src: Path, dst: Path, obs_rows: slice, patients: pl.DataFrame | None = None) -> None:
    shutil.copytree(src, dst)
    obs = pl.read_csv(src / "observations.csv", infer_schema=False)
    obs[obs_rows].write_csv(dst / "observations.csv")
    if patients is not None:
        patients.write_csv(dst / "patients.csv")


def test_incremental_overlapping_extracts_equal_one_combined_extract(tmp_path: Path) -> None:
    src = FIXTURES / "synthea_current"
    patients = pl.read_csv(src / "patients.csv", infer_schema=False)
    alive = patients.with_columns(pl.lit(None, dtype=pl.String).alias("DEATHDATE"))
    _write_extract(src, tmp_path / "A", slice(0, 7), alive)  # older extract: p-0002 still alive
    _write_extract(src, tmp_path / "B", slice(1, None))  # newer: overlaps rows 1-6, adds death
    obs_b = pl.read_csv(tmp_path / "B" / "observations.csv", infer_schema=False)
    updated = obs_b.with_columns(  # a corrected systolic value (same record, new value)
        pl.when(pl.col("CODE") == "8480-6").then(pl.lit("150.0")).otherwise(pl.col("VALUE")).alias("VALUE")
    )
    updated.write_csv(tmp_path / "B" / "observations.csv")
    _write_extract(src, tmp_path / "AB", slice(0, None))
    obs_all = pl.read_csv(src / "observations.csv", infer_schema=False)
    obs_all.with_columns(
        pl.when(pl.col("CODE") == "8480-6").then(pl.lit("150.0")).otherwise(pl.col("VALUE")).alias("VALUE")
    ).write_csv(tmp_path / "AB" / "observations.csv")

    inc = tmp_path / "inc"
    run([tmp_path / "A"], inc)
    incremental, summary = run([tmp_path / "B"], inc, incremental=True)
    combined, _ = run([tmp_path / "AB"], tmp_path / "combined")
    cols = incremental.columns
    assert incremental.sort(cols).equals(combined.sort(cols))
    assert by_code(incremental, "LOINC/8480-6")["numeric_value"].to_list() == [150.0]
    assert by_code(incremental, "MEDS_DEATH").height == 1
    assert "duplicate record (same type and id)" not in summary["skipped_reasons"]
    meta = json.loads((inc / "metadata" / "dataset.json").read_text())
    assert len(meta["ehr_risk"]["loads"]) == 2


def test_damaged_files_are_named_counted_and_the_run_goes_on(tmp_path: Path) -> None:
    import gzip

    src = tmp_path / "export"
    shutil.copytree(FIXTURES / "synthea_current", src)
    data = gzip.compress((src / "procedures.csv").read_bytes())
    (src / "procedures.csv").unlink()
    (src / "procedures.csv.gz").write_bytes(data[: len(data) // 2])  # truncated
    bad_text = tmp_path / "latin1.csv"
    bad_text.write_bytes("subject_id,time,code\nJos\xe9,2020-01-01,LOINC/8480-6\n".encode("latin-1"))
    messages: list[str] = []
    summary = ingest([src, bad_text], tmp_path / "out", IngestOptions(), message=messages.append)
    assert summary.files_failed == 2
    errors = [m for m in messages if m.startswith("error:")]
    assert len(errors) == 2
    assert "procedures.csv.gz: " in errors[0] and "(truncated or corrupt gzip)" in errors[0]
    assert "latin1.csv" in errors[1] and "not UTF-8 text" in errors[1] and "Jos" not in errors[1]
    events = pl.read_parquet(tmp_path / "out" / "events" / "*.parquet")
    assert by_code(events, "LOINC/8480-6")["numeric_value"].to_list() == [142.0]  # the rest was read
    assert summary.totals()["read"] == sum(summary.totals()[k] for k in ("converted", "skipped", "rejected"))
