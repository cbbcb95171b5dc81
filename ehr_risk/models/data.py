"""Torch data for the sequence models: the sequence table (+ static features, + hazard targets) held as flat
numpy arrays, batches built vectorised, and a sampler that groups rows of similar length so that padding
is trimmed to the longest row of each batch.

A batch is a dict of tensors (see networks.py). Sequences longer than `max_len` keep their most recent
`max_len` events (tables are oldest → newest).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def _flat(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    col = table.column(name)
    values = pc.list_flatten(col)
    arr = values.to_numpy(zero_copy_only=False)
    return arr.astype(dtype, copy=False)


@dataclass
class SequenceArrays:
    """Ragged sequences as flat arrays plus offsets (row i is flat[offsets[i]:offsets[i+1]])."""

    tokens: np.ndarray  # int32 (compact; batches are int64)
    delta_days: np.ndarray  # float32
    age_years: np.ndarray  # float32
    value_bin: np.ndarray  # int8
    offsets: np.ndarray  # int64, n + 1
    static: np.ndarray  # (n, S) float32, S may be 0

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_arrow(cls, sequence: pa.Table, static: np.ndarray | None = None) -> SequenceArrays:
        """From a table with the list columns of contracts.md (`features/sequence.parquet` layout)."""
        lengths = pc.fill_null(pc.list_value_length(sequence.column("tokens")), 0).to_numpy()
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        n = sequence.num_rows
        return cls(
            tokens=_flat(sequence, "tokens", np.int32),
            delta_days=_flat(sequence, "delta_days", np.float32),
            age_years=_flat(sequence, "age_years", np.float32),
            value_bin=_flat(sequence, "value_bin", np.int8),
            offsets=offsets,
            static=np.zeros((n, 0), np.float32) if static is None else static.astype(np.float32, copy=False),
        )


def build_batch(arrays: SequenceArrays, rows: np.ndarray, max_len: int) -> dict[str, torch.Tensor]:
    """Right-padded batch for `rows`, padding trimmed to the longest row (at least one step)."""
    start, end = arrays.offsets[rows], arrays.offsets[rows + 1]
    lengths = np.minimum(end - start, max_len)
    start = end - lengths  # keep the most recent events
    width = max(int(lengths.max(initial=0)), 1)
    pos = np.arange(width)
    mask = pos[None, :] < lengths[:, None]
    idx = np.where(mask, start[:, None] + pos[None, :], 0)

    def take(flat: np.ndarray, fill: float | int) -> torch.Tensor:
        out = flat[idx] if len(flat) else np.zeros(idx.shape, flat.dtype)
        out = np.where(mask, out, fill)
        if out.dtype.kind == "f":  # unknown age (no birth record) → 0, the embedding's neutral input
            out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
        return torch.from_numpy(out)

    batch = {
        "tokens": take(arrays.tokens, 0).long(),
        "value_bin": take(arrays.value_bin, 0).long(),
        "delta_days": take(arrays.delta_days, 0.0),
        "age_years": take(arrays.age_years, 0.0),
    }
    mask[:, 0] = True  # an empty history is one PAD step (token 0), so every row has a representation
    return batch | {
        "mask": torch.from_numpy(mask),
        "lengths": torch.from_numpy(np.maximum(lengths, 1).astype(np.int64)),
        "static": torch.from_numpy(arrays.static[rows]),
    }


class SequenceDataset(Dataset[dict[str, torch.Tensor]]):
    """Indexed by a list of row numbers (one batch); targets are optional (scoring needs none)."""

    def __init__(
        self,
        arrays: SequenceArrays,
        max_len: int,
        interval: np.ndarray | None = None,
        event: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        competing: np.ndarray | None = None,
    ) -> None:
        self.arrays, self.max_len = arrays, max_len
        self.interval, self.event, self.task_mask = interval, event, mask
        self.competing = competing

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, rows: list[int]) -> dict[str, torch.Tensor]:
        r = np.asarray(rows, dtype=np.int64)
        batch = build_batch(self.arrays, r, self.max_len)
        if self.interval is not None and self.event is not None and self.task_mask is not None:
            batch["interval"] = torch.from_numpy(self.interval[r])
            batch["event"] = torch.from_numpy(self.event[r])
            batch["task_mask"] = torch.from_numpy(self.task_mask[r])
            if self.competing is not None:
                batch["competing"] = torch.from_numpy(self.competing[r])
        return batch


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of rows of similar length. With `shuffle`, rows are permuted (seed + epoch), sorted by length
    within chunks of `bucket` batches, cut into batches, and the batches permuted; without it, rows are
    sorted by length for the least padding (callers restore the order)."""

    def __init__(
        self, lengths: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0, bucket: int = 50
    ) -> None:
        self.lengths, self.batch_size, self.shuffle = lengths, batch_size, shuffle
        self.seed, self.bucket, self.epoch = seed, bucket, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            for i in range(0, n, self.batch_size):
                yield order[i : i + self.batch_size].tolist()
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(n)
        chunk = self.batch_size * self.bucket
        batches: list[np.ndarray] = []
        for i in range(0, n, chunk):
            part = perm[i : i + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[j : j + self.batch_size] for j in range(0, len(part), self.batch_size)]
        for k in rng.permutation(len(batches)):
            yield batches[k].tolist()


def make_loader(dataset: SequenceDataset, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """A DataLoader whose sampler yields whole batches (built vectorised by the dataset)."""
    lengths = np.minimum(dataset.arrays.lengths, dataset.max_len)
    sampler = LengthBucketSampler(lengths, batch_size, shuffle, seed)
    return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=0)
