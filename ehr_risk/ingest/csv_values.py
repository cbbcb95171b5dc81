"""Vectorised value parsing for CSV columns: dates/times → UTC microseconds, numbers, canonical units.

Dates: ISO 8601 (`2013-12-18`, `2013-12-18T14:05:00Z`, offsets `±hh:mm`, fractions), `YYYY-MM`, `YYYY`,
`YYYYMMDD`, and US forms `MM/DD/YYYY` with or without `HH:MM[:SS]` or `h:MM AM/PM`. Day-first dates are
not guessed (a mapping file can name a `date_format`). Times with an offset are moved to UTC; times without
one are taken in the configured zone (UTC unless a mapping says otherwise), as FHIR times without an offset
are. Partial dates take the first instant of the period, as in `timeparse.py`. Every format is tried only
on the values the previous ones could not parse, so a clean ISO column costs one pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import polars as pl

from ehr_risk.ingest import units

ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"  # Synthea's and most exports' timestamps: the first format tried
_AWARE = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z")
_NAIVE = (
    "%Y-%m-%d",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%Y%m%d",
    "%Y-%m",
)
_US = pl.Datetime("us")


def _try(text: pl.Series, fmt: str, aware: bool, tz: str) -> pl.Series:
    parsed = text.str.to_datetime(fmt, strict=False, time_unit="us")
    if aware:
        return parsed.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    if tz != "UTC":
        parsed = parsed.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
        return parsed.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return parsed


def parse_times(values: pl.Series, tz: str = "UTC", fmt: str | None = None) -> pl.Series:
    """String column → naive-UTC Datetime[us]; null where missing or not a date (caller rejects those)."""
    text = values.cast(pl.String).str.strip_chars()
    if fmt is not None:
        return _try(text, fmt, aware="%z" in fmt or "%#z" in fmt, tz=tz)
    # fast path: Synthea and most exports write `YYYY-MM-DDThh:mm:ssZ` (UTC) or `YYYY-MM-DD` in a whole
    # column; one parse of the column, no time-zone arithmetic (`Z` is UTC whatever `tz` says)
    for fast, aware in ((ISO_UTC, True), ("%Y-%m-%d", False)):
        got = text.str.to_datetime(fast, strict=False, time_unit="us")
        if got.null_count() == text.null_count():
            return _try(text, fast, aware, tz) if not aware and tz != "UTC" else got.alias(values.name)
    result = pl.repeat(None, len(text), dtype=_US, eager=True).alias(values.name)
    todo = text.is_not_null()
    candidates = [(f, True) for f in _AWARE] + [(f, False) for f in _NAIVE]
    for fmt_i, aware in candidates:
        if not todo.any():
            break
        idx = todo.arg_true()
        got = _try(text.gather(idx), fmt_i, aware, tz)
        ok = got.is_not_null()
        if ok.any():
            result = result.scatter(idx.filter(ok), got.filter(ok))
            todo = todo.scatter(idx.filter(ok), False)
    if todo.any():  # bare years (`1998`): the first instant of the year
        idx = todo.arg_true()
        years = text.gather(idx)
        ok = years.str.contains(r"^\d{4}$")
        got = _try((years.filter(ok) + "-01-01"), "%Y-%m-%d", False, tz)
        result = result.scatter(idx.filter(ok), got)
    return result


def parse_numbers(values: pl.Series, stripped: bool = False) -> pl.Series:
    """String column → Float64; null where missing or not a number. `1,234.5` thousands commas allowed.

    `stripped`: the caller has stripped surrounding white space already (saves a pass).
    """
    text = values if stripped else values.cast(pl.String).str.strip_chars()
    number = text.cast(pl.Float64, strict=False)
    failed = (number.is_null() & text.is_not_null()).arg_true()  # only those are tried with commas
    if failed.is_empty():
        return number
    rest = text.gather(failed)
    ok = rest.str.contains(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")
    if ok.any():
        fixed = rest.filter(ok).str.replace_all(",", "").cast(pl.Float64, strict=False)
        number = number.scatter(failed.filter(ok), fixed)
    return number


@lru_cache(maxsize=65536)
def _probe(code: str, unit: str | None) -> tuple[float | None, float | None, str | None, str | None]:
    """(a, b, canonical unit, None) with canonical = v·a + b, or (None, None, None, reason)."""
    try:
        v0, out_unit = units.canonical(code, 0.0, unit)
        v1, _ = units.canonical(code, 1.0, unit)
        v100, _ = units.canonical(code, 100.0, unit)
    except units.UnitError as exc:
        return None, None, None, exc.reason
    a, b = v1 - v0, v0
    if abs(a * 100.0 + b - v100) > 1e-6 * max(1.0, abs(v100)):
        raise AssertionError(f"units.canonical is not affine for {code}")
    return a, b, out_unit or None, None


_PLAN_SCHEMA = {
    "code": pl.String,
    "unit": pl.String,
    "_a": pl.Float64,
    "_b": pl.Float64,
    "_out_unit": pl.String,
    "_unit_error": pl.String,
    "_lo": pl.Float64,
    "_hi": pl.Float64,
}


@lru_cache(maxsize=65536)
def _plan_row(
    code: str, unit: str | None
) -> tuple[str, str | None, float | None, float | None, str | None, str | None, float | None, float | None]:
    rng = units.plausible_range(code)
    return (code, unit, *_probe(code, unit), *(rng[:2] if rng else (None, None)))


def unit_plan(pairs: Iterable[tuple[str, str | None]]) -> pl.DataFrame:
    """One row per (code, unit) pair: code, unit, conversion `_a`/`_b` (canonical = v·a + b), `_out_unit`,
    `_unit_error` (reason or null) and the plausible range `_lo`/`_hi` of the canonical value."""
    return pl.DataFrame([_plan_row(c, u) for c, u in pairs], schema=_PLAN_SCHEMA, orient="row")


def convert_values(frame: pl.DataFrame) -> pl.DataFrame:
    """Unit conversion and plausibility in one join: columns code, numeric_value (Float64, not null),
    unit → numeric_value and unit in canonical units, `_unit_error` (reason or null) and `_implausible`
    (NaN/infinite or outside `units.plausible_range`; false where the unit is an error: that reason wins).

    One `units.canonical` probe per distinct (code, unit) pair; the conversions in units.py are affine
    (v·a + b), so two probes give the whole column's conversion, a third checks it. Rows whose unit cannot
    be converted keep their number as read; the caller rejects them."""
    pairs = frame.select("code", "unit").unique()
    plan = unit_plan(pairs.iter_rows())
    v, a = pl.col("numeric_value"), pl.col("_a")
    converted = pl.when(a.is_not_null()).then(v * a + pl.col("_b")).otherwise(v)
    outside = pl.col("_lo").is_not_null() & ((converted < pl.col("_lo")) | (converted > pl.col("_hi")))
    return frame.join(plan, on=["code", "unit"], how="left", nulls_equal=True, maintain_order="left").select(
        pl.col("code"),
        converted.alias("numeric_value"),
        pl.when(a.is_not_null()).then(pl.col("_out_unit")).otherwise(pl.col("unit")).alias("unit"),
        pl.col("_unit_error"),
        (pl.col("_unit_error").is_null() & (~converted.is_finite() | outside))
        .fill_null(False)
        .alias("_implausible"),
    )
