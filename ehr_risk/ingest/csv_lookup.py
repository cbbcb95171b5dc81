"""Per-distinct-value work for CSV columns: a table keyed by the distinct values of some columns.

Columns such as CODE, UNITS, TYPE or PATIENT hold few distinct values in many rows. A `HashedLookup`
computes its rows (`build`) once per distinct key, across all batches of a load, and maps each batch row
to its table row by hashing the key columns: no per-row Python, no per-batch `unique` of strings.
Rows are matched by a 64-bit hash and checked with a second, independent one: a wrong match needs both
to collide (2^-128); a row whose second hash disagrees makes `rows` return None, and the caller takes
its careful path.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

_SEED, _CHECK_SEED = 0x5EED, 0xC0FFEE


class HashedLookup:
    """Table rows built per distinct key (`build`: distinct key rows → table rows, same order)."""

    def __init__(self, columns: list[str], build: Callable[[pl.DataFrame], pl.DataFrame]):
        self.columns = columns
        self.build = build
        self.table: pl.DataFrame | None = None
        self._sorted = np.empty(0, dtype=np.uint64)  # first hashes of the table's keys, sorted
        self._at = np.empty(0, dtype=np.int64)  # ... and their table rows
        self._check = np.empty(0, dtype=np.uint64)  # second hash of each table row's key

    def rows(self, keys: pl.DataFrame) -> np.ndarray | None:
        """The table row of each row of `keys` (its `columns`), new keys built first; None on a mismatch."""
        hashes = keys.select(
            _hash(self.columns, _SEED).alias("h1"), _hash(self.columns, _CHECK_SEED).alias("h2")
        )
        h1, h2 = hashes.get_column("h1").to_numpy(), hashes.get_column("h2").to_numpy()
        index, found = self._find(h1)
        if not found.all():
            new_h, first = np.unique(h1[~found], return_index=True)
            rows = np.flatnonzero(~found)[first]
            self._add(keys.select(self.columns)[rows], new_h, h2[rows])
            index, found = self._find(h1)
        if not np.array_equal(self._check[index], h2):
            return None
        return index

    def _find(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(self._sorted):
            return np.zeros(len(h), dtype=np.int64), np.zeros(len(h), dtype=bool)
        pos = np.minimum(np.searchsorted(self._sorted, h), len(self._sorted) - 1)
        return self._at[pos], self._sorted[pos] == h

    def _add(self, keys: pl.DataFrame, h1: np.ndarray, h2: np.ndarray) -> None:
        start = 0 if self.table is None else self.table.height
        built = self.build(keys)
        self.table = built if self.table is None else pl.concat([self.table, built], how="vertical")
        hashes = np.concatenate([self._sorted, h1])
        order = np.argsort(hashes, kind="stable")
        self._sorted = hashes[order]
        self._at = np.concatenate([self._at, np.arange(start, start + len(h1))])[order]
        self._check = np.concatenate([self._check, h2])


def _hash(columns: list[str], seed: int) -> pl.Expr:
    """A 64-bit hash of the key columns: independently seeded column hashes, combined by xor."""
    combined = pl.col(columns[0]).hash(seed=seed)
    for i, name in enumerate(columns[1:], 1):
        combined = combined ^ pl.col(name).hash(seed=seed + 7919 * i)
    return combined


def key_hash(columns: list[str]) -> pl.Expr:
    """The lookup's first 64-bit hash of the key columns (stable within a process), for joins on it."""
    return _hash(columns, _SEED)


def check_hash(columns: list[str]) -> pl.Expr:
    """The lookup's second, independent hash of the key columns: confirms a match found by `key_hash`."""
    return _hash(columns, _CHECK_SEED)
