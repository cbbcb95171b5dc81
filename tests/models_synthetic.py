"""Small synthetic cohorts and toy featurizers (implementing the featurizer contract of contracts.md) for
the model, registry and training tests, so that they do not depend on the real featurizers' details.

The outcome hazard rises with age, with a lab value and — a temporal effect — with a "risky" code recorded
in the two years before the prediction time (the same code longer ago does nothing).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl

T0 = datetime(2020, 1, 1)
CODES = [f"SNOMED/{1000 + i}" for i in range(8)]
RISKY = "SNOMED/999"
LAB = "LOINC/2093-3"
HORIZONS = (1, 5, 10)


def make_cohort(n: int = 600, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(events, labels, splits) with one prediction time (2020-01-01) per subject."""
    rng = np.random.default_rng(seed)
    sid = np.arange(1, n + 1, dtype=np.int64) * 7919
    age = rng.uniform(40, 75, n)
    lab = rng.normal(200, 35, n)
    recent = rng.random(n) < 0.3
    old = rng.random(n) < 0.3
    rows: list[tuple[int, datetime | None, str, float | None]] = []
    for i in range(n):
        s = int(sid[i])
        rows.append((s, None, "GENDER/female" if i % 2 else "GENDER/male", None))
        rows.append((s, T0 - timedelta(days=float(age[i]) * 365.25), "MEDS_BIRTH", None))
        for _ in range(rng.integers(3, 25)):
            rows.append((s, T0 - timedelta(days=float(rng.uniform(1, 3000))), str(rng.choice(CODES)), None))
        rows.append((s, T0 - timedelta(days=float(rng.uniform(10, 300))), LAB, float(lab[i])))
        if recent[i]:
            rows.append((s, T0 - timedelta(days=float(rng.uniform(5, 700))), RISKY, None))
        if old[i]:
            rows.append((s, T0 - timedelta(days=float(rng.uniform(1500, 3000))), RISKY, None))
        # events after the prediction time (must never matter)
        rows.append((s, T0 + timedelta(days=30), RISKY, None))
    events = pl.DataFrame(
        rows,
        schema={
            "subject_id": pl.Int64,
            "time": pl.Datetime("us"),
            "code": pl.String,
            "numeric_value": pl.Float32,
        },
        orient="row",
    ).sort("subject_id", "time", nulls_last=False)
    lin = -4.2 + 0.06 * (age - 57) + 0.012 * (lab - 200) + 1.3 * recent
    rate = np.exp(lin)  # per year
    t_event = rng.exponential(1 / rate)
    t_death = rng.exponential(1 / 0.01, n)
    t_cens = rng.uniform(2, 14, n)
    years = lambda a: [T0 + timedelta(days=float(x) * 365.25) for x in a]  # noqa: E731
    first = np.minimum(np.minimum(t_event, t_death), t_cens)
    ev = t_event == first
    comp = t_death == first
    labels = pl.DataFrame(
        {
            "subject_id": sid,
            "prediction_time": [T0] * n,
            "event_time": [d if e else None for d, e in zip(years(t_event), ev, strict=True)],
            "competing_time": [d if c else None for d, c in zip(years(t_death), comp, strict=True)],
            "censor_time": years(np.minimum(t_cens, np.where(comp, t_death, np.inf))),
        },
        schema_overrides={
            "prediction_time": pl.Datetime("us"),
            "event_time": pl.Datetime("us"),
            "competing_time": pl.Datetime("us"),
            "censor_time": pl.Datetime("us"),
        },
    )
    for h in HORIZONS:
        known = (first >= h) | ev | comp
        value = ev & (t_event < h)
        labels = labels.with_columns(
            pl.Series(
                f"label_{h}y",
                [bool(v) if k else None for v, k in zip(value, known, strict=True)],
                dtype=pl.Boolean,
            )
        )
    labels = labels.with_columns(pl.col("label_10y").alias("boolean_value"))
    split = np.where(np.arange(n) % 10 < 7, "train", np.where(np.arange(n) % 10 < 9, "tuning", "held_out"))
    splits = pl.DataFrame({"subject_id": sid, "split": split})
    return events, labels, splits


def _visible(events: pl.DataFrame | pl.LazyFrame, times: pl.DataFrame) -> pl.DataFrame:
    ev = events.lazy().collect() if isinstance(events, pl.LazyFrame) else events
    keys = times.select("subject_id", "prediction_time").with_row_index("_row")
    j = keys.join(ev.select("subject_id", "time", "code", "numeric_value"), on="subject_id", how="left")
    return j.filter(pl.col("time").is_null() | (pl.col("time") <= pl.col("prediction_time")))


