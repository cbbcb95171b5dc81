"""Mapped cohort CSV (`--mapping FILE.yaml`): the pydantic mapping, its JSON schema, rows → events,
rejects, and the shipped Framingham TenYearCHD mapping end to end."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from ehr_risk.errors import ConfigError, InputDataError
from ehr_risk.ingest.csv_mapping import CohortMapping, json_schema, load_mapping
from ehr_risk.ingest.run import IngestOptions, ingest

REPO = Path(__file__).resolve().parent.parent
COHORT = Path(__file__).parent / "fixtures" / "csv" / "cohort"
FRAMINGHAM_MAPPING = REPO / "pipelines" / "mappings" / "framingham_tenyearchd.yaml"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EHR_RISK_ID_KEY", "csv-test-key-0123456789")


def run(csv: Path, mapping: Path, out: Path) -> tuple[pl.DataFrame, dict]:
    ingest([csv], out, IngestOptions(mapping=mapping))
    return pl.read_parquet(out / "events" / "*.parquet"), json.loads((out / "summary.json").read_text())


def test_json_schema_file_is_in_sync() -> None:
    on_disk = json.loads((REPO / "data_schemas" / "cohort_mapping.schema.json").read_text())
    assert on_disk == json_schema()


def test_mapping_validation_errors_name_the_problem(tmp_path: Path) -> None:
    good = yaml.safe_load((COHORT / "mapping.yaml").read_text())
    assert isinstance(load_mapping(COHORT / "mapping.yaml"), CohortMapping)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"columns": {"sbp": {"type": "numeric", "code": "FOO/1"}}}, "not VOCAB/code"),
        ({"columns": {"sbp": {"type": "numeric"}}}, "needs a `code`"),
        ({"columns": {"sex": {"type": "categorical"}}}, "needs `values`"),
        ({"time": {"column": "visit_date", "static": True}}, "exactly one of"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ]
    for patch, message in cases:
        doc = {**good, **patch}
        path = tmp_path / "m.yaml"
        path.write_text(yaml.safe_dump(doc))
        with pytest.raises(ConfigError, match=message):
            load_mapping(path)


def test_cohort_rows_to_events_and_rejects(tmp_path: Path) -> None:
    out = tmp_path / "out"
    events, summary = run(COHORT / "cohort.csv", COHORT / "mapping.yaml", out)
    assert summary["by_resource_type"]["CohortRow"] == {
        "read": 7,
        "converted": 2,
        "skipped": 0,
        "rejected": 5,
    }
    rejects = pl.read_parquet(out / "rejects" / "*.parquet").sort("position")
    assert rejects.select("position", "reason").rows() == [
        ("line 4", "negative age in age"),
        ("line 5", "implausible value for LOINC/8480-6 (outside 40-300 mm[Hg])"),
        ("line 6", "unexpected value in sex"),
        ("line 7", "unparseable date in visit_date"),
        ("line 8", "unexpected value in smoker"),
    ]
    # no patient value in the summary: reasons only
    assert "A3" not in (out / "summary.json").read_text()
    rows = {
        (
            r["code"],
            r["time"],
            None if r["numeric_value"] is None else round(r["numeric_value"], 3),
            r["text_value"],
        )
        for r in events.iter_rows(named=True)
    }
    expected = {
        # A1: visit 2010-03-01, age 50, smoker, no diabetes (negative event), no MI (no event)
        ("GENDER/female", None, None, None),
        ("MEDS_BIRTH", datetime(1960, 3, 1), None, None),
        ("LOINC/8480-6", datetime(2010, 3, 1), 120.0, None),
        ("LOINC/2093-3", datetime(2010, 3, 1), round(5.0 * 38.67, 3), None),
        ("LOINC/72166-2", datetime(2010, 3, 1), None, "SNOMED/449868002"),
        ("SNOMED/73211009", datetime(2010, 3, 1), 0.0, None),
        ("ENCOUNTER/AMB", datetime(2011, 3, 1), None, None),
        # A2: US date, cholesterol NA (no event, not zero), diabetes, MI 2.5 years after the visit
        ("GENDER/male", None, None, None),
        ("MEDS_BIRTH", datetime(1950, 3, 15), None, None),
        ("LOINC/8480-6", datetime(2011, 3, 15), 135.0, None),
        ("LOINC/72166-2", datetime(2011, 3, 15), None, "SNOMED/8392000"),
        ("SNOMED/73211009", datetime(2011, 3, 15), 1.0, None),
        ("SNOMED/22298006", datetime(2013, 9, 13, 15), None, None),
        ("ENCOUNTER/AMB", datetime(2012, 3, 15), None, None),
    }
    assert len(rows) == events.height == len(expected)
    assert rows == expected
    assert events.filter(pl.col("code") == "LOINC/2093-3").height == 1
    assert events["subject_id"].n_unique() == 2


def test_columns_must_be_mapped_or_ignored(tmp_path: Path) -> None:
    doc = yaml.safe_load((COHORT / "mapping.yaml").read_text())
    doc["ignore"] = []
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(InputDataError, match=r"column\(s\) note are neither mapped nor listed in `ignore`"):
        run(COHORT / "cohort.csv", path, tmp_path / "out")
    doc["columns"]["weight"] = {"type": "numeric", "code": "LOINC/29463-7", "unit": "kg"}
    doc["ignore"] = ["note"]
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(InputDataError, match=r"column\(s\) weight named in .* are not in the file"):
        run(COHORT / "cohort.csv", path, tmp_path / "out")


@pytest.mark.shared_data
def test_framingham_mapping_end_to_end(shared_data: Path, tmp_path: Path) -> None:
    csv = shared_data / "framingham_tenyearchd" / "framingham.csv"
    raw = pl.read_csv(csv, null_values="NA")
    out = tmp_path / "fram"
    events, summary = run(csv, FRAMINGHAM_MAPPING, out)
    n = raw.height
    assert summary["read"] == n and summary["rejected"] == 0 and summary["converted"] == n
    assert events["subject_id"].n_unique() == n

    def count(code: str, **where: object) -> int:
        frame = events.filter(pl.col("code") == code)
        for column, value in where.items():
            frame = frame.filter(pl.col(column) == value)
        return frame.height

    # independent counts from the raw file
    assert count("SNOMED/414545008") == raw["TenYearCHD"].sum()
    assert count("GENDER/male") == raw["male"].sum() and count("GENDER/female") == n - raw["male"].sum()
    assert count("SNOMED/38341003") == raw["prevalentHyp"].sum()
    assert count("SNOMED/73211009") == raw["diabetes"].sum()
    assert count("ATC/C02") == raw["BPMeds"].sum()
    assert count("LOINC/72166-2", text_value="SNOMED/449868002") == raw["currentSmoker"].sum()
    for column, code in [("totChol", "LOINC/2093-3"), ("glucose", "LOINC/2345-7"), ("BMI", "LOINC/39156-5")]:
        assert count(code) == raw[column].drop_nulls().len()  # NA → no event, never zero
        values = events.filter(pl.col("code") == code)["numeric_value"]
        assert float(values.min()) > 0  # type: ignore[arg-type]
        assert values.sum() == pytest.approx(raw[column].sum(), rel=1e-5)
    # the reference-date policy: baseline 2000-01-01, birth = baseline − age, outcome at the window's end
    base = events.filter(pl.col("code") == "LOINC/8480-6")["time"].unique().to_list()
    assert base == [datetime(2000, 1, 1)]
    births = events.filter(pl.col("code") == "MEDS_BIRTH")["time"].dt.year()
    assert sorted(births.to_list()) == sorted((2000 - raw["age"]).to_list())
    chd = events.filter(pl.col("code") == "SNOMED/414545008")["time"].unique().to_list()
    assert chd == [datetime(2009, 12, 31)]
    follow = events.filter((pl.col("code") == "ENCOUNTER/AMB") & (pl.col("time") == datetime(2010, 1, 1)))
    assert follow.height == n
    # re-ingesting the same file with --incremental changes nothing
    ingest([csv], out, IngestOptions(mapping=FRAMINGHAM_MAPPING, incremental=True))
    again = pl.read_parquet(out / "events" / "*.parquet")
    assert again.sort(again.columns).equals(events.sort(events.columns))
