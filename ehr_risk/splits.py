"""Subject-level splits: train / tuning / held_out by a keyed hash of subject_id.

Each subject's split depends only on its own id and the split key (a keyed 64-bit mix, SplitMix64
finaliser over id ⊕ key), never on the other subjects, so adding subjects never moves an existing one and
every row of a subject lands in the same split. Fractions are met in expectation (binomial noise only).

Optional temporal hold-out: `temporal_holdout` flags subjects whose first record is on or after the
cutoff date (patients who arrived later: a prospective-style validation set), and `with_temporal_holdout`
moves them all to `held_out`, so that no model or featurizer is ever fitted on them; evaluating the split
name `temporal_holdout` selects them alone. A subject's flag depends on its own record only, so adding
subjects still moves no existing one. For row-level temporal validation, filter prediction_time ≥ the
cutoff, which `dataset.json` records.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

SPLITS = ("train", "tuning", "held_out")
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    train: float = Field(default=0.7, gt=0, lt=1)
    tuning: float = Field(default=0.15, ge=0, lt=1)
    held_out: float = Field(default=0.15, ge=0, lt=1)
    key: str = Field(
        default="ehr-risk-splits-v1", min_length=1, description="changing it reshuffles every subject"
    )
    temporal_holdout_date: dt.date | None = None

    @model_validator(mode="after")
    def _sum(self) -> SplitConfig:
        if abs(self.train + self.tuning + self.held_out - 1.0) > 1e-9:
            raise ValueError("split fractions must sum to 1")
        return self


def _key64(key: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little"))


def keyed_uniform(ids: np.ndarray, key: str) -> np.ndarray:
    """Deterministic uniform [0, 1) per id (int64/uint64 array), independent across keys."""
    x = ids.astype(np.uint64, copy=True) ^ _key64(key)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign_splits(subject_ids: pl.Series | np.ndarray, config: SplitConfig) -> pl.DataFrame:
    """subject_id → split for the given (unique) ids."""
    ids = np.asarray(subject_ids, dtype=np.int64)
    u = keyed_uniform(ids, config.key)
    cut1, cut2 = config.train, config.train + config.tuning
    code = np.where(u < cut1, 0, np.where(u < cut2, 1, 2)).astype(np.int8)
    split = pl.Series("split", code).replace_strict(
        {0: "train", 1: "tuning", 2: "held_out"}, return_dtype=pl.String
    )
    return pl.DataFrame({"subject_id": ids}).with_columns(split)


def temporal_holdout(first_times: pl.DataFrame, cutoff: dt.date) -> pl.Series:
    """True where a subject's first record (column first_time) is on or after the cutoff."""
    start = dt.datetime.combine(cutoff, dt.time())
    return first_times.select(
        (pl.col("first_time") >= start).fill_null(False).alias("temporal_holdout")
    ).to_series()


def with_temporal_holdout(splits: pl.DataFrame, flags: pl.Series) -> pl.DataFrame:
    """`splits` (one row per subject, in the order of `flags`) with the temporal_holdout column, and the
    flagged subjects moved to held_out: a hold-out that training and featurizer fitting never see."""
    flagged = flags.fill_null(False).alias("temporal_holdout")
    return splits.with_columns(
        pl.when(flagged).then(pl.lit("held_out")).otherwise(pl.col("split")).alias("split"), flagged
    )


def temporal_holdout_subjects(splits: pl.DataFrame) -> pl.DataFrame | None:
    """The subject_id of every temporal hold-out subject; None when the splits were made without one."""
    if "temporal_holdout" not in splits.columns or splits["temporal_holdout"].null_count() == splits.height:
        return None
    return splits.filter(pl.col("temporal_holdout")).select("subject_id")


def split_summary(splits: pl.DataFrame) -> dict[str, float]:
    """Fraction of subjects per split (for the report), and of temporal hold-out subjects if flagged."""
    n = max(splits.height, 1)
    counts = dict(splits.group_by("split").len().iter_rows())
    out = {s: counts.get(s, 0) / n for s in SPLITS}
    late = temporal_holdout_subjects(splits)
    if late is not None:
        out["temporal_holdout"] = late.height / n
    return out
