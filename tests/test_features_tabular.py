"""TabularFeaturizer: layout fitted on training times, window counts, last values, sparse export."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from featuredata import prediction_times, random_events, write_codelists

from ehr_risk.errors import ConfigError
from ehr_risk.features import TabularFeaturizer
from ehr_risk.features.codelists import load_codelist
from ehr_risk.tables import read_table, write_table

D = dt.datetime
T = D(2020, 1, 1)


@pytest.fixture()
def lists(tmp_path: Path) -> Path:
    return write_codelists(tmp_path / "codelists")


def _events() -> pl.DataFrame:
    rows = [
        (1, None, "GENDER/female", None, None),
        (1, D(1960, 1, 1), "MEDS_BIRTH", None, None),
        (1, D(2019, 12, 20), "LOINC/2093-3", 180.0, None),  # 12 days before t
        (1, D(2019, 3, 1), "LOINC/2093-3", 220.0, None),
        (1, D(2012, 1, 1), "LOINC/2093-3", 250.0, None),
        (1, D(2019, 5, 1), "SNOMED/59621000", None, None),
        (1, D(2018, 1, 1), "LOINC/72166-2", None, "SNOMED/8517006"),
        (1, D(2021, 1, 1), "SNOMED/59621000", None, None),  # after t
        (2, None, "GENDER/male", None, None),
        (2, D(1970, 1, 1), "MEDS_BIRTH", None, None),
        (2, D(2019, 1, 1), "SNOMED/59621000", None, None),
        (2, D(2019, 1, 1), "LOINC/72166-2", None, "free text answer"),  # not a coded answer
        (3, D(2019, 1, 1), "SNOMED/22298006", None, None),  # held-out subject only
        (3, D(2019, 2, 1), "SNOMED/22298006", None, None),
        (3, D(2019, 3, 1), "SNOMED/22298006", None, None),
    ]
    return pl.DataFrame(
        rows,
        schema={
            "subject_id": pl.Int64,
            "time": pl.Datetime("us"),
            "code": pl.String,
            "numeric_value": pl.Float32,
            "text_value": pl.String,
        },
        orient="row",
    )


TRAIN = pl.DataFrame({"subject_id": [1, 2], "prediction_time": [T, T]})


def test_layout_is_fitted_on_training_times_only(lists: Path) -> None:
    fz = TabularFeaturizer(top_k=10, windows_days=(30, 365, None), codelist_dir=lists).fit(_events(), TRAIN)
    names = fz.feature_names_
    assert names[:2] == ["age_years", "history_days"]
    assert {"static:GENDER/female", "static:GENDER/male"} <= set(names)
    # ranked by training subjects: the hypertension code (2 subjects) before cholesterol (1)
    assert fz.codes_[0] == "SNOMED/59621000"
    assert "LOINC/72166-2=SNOMED/8517006" in fz.codes_  # coded answer → its own key
    assert not any("free text" in n for n in names)  # free text never becomes a key
    assert not any("22298006" in n for n in names)  # seen only in a held-out subject
    assert "code:LOINC/2093-3:last_value" in names and "code:SNOMED/59621000:last_value" not in names
    assert "clin:systolic_bp_mm_hg" in names and "clin:diabetes" in names
    assert len(names) == len(set(names))


def test_window_counts_last_values_and_demographics(lists: Path) -> None:
    fz = TabularFeaturizer(top_k=10, windows_days=(30, 365, None), codelist_dir=lists).fit(_events(), TRAIN)
    times = pl.DataFrame({"subject_id": [2, 1, 3], "prediction_time": [T, T, T]})
    out = fz.transform(_events(), times)
    assert out.columns == ["subject_id", "prediction_time", *fz.feature_names_]
    assert out["subject_id"].to_list() == [2, 1, 3]
    assert all(out.schema[c] == pl.Float32 for c in fz.feature_names_)
    one = out.row(1, named=True)
    assert one["code:LOINC/2093-3:count_30d"] == 1
    assert one["code:LOINC/2093-3:count_365d"] == 2
    assert one["code:LOINC/2093-3:count_all"] == 3
    assert one["code:LOINC/2093-3:last_value"] == pytest.approx(180)
    assert one["code:LOINC/2093-3:last_value_age_days"] == pytest.approx(12)
    assert one["code:SNOMED/59621000:count_all"] == 1  # the 2021 record is not visible
    assert one["events:count_all"] == 5
    assert one["history_days"] == pytest.approx((T - D(2012, 1, 1)).days)
    assert one["age_years"] == pytest.approx((T - D(1960, 1, 1)).days / 365.25, rel=1e-6)
    assert (one["static:GENDER/female"], one["static:GENDER/male"]) == (1, 0)
    assert one["clin:total_cholesterol_mg_dl"] == pytest.approx(180)
    assert one["clin:current_smoker"] == 0
    three = out.row(2, named=True)
    assert three["code:LOINC/2093-3:last_value"] is None and three["code:LOINC/2093-3:count_all"] == 0
    assert three["age_years"] is None  # no birth date
    assert three["events:count_all"] == 3


def test_sparse_exports_match_the_dense_table(lists: Path) -> None:
    events = random_events(60, seed=3)
    times = prediction_times(events)
    fz = TabularFeaturizer(top_k=15, codelist_dir=lists).fit(events, times.filter(pl.col("subject_id") <= 40))
    dense = fz.transform(events, times).select(fz.feature_names_).to_numpy()
    direct = fz.transform_sparse(events, times)
    assert direct.shape == dense.shape
    np.testing.assert_array_equal(direct.toarray(), dense)  # NaN == NaN under assert_array_equal
    converted = fz.to_sparse(fz.transform(events, times))
    np.testing.assert_array_equal(converted.toarray(), dense)
    assert direct.nnz < dense.size  # zero counts are not stored


def test_written_through_the_schema(lists: Path, tmp_path: Path) -> None:
    fz = TabularFeaturizer(top_k=5, codelist_dir=lists).fit(_events(), TRAIN)
    out = fz.transform(_events(), TRAIN)
    path = write_table(out.to_arrow(), tmp_path / "tabular.parquet", "features_tabular")
    back = read_table(path, "features_tabular")
    assert back.column_names == out.columns


def test_top_k_zero_and_no_clinical(lists: Path) -> None:
    fz = TabularFeaturizer(top_k=0, include_clinical=False, windows_days=(None,)).fit(_events(), TRAIN)
    assert fz.feature_names_ == [
        "age_years",
        "history_days",
        "static:GENDER/female",
        "static:GENDER/male",
        "events:count_all",
    ]
    assert fz.transform(_events(), TRAIN)["events:count_all"].to_list() == [5, 2]


def test_errors() -> None:
    with pytest.raises(ConfigError, match="fit"):
        TabularFeaturizer().transform(_events(), TRAIN)
    with pytest.raises(ConfigError, match="top_k"):
        TabularFeaturizer(top_k=-1).fit(_events(), TRAIN)
    for windows in [(), (365, 365), (0, None)]:
        with pytest.raises(ConfigError, match="windows_days"):
            TabularFeaturizer(windows_days=windows).fit(_events(), TRAIN)


def test_project_codelists_load() -> None:
    """The clinician-reviewed lists the features read by default are present and parse."""
    for name in ("bp_medications", "statins", "diabetes_medications", "diabetes"):
        codes = load_codelist(name)
        assert len(codes) > 0
        assert all(c.split("/", 1)[0] in {"RxNorm", "SNOMED"} for c in codes.exact)


def test_precomputed_clinical_table_and_pickling(lists: Path) -> None:
    import pickle

    from sklearn.base import clone

    from ehr_risk.features import clinical_variables

    events = random_events(40, seed=4)
    times = prediction_times(events)
    fz = TabularFeaturizer(top_k=10, codelist_dir=lists).fit(events, times)
    clinical = clinical_variables(events, times, codelist_dir=lists)
    assert fz.transform(events, times, clinical=clinical).equals(fz.transform(events, times))
    with pytest.raises(ConfigError, match="does not match"):
        fz.transform(events, times, clinical=clinical.head(3))
    again = pickle.loads(pickle.dumps(fz))
    assert again.transform(events, times).equals(fz.transform(events, times))
    assert clone(fz).get_params()["top_k"] == 10


def test_empty_inputs(lists: Path) -> None:
    events = random_events(10, seed=1)
    times = prediction_times(events)
    fz = TabularFeaturizer(codelist_dir=lists).fit(events, times)
    assert fz.transform(events, times.head(0)).shape == (0, 2 + len(fz.feature_names_))
    assert fz.transform_sparse(events, times.head(0)).shape == (0, len(fz.feature_names_))
    no_events = fz.transform(events.head(0), times)
    assert no_events.height == times.height
    assert (no_events["events:count_all"] == 0).all() and no_events["age_years"].is_null().all()


def test_trend_features_give_the_spread_and_slope_of_a_numeric_history(lists: Path) -> None:
    sbp = [(D(2012, 6, 1), 90.0), (D(2016, 1, 1), 120.0), (D(2017, 3, 1), 150.0), (D(2018, 7, 1), 128.0)]
    sbp += [(D(2019, 11, 1), 141.0), (D(2020, 6, 1), 200.0)]  # older than 5 years / after t: never counted
    rows = [(1, t, "LOINC/8480-6", v) for t, v in sbp] + [(2, D(2019, 1, 1), "LOINC/8480-6", 130.0)]
    rows += [(3, D(2018, 1, 1), "LOINC/8480-6", 120.0), (3, D(2019, 1, 1), "LOINC/8480-6", 150.0)]
    events = pl.DataFrame(
        rows, schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                      "numeric_value": pl.Float32}, orient="row",
    )  # fmt: skip
    times = pl.DataFrame({"subject_id": [1, 2, 3], "prediction_time": [T, T, T]})
    fz = TabularFeaturizer(top_k=5, windows_days=(365,), codelist_dir=lists).fit(events, times)
    out = fz.transform(events, times)
    sd, slope = "code:LOINC/8480-6:sd_1825d", "code:LOINC/8480-6:slope_1825d"
    assert {sd, slope} <= set(fz.feature_names_)
    seen = [(t, v) for t, v in sbp if D(2015, 1, 2) <= t <= T]  # within 1,825 days before t
    years = np.array([(t - T).days / 365.25 for t, _ in seen])
    values = np.array([v for _, v in seen])
    one, two, three = out.rows(named=True)
    assert one[sd] == pytest.approx(values.std(ddof=1), rel=1e-5)
    assert one[slope] == pytest.approx(np.polyfit(years, values, 1)[0], rel=1e-4)
    assert two[sd] is None and two[slope] is None  # one value: no spread, no trend
    assert three[sd] == pytest.approx(np.std([120.0, 150.0], ddof=1)) and three[slope] is None  # 2 values
    off = TabularFeaturizer(top_k=5, windows_days=(365,), codelist_dir=lists, trend_days=None).fit(
        events, times
    )
    assert not any(":sd_" in n or ":slope_" in n for n in off.feature_names_)
