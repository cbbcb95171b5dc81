"""The canonical event table as seen by everything downstream of ingestion, and THE visibility rule.

An event is visible at prediction time t iff

    time is null (a static fact: sex, race, ethnicity)                      -- always visible
    or  time <= t  and  (recorded_time is null or recorded_time <= t)

i.e. it happened by t and was known by t. Every featurizer, the clinical variables and any code that
looks at the past of a prediction time goes through `visible_expr` / `visible` / `events_at`; nothing else
in the code base compares event times with prediction times for that purpose.

Prediction times are a frame `times` with columns subject_id (int64) and prediction_time (Datetime "us").
`events_at` joins events to prediction times on subject_id and then filters with the rule: the join is a
hash join per subject, so its cost is (events of a subject) x (prediction times of that subject), and
callers cut it down by selecting the codes they need *before* the join.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from ehr_risk.errors import InputDataError
from ehr_risk.tables import load_schema

# The event table's columns and polars types, from its schema file (data_schemas/events.json).
EVENT_DTYPES: dict[str, pl.DataType] = dict(pl.DataFrame(load_schema("events").arrow.empty_table()).schema)
EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_DTYPES)
# The event columns the featurizers read (provenance such as resource_type and record_id left out).
_FEATURE_COLUMNS = (
    "subject_id",
    "time",
    "code",
    "numeric_value",
    "text_value",
    "unit",
    "end_time",
    "recorded_time",
)
# The columns the visibility rule and the per-row bookkeeping need.
_KEY_COLUMNS = ("subject_id", "time", "recorded_time")
ROW = "_row"  # row key of a unique (subject_id, prediction_time) pair inside featurizers
US_PER_DAY = 86_400_000_000
DAYS_PER_YEAR = 365.25

EventsLike = pl.LazyFrame | pl.DataFrame


def scan_events(path: str | Path) -> pl.LazyFrame:
    """Lazily read the event table: an ingest output folder (`DIR/events/*.parquet`), a folder of shards,
    or one parquet file. Missing optional columns (recorded_time, end_time, ...) are added as nulls."""
    path = Path(path)
    if path.is_file():
        source = str(path)
    elif (path / "events").is_dir():
        source = str(path / "events" / "*.parquet")
        if not any((path / "events").glob("*.parquet")):
            raise InputDataError(f"{path / 'events'}: no event shards (*.parquet)")
    elif path.is_dir():
        if not any(path.glob("*.parquet")):
            raise InputDataError(f"{path}: no event shards (*.parquet) and no events/ folder")
        source = str(path / "*.parquet")
    else:
        raise InputDataError(f"{path}: event table not found")
    return ensure_event_columns(pl.scan_parquet(source))


def ensure_event_columns(events: EventsLike) -> pl.LazyFrame:
    """The events as a LazyFrame with every column the featurizers read, in canonical dtypes.

    Hand-made frames (tests, callers with a subset of columns) get the optional columns as nulls.
    Idempotent, so featurizers call it on whatever they are given.
    """
    lf = events.lazy()
    names = lf.collect_schema().names()
    for required in ("subject_id", "time", "code"):
        if required not in names:
            raise InputDataError(f"event table: missing column {required!r}")
    exprs = [
        (pl.col(c) if c in names else pl.lit(None)).cast(EVENT_DTYPES[c]).alias(c) for c in _FEATURE_COLUMNS
    ]
    # Columns a caller derived beforehand (an event key, a token id) are kept; provenance columns dropped.
    extra = [c for c in names if c not in EVENT_COLUMNS]
    return lf.select(*exprs, *extra)


def check_times(times: pl.DataFrame) -> pl.DataFrame:
    """Prediction times as (subject_id int64, prediction_time Datetime us), validated; others dropped."""
    for column in ("subject_id", "prediction_time"):
        if column not in times.columns:
            raise InputDataError(f"prediction times: missing column {column!r}")
    out = times.select(
        pl.col("subject_id").cast(pl.Int64),
        pl.col("prediction_time").cast(pl.Datetime("us")),
    )
    nulls = out.null_count().row(0)
    if any(nulls):
        raise InputDataError(f"prediction times: {sum(nulls)} null subject_id/prediction_time value(s)")
    return out


def unique_times(times: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """(unique (subject_id, prediction_time) pairs with a ROW key 0..n-1, ROW of every input row).

    Featurizers compute each unique pair once and gather the results back into the caller's row order.
    """
    times = check_times(times)
    keys = times.unique(maintain_order=True).with_row_index(ROW)
    index = times.join(keys, on=["subject_id", "prediction_time"], how="left", maintain_order="left")
    return keys.with_columns(pl.col(ROW).cast(pl.Int64)), index.get_column(ROW).cast(pl.Int64)


def visible_expr(t: str | pl.Expr = "prediction_time") -> pl.Expr:
    """THE visibility rule as a polars expression over columns `time`, `recorded_time` and `t`."""
    t_expr = pl.col(t) if isinstance(t, str) else t
    happened = pl.col("time") <= t_expr
    known = pl.col("recorded_time").is_null() | (pl.col("recorded_time") <= t_expr)
    return pl.col("time").is_null() | (happened & known)


def available_time_expr() -> pl.Expr:
    """The moment an event becomes visible: max(time, recorded_time); null for static rows.

    The same rule as `visible_expr` in one column: a timed event is visible at t iff this is <= t. It lets
    "first visible event" questions be answered per subject without a join to every prediction time.
    """
    return pl.max_horizontal("time", "recorded_time").alias("available_time")


def first_available_time(events: EventsLike, codes: pl.Expr | None = None) -> pl.LazyFrame:
    """subject_id, first_available_time: when the subject's first timed event (of `codes`) became visible."""
    lf = ensure_event_columns(events).filter(pl.col("time").is_not_null())
    if codes is not None:
        lf = lf.filter(codes)
    return lf.group_by("subject_id").agg(available_time_expr().min().alias("first_available_time"))


