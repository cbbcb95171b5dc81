"""Streaming writer of the sharded event table, the rejects and the code metadata.

Events arrive row by row into column buffers (every `flush_rows` rows they become a frame) or as whole
frames from bulk readers. A load whose events fit in `MEMORY_BUDGET` bytes (the order of what a reader's
own blocks take, so holding them barely raises the peak) is held in memory and never spilled: `finish()`
orders it once by (shard, subject_id, time) and writes each shard from its rows. Past the budget the
held frames, and from then on every `SPILL_ROWS` events, are appended to the load's one spill file
(`output_spill.SpillFile`: Arrow IPC, one record batch per shard present, shard = subject_id mod
n_shards), so memory holds a small buffer, not the input; `finish()` then builds each shard from its
record batches in Arrow (`output_spill.shard_table`: order and duplicates decided on the key columns,
rows taken once). Either way, plus the existing shard in incremental mode: duplicate records (same
record_id) are kept once, the newest load winning, then rows are sorted by (subject_id, time) with
static rows first, ties in (load, record ordinal, arrival) order, and the shard is written through the
`events` schema, one column converted at a time so a shard is held about once while it is written.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ehr_risk.events import EVENT_DTYPES
from ehr_risk.ingest.output_order import deduplicate, shard_order
from ehr_risk.ingest.output_spill import SpillFile, narrow, shard_table
from ehr_risk.tables import load_schema, write_table

SPILL_DTYPES: dict[str, pl.DataType] = {**EVENT_DTYPES, "_seq": pl.Int64()}  # `_load` is set by the writer


SPILL_ROWS = 65_536  # events held before a spill (~8 MB): bounds memory, amortises per-spill costs
# events held in memory (estimated frame bytes) before the first spill: a load below it is never spilled
MEMORY_BUDGET = 8 << 20
# ... and at least this many per shard, so a spill's record batches (one per shard) do not get tiny
SPILL_ROWS_PER_SHARD = 128
_DICT_COLUMNS = ["code", "unit", "text_value", "resource_type"]
_STATS_COLUMNS = ["subject_id", "time", "code"]


def arrow_table(frame: pl.DataFrame, name: str) -> pa.Table:
    """`frame` as an arrow table whose text columns are `string` where schema `name` says so.

    polars hands out `large_string`; narrowing the offsets here (numpy) instead of letting `conform` cast
    reuses the text buffer rather than copying it.
    """
    table = frame.to_arrow()
    target = load_schema(name).arrow
    text = {f.name for f in target if f.type == pa.string()}
    columns = [
        narrow(col) if col_name in text else col
        for col_name, col in zip(table.column_names, table.columns, strict=True)
    ]
    return pa.Table.from_arrays(columns, names=table.column_names)


def shard_name(k: int) -> str:
    return f"shard-{k:04d}.parquet"


class EventWriter:
    """Column buffers → spilled shard parts → final sorted, de-duplicated shards."""

    def __init__(
        self,
        out: Path,
        n_shards: int,
        load_no: int = 0,
        flush_rows: int = 500_000,
        spill_rows: int | None = None,
        memory_budget: int | None = None,
    ):
        self.out = out
        self.n_shards = n_shards
        self.load_no = load_no
        self.flush_rows = flush_rows
        self.spill_rows = spill_rows or max(SPILL_ROWS, SPILL_ROWS_PER_SHARD * n_shards)
        self._staged: list[pl.DataFrame] = []  # converted frames not yet spilled
        self._staged_rows = 0
        self._staged_bytes = 0
        self.memory_budget = MEMORY_BUDGET if memory_budget is None else memory_budget
        self.tmp = out / ".ingest-tmp"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self._spill = SpillFile(self.tmp / "spill.arrow", n_shards, load_no)  # opened at the first spill
        self.rows = 0
        self.descriptions: dict[str, str] = {}
        self._reset()

    def _reset(self) -> None:
        self.c_subject: list[int] = []
        self.c_time: list[int | None] = []
        self.c_code: list[str] = []
        self.c_num: list[float | None] = []
        self.c_text: list[str | None] = []
        self.c_unit: list[str | None] = []
        self.c_end: list[int | None] = []
        self.c_recorded: list[int | None] = []
        self.c_rtype: list[str] = []
        self.c_record: list[int | None] = []
        self.c_seq: list[int] = []
        self._rows: list[tuple[Any, ...]] = []  # add_rows() buffer, transposed into the columns at flush

    def add(
        self,
        subject_id: int,
        time_us: int | None,
        code: str,
        numeric_value: float | None = None,
        text_value: str | None = None,
        unit: str | None = None,
        end_us: int | None = None,
        recorded_us: int | None = None,
        resource_type: str = "",
        record_id: int | None = None,
        seq: int = 0,
    ) -> None:
        """Append one event. Times are microseconds since the epoch (UTC) or None."""
        self.c_subject.append(subject_id)
        self.c_time.append(time_us)
        self.c_code.append(code)
        self.c_num.append(numeric_value)
        self.c_text.append(text_value)
        self.c_unit.append(unit)
        self.c_end.append(end_us)
        self.c_recorded.append(recorded_us)
        self.c_rtype.append(resource_type)
        self.c_record.append(record_id)
        self.c_seq.append(seq)
        if len(self.c_subject) >= self.flush_rows:
            self.flush()

    def describe(self, code: str, description: str | None) -> None:
        """Remember a human description of a code (first one seen wins)."""
        if description and code not in self.descriptions:
            self.descriptions[code] = description

    def add_frame(self, frame: pl.DataFrame) -> None:
        """Append a whole frame of events (bulk readers): EVENT_COLUMNS plus `_seq`, spill types castable.

        Buffered rows go first, so the spill order stays the arrival order.
        """
        self.flush()
        frame = frame.select(
            *[pl.col(name).cast(dtype) for name, dtype in SPILL_DTYPES.items()],
            pl.lit(self.load_no, dtype=pl.Int32).alias("_load"),
        )
        self.rows += frame.height
        self._stage(frame)

    def add_rows(self, rows: list[tuple[Any, ...]]) -> None:
        """Append events as tuples (subject_id, time_us, code, numeric_value, text_value, unit, end_us,
        recorded_us, resource_type, record_id, seq): the fast path for record-by-record readers."""
        self._rows.extend(rows)
        if len(self._rows) + len(self.c_subject) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            columns = (
                self.c_subject, self.c_time, self.c_code, self.c_num, self.c_text, self.c_unit,
                self.c_end, self.c_recorded, self.c_rtype, self.c_record, self.c_seq,
            )  # fmt: skip
            for column, values in zip(columns, zip(*self._rows, strict=True), strict=True):
                column.extend(values)  # type: ignore[attr-defined]
            self._rows = []
        n = len(self.c_subject)
        if not n:
            return
        # polars builds the columns from the lists itself (pa.array would import pandas, ~0.5 s)
        us = pl.Datetime("us")
        frame = pl.DataFrame(
            [
                pl.Series("subject_id", self.c_subject, dtype=pl.Int64),
                pl.Series("time", self.c_time, dtype=pl.Int64).cast(us),
                pl.Series("code", self.c_code, dtype=pl.String),
                pl.Series("numeric_value", self.c_num, dtype=pl.Float32),
                pl.Series("text_value", self.c_text, dtype=pl.String),
                pl.Series("unit", self.c_unit, dtype=pl.String),
                pl.Series("end_time", self.c_end, dtype=pl.Int64).cast(us),
                pl.Series("recorded_time", self.c_recorded, dtype=pl.Int64).cast(us),
                pl.Series("resource_type", self.c_rtype, dtype=pl.String),
                pl.Series("record_id", self.c_record, dtype=pl.Int64),
                pl.Series("_seq", self.c_seq, dtype=pl.Int64),
                pl.repeat(self.load_no, n, dtype=pl.Int32, eager=True).alias("_load"),
            ]
        )
        self._reset()
        self.rows += n
        self._stage(frame)

    def _stage(self, frame: pl.DataFrame) -> None:
        """Hold frames while the load fits `memory_budget`, then until `spill_rows` rows: fewer, larger
        spills (each costs a write and a slice per shard at `finish`), while memory stays bounded by the
        budget and `spill_rows` whatever the input size."""
        self._staged.append(frame)
        self._staged_rows += frame.height
        if not self._spill.opened:  # nothing spilled yet: hold the load while it fits the budget
            self._staged_bytes += int(frame.estimated_size())
            if self._staged_bytes <= self.memory_budget:
                return
        if self._staged_rows >= self.spill_rows:
            self._spill_staged()

    def _spill_staged(self) -> None:
        if self._staged:
            frame = pl.concat(self._staged, how="vertical") if len(self._staged) > 1 else self._staged[0]
            self._staged, self._staged_rows, self._staged_bytes = [], 0, 0
            self._spill.write(frame)

    def _in_memory(self) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
        """The held load (never spilled) as one frame, the row order that sorts it by (shard, subject_id,
        time), and each shard's bounds in that order.

        Ties keep arrival order, or (load, record ordinal) order where arrival is not in that order, as
        `sort_events` orders a shard: a shard's rows are then in their final order unless de-duplication
        drops some. Columns are joined one at a time (the held frames' copy of a column is freed before the
        next), and shards are gathered one at a time by the caller, so memory peaks at the held load plus
        one column, not two or three copies of it.
        """
        parts = {c: [f.get_column(c) for f in self._staged] for c in self._staged[0].columns}
        self._staged, self._staged_rows, self._staged_bytes = [], 0, 0
        frame = pl.DataFrame([pl.concat(parts.pop(c), rechunk=True) for c in list(parts)])
        order = shard_order(frame, self.n_shards)
        shard = frame.get_column("subject_id").to_numpy()[order] % self.n_shards
        return frame, order, np.searchsorted(shard, np.arange(self.n_shards + 1))

    def finish(self, incremental: bool) -> tuple[int, Counter[str], Counter[str]]:
        """Write the final shards. Returns (events written, duplicates dropped by type, code counts).

        Only duplicates within this load are counted; an older record replaced by a newer load is not.
        """
        self.flush()
        held: tuple[pl.DataFrame, np.ndarray, np.ndarray] | None = None
        if not self._spill.opened:
            held = self._in_memory() if self._staged else None
        else:
            self._spill_staged()
            self._spill.close()
        events_dir = self.out / "events"
        events_dir.mkdir(parents=True, exist_ok=True)
        if not incremental:
            for old in events_dir.glob("shard-*.parquet"):
                old.unlink()
        total, dropped = 0, Counter[str]()
        # codes counted once over a held load; a shard that changes (merged, de-duplicated) is recounted
        counts: Counter[str] = _code_counts(held[0]) if held is not None else Counter()
        for k in range(self.n_shards):
            final = events_dir / shard_name(k)
            existing = incremental and final.exists()
            if held is None:
                table = self._spilled_shard(k, final if existing else None)
                if table is None:
                    continue
                table, n_dropped, n_codes = shard_table(table)
                counts.update(n_codes)
            else:
                lo, hi = int(held[2][k]), int(held[2][k + 1])
                frames = [held[0][held[1][lo:hi]]] if hi > lo else []
                if existing:
                    frames.insert(0, _existing_as_spill(final))  # the oldest load first: arrival order
                if not frames:
                    continue
                df = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
                deduped, n_dropped = deduplicate(df)
                order = None
                # a held slice alone that lost no rows is in its final order (and counted) already
                if existing or deduped is not df:
                    order = shard_order(deduped, 1)  # `sort_events` order, as a row order
                    if hi > lo:
                        counts.subtract(_code_counts(frames[-1]))
                    counts.update(_code_counts(deduped))
                frames.clear()
                del df
                table = _events_table(deduped, order)
                del deduped
            dropped.update(n_dropped)
            # dictionary pages only where values repeat (on ids, times and values they cost time and space);
            # min/max statistics where readers filter (subject, time, code)
            write_table(
                table,
                final,
                "events",
                row_group_size=256_000,
                use_dictionary=_DICT_COLUMNS,
                write_statistics=_STATS_COLUMNS,
            )
            total += table.num_rows
        self._spill.release()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return total, dropped, +counts

    def _spilled_shard(self, k: int, existing: Path | None) -> pa.Table | None:
        """Shard `k`'s spilled rows as Arrow, after those of the `existing` shard (incremental loads)."""
        part = self._spill.read(k)
        if existing is None:
            return part
        old = pq.read_table(existing).select(list(EVENT_DTYPES))
        n = old.num_rows
        old = old.append_column("_seq", pa.array(np.arange(n, dtype=np.int64)))
        old = old.append_column("_load", pa.array(np.full(n, -1, dtype=np.int32)))  # older than any load
        if part is None:
            return old
        return pa.concat_tables([old.cast(part.schema), part])


