"""Order and de-duplication of event frames for the shard writer (`output.EventWriter`).

A shard's rows are sorted by (subject_id, time), static rows first, ties in (load, record ordinal,
arrival) order; a record (record_id) is kept from one source occurrence only, the newest load winning.
`shard_order` gives the same order for a whole held load at once, grouped by shard.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl


def sort_events(df: pl.DataFrame) -> pl.DataFrame:
    """Rows by (subject_id, time), static rows first, ties in (load, record ordinal, arrival) order.

    Readers send a load's events in record order, so rows usually arrive in (load, ordinal) order
    already; then a stable sort on the two keys alone gives the same table, and costs less.
    """
    keys = ["subject_id", "time"] if in_record_order(df) else ["subject_id", "time", "_load", "_seq"]
    return df.sort(keys, nulls_last=False, maintain_order=True)


def shard_order(frame: pl.DataFrame, n_shards: int) -> np.ndarray:
    """Row order of a stable sort by (subject_id mod n_shards, subject_id, time), nulls first, plus
    (_load, _seq) where rows are not in record order: `sort_events` within each shard, all at once.

    A stable numpy sort by a dense rank of the subjects in (shard, subject) order (a radix sort below
    65,536 subjects) is the whole order when each subject's rows arrive in time order, as readers of
    per-patient files send them; else a stable sort by time goes first. Either costs a fraction of
    polars' multi-column sort (an unusual frame takes that instead).
    """
    subject = frame.get_column("subject_id")
    time = frame.get_column("time").cast(pl.Int64)
    lowest = np.iinfo(np.int64).min
    plain = (
        in_record_order(frame)
        and not subject.null_count()
        and (subject.min() or 0) >= 0  # type: ignore[operator]
        and not (time == lowest).any()
    )
    if not plain:
        keys = ["subject_id", "time"] if in_record_order(frame) else ["subject_id", "time", "_load", "_seq"]
        shard = (pl.col("subject_id") % n_shards).alias("_shard")
        ordered = frame.select(pl.arg_sort_by([shard, *keys], nulls_last=False, maintain_order=True))
        return ordered.to_series().to_numpy().astype(np.int64)
    ids = subject.to_numpy()
    distinct = np.unique(ids)
    by_shard = np.lexsort((distinct, distinct % n_shards))  # distinct subjects in (shard, subject) order
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[by_shard] = np.arange(len(distinct))
    # numpy sorts 16-bit keys by radix: most loads have fewer subjects than that
    dense = rank[np.searchsorted(distinct, ids)].astype(np.uint16 if len(distinct) <= 1 << 16 else np.uint32)
    times = time.fill_null(lowest).to_numpy()
    by_subject = np.argsort(dense, kind="stable")
    ranks, after = dense[by_subject], times[by_subject]
    if bool(((ranks[1:] != ranks[:-1]) | (after[1:] >= after[:-1])).all()):
        return by_subject
    by_time = np.argsort(times, kind="stable")
    return by_time[np.argsort(dense[by_time], kind="stable")]


def in_record_order(df: pl.DataFrame) -> bool:
    """Whether rows arrive in (load, record ordinal) order."""
    occ = pl.col("_load").cast(pl.Int64) * (1 << 40) + pl.col("_seq")
    return bool(df.select((occ.diff() >= 0).all()).item())


def deduplicate(df: pl.DataFrame) -> tuple[pl.DataFrame, Counter[str]]:
    """Keep each record_id from one source occurrence only: the newest load, then the first read.

    A record is all events with one (record_id, _load, _seq); rows without record_id are always kept.
    Returns the frame and the duplicate record occurrences dropped, by resource type.
    """
    # fast path: every record_id comes from one occurrence (one _load and _seq), checked by aggregates
    # over the rows whose record_id is not unique (a record's several events, or a duplicate) only.
    # Repeats are found by sorting the ids (numpy's vectorised sort: a tenth of `is_duplicated`'s hashing)
    rid = df.get_column("record_id")
    ids = np.sort(rid.drop_nulls().to_numpy())
    twice = ids[1:][ids[1:] == ids[:-1]]
    if not len(twice):
        return df, Counter()
    repeated = rid.is_in(pl.Series(np.unique(twice)).implode()).fill_null(False)
    occ = pl.col("_load").cast(pl.Int64) * (1 << 40) + pl.col("_seq")  # _seq < 2**40: records of a load
    spread = df.filter(repeated).group_by("record_id").agg((occ.min() != occ.max()).alias("mixed"))
    if not spread.get_column("mixed").any():
        return df, Counter()
    keys = df.select("record_id", "_load", "_seq", "resource_type").filter(pl.col("record_id").is_not_null())
    occurrences = keys.unique()
    with_id = df.filter(pl.col("record_id").is_not_null())
    winners = occurrences.sort(["_load", "_seq"], descending=[True, False]).unique(
        subset="record_id", keep="first", maintain_order=True
    )
    losers = occurrences.join(winners, on=["record_id", "_load", "_seq"], how="anti")
    dropped = Counter(dict(losers.filter(pl.col("_load") >= 0).group_by("resource_type").len().iter_rows()))
    kept = with_id.join(winners, on=["record_id", "_load", "_seq"], how="semi")
    return pl.concat([df.filter(pl.col("record_id").is_null()), kept], how="vertical"), dropped