class ToyTabularFeaturizer:
    """Counts per code (codes seen in training), age, last lab value."""

    def fit(self, events: pl.DataFrame | pl.LazyFrame, times: pl.DataFrame) -> Self:
        vis = _visible(events, times)
        self.codes_ = sorted(c for c in vis["code"].drop_nulls().unique() if c != "MEDS_BIRTH")
        self.feature_names_ = [f"n_{c}" for c in self.codes_] + ["age", "last_lab"]
        return self

    def transform(self, events: pl.DataFrame | pl.LazyFrame, times: pl.DataFrame) -> pl.DataFrame:
        vis = _visible(events, times)
        keys = times.select("subject_id", "prediction_time").with_row_index("_row")
        counts = vis.group_by("_row").agg(
            [(pl.col("code") == c).sum().cast(pl.Float32).alias(f"n_{c}") for c in self.codes_]
            + [
                (
                    (
                        pl.col("prediction_time").first()
                        - pl.col("time").filter(pl.col("code") == "MEDS_BIRTH").first()
                    ).dt.total_days()
                    / 365.25
                )
                .cast(pl.Float32)
                .alias("age"),
                pl.col("numeric_value")
                .filter(pl.col("code") == LAB)
                .sort_by(pl.col("time").filter(pl.col("code") == LAB))
                .last()
                .cast(pl.Float32)
                .alias("last_lab"),
            ]
        )
        out = keys.join(counts, on="_row", how="left").sort("_row")
        return out.select("subject_id", "prediction_time", *self.feature_names_)


class ToySequenceFeaturizer:
    """Most recent `max_len` visible events as tokens; value bins at training tertiles of the lab."""

    def __init__(self, max_len: int = 32, n_value_bins: int = 3) -> None:
        self.max_len, self.n_value_bins = max_len, n_value_bins

    def fit(self, events: pl.DataFrame | pl.LazyFrame, times: pl.DataFrame) -> Self:
        vis = _visible(events, times)
        codes = sorted(vis["code"].drop_nulls().unique())
        self.vocab_ = {"[PAD]": 0, "[UNK]": 1} | {c: i + 2 for i, c in enumerate(codes)}
        self.n_tokens_ = len(self.vocab_)
        self.n_value_bins_ = self.n_value_bins
        vals = vis.filter(pl.col("code") == LAB)["numeric_value"].to_numpy()
        self.edges_ = np.quantile(vals, [1 / 3, 2 / 3]).tolist()
        return self

    def transform(self, events: pl.DataFrame | pl.LazyFrame, times: pl.DataFrame) -> pl.DataFrame:
        vis = _visible(events, times).filter(pl.col("code").is_not_null())
        birth = vis.filter(pl.col("code") == "MEDS_BIRTH").select("_row", pl.col("time").alias("_birth"))
        vocab = pl.DataFrame(
            {"code": list(self.vocab_), "token": list(self.vocab_.values())},
            schema={"code": pl.String, "token": pl.Int32},
        )
        t = pl.coalesce("time", "_birth")
        seq = (
            vis.join(birth, on="_row", how="left")
            .join(vocab, on="code", how="left")
            .with_columns(t.alias("_t"))
            .sort("_row", "_t", "code")
            .group_by("_row", maintain_order=True)
            .agg(
                pl.col("token").fill_null(1).tail(self.max_len).alias("tokens"),
                ((pl.col("prediction_time") - pl.col("_t")).dt.total_hours() / 24.0)
                .cast(pl.Float32)
                .tail(self.max_len)
                .alias("delta_days"),
                ((pl.col("_t") - pl.col("_birth")).dt.total_days() / 365.25)
                .cast(pl.Float32)
                .tail(self.max_len)
                .alias("age_years"),
                pl.when(pl.col("numeric_value").is_null())
                .then(0)
                .otherwise(
                    1
                    + (pl.col("numeric_value") >= self.edges_[0]).cast(pl.Int8)
                    + (pl.col("numeric_value") >= self.edges_[1]).cast(pl.Int8)
                )
                .cast(pl.Int8)
                .tail(self.max_len)
                .alias("value_bin"),
            )
        )
        keys = times.select("subject_id", "prediction_time").with_row_index("_row")
        out = keys.join(seq, on="_row", how="left").sort("_row")
        return out.select(
            "subject_id",
            "prediction_time",
            "tokens",
            "delta_days",
            "age_years",
            "value_bin",
            pl.col("tokens").list.len().cast(pl.Int32).fill_null(0).alias("length"),
        )


def write_dataset(root: Path, n: int = 600, seed: int = 0, task: str = "toy_10y") -> Path:
    """A dataset folder in the layout of contracts.md, built with the toy featurizers."""
    import pickle

    events, labels, splits = make_cohort(n, seed)
    ds = root / "ds"
    (ds / "labels").mkdir(parents=True)
    (ds / "features").mkdir()
    (ds / "featurizers").mkdir()
    times = labels.select("subject_id", "prediction_time")
    train_times = times.join(splits.filter(pl.col("split") == "train"), on="subject_id").select(times.columns)
    tab = ToyTabularFeaturizer().fit(events, train_times)
    seqf = ToySequenceFeaturizer().fit(events, train_times)
    times.write_parquet(ds / "prediction_times.parquet")
    labels.write_parquet(ds / "labels" / f"{task}.parquet")
    splits.write_parquet(ds / "splits.parquet")
    tab.transform(events, times).write_parquet(ds / "features" / "tabular.parquet")
    seqf.transform(events, times).write_parquet(ds / "features" / "sequence.parquet")
    for name, obj in (("tabular", tab), ("sequence", seqf)):
        with open(ds / "featurizers" / f"{name}.pkl", "wb") as f:
            pickle.dump(obj, f)
    (ds / "featurizers" / "vocab.json").write_text(__import__("json").dumps(seqf.vocab_))
    (ds / "dataset.json").write_text(
        __import__("json").dumps({"tasks": {task: {"horizons": list(HORIZONS)}}})
    )
    events.write_parquet(root / "events.parquet")
    return ds
