"""From parsed CSV batches to the Ingestor: rejected rows (with lines), record ids, bulk event output.

Record ids: a table with a source id (Synthea `Id`) uses `ids.record_id(type, id)`, as FHIR does. A table
without one gets a keyed hash of the columns that identify the record (subject, code, time) plus the row's
ordinal among rows with the same key, so an updated value in a newer extract replaces the old row
(incremental loads) while two genuine same-key rows are both kept. The parts are keyed already (subject
ids, HMACs of codes from `ids.py`) and are combined with a fixed 64-bit mixer (splitmix64), so no per-row
HMAC is needed and ids are stable across library versions. Limit: overlapping extracts whose boundary
splits a group of same-key rows (two identical-time readings of one code) can pair the wrong ordinals.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson
import polars as pl

from ehr_risk.ingest.csv_read import LINE, BadRows, malformed_lines, relocate
from ehr_risk.ingest.output import SPILL_DTYPES

if TYPE_CHECKING:
    from ehr_risk.ingest.run import Ingestor

EVENT_FRAME = SPILL_DTYPES
_MASK = np.uint64((1 << 63) - 1)


class CsvFile:
    """One CSV input being read: where its rows are, and how its bad rows are rejected."""

    def __init__(self, ing: Ingestor, path: Path, header: list[str], resource_type: str):
        self.ing = ing
        self.path = path
        self.label = str(path)
        self.header = header
        self.resource_type = resource_type
        self.bad = BadRows()
        self._pending: list[tuple[int, str, str | None]] = []
        self._held: list[tuple[int, str, str | None]] = []
        # previous batch: its distinct keys (sorted) and each one's row count so far
        self._carry: tuple[np.ndarray, np.ndarray] | None = None

    def reject(self, rows: pl.DataFrame, reason: str, columns: list[str]) -> None:
        """Reject every row of `rows` (which has `_line` and the raw string `columns`) with one reason.

        Rejects of a batch are sent in line order by `flush` (so `--strict` names the first bad line).
        """
        if rows.is_empty():
            return
        present = [c for c in columns if c in rows.columns]
        for line, *values in rows.select(LINE, *present).iter_rows():
            record = orjson.dumps(dict(zip(present, values, strict=True))).decode()
            self._pending.append((line, reason, record))

    def flush(self) -> None:
        """Send this batch's rejects; once a malformed row was met, hold them until `finish` fixes lines."""
        if self.bad.texts:
            self._held.extend(self._pending)
        else:
            for line, reason, record in sorted(self._pending, key=lambda r: r[0]):
                self.ing.reject(self.label, f"line {line}", self.resource_type, reason, record)
        self._pending = []

    def finish(self, exact: bool = True) -> None:
        """Reject malformed rows at their exact lines and release held rejects with corrected lines.

        `exact=False` (a file that broke midway cannot be read again) keeps provisional lines.
        """
        self.flush()
        if not self.bad.texts:
            return
        found = malformed_lines(self.path, len(self.header)) if exact else []
        if len(found) != len(self.bad.texts):  # the exact pass disagrees (odd quoting): keep the texts
            found = [(0, text) for text in self.bad.texts]
        fixed = relocate(np.array([h[0] for h in self._held], dtype=np.int64), [f[0] for f in found if f[0]])
        malformed = "malformed row: field count differs from the header"
        out = [
            (line, reason, record)
            for line, (_, reason, record) in zip(fixed.tolist(), self._held, strict=True)
        ]
        out += [(line, malformed, text) for line, text in found]
        for line, reason, record in sorted(out, key=lambda r: r[0]):
            where = f"line {line}" if line else "line unknown"
            self.ing.reject(self.label, where, self.resource_type, reason, record)
        self._held = []

    def ordinals(self, key: np.ndarray) -> np.ndarray:
        """0-based rank of each row among earlier rows with the same key (this and the previous batch).

        Same-key rows further apart than one batch get the same rank, so the later one counts as a
        duplicate record in the summary (documented; Synthea writes a record's rows together).
        Vectorised: a sort of the batch's keys groups equal keys (numpy's vectorised sort; the few groups
        of more than one row are then put back in row order), a row's rank is its place in its group
        plus the key's count in the previous batch (a binary search in that batch's sorted distinct keys).
        """
        n = len(key)
        if not n:
            self._carry = (key, np.zeros(0, dtype=np.int64))
            return np.zeros(0, dtype=np.int64)
        order = np.argsort(key)
        ordered = key[order]
        first = np.empty(n, dtype=bool)
        first[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        group = np.cumsum(first) - 1
        shared = np.flatnonzero(~first)  # rows after the first of their group: groups of several rows
        if len(shared):
            rows = np.unique(np.concatenate([shared, shared - 1]))
            order[rows] = order[rows][np.lexsort((order[rows], group[rows]))]
        distinct = ordered[starts]
        offset = np.zeros(len(starts), dtype=np.int64)
        if self._carry is not None and len(self._carry[0]):
            before, counts = self._carry
            pos = np.minimum(np.searchsorted(before, distinct), len(before) - 1)
            hit = before[pos] == distinct
            offset[hit] = counts[pos[hit]]
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - starts[group] + offset[group]
        self._carry = (distinct, offset + np.diff(np.append(starts, n)))
        return rank


def keyed(
    ing: Ingestor, namespace: str, values: pl.Series, cache: dict[str, int] | None = None
) -> np.ndarray:
    """Keyed 63-bit hash of each value (one HMAC per distinct value); 0 for null.

    `cache` keeps the hashes of a small vocabulary (codes) across batches.
    """
    distinct = values.drop_nulls().unique().to_list()
    if cache is None:
        mapping = {v: ing.ids.record_id(namespace, str(v)) for v in distinct}
    else:
        for v in distinct:
            if v not in cache:
                cache[v] = ing.ids.record_id(namespace, str(v))
        mapping = {v: cache[v] for v in distinct}
    out = values.replace_strict(mapping, default=0, return_dtype=pl.UInt64)
    return out.to_numpy().astype(np.uint64, copy=False)


_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _splitmix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place (no temporaries but the shifts)."""
    z ^= z >> _S30
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


def combine(parts: list[np.ndarray]) -> np.ndarray:
    """Mix equal-length uint64 arrays into one non-negative int64 id per row."""
    h = np.full(len(parts[0]), 0x9E3779B97F4A7C15, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for part in parts:
            h ^= part.astype(np.uint64, copy=False)
            _splitmix(h)
    h &= _MASK
    return h.view(np.int64)


def as_u64(values: pl.Series) -> np.ndarray:
    """Integers/datetimes as uint64 bit patterns (null → a fixed sentinel)."""
    ints = values.cast(pl.Int64)
    return (ints.fill_null(-(1 << 62)) if ints.null_count() else ints).to_numpy().view(np.uint64)


def emit(ing: Ingestor, events: pl.DataFrame, resource_type: str, n_records: int) -> None:
    """Send the events of `n_records` converted source rows; `_row` (0..n_records-1) ties each event to
    its row, so all events of one row share one record ordinal (`_seq`, used by de-duplication)."""
    if not n_records:
        return
    ing.converted(resource_type, n_records)
    first = ing.next_seqs(n_records)
    if not events.get_column("_row").is_sorted():  # tables with several events per row: record order
        events = events.sort("_row", maintain_order=True)
    events = events.with_columns((pl.col("_row").cast(pl.Int64) + first).alias("_seq"))
    columns = [
        (pl.col(c) if c in events.columns else pl.lit(None)).cast(t).alias(c) for c, t in EVENT_FRAME.items()
    ]
    ing.events.add_frame(events.select(columns))
