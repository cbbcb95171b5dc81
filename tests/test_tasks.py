"""Task files and code lists: the shipped ones load; bad files fail with a clear ConfigError."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

from ehr_risk.errors import ConfigError
from ehr_risk.features.codelists import CODELIST_DIR
from ehr_risk.tasks import PeriodicTimes, Task, available_tasks, label_column, load_task

SHIPPED = ["ascvd_10y", "heart_failure_5y", "t2d_5y", "ckd_5y"]
SHARED_LISTS = ["bp_medications", "statins", "diabetes_medications", "diabetes", "hypertension", "ascvd",
                "heart_failure", "ckd", "t2d", "atrial_fibrillation"]  # fmt: skip
MINIMAL = """
prediction_times: {type: landmark, dates: [2010-01-01]}
horizons_years: [5]
outcome: {codes: [SNOMED/22298006]}
"""


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_tasks_load(name: str) -> None:
    task = load_task(name)
    assert task.name == name
    assert task.primary_horizon in task.horizons_years
    assert len(task.outcome_codes) > 0
    assert name.endswith(f"_{task.primary_horizon:g}y")
    assert task.exclude_prior_outcome


def test_available_tasks_lists_the_shipped_ones() -> None:
    assert set(SHIPPED) <= set(available_tasks())


def test_load_by_path_and_name_default(tmp_path: Path) -> None:
    path = tmp_path / "my_task.yaml"
    path.write_text(MINIMAL)
    task = load_task(path)
    assert task.name == "my_task" and task.primary_horizon == 5
    assert task.population.lookback_days == 365 and task.censoring.competing_death


@pytest.mark.parametrize(
    "text, message",
    [
        (MINIMAL + "unknown_field: 1\n", "unknown_field"),
        (MINIMAL.replace("[5]", "[5]\nprimary_horizon_years: 10"), "primary_horizon_years"),
        (MINIMAL + "population: {min_age_years: 80, max_age_years: 40}\n", "max_age_years"),
        (MINIMAL.replace("landmark", "weekly"), "prediction_times"),
        (MINIMAL.replace("{codes: [SNOMED/22298006]}", "{codelists: [no_such_list]}"), "no_such_list"),
        ("horizons_years: [5\n", "invalid YAML"),
        ("- a list\n", "mapping"),
    ],
)
def test_bad_task_files_raise_config_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_task(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_unknown_task_name_lists_shipped_tasks() -> None:
    with pytest.raises(ConfigError, match="ascvd_10y"):
        load_task("no_such_task")


def test_tasks_are_frozen() -> None:
    task = load_task("ascvd_10y")
    with pytest.raises(ValidationError):
        task.population.min_age_years = 10


def test_periodic_dates_include_end_and_handle_leap_days() -> None:
    spec = PeriodicTimes(type="periodic", start=dt.date(2004, 2, 29), end=dt.date(2012, 2, 29), every_years=2)
    years = [2004, 2006, 2008, 2010, 2012]
    assert spec.dates == [dt.date(y, 2, 29 if y % 4 == 0 else 28) for y in years]


def test_label_column_names() -> None:
    assert label_column(10) == "label_10y" and label_column(2.5) == "label_2.5y"


def test_round_trip_through_model_dump() -> None:
    task = load_task("t2d_5y")
    assert Task.model_validate(task.model_dump()) == task


@pytest.mark.parametrize("path", sorted(CODELIST_DIR.glob("*.csv")), ids=lambda p: p.stem)
def test_codelist_files_are_well_formed(path: Path) -> None:
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0] == ["code", "system", "term"]
    body = rows[1:]
    assert body, "empty list"
    assert all(len(r) == 3 and r[0].strip() and r[2].strip() for r in body)
    assert len({(r[0], r[1]) for r in body}) == len(body), "duplicate codes"
    assert {r[1] for r in body} <= {"SNOMED", "ICD10CM", "ICD9CM", "ICD10", "RxNorm"}


def test_shared_codelists_exist_and_hold_key_codes() -> None:
    for name in SHARED_LISTS:
        assert (CODELIST_DIR / f"{name}.csv").exists(), name

    def codes(name: str) -> set[str]:
        return {r[0] for r in csv.reader((CODELIST_DIR / f"{name}.csv").read_text().splitlines()[1:])}

    assert {"314076", "197361", "310798", "29046", "17767"} <= codes("bp_medications")
    assert {"617312", "259255", "312961", "83367", "36567"} <= codes("statins")
    assert {"860975", "6809"} <= codes("diabetes_medications")
    assert {"E11", "44054006"} <= codes("diabetes")
    assert {"22298006", "I21", "I63", "410"} <= codes("ascvd")


@pytest.mark.parametrize("name", SHIPPED)
def test_outcome_lists_cover_snomed_icd10cm_and_icd9cm(name: str) -> None:
    """Every shipped outcome is findable in SNOMED-coded and in ICD-10-CM/ICD-9-CM-coded (legacy) data."""
    task = load_task(name)
    systems: set[str] = set()
    for path in (CODELIST_DIR / f"{n}.csv" for n in task.outcome.codelists):
        systems |= {row["system"] for row in csv.DictReader(path.read_text().splitlines())}
    assert {"SNOMED", "ICD10CM", "ICD9CM"} <= systems
    codes = task.outcome_codes
    assert {c.split("/")[0] for c in codes.exact | codes.icd_prefixes} >= {"SNOMED", "ICD10CM", "ICD9CM"}


def test_codelist_sources_are_documented() -> None:
    """The code-list README names every list and the sources of each vocabulary."""
    readme = (CODELIST_DIR / "README.md").read_text()
    for path in CODELIST_DIR.glob("*.csv"):
        assert f"`{path.name}`" in readme, path.name
    for source in ("ICD-10-CM", "ICD-9-CM", "SNOMED CT", "RxNorm", "VSAC"):
        assert source in readme


def test_training_only_times_of_tasks(tmp_path: Path) -> None:
    from ehr_risk.tasks import training_only_times

    path = tmp_path / "stacked.yaml"
    dates = "dates: [2010-01-01], training_dates: [2008-01-01, 2010-01-01, 2012-01-01]"
    path.write_text(MINIMAL.replace("dates: [2010-01-01]", dates))
    stacked = load_task(path)
    assert stacked.training_only_times == [dt.datetime(2008, 1, 1), dt.datetime(2012, 1, 1)]
    assert load_task("ascvd_10y").training_only_times == []
    other = tmp_path / "other.yaml"  # 2012 is a regular landmark of another task: not training-only
    other.write_text(MINIMAL.replace("2010-01-01", "2012-01-01"))
    assert training_only_times([stacked, load_task(other)]) == [dt.datetime(2008, 1, 1)]
    periodic = tmp_path / "periodic.yaml"
    spec = "{type: periodic, start: 2010-01-01, end: 2012-01-01, every_years: 1, training_dates: []}"
    periodic.write_text(MINIMAL.replace("{type: landmark, dates: [2010-01-01]}", spec))
    with pytest.raises(ConfigError, match="training_dates"):
        load_task(periodic)