def visible(events: EventsLike, t: object) -> pl.LazyFrame:
    """The events visible at `t`.

    `t` a datetime: the record as of that moment (e.g. batch scoring "as of 2020-01-01").
    `t` a frame of prediction times (subject_id, prediction_time): one row per (prediction time, visible
    event of that subject), with the prediction_time column added — what cohort and feature code joins on.
    """
    if isinstance(t, pl.DataFrame):
        keys = check_times(t).unique()
        return (
            ensure_event_columns(events)
            .join(keys.lazy(), on="subject_id", how="inner")
            .filter(visible_expr())
        )
    return ensure_event_columns(events).filter(visible_expr(pl.lit(t, dtype=pl.Datetime("us"))))


def events_at(
    events: EventsLike,
    keys: pl.DataFrame,
    columns: Sequence[str] = (),
    codes: pl.Expr | None = None,
    static: bool = True,
) -> pl.LazyFrame:
    """Every (prediction-time row, visible event) pair: ROW, subject_id, prediction_time, time,
    recorded_time and `columns` of the event.

    `keys` has ROW, subject_id, prediction_time (from `unique_times`). `codes` is a filter on the events
    applied before the join (select only what the caller needs: this is what keeps the join small);
    `static=False` drops static (null-time) rows.
    """
    lf = ensure_event_columns(events)
    if codes is not None:
        lf = lf.filter(codes)
    if not static:
        lf = lf.filter(pl.col("time").is_not_null())
    wanted = list(dict.fromkeys([*_KEY_COLUMNS, *columns]))
    lf = lf.select(wanted)
    joined = keys.lazy().join(lf, on="subject_id", how="inner")
    return joined.filter(visible_expr("prediction_time"))


def events_at_last(events: EventsLike, times: pl.DataFrame, codes: pl.Expr | None = None) -> pl.LazyFrame:
    """Events of `times`' subjects visible at the subject's LATEST time in `times`, each event once.

    Visibility is monotone in t, so this is exactly the union over the subject's times of the visible
    events — what fitting on training prediction times may see, without one copy per prediction time.
    """
    last = check_times(times).group_by("subject_id").agg(pl.col("prediction_time").max())
    lf = ensure_event_columns(events)
    if codes is not None:
        lf = lf.filter(codes)
    return lf.join(last.lazy(), on="subject_id", how="inner").filter(visible_expr("prediction_time"))


def birth_time_at(events: EventsLike, keys: pl.DataFrame) -> pl.LazyFrame:
    """ROW, birth_time (earliest visible MEDS_BIRTH) for each prediction-time row that has one."""
    births = events_at(events, keys, codes=pl.col("code") == "MEDS_BIRTH", static=False)
    return births.group_by(ROW).agg(pl.col("time").min().alias("birth_time"))


def days_before(t: str = "prediction_time", time: str = "time") -> pl.Expr:
    """(t - time) in days as float64 (fractional).

    Multiplied by the reciprocal rather than divided: polars may evaluate `x / c` as `x * (1 / c)` on some
    chunks and not others, which made identical inputs differ in the last bit from run to run."""
    return (pl.col(t) - pl.col(time)).dt.total_microseconds().cast(pl.Float64) * (1.0 / US_PER_DAY)