def _events_table(df: pl.DataFrame, order: np.ndarray | None) -> pa.Table:
    """The event columns of `df` in row `order` as an arrow table, built one column at a time (gather,
    convert, drop the frame's copy), so a shard is held about once while it is written, not three times
    (frame, sorted frame, arrow table)."""
    columns = {name: df.get_column(name) for name in EVENT_DTYPES}
    del df
    arrays = []
    for name in EVENT_DTYPES:
        column = columns.pop(name)
        if order is not None:
            column = column.gather(order)
        arrays.append(arrow_table(column.to_frame(), "events").column(0))
        del column
    return pa.Table.from_arrays(arrays, names=list(EVENT_DTYPES))


def _code_counts(df: pl.DataFrame) -> Counter[str]:
    return Counter(dict(df.get_column("code").value_counts().iter_rows()))


def _existing_as_spill(path: Path) -> pl.DataFrame:
    """An existing shard joins the merge as load -1 (older than any new load), seq = row order."""
    df = pl.from_arrow(pq.read_table(path))
    assert isinstance(df, pl.DataFrame)
    names = load_schema("events").columns
    return df.select(names).with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_seq"), pl.lit(-1, dtype=pl.Int32).alias("_load")
    )


def codes_table(counts: Counter[str], descriptions: dict[str, str]) -> pa.Table:
    codes = sorted(counts)
    # built with polars: pa.array on Python lists imports pandas (~0.5 s of a small run)
    table = arrow_table(
        pl.DataFrame(
            [
                pl.Series("code", codes, dtype=pl.String),
                pl.Series("description", [descriptions.get(c) for c in codes], dtype=pl.String),
                pl.Series("count", [counts[c] for c in codes], dtype=pl.Int64),
            ]
        ),
        "codes",
    )
    return table.add_column(2, "parent_codes", pa.nulls(len(codes), pa.list_(pa.string())))


class RejectWriter:
    """Buffers rejected records and writes them to `rejects/part-N.parquet` (owner-only folder)."""

    def __init__(self, out: Path, flush_rows: int = 50_000):
        self.dir = out / "rejects"
        self.flush_rows = flush_rows
        self.rows: list[tuple[str, str, str | None, str, str | None]] = []
        self._parts = 0
        self.count = 0

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def add(
        self, file: str, position: str, resource_type: str | None, reason: str, record: str | None
    ) -> None:
        self.rows.append((file, position, resource_type, reason, record))
        self.count += 1
        if len(self.rows) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        cols = list(zip(*self.rows, strict=True))
        names = ("file", "position", "resource_type", "reason", "record")
        table = arrow_table(
            pl.DataFrame(
                [pl.Series(name, values, dtype=pl.String) for name, values in zip(names, cols, strict=True)]
            ),
            "rejects",
        )
        write_table(table, self.dir / f"part-{self._parts:05d}.parquet", "rejects")
        self._parts += 1
        self.rows = []
