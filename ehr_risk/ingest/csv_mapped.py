"""Mapped cohort CSV → events: a wide table (one row per person) read through a `CohortMapping`.

Each row is one source record (resource type `CohortRow`). A row is converted whole or rejected whole,
with its line and the first problem (unparseable date, non-numeric or impossible value, unexpected
category, negative age, …), so a person is never half-loaded. Each variable of a row gets its own
record id (keyed person id × column), so re-ingesting an updated extract with `--incremental` replaces
that person's values.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ehr_risk.errors import InputDataError
from ehr_risk.ingest import codes
from ehr_risk.ingest.csv_emit import as_u64, combine, emit
from ehr_risk.ingest.csv_mapping import CohortMapping, TimeSpec, load_mapping
from ehr_risk.ingest.csv_read import read_header
from ehr_risk.ingest.csv_schema import InputColumn, InputSchema
from ehr_risk.ingest.csv_table import SchemaFile, typed

if TYPE_CHECKING:
    from ehr_risk.ingest.run import Ingestor

RESOURCE_TYPE = "CohortRow"
_YEAR_US = int(365.25 * 86_400 * 1_000_000)
_DAY_US = 86_400 * 1_000_000


def ingest_mapped_file(path: Path, mapping_path: Path, ing: Ingestor) -> None:
    mapping = load_mapping(mapping_path)
    header = read_header(path)
    _check_columns(path, mapping_path, mapping, header)
    src = SchemaFile(
        ing, path, _input_schema(mapping), header=header, tz=mapping.timezone, date_format=mapping.date_format
    )
    for b in src.batches():
        b = _validate(src, mapping, b)
        events = _events(ing, mapping, b)
        emit(ing, events, RESOURCE_TYPE, b.height)


def _check_columns(path: Path, mapping_path: Path, m: CohortMapping, header: list[str]) -> None:
    missing = sorted(m.referenced_columns() - set(header))
    if missing:
        raise InputDataError(
            f"{path}: column(s) {', '.join(missing)} named in {mapping_path} are not in the file"
        )
    unmapped = sorted(set(header) - m.referenced_columns() - set(m.ignore))
    if m.strict_columns and unmapped:
        raise InputDataError(
            f"{path}: column(s) {', '.join(unmapped)} are neither mapped nor listed in `ignore` "
            f"of {mapping_path}"
        )


def _input_schema(m: CohortMapping) -> InputSchema:
    kinds: dict[str, str] = {m.id_column: "string"}
    specs = [m.time, *(c.time for c in m.columns.values() if c.time), *(e.time for e in m.row_events)]
    if m.birth:
        kinds[m.birth.age_column] = "float64"
        specs.append(m.birth.time or m.time)
    for name, col in m.columns.items():
        kinds.setdefault(name, "float64" if col.type == "numeric" else "string")
    for spec in specs:
        if spec.column:
            kinds[spec.column] = "timestamp[us]"
        if spec.offset_column:
            kinds[spec.offset_column] = "float64"
    columns = tuple(
        InputColumn(name, kind, required=True, nullable=name != m.id_column, aliases=())
        for name, kind in kinds.items()
    )
    return InputSchema("cohort_mapping", RESOURCE_TYPE, columns)


def _time(b: pl.DataFrame, spec: TimeSpec) -> pl.Series:
    """The time a spec refers to, per row (null where its date column is empty; null for static)."""
    if spec.static:
        return pl.Series("time", [None] * b.height, dtype=pl.Datetime("us"))
    if spec.column:
        base = b.get_column(typed(spec.column))
    else:
        assert spec.date is not None
        base = pl.repeat(pl.lit(spec.date).cast(pl.Datetime("us")), b.height, eager=True)
    years = pl.repeat(spec.offset_years, b.height, eager=True, dtype=pl.Float64)
    days = pl.repeat(spec.offset_days, b.height, eager=True, dtype=pl.Float64)
    if spec.offset_column:
        offset = b.get_column(typed(spec.offset_column)).cast(pl.Float64)
        if spec.offset_unit == "years":
            years = years + offset
        else:
            days = days + offset
    return shift(base, years, days).alias("time")


def shift(time: pl.Series, years: pl.Series, days: pl.Series) -> pl.Series:
    """`time` + whole calendar years (leap days handled as the calendar does) + the fraction of a year
    as 365.25-day years + `days`; so 2000-01-01 + 10 years is 2010-01-01, and age 39 at a baseline is
    a birth date 39 calendar years earlier."""
    frame = pl.DataFrame({"t": time, "y": years, "d": days})
    whole = pl.col("y").floor()
    frac_us = ((pl.col("y") - whole) * _YEAR_US + pl.col("d") * _DAY_US).round().cast(pl.Int64)
    moved = pl.col("t").dt.offset_by(pl.format("{}y", whole.cast(pl.Int64)))
    return frame.select(moved + frac_us.cast(pl.Duration("us"))).to_series()


def _validate(src: SchemaFile, m: CohortMapping, b: pl.DataFrame) -> pl.DataFrame:
    """Reject rows with a problem; return the rest with `v.<col>` (values) and `u.<col>` (units)."""
    if m.birth:
        age = b.get_column(typed(m.birth.age_column))
        b = src.reject(b, age < 0, f"negative age in {m.birth.age_column}")
        age = b.get_column(typed(m.birth.age_column))
        b = src.reject(b, age > m.birth.max_age, f"implausible age in {m.birth.age_column}")
    for name, col in m.columns.items():
        if col.type == "numeric":
            value = b.get_column(typed(name)) * col.scale
            assert col.code is not None
            values = pl.DataFrame(
                {"code": pl.repeat(col.code, b.height, eager=True), "numeric_value": value, "unit": col.unit}
            )
            b, values = src.check_values(b, values)
            v = values.get_column("numeric_value")
            if col.min is not None:
                b, v, values = _bound(
                    src, b, v, values, v < col.min, f"value below the mapping's min in {name}"
                )
            if col.max is not None:
                b, v, values = _bound(
                    src, b, v, values, v > col.max, f"value above the mapping's max in {name}"
                )
            unit = values.get_column("unit").replace("", None)
            unit = unit.set(v.is_null(), None)
            b = b.with_columns(v.alias(f"v.{name}"), unit.alias(f"u.{name}"))
        else:
            raw = b.get_column(name).str.strip_chars()
            if col.type == "boolean":
                lower = raw.str.to_lowercase()
                table = {**dict.fromkeys(col.true_values, "1"), **dict.fromkeys(col.false_values, "0")}
                known = lower.is_in(list(table)) | lower.is_null()
                mapped = lower.replace_strict(table, default=None, return_dtype=pl.String)
            else:
                known = raw.is_in(list(col.values)) | raw.is_null()
                mapped = raw.replace_strict(col.values, default=None, return_dtype=pl.String)
            b = b.with_columns(mapped.alias(f"v.{name}"))
            b = src.reject(b, ~known, f"unexpected value in {name}")
        spec = col.time or m.time
        value = b.get_column(f"v.{name}")
        if col.type == "boolean":  # only values that make an event need a time
            emits = (value == "1") | ((value == "0") & (col.when_false == "negative"))
        else:
            emits = value.is_not_null()
        unplaced = emits.fill_null(False) & _time(b, spec).is_null() & (not spec.static)
        b = src.reject(b, unplaced, f"missing date for {name}")
    return b


def _bound(
    src: SchemaFile, b: pl.DataFrame, v: pl.Series, values: pl.DataFrame, bad: pl.Series, reason: str
) -> tuple[pl.DataFrame, pl.Series, pl.DataFrame]:
    bad = bad.fill_null(False)
    return src.reject(b, bad, reason), v.filter(~bad), values.filter(~bad)


def _events(ing: Ingestor, m: CohortMapping, b: pl.DataFrame) -> pl.DataFrame:
    ids = m.id_prefix + b.get_column(m.id_column).str.strip_chars()
    subjects = {v: ing.ids.subject_id(v) for v in ids.unique().to_list()}
    base = pl.DataFrame(
        {"_row": pl.int_range(b.height, eager=True), "subject_id": ids.replace_strict(subjects)}
    )
    frames: list[pl.DataFrame] = []
    person = as_u64(base.get_column("subject_id"))  # keyed already: no per-row HMAC needed

    def add(name: str, time: pl.Series, keep: pl.Series, **cols: pl.Series | str | None) -> None:
        column = np.full(b.height, ing.ids.record_id("cohort-column", name), dtype=np.uint64)
        record = pl.Series(combine([person, column]))
        exprs = [
            (v if isinstance(v, pl.Series) else pl.lit(v, dtype=pl.String)).alias(k) for k, v in cols.items()
        ]
        frame = base.with_columns(time.alias("time"), record.alias("record_id"), *exprs)
        frames.append(frame.filter(keep))

    if m.birth:
        age = b.get_column(typed(m.birth.age_column))
        ref = _time(b, m.birth.time or m.time)
        zero = pl.repeat(0.0, b.height, eager=True, dtype=pl.Float64)
        birth = shift(ref, -age.cast(pl.Float64), zero)
        add("MEDS_BIRTH", birth, age.is_not_null() & ref.is_not_null(), code=codes.MEDS_BIRTH)
        ing.events.describe(codes.MEDS_BIRTH, "Birth")
    for name, col in m.columns.items():
        value = b.get_column(f"v.{name}")
        time = _time(b, col.time or m.time)
        if col.description and col.code:
            ing.events.describe(col.code, col.description)
        if col.type == "numeric":
            add(
                name,
                time,
                value.is_not_null(),
                code=col.code,
                numeric_value=value,
                unit=b.get_column(f"u.{name}"),
            )
        elif col.type == "boolean":
            keep = (value == "1") | ((value == "0") & (col.when_false == "negative"))
            number = value.cast(pl.Float64) if col.when_false == "negative" else None
            add(name, time, keep.fill_null(False), code=col.code, numeric_value=number)
        elif col.code is not None:  # categorical answer to a question code
            add(name, time, value.is_not_null(), code=col.code, text_value=value)
        else:
            add(name, time, value.is_not_null(), code=value)
    for i, event in enumerate(m.row_events):
        time = _time(b, event.time)
        ing.events.describe(event.code, event.description)
        add(f"row-event/{i}/{event.code}", time, time.is_not_null() | event.time.static, code=event.code)
    if not frames:
        return base.with_columns(pl.lit(None).alias("code")).head(0)
    return pl.concat(frames, how="diagonal_relaxed").with_columns(
        pl.lit(RESOURCE_TYPE).alias("resource_type")
    )
