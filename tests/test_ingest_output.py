"""The event writer's pieces against plain polars references: the spill file's round trip by shard,
the Arrow shard pass (de-duplication and order on the key columns, rows taken once), the numpy row
order of a shard and the repeat check of de-duplication."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehr_risk.ingest import output_order
from ehr_risk.ingest.output import SPILL_DTYPES
from ehr_risk.ingest.output_spill import SpillFile, shard_table


def _events(rng: np.random.Generator, n: int, subjects: int, load: int, seq0: int = 0) -> pl.DataFrame:
    """Events of `n` records in arrival order: one to three events per record, some record ids shared
    with other records (duplicates), some times null, text in some rows."""
    per = rng.integers(1, 4, n)
    seq = np.repeat(np.arange(seq0, seq0 + n), per)
    m = len(seq)
    record = rng.integers(0, max(2, n // 2), n)[seq - seq0] * 7919
    time = pl.Series(rng.integers(0, 30, m) * 86_400_000_000, dtype=pl.Int64).cast(pl.Datetime("us"))
    frame = pl.DataFrame(
        {
            "subject_id": rng.integers(0, subjects, m) * 1_000_003,
            "time": time,
            "code": [f"LOINC/{c}" for c in rng.integers(0, 9, m)],
            "numeric_value": rng.normal(size=m).astype(np.float32),
            "text_value": [None if c else "an answer" for c in rng.integers(0, 4, m)],
            "unit": [None if c == 0 else "mg/dL" for c in rng.integers(0, 3, m)],
            "end_time": pl.Series([None] * m, dtype=pl.Datetime("us")),
            "recorded_time": time,
            "resource_type": ["Observation" if c else "Condition" for c in rng.integers(0, 3, m)],
            "record_id": pl.Series(record, dtype=pl.Int64),
            "_seq": seq,
        }
    ).with_columns(
        pl.when(pl.int_range(pl.len()) % 11 == 0).then(None).otherwise(pl.col("time")).alias("time"),
        pl.when(pl.int_range(pl.len()) % 13 == 0)
        .then(None)
        .otherwise(pl.col("record_id"))
        .alias("record_id"),
    )
    return frame.select(
        *[pl.col(c).cast(t) for c, t in SPILL_DTYPES.items()], pl.lit(load, dtype=pl.Int32).alias("_load")
    )


def _reference(df: pl.DataFrame) -> tuple[pl.DataFrame, Counter[str]]:
    """What the writer did before the Arrow pass: de-duplicate, then sort with polars."""
    kept, dropped = output_order.deduplicate(df)
    return output_order.sort_events(kept).drop("_seq", "_load"), dropped


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_shards=st.integers(1, 5), pieces=st.integers(1, 4))
def test_spill_then_shard_table_equals_polars_reference(
    tmp_path_factory: pytest.TempPathFactory, seed: int, n_shards: int, pieces: int
) -> None:
    rng = np.random.default_rng(seed)
    frames = [_events(rng, int(rng.integers(1, 60)), 6, 0, seq0=1000 * i) for i in range(pieces)]
    spill = SpillFile(tmp_path_factory.mktemp("spill") / "spill.arrow", n_shards, load_no=0)
    for frame in frames:
        spill.write(frame)
    spill.close()
    everything = pl.concat(frames)
    for k in range(n_shards):
        want = everything.filter(pl.col("subject_id") % n_shards == k)
        table = spill.read(k)
        if want.is_empty():
            assert table is None
            continue
        assert table is not None
        got_rows = pl.from_arrow(table)
        assert isinstance(got_rows, pl.DataFrame)
        assert got_rows.equals(want)  # spill order within the shard = arrival order
        got, dropped, counts = shard_table(table)
        ref, ref_dropped = _reference(want)
        got_frame = pl.from_arrow(got)
        assert isinstance(got_frame, pl.DataFrame)
        assert got_frame.equals(ref)
        assert dropped == ref_dropped
        assert counts == Counter(dict(ref.get_column("code").value_counts().iter_rows()))
    spill.release()


def test_shard_table_keeps_the_newest_load_of_a_duplicate(tmp_path: Path) -> None:
    """Rows of an older load (an existing shard, load -1) and this load with the same record id: the
    newer is kept, and only duplicates within this load are counted."""
    rng = np.random.default_rng(3)
    old = _events(rng, 30, 4, -1)
    new = pl.concat(
        [old.head(10).with_columns(pl.lit(0, dtype=pl.Int32).alias("_load")), _events(rng, 20, 4, 0)]
    )
    both = pl.concat([old, new])
    got, dropped, _ = shard_table(both.to_arrow())
    ref, ref_dropped = _reference(both)
    got_frame = pl.from_arrow(got)
    assert isinstance(got_frame, pl.DataFrame)
    assert got_frame.equals(ref) and dropped == ref_dropped


@pytest.mark.parametrize("time_ordered", [True, False])
def test_shard_order_equals_polars_sort_with_and_without_time_ordered_subjects(time_ordered: bool) -> None:
    """The one-sort path (each subject's rows already in time order, nulls first) and the two-sort path
    give polars' stable sort."""
    rng = np.random.default_rng(11)
    n = 3000
    subject = rng.integers(0, 40, n) * 1_000_003  # subjects interleaved in arrival order
    time = rng.integers(0, 50, n) * 1_000_000
    null = np.zeros(n, dtype=bool)
    if time_ordered:  # each subject's rows arrive in time order, its first one without a time
        arrival = np.argsort(subject, kind="stable")  # positions grouped by subject, in arrival order
        ordered = np.empty(n, dtype=np.int64)
        ordered[arrival] = time[np.lexsort((time, subject))]
        time = ordered
        grouped = subject[arrival]
        null[arrival[np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])]] = True
    else:
        null[::17] = True
    frame = pl.DataFrame(
        {
            "subject_id": subject,
            "time": pl.Series(np.where(null, 0, time), dtype=pl.Int64).cast(pl.Datetime("us")),
            "_seq": np.arange(n),
            "_load": np.zeros(n, dtype=np.int32),
        }
    ).with_columns(pl.when(pl.Series(null)).then(None).otherwise(pl.col("time")).alias("time"))
    for n_shards in (1, 7):
        got = frame[output_order.shard_order(frame, n_shards)]
        want = (
            frame.with_columns((pl.col("subject_id") % n_shards).alias("_shard"))
            .sort(["_shard", "subject_id", "time"], nulls_last=False, maintain_order=True)
            .drop("_shard")
        )
        assert got.equals(want)


def test_deduplicate_finds_repeats_by_sorting() -> None:
    """Multi-event records are not duplicates; the same record id from two occurrences is, once."""
    df = pl.DataFrame(
        {
            "record_id": [1, 1, 2, 3, 3, None, None, 2],
            "_load": pl.Series([0] * 8, dtype=pl.Int32),
            "_seq": [1, 1, 2, 3, 3, 4, 5, 6],
            "resource_type": ["Patient"] * 2 + ["Observation"] * 6,
        }
    )
    kept, dropped = output_order.deduplicate(df)
    assert dropped == Counter({"Observation": 1})
    assert sorted(kept.get_column("_seq").to_list()) == [1, 1, 2, 3, 3, 4, 5]
    same, none = output_order.deduplicate(df.head(7))
    assert same.equals(df.head(7)) and none == Counter()
