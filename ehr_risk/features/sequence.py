"""Sequence features: per prediction time, the most recent events at or before it as token ids.

Output (contracts.md, schema data_schemas/features_sequence.json), one row per prediction time:

    tokens      list<int32>    0 = PAD (reserved, never stored), 1 = UNK, 2.. = vocabulary ids
    delta_days  list<float32>  days between the event and t (>= 0)
    age_years   list<float32>  age at the event (NaN when the birth date is unknown)
    value_bin   list<int8>     0 = no numeric value (or no bins for the key), 1..B = quantile bin
    length      int32          number of tokens (lists are not padded)

Order is oldest → newest. Static facts (sex, race, ethnicity) and MEDS_BIRTH always come first, dated at
birth (or at the first visible event when the birth date is unknown); then the most recent
`max_len - n_static` timed events visible at t. Ties in time are ordered by key, then value, so output
does not depend on input row order.

The vocabulary (key → id, see ehr_risk.features.tokens for keys) keeps keys with at least `min_count`
events visible at the training prediction times; value bins are per-key quantiles of the same events
(keys with fewer than `min_count` values get no bins). Nothing is learned from held-out subjects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Self

import polars as pl
from sklearn.base import BaseEstimator

from ehr_risk.errors import ConfigError
from ehr_risk.events import (
    DAYS_PER_YEAR,
    ROW,
    US_PER_DAY,
    EventsLike,
    ensure_event_columns,
    events_at_last,
    unique_times,
    visible_expr,
)
from ehr_risk.features.tokens import BIRTH, key_expr

PAD = 0
UNK = 1
PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"


class SequenceFeaturizer(BaseEstimator):
    """Fit the vocabulary and value bins on training prediction times; transform to token sequences."""

    def __init__(self, max_len: int = 256, n_value_bins: int = 10, min_count: int = 5) -> None:
        self.max_len = max_len
        self.n_value_bins = n_value_bins
        self.min_count = min_count

    def fit(self, events: EventsLike, times: pl.DataFrame) -> Self:
        if self.max_len < 1:
            raise ConfigError("SequenceFeaturizer: max_len must be >= 1")
        if not 1 <= self.n_value_bins <= 127:
            raise ConfigError("SequenceFeaturizer: n_value_bins must be within 1..127 (stored as int8)")
        if self.min_count < 1:
            raise ConfigError("SequenceFeaturizer: min_count must be >= 1")
        seen = events_at_last(events, times).with_columns(key_expr())
        counts = (
            seen.group_by("key")
            .agg(pl.len().alias("n"))
            .filter(pl.col("n") >= self.min_count)
            .sort(["n", "key"], descending=[True, False])
        )
        quantiles = [i / self.n_value_bins for i in range(1, self.n_value_bins)]
        values = (
            seen.filter(pl.col("numeric_value").is_not_null())
            .group_by("key")
            .agg(
                pl.len().alias("n"),
                *(
                    pl.col("numeric_value").quantile(q, "linear").alias(f"q{i}")
                    for i, q in enumerate(quantiles)
                ),
            )
            .filter(pl.col("n") >= self.min_count)
        )
        counts_df, values_df = pl.collect_all([counts, values])
        self.vocab_: dict[str, int] = {PAD_TOKEN: PAD, UNK_TOKEN: UNK}
        for i, key in enumerate(counts_df.get_column("key").to_list()):
            self.vocab_[key] = i + 2
        self.n_tokens_: int = len(self.vocab_)
        self.n_value_bins_: int = self.n_value_bins
        self.value_edges_: dict[str, list[float]] = {}
        for row in values_df.iter_rows(named=True):
            if row["key"] in self.vocab_:
                edges = sorted({float(row[f"q{i}"]) for i in range(len(quantiles))})
                self.value_edges_[row["key"]] = edges
        return self

    def save_vocab(self, path: str | Path) -> Path:
        """Write `vocab.json` (token → id, PAD and UNK included)."""
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.vocab_, indent=0, sort_keys=False) + "\n")
        return path

    def _check_fitted(self) -> None:
        if not hasattr(self, "vocab_"):
            raise ConfigError("SequenceFeaturizer: call fit() before transform()")

    def _edges_frame(self) -> pl.DataFrame:
        width = max(self.n_value_bins_ - 1, 1)
        keys = list(self.value_edges_)
        columns: dict[str, list[float | None]] = {
            f"_e{j}": [e[j] if j < len(e) else None for e in self.value_edges_.values()] for j in range(width)
        }
        return pl.DataFrame(
            {"key": keys, **columns}, schema={"key": pl.String, **dict.fromkeys(columns, pl.Float64)}
        )

    def transform(self, events: EventsLike, times: pl.DataFrame) -> pl.DataFrame:
        """The sequence table for `times` (row order = `times`)."""
        self._check_fitted()
        lf = ensure_event_columns(events)
        keys, index = unique_times(times)
        vocab = pl.DataFrame(
            {"key": list(self.vocab_), "token": list(self.vocab_.values())},
            schema={"key": pl.String, "token": pl.Int32},
        )
        edges = self._edges_frame()
        edge_cols = [c for c in edges.columns if c != "key"]
        value = pl.col("numeric_value")
        bin_expr = (
            pl.when(value.is_not_null() & pl.col(edge_cols[0]).is_not_null())
            .then(1 + pl.sum_horizontal([(value >= pl.col(c)).fill_null(False) for c in edge_cols]))
            .otherwise(0)
        )
        # Tokens and value bins depend on the event only: computed before the join to prediction times.
        tokenized = (
            lf.with_columns(key_expr())
            .join(vocab.lazy(), on="key", how="left")
            .join(edges.lazy(), on="key", how="left")
            .select(
                "subject_id",
                "time",
                "code",
                "recorded_time",
                pl.col("token").fill_null(UNK).cast(pl.Int32),
                bin_expr.clip(0, self.n_value_bins_).cast(pl.Int8).alias("value_bin"),
                value,
                (pl.col("time").is_null() | (pl.col("code") == BIRTH)).alias("_prefix"),
                (pl.col("code") == BIRTH).alias("_birth"),
            )
        )
        # Sorted once per event (not per prediction time); the join keeps that order, so each row's events
        # are aggregated oldest → newest without sorting the joined rows. Ties: token, bin, value.
        ordered = tokenized.with_columns(
            pl.when(pl.col("_prefix")).then(None).otherwise(pl.col("time")).alias("_order")
        ).sort(
            ["subject_id", "_prefix", "_order", "token", "value_bin", "numeric_value"],
            descending=[False, True, False, False, False, False],
            nulls_last=True,
        )
        visible = (
            ordered.join(keys.lazy(), on="subject_id", how="inner", maintain_order="left")
            .filter(visible_expr())
            .with_columns(pl.col("time").dt.epoch("us").alias("_us"))
        )
        timed = ~pl.col("_prefix")
        per_row = visible.group_by(ROW, maintain_order=True).agg(
            pl.col("prediction_time").first().dt.epoch("us").alias("_t"),
            pl.col("_us").filter(pl.col("_birth")).min().alias("_birth"),
            pl.col("_us").filter(timed).min().alias("_first"),
            pl.col("_prefix").sum().cast(pl.Int64).alias("_n_prefix"),
            pl.col("token").filter(pl.col("_prefix")).alias("_p_tokens"),
            pl.col("token").filter(timed).alias("_tokens"),
            pl.col("_us").filter(timed).alias("_times"),
            pl.col("value_bin").filter(pl.col("_prefix")).alias("_p_bins"),
            pl.col("value_bin").filter(timed).alias("_bins"),
        )
        n_prefix = pl.min_horizontal(pl.col("_n_prefix"), pl.lit(self.max_len))
        room = pl.lit(self.max_len) - n_prefix
        anchor = pl.coalesce("_birth", "_first", "_t")  # static facts are dated at birth (or first event)
        year_us = US_PER_DAY * DAYS_PER_YEAR
        prefix_age = pl.when(pl.col("_birth").is_not_null()).then(0.0).otherwise(float("nan"))
        times_kept = pl.col("_times").list.tail(room)
        seqs = (
            per_row.with_columns(n_prefix.alias("_keep_p"), room.alias("_room"))
            .select(
                ROW,
                pl.concat_list(pl.col("_p_tokens").list.head("_keep_p"), pl.col("_tokens").list.tail("_room"))
                .cast(pl.List(pl.Int32))
                .alias("tokens"),
                pl.concat_list(
                    ((pl.col("_t") - anchor).cast(pl.Float64) * (1.0 / US_PER_DAY)).repeat_by("_keep_p"),
                    (pl.col("_t") - times_kept).cast(pl.List(pl.Float64)) * (1.0 / US_PER_DAY),
                )
                .cast(pl.List(pl.Float32))
                .alias("delta_days"),
                pl.concat_list(
                    prefix_age.repeat_by("_keep_p"),
                    (times_kept - pl.col("_birth")).cast(pl.List(pl.Float64)) / year_us,
                )
                .list.eval(pl.element().fill_null(float("nan")))
                .cast(pl.List(pl.Float32))
                .alias("age_years"),
                pl.concat_list(pl.col("_p_bins").list.head("_keep_p"), pl.col("_bins").list.tail("_room"))
                .cast(pl.List(pl.Int8))
                .alias("value_bin"),
            )
            .collect()
        )
        table = keys.join(seqs, on=ROW, how="left")
        out = pl.DataFrame({ROW: index}).join(table, on=ROW, how="left", maintain_order="left")
        empty = {"tokens": pl.Int32, "delta_days": pl.Float32, "age_years": pl.Float32, "value_bin": pl.Int8}
        return out.select(
            "subject_id",
            "prediction_time",
            *(pl.col(c).fill_null(pl.lit([], dtype=pl.List(t))).alias(c) for c, t in empty.items()),
        ).with_columns(pl.col("tokens").list.len().cast(pl.Int32).alias("length"))
