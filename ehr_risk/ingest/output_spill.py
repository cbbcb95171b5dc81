"""The event writer's spill file: events past the memory budget, grouped by shard, read back per shard.

One Arrow IPC file per load (not one per shard or per spill: creating and opening files is what costs at
many shards and small spills), uncompressed (lz4 halves the bytes but costs more CPU than the writes it
saves), read back batch by batch rather than memory-mapped, so pages do not pile up in the process until
the last shard is written. Each spill's rows are cut by shard (a filter per shard, or a stable numpy
radix sort on the shard number when a spill holds many) and written as record batches per shard
present, in arrival order; `read(k)` joins shard k's batches in spill order, so arrival order is kept.

Spilled rows stay in Arrow from the spill to the Parquet shard: text is written with 32-bit offsets (the
`events` schema's `string`), and `shard_table` orders and de-duplicates a shard from its integer key
columns alone, then takes the rows of the Arrow table once. Handing every text column to polars and back
cost more than the rest of the round trip (Synthea observations at 64×, 1.3 M events: 0.24 s to convert
from Arrow and 0.10 s back, against 0.07 s to read the batches).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ehr_risk.ingest.output_order import deduplicate, shard_order

_KEYS = ["subject_id", "time", "record_id", "_seq", "_load", "resource_type"]
_FILTER_SHARDS = 8  # up to this many shards in a spill, each is cut out by a filter rather than a sort


class SpillFile:
    """Append-only spill of event frames (SPILL_DTYPES columns plus `_load`), read back by shard."""

    def __init__(self, path: Path, n_shards: int, load_no: int):
        self.path = path
        self.n_shards = n_shards
        self.load_no = load_no
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._batches = 0
        self._where: dict[int, list[int]] = {}  # shard → its record batches in the file
        self._source: pa.OSFile | None = None
        self._reader: pa.ipc.RecordBatchFileReader | None = None

    @property
    def opened(self) -> bool:
        return self._writer is not None

    def write(self, frame: pl.DataFrame) -> None:
        """Append `frame`'s rows: one record batch per shard present, rows in arrival order.

        A spill of a few shards is cut with one filter per shard, each part made one chunk and written
        at once: a gather of the staged frames (many chunks) in shard order cost more (64× Synthea
        observations, 4 shards, measured alone: 0.14 s against 0.22 s for the cut and conversion to
        Arrow) and held a second copy of the whole spill (FHIR 4×: peak RSS 229 MB against 244 MB).
        Many shards take the stable sort and one gather.
        """
        if frame.is_empty():
            return
        frame = frame.drop("_load")  # the writer's own, added back by `read`
        shard = (frame.get_column("subject_id").fill_null(0) % self.n_shards).to_numpy()
        shard = shard.astype(np.uint16 if self.n_shards <= 1 << 16 else np.int64)  # 16-bit keys: radix sort
        counts = np.bincount(shard, minlength=self.n_shards)
        present = np.flatnonzero(counts).tolist()
        if len(present) == 1:
            self._write_part(present[0], frame)
        elif len(present) <= _FILTER_SHARDS:
            for k in present:  # one chunk per part: arrow then gets one compact batch, not many
                self._write_part(k, frame.filter(pl.Series(shard == k)).rechunk())
        else:
            order = np.argsort(shard, kind="stable")
            ordered = frame[order]
            bounds = np.concatenate([[0], np.cumsum(counts)])
            for k in present:
                self._write_part(k, ordered.slice(int(bounds[k]), int(counts[k])))

    def _write_part(self, k: int, part: pl.DataFrame) -> None:
        # offset-based strings, as slices of polars' string views would each carry all the batch's text
        table = part.to_arrow()
        table = pa.Table.from_arrays([narrow(c) for c in table.columns], names=table.column_names)
        if self._writer is None:
            self._writer = pa.ipc.new_file(str(self.path), table.schema)
        for batch in table.to_batches():
            self._writer.write_batch(batch)
            self._where.setdefault(k, []).append(self._batches)
            self._batches += 1

    def close(self) -> None:
        """Finish writing; the file can then be read by shard."""
        if self._writer is not None:
            self._writer.close()
            self._source = pa.OSFile(str(self.path))
            self._reader = pa.ipc.open_file(self._source)

    def read(self, k: int) -> pa.Table | None:
        """The spilled rows of shard `k` in spill order, with `_load`; None when it has none."""
        if self._reader is None or k not in self._where:
            return None
        table = pa.Table.from_batches([self._reader.get_batch(i) for i in self._where[k]])
        load = pa.array(np.full(table.num_rows, self.load_no, dtype=np.int32))
        return table.append_column("_load", load)

    def release(self) -> None:
        if self._source is not None:
            self._source.close()
        self._reader = self._source = None


def shard_table(table: pa.Table) -> tuple[pa.Table, Counter[str], Counter[str]]:
    """A shard's spilled rows (and an existing shard's, first) → (its event table de-duplicated and in
    `sort_events` order, duplicates dropped by type, code counts), as `output_order` decides on the
    key columns alone; the other columns are taken once, column by column, so the shard is held about
    once, not twice."""
    n = table.num_rows
    keys = pl.from_arrow(table.select(_KEYS))
    assert isinstance(keys, pl.DataFrame)
    keys = keys.with_columns(pl.int_range(n, dtype=pl.Int64).alias("_i"))
    kept, dropped = deduplicate(keys)
    rows = kept.get_column("_i").to_numpy()[shard_order(kept, 1)]
    del keys, kept
    table = table.drop_columns(["_seq", "_load"])
    if len(rows) != n or not bool((rows[1:] > rows[:-1]).all()):
        take = pa.array(rows)
        names = table.column_names
        columns = []
        for name in names:
            columns.append(table.column(name).take(take))
            table = table.drop_columns([name])  # its untaken copy is freed here
        table = pa.Table.from_arrays(columns, names=names)
    counts = pc.value_counts(table.column("code")).flatten()
    return table, dropped, Counter(dict(zip(counts[0].to_pylist(), counts[1].to_pylist(), strict=True)))


def narrow(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A `large_string` column with 32-bit offsets (`string`); other columns as they are."""
    if column.type != pa.large_string():
        return column
    return pa.chunked_array([narrow_array(c) for c in column.chunks], pa.string())


def narrow_array(array: pa.Array) -> pa.Array:
    """`large_string` → `string` by rewriting the offsets (numpy); the text buffer is shared, not copied."""
    validity, offsets, data = array.buffers()
    if offsets is None or data is None:  # odd layouts (no buffers): left to `conform`'s cast
        return array
    wide = np.frombuffer(offsets, dtype=np.int64)[: array.offset + len(array) + 1]
    if len(wide) and wide[-1] >= 1 << 31:  # over 2 GiB of text in one chunk: too big for `string`
        return array
    narrowed = pa.py_buffer(wide.astype(np.int32))
    return pa.Array.from_buffers(pa.string(), len(array), [validity, narrowed, data], offset=array.offset)
