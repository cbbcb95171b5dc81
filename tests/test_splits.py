"""Subject splits: disjoint, stable when subjects are added, fractions close to the configured ones."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ehr_risk.splits import (
    SPLITS,
    SplitConfig,
    assign_splits,
    keyed_uniform,
    split_summary,
    temporal_holdout,
    with_temporal_holdout,
)

IDS = st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), unique=True, max_size=200)


def test_every_subject_gets_exactly_one_split() -> None:
    ids = np.arange(10_000, dtype=np.int64) * 7919
    splits = assign_splits(ids, SplitConfig())
    assert splits.height == ids.size and splits["subject_id"].n_unique() == ids.size
    assert set(splits["split"].unique()) == set(SPLITS)
    groups = [set(splits.filter(pl.col("split") == s)["subject_id"]) for s in SPLITS]
    assert all(not (a & b) for i, a in enumerate(groups) for b in groups[i + 1 :])


@pytest.mark.parametrize("fractions", [(0.7, 0.15, 0.15), (0.8, 0.0, 0.2), (0.5, 0.25, 0.25)])
def test_fractions_close_to_configured(fractions: tuple[float, float, float]) -> None:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 2**62, 200_000, dtype=np.int64)
    config = SplitConfig(train=fractions[0], tuning=fractions[1], held_out=fractions[2])
    observed = split_summary(assign_splits(ids, config))
    for name, want in zip(SPLITS, fractions, strict=True):
        assert abs(observed[name] - want) < 0.005  # binomial sd at n=200k is ~0.001


@settings(max_examples=50, deadline=None)
@given(old=IDS, new=IDS)
def test_adding_subjects_never_moves_an_existing_one(old: list[int], new: list[int]) -> None:
    config = SplitConfig()
    before = assign_splits(np.array(old, dtype=np.int64), config)
    both = np.array(sorted(set(old) | set(new)), dtype=np.int64)
    after = assign_splits(both, config)
    joined = before.join(after, on="subject_id", how="left", suffix="_after")
    assert joined["split_after"].null_count() == 0
    assert (joined["split"] == joined["split_after"]).all()


def test_key_changes_assignment_and_is_deterministic() -> None:
    ids = np.arange(5_000, dtype=np.int64)
    a = assign_splits(ids, SplitConfig(key="a"))
    assert a.equals(assign_splits(ids, SplitConfig(key="a")))
    b = assign_splits(ids, SplitConfig(key="b"))
    assert int((a["split"] != b["split"]).sum()) > 0.3 * ids.size


def test_keyed_uniform_is_uniform() -> None:
    u = keyed_uniform(np.arange(100_000, dtype=np.int64), "k")
    assert u.min() >= 0 and u.max() < 1
    hist, _ = np.histogram(u, bins=10, range=(0, 1))
    assert np.all(np.abs(hist / u.size - 0.1) < 0.006)


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        SplitConfig(train=0.7, tuning=0.2, held_out=0.2)
    with pytest.raises(ValidationError):
        SplitConfig(train=0.7, tuning=0.15, held_out=0.15, unknown=1)  # type: ignore[call-arg]


def test_temporal_holdout_flags_late_arrivals() -> None:
    first = pl.DataFrame(
        {
            "first_time": [
                dt.datetime(2010, 1, 1),
                dt.datetime(2020, 1, 1),
                dt.datetime(2019, 12, 31, 23),
                None,
            ]
        }
    )
    assert temporal_holdout(first, dt.date(2020, 1, 1)).to_list() == [False, True, False, False]


def test_temporal_holdout_subjects_are_all_held_out() -> None:
    ids = np.arange(3_000, dtype=np.int64)
    hashed = assign_splits(ids, SplitConfig())
    flags = pl.Series([i % 3 == 0 for i in range(ids.size)])
    out = with_temporal_holdout(hashed, flags)
    assert out["subject_id"].equals(hashed["subject_id"])
    assert (out.filter(pl.col("temporal_holdout"))["split"] == "held_out").all()
    kept = out.filter(~pl.col("temporal_holdout"))
    assert kept.equals(hashed.filter(~flags).with_columns(pl.lit(False).alias("temporal_holdout")))
    summary = split_summary(out)
    assert summary["temporal_holdout"] == pytest.approx(1_000 / 3_000)
    assert summary["held_out"] > split_summary(hashed)["held_out"] + 0.25
    assert "temporal_holdout" not in split_summary(hashed)
