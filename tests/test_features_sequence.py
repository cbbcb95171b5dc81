"""SequenceFeaturizer: vocabulary and value bins from training times, the most recent L events."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from featuredata import prediction_times, random_events

from ehr_risk.errors import ConfigError
from ehr_risk.features import SequenceFeaturizer
from ehr_risk.features.sequence import PAD, PAD_TOKEN, UNK, UNK_TOKEN
from ehr_risk.tables import read_table, write_table

D = dt.datetime
T = D(2020, 1, 1)
SCHEMA = {"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String, "numeric_value": pl.Float32}


def _events() -> pl.DataFrame:
    rows: list[tuple[int, D | None, str, float | None]] = [
        (1, None, "GENDER/female", None),
        (1, D(1960, 1, 1), "MEDS_BIRTH", None),
        *[(1, D(2019, 1, 1 + i), "LOINC/8480-6", 100.0 + 10 * i) for i in range(10)],
        (1, D(2019, 2, 1), "SNOMED/59621000", None),
        (1, D(2021, 1, 1), "SNOMED/59621000", None),  # after t
        (2, None, "GENDER/male", None),
        (2, D(2019, 5, 1), "SNOMED/22298006", None),  # held-out subject only
        (2, D(2019, 6, 1), "LOINC/8480-6", 300.0),
    ]
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def test_vocabulary_from_training_times_only() -> None:
    fz = SequenceFeaturizer(min_count=1, n_value_bins=4).fit(
        _events(), pl.DataFrame({"subject_id": [1], "prediction_time": [T]})
    )
    assert fz.vocab_[PAD_TOKEN] == PAD and fz.vocab_[UNK_TOKEN] == UNK
    assert fz.vocab_["LOINC/8480-6"] == 2  # the most frequent key gets the first id
    assert "SNOMED/22298006" not in fz.vocab_  # held-out subject
    assert fz.n_tokens_ == len(fz.vocab_) == 6  # PAD, UNK, BP, birth, sex, hypertension
    assert fz.value_edges_["LOINC/8480-6"] == pytest.approx([122.5, 145.0, 167.5])  # quartiles of 100..190
    out = fz.transform(_events(), pl.DataFrame({"subject_id": [2], "prediction_time": [T]}))
    assert out["tokens"].to_list() == [
        [UNK, UNK, 2]
    ]  # GENDER/male and the MI code were never seen in training
    assert out["value_bin"].to_list() == [[0, 0, 4]]


def test_min_count_sends_rare_keys_to_unk() -> None:
    fz = SequenceFeaturizer(min_count=2).fit(
        _events(), pl.DataFrame({"subject_id": [1], "prediction_time": [T]})
    )
    assert set(fz.vocab_) == {PAD_TOKEN, UNK_TOKEN, "LOINC/8480-6"}


def test_most_recent_events_with_static_prefix_and_times() -> None:
    fz = SequenceFeaturizer(max_len=5, min_count=1, n_value_bins=4)
    fz.fit(_events(), pl.DataFrame({"subject_id": [1], "prediction_time": [T]}))
    row = fz.transform(_events(), pl.DataFrame({"subject_id": [1], "prediction_time": [T]})).row(
        0, named=True
    )
    v = fz.vocab_
    # sex and birth first (dated at birth), then the 3 most recent of the 11 timed events before t
    assert row["tokens"] == [
        v["GENDER/female"],
        v["MEDS_BIRTH"],
        v["LOINC/8480-6"],
        v["LOINC/8480-6"],
        v["SNOMED/59621000"],
    ]
    assert row["length"] == 5
    assert row["delta_days"][0] == pytest.approx((T - D(1960, 1, 1)).days)
    assert row["delta_days"][-1] == pytest.approx((T - D(2019, 2, 1)).days)
    assert row["delta_days"] == sorted(row["delta_days"], reverse=True)  # oldest → newest
    assert row["age_years"][0] == 0
    assert row["age_years"][-1] == pytest.approx((D(2019, 2, 1) - D(1960, 1, 1)).days / 365.25, rel=1e-5)
    assert row["value_bin"] == [0, 0, 4, 4, 0]  # 180 and 190 lie in the top quartile


def test_row_order_duplicates_empty_rows_and_input_order_independence() -> None:
    events = random_events(30, seed=5)
    times = prediction_times(events)
    fz = SequenceFeaturizer(max_len=16, min_count=2).fit(events, times)
    extra = pl.DataFrame({"subject_id": [999, 3, 3], "prediction_time": [T, T, T]})
    query = pl.concat([extra, times.reverse()])
    a = fz.transform(events, query)
    b = fz.transform(events.sample(fraction=1.0, shuffle=True, seed=1), query)
    assert a.equals(b)
    assert a["subject_id"].to_list()[:3] == [999, 3, 3]
    assert a.row(0, named=True)["length"] == 0 and a.row(0, named=True)["tokens"] == []
    assert a.row(1) == a.row(2)
    assert (a["length"] <= 16).all()
    assert (a["length"] == a["tokens"].list.len()).all()
    assert (a["delta_days"].explode().drop_nulls() >= 0).all()


def test_vocab_file_and_schema(tmp_path: Path) -> None:
    events = random_events(20, seed=2)
    times = prediction_times(events)
    fz = SequenceFeaturizer(min_count=3).fit(events, times)
    path = fz.save_vocab(tmp_path / "featurizers" / "vocab.json")
    assert json.loads(path.read_text()) == fz.vocab_
    out = fz.transform(events, times)
    written = write_table(out.to_arrow(), tmp_path / "sequence.parquet", "features_sequence")
    back = read_table(written, "features_sequence")
    assert back.num_rows == times.height
    assert str(back.schema.field("value_bin").type) == "list<item: int8>"


def test_errors() -> None:
    times = pl.DataFrame({"subject_id": [1], "prediction_time": [T]})
    with pytest.raises(ConfigError, match="fit"):
        SequenceFeaturizer().transform(_events(), times)
    for bad in ({"max_len": 0}, {"n_value_bins": 200}, {"min_count": 0}):
        with pytest.raises(ConfigError):
            SequenceFeaturizer(**bad).fit(_events(), times)


def test_pickled_featurizer_transforms_the_same() -> None:
    import pickle

    events = random_events(20, seed=6)
    times = prediction_times(events)
    fz = SequenceFeaturizer(max_len=32, min_count=2).fit(events, times)
    again = pickle.loads(pickle.dumps(fz))
    assert again.vocab_ == fz.vocab_
    assert again.transform(events, times).equals(fz.transform(events, times))
