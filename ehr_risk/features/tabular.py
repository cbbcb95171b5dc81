"""Tabular features at each prediction time: one float32 row per (subject, prediction time).

Columns (`feature_names_`, fixed at fit time):

    age_years, history_days                     age at t; days since the first visible event
    static:<code>                               0/1 for each sex/race/ethnicity code seen in training
    events:count_<w>                            all visible events in the window
    code:<key>:count_<w>                        events of each of the top-K keys in each window
    code:<key>:last_value, ...:last_value_age_days   numeric keys: latest value and its age in days
    code:<key>:sd_<w>, ...:slope_<w>            numeric keys over the trend window (5 years): standard
                                                deviation (≥ 2 values) and least-squares slope per year
                                                (≥ 3 values at ≥ 2 times) — what a history shows and a
                                                last value does not (visit-to-visit variability, a rise)
    clin:<variable>                             the clinical variables (ehr_risk.features.clinical)

Windows are days before t (`None` = all history, named `all`). A key is a code, or code=answer for coded
answers (ehr_risk.features.tokens). Top-K keys are ranked by the number of training subjects that have
the key visible at one of their training prediction times (then by event count, then by name), so a code
seen only in held-out subjects never becomes a column. Missing last values are null (NaN in numpy).

The dense table is built by scattering (row, column, value) triples into a float32 matrix — no pivots, no
Python loops over events; `transform_sparse` builds a scipy CSR matrix from the same triples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from ehr_risk.errors import ConfigError
from ehr_risk.events import (
    DAYS_PER_YEAR,
    ROW,
    EventsLike,
    birth_time_at,
    days_before,
    ensure_event_columns,
    events_at,
    events_at_last,
    unique_times,
)
from ehr_risk.features.clinical import FLAGS, NUMERIC_COLUMNS, clinical_variables
from ehr_risk.features.tokens import BIRTH, DEATH, is_static_code, key_expr

_NUMERIC_SHARE = 0.5  # a key is numeric when at least this share of its training events carry a value


def _window_name(days: int | None) -> str:
    return "all" if days is None else f"{days}d"


class TabularFeaturizer(BaseEstimator):
    """Fit on training prediction times; transform any prediction times (scikit-learn estimator contract)."""

    def __init__(
        self,
        top_k: int = 200,
        windows_days: tuple[int | None, ...] = (30, 365, 1825, None),
        include_clinical: bool = True,
        lookback_days: dict[str, int | None] | None = None,
        codelist_dir: str | Path | None = None,
        trend_days: int | None = 1825,
    ) -> None:
        self.top_k = top_k
        self.trend_days = trend_days
        self.windows_days = windows_days
        self.include_clinical = include_clinical
        self.lookback_days = lookback_days
        self.codelist_dir = codelist_dir

    # ---------------------------------------------------------------- fit
    def fit(self, events: EventsLike, times: pl.DataFrame) -> Self:
        if self.top_k < 0:
            raise ConfigError("TabularFeaturizer: top_k must be >= 0")
        windows = list(self.windows_days)
        if not windows or len(set(windows)) != len(windows) or any(w is not None and w <= 0 for w in windows):
            raise ConfigError(
                "TabularFeaturizer: windows_days must be distinct positive day counts (or null)"
            )
        seen = events_at_last(events, times).with_columns(key_expr())
        static = seen.filter(pl.col("time").is_null() & is_static_code()).select("code").unique().sort("code")
        timed = seen.filter(pl.col("time").is_not_null() & ~pl.col("code").is_in([BIRTH, DEATH]))
        ranked = (
            timed.group_by("key")
            .agg(
                pl.col("subject_id").n_unique().alias("subjects"),
                pl.len().alias("events"),
                pl.col("numeric_value").is_not_null().mean().alias("numeric_share"),
            )
            .sort(["subjects", "events", "key"], descending=[True, True, False])
            .head(self.top_k)
        )
        static_df, ranked_df = pl.collect_all([static, ranked])
        self.static_codes_: list[str] = static_df.get_column("code").to_list()
        self.codes_: list[str] = ranked_df.get_column("key").to_list()
        self.numeric_codes_: list[str] = ranked_df.filter(pl.col("numeric_share") >= _NUMERIC_SHARE)[
            "key"
        ].to_list()
        self.n_train_times_ = times.height
        self._layout()
        return self

    def _layout(self) -> None:
        windows = [_window_name(w) for w in self.windows_days]
        names = ["age_years", "history_days"]
        names += [f"static:{c}" for c in self.static_codes_]
        names += [f"events:count_{w}" for w in windows]
        numeric = set(self.numeric_codes_)
        for key in self.codes_:
            names += [f"code:{key}:count_{w}" for w in windows]
            if key in numeric:
                names += [f"code:{key}:last_value", f"code:{key}:last_value_age_days"]
                if self._trend_window is not None:
                    names += [f"code:{key}:sd_{self._trend_window}", f"code:{key}:slope_{self._trend_window}"]
        if self.include_clinical:
            names += [f"clin:{c}" for c in (*NUMERIC_COLUMNS[1:], *FLAGS)]
        self.feature_names_: list[str] = names
        self._index = {name: i for i, name in enumerate(names)}

    @property
    def _trend_window(self) -> str | None:
        # getattr: featurizers pickled before trend features existed have no such attribute
        days = getattr(self, "trend_days", None)
        return None if days is None else _window_name(days)

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise ConfigError("TabularFeaturizer: call fit() before transform()")

    # ---------------------------------------------------------------- transform
    def transform(
        self, events: EventsLike, times: pl.DataFrame, clinical: pl.DataFrame | None = None
    ) -> pl.DataFrame:
        """subject_id, prediction_time, then float32 `feature_names_` columns; row order = `times`.

        `clinical`: the clinical-variables table of the same `times` if the caller already has it (it is
        computed otherwise).
        """
        keys, index, triples = self._triples(events, times, clinical)
        matrix = np.zeros((keys.height, len(self.feature_names_)), dtype=np.float32)
        matrix[:, self._nan_columns()] = np.nan
        rows, cols, values = triples
        matrix[rows, cols] = values
        idx = index.to_numpy()
        out = pl.from_numpy(matrix[idx], schema=self.feature_names_, orient="row")
        out = out.with_columns(pl.all().fill_nan(None))
        ids = keys.select("subject_id", "prediction_time")[idx]
        return pl.concat([ids, out], how="horizontal")

    def transform_sparse(
        self, events: EventsLike, times: pl.DataFrame, clinical: pl.DataFrame | None = None
    ) -> sp.csr_matrix:
        """The same features as a float32 CSR matrix (rows = `times`); missing values are NaN entries."""
        keys, index, (rows, cols, values) = self._triples(events, times, clinical)
        nan_cols = np.flatnonzero(self._nan_columns())
        present = np.zeros((keys.height, len(self.feature_names_)), dtype=bool)
        present[rows, cols] = True
        miss_r, miss_c = np.nonzero(~present[:, nan_cols])
        rows = np.concatenate([rows, miss_r])
        cols = np.concatenate([cols, nan_cols[miss_c]])
        values = np.concatenate([values, np.full(miss_r.size, np.nan, dtype=np.float32)])
        shape = (keys.height, len(self.feature_names_))
        matrix = sp.csr_matrix((values, (rows, cols)), shape=shape, dtype=np.float32)
        return matrix[index.to_numpy()]

    def to_sparse(self, table: pl.DataFrame) -> sp.csr_matrix:
        """A transformed table → float32 CSR of `feature_names_` (nulls become NaN entries)."""
        self._check_fitted()
        dense = table.select(self.feature_names_).to_numpy().astype(np.float32)
        return sp.csr_matrix(dense)

    def _nan_columns(self) -> np.ndarray:
        """Columns whose missing value is NaN (values, ages, clinical), not 0 (counts, indicators)."""
        return np.array(
            [
                n.endswith(("last_value", "last_value_age_days"))
                or n.split(":")[-1].startswith(("sd_", "slope_"))
                or n.startswith("clin:")
                or n == "age_years"
                or n == "history_days"
                for n in self.feature_names_
            ],
            dtype=bool,
        )

    def _triples(
        self, events: EventsLike, times: pl.DataFrame, clinical: pl.DataFrame | None = None
    ) -> tuple[pl.DataFrame, pl.Series, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        self._check_fitted()
        lf = ensure_event_columns(events)
        keys, index = unique_times(times)
        demographics, codes, totals = pl.collect_all(
            [self._demographics(lf, keys), self._code_events(lf, keys), self._totals(lf, keys)]
        )
        frames = [demographics, self._code_triples(codes), totals]
        if self.include_clinical:
            frames.append(self._clinical(lf, keys, times, index, clinical))
        long = pl.concat(frames, how="vertical")
        return (
            keys,
            index,
            (
                long.get_column(ROW).to_numpy().astype(np.int64),
                long.get_column("col").to_numpy().astype(np.int64),
                long.get_column("value").to_numpy().astype(np.float32),
            ),
        )

    def _long(self, frame: pl.LazyFrame, columns: dict[str, str]) -> pl.LazyFrame:
        """Wide → (ROW, col, value) with `col` the feature index of each named column."""
        melted = frame.unpivot(index=ROW, on=list(columns), variable_name="_name", value_name="value")
        lookup = pl.DataFrame({"_name": list(columns), "col": [self._index[n] for n in columns.values()]})
        return (
            melted.filter(pl.col("value").is_not_null())
            .join(lookup.lazy(), on="_name", how="inner")
            .select(
                pl.col(ROW).cast(pl.Int64), pl.col("col").cast(pl.Int64), pl.col("value").cast(pl.Float32)
            )
        )

    def _demographics(self, lf: pl.LazyFrame, keys: pl.DataFrame) -> pl.LazyFrame:
        age = (
            keys.lazy()
            .join(birth_time_at(lf, keys), on=ROW, how="inner")
            .select(ROW, (days_before(time="birth_time") * (1.0 / DAYS_PER_YEAR)).alias("age_years"))
        )
        # Static facts are visible at every t: join them per subject, not per (subject, t) event.
        columns = {c: self._index[f"static:{c}"] for c in self.static_codes_}
        static = (
            lf.filter(pl.col("time").is_null() & pl.col("code").is_in(list(columns)))
            .select("subject_id", "code")
            .unique()
            .join(keys.lazy().select(ROW, "subject_id"), on="subject_id", how="inner")
            .select(
                pl.col(ROW).cast(pl.Int64),
                pl.col("code").replace_strict(columns, return_dtype=pl.Int64).alias("col"),
                pl.lit(1.0, dtype=pl.Float32).alias("value"),
            )
        )
        return pl.concat([self._long(age, {"age_years": "age_years"}), static], how="vertical")

    def _window_aggs(self) -> dict[str, pl.Expr]:
        aggs = {}
        for w in self.windows_days:
            name = f"count_{_window_name(w)}"
            expr = pl.len() if w is None else (pl.col("days") <= w).sum()
            aggs[name] = expr.cast(pl.Float32).alias(name)
        return aggs

    def _code_events(self, lf: pl.LazyFrame, keys: pl.DataFrame) -> pl.LazyFrame:
        """Visible events of the top-K keys: ROW, _k (index into codes_), days, time, numeric_value."""
        key_index = pl.DataFrame(
            {"key": self.codes_, "_k": list(range(len(self.codes_)))},
            schema={"key": pl.String, "_k": pl.Int64},
        )
        base_codes = sorted({k.split("=", 1)[0] for k in self.codes_})
        # Keys are computed and matched on the events, before the join multiplies them by prediction times.
        keyed = (
            lf.filter(pl.col("code").is_in(base_codes) & pl.col("time").is_not_null())
            .with_columns(key_expr())
            .join(key_index.lazy(), on="key", how="inner")
        )
        return events_at(keyed, keys, ["numeric_value", "_k"], static=False).select(
            pl.col(ROW).cast(pl.Int64),
            "_k",
            days_before().alias("days"),
            pl.col("time").dt.epoch("us").alias("time"),
            "numeric_value",
        )

    def _code_triples(self, visible: pl.DataFrame) -> pl.DataFrame:
        """Window counts and last values per (row, key) → (ROW, col, value) triples.

        Counting is a weighted bincount over the (row, key) pairs present; the last value per (row, key) is
        the last of a lexsort by (row, key, time, value) — so ties at one time give the largest value,
        whatever the input order.
        """
        n_keys = len(self.codes_)
        empty = pl.DataFrame(schema={ROW: pl.Int64, "col": pl.Int64, "value": pl.Float32})
        if n_keys == 0 or visible.height == 0:
            return empty
        g = visible.get_column(ROW).to_numpy() * n_keys + visible.get_column("_k").to_numpy()
        days = visible.get_column("days").to_numpy()
        parts = [empty]

        def add(stat: str, rows: np.ndarray, ks: np.ndarray, values: np.ndarray) -> None:
            lookup = np.array(
                [self._index.get(f"code:{key}:{stat}", -1) for key in self.codes_], dtype=np.int64
            )
            cols = lookup[ks]
            keep = cols >= 0
            parts.append(
                pl.DataFrame(
                    {ROW: rows[keep], "col": cols[keep], "value": values[keep].astype(np.float32)},
                    schema={ROW: pl.Int64, "col": pl.Int64, "value": pl.Float32},
                )
            )

        # bincount over the (row, key) pairs present, so memory follows the data, not rows x keys
        pairs, slot = np.unique(g, return_inverse=True)
        for w in self.windows_days:
            weights = None if w is None else (days <= w).astype(np.float64)
            counts = np.bincount(slot, weights=weights, minlength=pairs.size)
            nonzero = np.flatnonzero(counts)
            add(
                f"count_{_window_name(w)}", pairs[nonzero] // n_keys, pairs[nonzero] % n_keys, counts[nonzero]
            )
        numeric = visible.filter(pl.col("numeric_value").is_not_null())
        if numeric.height:
            gn = numeric.get_column(ROW).to_numpy() * n_keys + numeric.get_column("_k").to_numpy()
            values = numeric.get_column("numeric_value").to_numpy()
            order = np.lexsort((values, numeric.get_column("time").to_numpy(), gn))
            gs = gn[order]
            last = order[np.flatnonzero(np.r_[gs[1:] != gs[:-1], True])]
            add("last_value", gn[last] // n_keys, gn[last] % n_keys, values[last])
            add(
                "last_value_age_days", gn[last] // n_keys, gn[last] % n_keys, numeric["days"].to_numpy()[last]
            )
            if self._trend_window is not None:
                within = numeric["days"].to_numpy() <= self.trend_days
                years = -numeric["days"].to_numpy()[within] / DAYS_PER_YEAR  # now = 0, the past negative
                for stat, rows, ks, value in _trends(gn[within], n_keys, years, values[within]):
                    add(f"{stat}_{self._trend_window}", rows, ks, value)
        return pl.concat(parts, how="vertical")

    def _totals(self, lf: pl.LazyFrame, keys: pl.DataFrame) -> pl.LazyFrame:
        # Counting every event needs one pass over the join of all visible events; the window counts
        # come from the same group-by.
        visible = events_at(lf, keys, codes=~pl.col("code").is_in([BIRTH, DEATH]), static=False).with_columns(
            days_before().alias("days")
        )
        aggs = self._window_aggs()
        totals = visible.group_by(ROW).agg(*aggs.values(), pl.col("days").max().alias("history_days"))
        return self._long(
            totals, {"history_days": "history_days", **{name: f"events:{name}" for name in aggs}}
        )

    def _clinical(
        self,
        lf: pl.LazyFrame,
        keys: pl.DataFrame,
        times: pl.DataFrame,
        index: pl.Series,
        table: pl.DataFrame | None,
    ) -> pl.DataFrame:
        columns = [*NUMERIC_COLUMNS[1:], *FLAGS]
        if table is None:
            table = clinical_variables(
                lf,
                keys.select("subject_id", "prediction_time"),
                self.lookback_days,
                codelist_dir=self.codelist_dir,
            )
            rows = keys.get_column(ROW)
        else:  # computed by the caller for `times` (same rows, same order)
            if table.height != times.height or not table.select("subject_id").equals(
                times.select("subject_id")
            ):
                raise ConfigError("TabularFeaturizer: the clinical table does not match the prediction times")
            rows = index
        wide = table.select(pl.Series(ROW, rows), *(pl.col(c).cast(pl.Float32) for c in columns))
        return self._long(wide.lazy(), {c: f"clin:{c}" for c in columns}).collect()


def _trends(
    groups: np.ndarray, n_keys: int, years: np.ndarray, values: np.ndarray
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Per (row, key) group: SD of the values (≥ 2) and their least-squares slope per year (≥ 3 values,
    times not all equal), from centred sums (one bincount per moment, no Python loop over groups)."""
    if groups.size == 0:
        return []
    pairs, slot = np.unique(groups, return_inverse=True)
    n = np.bincount(slot).astype(np.float64)
    mv = np.bincount(slot, values) / n
    mt = np.bincount(slot, years) / n
    dv, dt = values - mv[slot], years - mt[slot]
    svv, stt, stv = (np.bincount(slot, a * b) for a, b in ((dv, dv), (dt, dt), (dt, dv)))
    out = []
    sd_ok = n >= 2
    out.append(("sd", pairs[sd_ok], np.sqrt(svv[sd_ok] / (n[sd_ok] - 1))))
    slope_ok = (n >= 3) & (stt > 1e-6)
    out.append(("slope", pairs[slope_ok], stv[slope_ok] / stt[slope_ok]))
    return [(stat, p // n_keys, p % n_keys, v) for stat, p, v in out]
