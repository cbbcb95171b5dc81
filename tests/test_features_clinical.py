"""The named clinical variables (ehr_risk.features.clinical) on hand-made records."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from featuredata import write_codelists

from ehr_risk.errors import ConfigError
from ehr_risk.events import EVENT_DTYPES
from ehr_risk.features.clinical import COLUMNS, clinical_variables, clinical_variables_with_quality
from ehr_risk.features.codelists import CodeList, load_codelist
from ehr_risk.tables import read_table, write_table

D = dt.datetime
T = D(2020, 1, 1)
SCHEMA = {c: t for c, t in EVENT_DTYPES.items() if c not in ("resource_type", "record_id")}


def events(*rows: dict[str, Any]) -> pl.DataFrame:
    base = [
        {"subject_id": 1, "time": None, "code": "GENDER/female"},
        {"subject_id": 1, "time": None, "code": "RACE/2054-5"},
        {"subject_id": 1, "time": D(1960, 1, 1), "code": "MEDS_BIRTH"},
        {"subject_id": 1, "time": D(2015, 1, 1), "code": "ENCOUNTER/AMB"},
    ]
    return pl.DataFrame([{k: r.get(k) for k in SCHEMA} for r in [*base, *rows]], schema=SCHEMA)


def ev(time: D, code: str, value: float | None = None, unit: str | None = None, **kw: Any) -> dict[str, Any]:
    return {"subject_id": 1, "time": time, "code": code, "numeric_value": value, "unit": unit, **kw}


@pytest.fixture()
def lists(tmp_path: Path) -> Path:
    return write_codelists(tmp_path / "codelists")


def one(frame: pl.DataFrame, t: D, lists: Path, **kw: Any) -> dict[str, Any]:
    times = pl.DataFrame({"subject_id": [1], "prediction_time": [t]})
    return clinical_variables(frame, times, codelist_dir=lists, **kw).row(0, named=True)


def test_demographics_and_columns(lists: Path) -> None:
    row = one(events(), T, lists)
    assert list(row) == list(COLUMNS)
    assert row["sex"] == "female" and row["race"] == "black"
    assert row["age_years"] == pytest.approx((T - D(1960, 1, 1)).days / 365.25)


@pytest.mark.parametrize(
    ("codes", "race"),
    [
        (["RACE/2106-3"], "white"),
        (["RACE/2028-9"], "other"),
        (["RACE/2106-3", "RACE/2054-5"], "other"),
        (["RACE/2106-3", "RACE/2135-2"], "white"),  # an ethnicity code in a race field is ignored
        (["RACE/2135-2"], None),
        ([], None),
    ],
)
def test_race_mapping(lists: Path, codes: list[str], race: str | None) -> None:
    frame = events().filter(~pl.col("code").str.starts_with("RACE/"))
    extra = pl.DataFrame(
        [{k: {"subject_id": 1, "code": c}.get(k) for k in SCHEMA} for c in codes], schema=SCHEMA
    )
    assert one(pl.concat([frame, extra]), T, lists)["race"] == race


def test_latest_value_in_window_with_its_age(lists: Path) -> None:
    frame = events(
        ev(D(2017, 1, 1), "LOINC/2093-3", 250, "mg/dL"),  # older than 2 years: outside the window
        ev(D(2018, 6, 1), "LOINC/2093-3", 210, "mg/dL"),
        ev(D(2019, 6, 1), "LOINC/2093-3", 190, "mg/dL"),
        ev(D(2019, 12, 1), "LOINC/8480-6", 130, "mm[Hg]"),
        ev(D(2019, 12, 1), "LOINC/8480-6", 140, "mm[Hg]"),  # same time: averaged
        ev(D(2018, 6, 1), "LOINC/8462-4", 90, "mm[Hg]"),  # DBP older than 1 year
    )
    row = one(frame, T, lists)
    assert row["total_cholesterol_mg_dl"] == pytest.approx(190)
    assert row["total_cholesterol_mg_dl_age_days"] == pytest.approx((T - D(2019, 6, 1)).days)
    assert row["systolic_bp_mm_hg"] == pytest.approx(135)
    assert row["diastolic_bp_mm_hg"] is None
    assert row["hdl_mg_dl"] is None and row["hdl_mg_dl_age_days"] is None
    assert one(frame, D(2018, 7, 1), lists)["total_cholesterol_mg_dl"] == pytest.approx(210)
    wider = one(frame, T, lists, lookback_days={"diastolic_bp_mm_hg": 730})
    assert wider["diastolic_bp_mm_hg"] == pytest.approx(90)


def test_wrong_unit_and_implausible_values_are_ignored_and_counted(lists: Path) -> None:
    frame = events(
        ev(D(2019, 1, 1), "LOINC/2085-9", 55, "mg/dL"),
        ev(D(2019, 6, 1), "LOINC/2085-9", 1.3, "mmol/L"),  # not the canonical unit
        ev(D(2019, 7, 1), "LOINC/2085-9", 900, "mg/dL"),  # implausible
        ev(D(2019, 8, 1), "LOINC/39156-5", 31.5, None),  # no unit: trusted (ingest converted it)
        ev(D(2019, 9, 1), "LOINC/8480-6", 121, "mm Hg"),  # spelling differences are not unit errors
    )
    times = pl.DataFrame({"subject_id": [1], "prediction_time": [T]})
    table, quality = clinical_variables_with_quality(frame, times, codelist_dir=lists)
    assert table["hdl_mg_dl"].item() == pytest.approx(55)
    assert table["bmi_kg_m2"].item() == pytest.approx(31.5)
    assert table["systolic_bp_mm_hg"].item() == pytest.approx(121)
    assert quality["hdl_mg_dl"] == {"unit": 1, "implausible": 1}
    assert quality["total_cholesterol_mg_dl"] == {"unit": 0, "implausible": 0}


def test_recorded_after_t_is_invisible(lists: Path) -> None:
    frame = events(ev(D(2019, 6, 1), "LOINC/4548-4", 7.1, "%", recorded_time=D(2020, 2, 1)))
    assert one(frame, T, lists)["hba1c_pct"] is None
    assert one(frame, D(2020, 3, 1), lists)["hba1c_pct"] == pytest.approx(7.1, rel=1e-6)


def test_medication_flags(lists: Path) -> None:
    frame = events(
        ev(D(2019, 3, 1), "RxNorm/314076"),  # BP drug within a year
        ev(D(2016, 1, 1), "RxNorm/617312"),  # statin long ago ...
    )
    row = one(frame, T, lists)
    assert (row["on_bp_treatment"], row["on_statin"]) == (1, 0)
    ongoing = events(ev(D(2016, 1, 1), "RxNorm/617312", end_time=D(2021, 1, 1)))  # ... unless still ongoing
    assert one(ongoing, T, lists)["on_statin"] == 1
    stopped = events(ev(D(2016, 1, 1), "RxNorm/617312", end_time=D(2017, 1, 1)))
    assert one(stopped, T, lists)["on_statin"] == 0
    assert one(frame, D(2021, 6, 1), lists)["on_bp_treatment"] == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("SNOMED/449868002", 1), ("SNOMED/77176002", 1), ("SNOMED/8517006", 0), ("SNOMED/266919005", 0)],
)
def test_smoking_status(lists: Path, text: str, expected: int) -> None:
    frame = events(
        ev(D(2016, 1, 1), "LOINC/72166-2", text_value="SNOMED/449868002"),
        ev(D(2019, 1, 1), "LOINC/72166-2", text_value=text),
    )
    assert one(frame, T, lists)["current_smoker"] == expected


def test_smoking_unknown_when_not_recorded_or_too_old(lists: Path) -> None:
    assert one(events(), T, lists)["current_smoker"] is None
    old = events(ev(D(2010, 1, 1), "LOINC/72166-2", text_value="SNOMED/449868002"))
    assert one(old, T, lists)["current_smoker"] is None
    unknown_answer = events(ev(D(2019, 1, 1), "LOINC/72166-2", text_value="SNOMED/266927001"))
    assert one(unknown_answer, T, lists)["current_smoker"] is None


@pytest.mark.parametrize(
    "rows",
    [
        [ev(D(2005, 1, 1), "SNOMED/44054006")],  # diagnosis, any time before t
        [ev(D(2018, 1, 1), "ICD10CM/E11.65")],  # ICD descendant of a listed category
        [ev(D(2019, 1, 1), "LOINC/4548-4", 6.5, "%")],
        [ev(D(2019, 1, 1), "LOINC/1558-6", 130, "mg/dL")],  # fasting glucose
        [ev(D(2019, 5, 1), "RxNorm/860975")],  # diabetes drug within a year
    ],
)
def test_diabetes_criteria(lists: Path, rows: list[dict[str, Any]]) -> None:
    assert one(events(*rows), T, lists)["diabetes"] == 1


def test_not_diabetes(lists: Path) -> None:
    frame = events(
        ev(D(2019, 1, 1), "LOINC/4548-4", 6.4, "%"),
        ev(D(2019, 1, 1), "LOINC/2339-0", 180, "mg/dL"),  # random (not fasting) glucose
        ev(D(2015, 5, 1), "RxNorm/860975"),  # drug long ago
        ev(D(2021, 1, 1), "SNOMED/44054006"),  # diagnosed after t
    )
    assert one(frame, T, lists)["diabetes"] == 0


def test_flags_unknown_without_any_record(lists: Path) -> None:
    row = one(events(), D(2014, 1, 1), lists)  # only demographics visible yet
    assert [row[f] for f in ("on_bp_treatment", "on_statin", "current_smoker", "diabetes")] == [None] * 4
    assert row["sex"] == "female" and row["age_years"] is not None


def test_row_order_duplicates_and_unknown_subjects(lists: Path) -> None:
    frame = events(ev(D(2019, 6, 1), "LOINC/2093-3", 190, "mg/dL"))
    times = pl.DataFrame({"subject_id": [9, 1, 1], "prediction_time": [T, T, D(2019, 1, 1)]})
    table = clinical_variables(frame, times, codelist_dir=lists)
    assert table["subject_id"].to_list() == [9, 1, 1]
    assert table["total_cholesterol_mg_dl"].to_list()[1] == pytest.approx(190)
    assert table["total_cholesterol_mg_dl"].to_list()[2] is None
    assert table.row(0, named=True)["sex"] is None


def test_written_through_the_schema(lists: Path, tmp_path: Path) -> None:
    times = pl.DataFrame({"subject_id": [1], "prediction_time": [T]})
    table = clinical_variables(events(), times, codelist_dir=lists)
    write_table(table.to_arrow(), tmp_path / "clinical.parquet", "features_clinical")
    assert read_table(tmp_path / "clinical.parquet", "features_clinical").num_rows == 1


def test_config_errors(lists: Path, tmp_path: Path) -> None:
    times = pl.DataFrame({"subject_id": [1], "prediction_time": [T]})
    with pytest.raises(ConfigError, match="unknown variable"):
        clinical_variables(events(), times, {"cholesterol": 30}, codelist_dir=lists)
    with pytest.raises(ConfigError, match=">= 0"):
        clinical_variables(events(), times, {"smoking": -1}, codelist_dir=lists)
    with pytest.raises(ConfigError, match="not found"):
        clinical_variables(events(), times, codelist_dir=tmp_path / "nowhere")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "statins.csv").write_text("code,system,term\n123,NOPE,x\n")
    with pytest.raises(ConfigError, match="unknown code system"):
        load_codelist("statins", bad)


def test_codelist_matching() -> None:
    frame = pl.DataFrame(
        {"code": ["ICD10CM/E11.9", "ICD10CM/E1", "ICD9CM/250.00", "SNOMED/44054006", "SNOMED/4405"]}
    )
    codes = CodeList.of("dm", ["ICD10CM/E11", "ICD9CM/250", "SNOMED/44054006"])
    assert frame.select(codes.expr())["code"].to_list() == [True, False, True, True, False]
