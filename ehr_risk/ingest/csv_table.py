"""One schema-described CSV file → cleaned, typed batches; rows that break the schema are rejected.

For every column of the input schema the reader keeps the raw string (named by its canonical name, used
for the reject record) and, for typed columns, the parsed value in `t.<name>`. A row is rejected with its
line and one reason when a required value is missing or a typed value does not parse.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from ehr_risk.ingest import units
from ehr_risk.ingest.csv_emit import CsvFile
from ehr_risk.ingest.csv_read import LINE, BlockTaker, iter_batches, read_header
from ehr_risk.ingest.csv_schema import InputSchema
from ehr_risk.ingest.csv_values import ISO_UTC, convert_values, parse_numbers, parse_times

if TYPE_CHECKING:
    from ehr_risk.ingest.run import Ingestor


def typed(name: str) -> str:
    return f"t.{name}"


class SchemaFile:
    """An open input file described by an input schema (header resolved, missing columns refused)."""

    def __init__(
        self,
        ing: Ingestor,
        path: Path,
        schema: InputSchema,
        header: list[str] | None = None,
        tz: str = "UTC",
        date_format: str | None = None,
    ):
        self.header = header if header is not None else read_header(path)
        self.mapping = schema.resolve(self.header, path)  # canonical → header name
        self.schema = schema
        self.tz = tz
        self.date_format = date_format
        self.file = CsvFile(ing, path, self.header, schema.resource_type)
        self.columns = list(self.mapping)  # canonical names present in this file

    def has(self, name: str) -> bool:
        return name in self.mapping

    def batches(self, take: BlockTaker | None = None) -> Iterator[pl.DataFrame]:
        """Typed batches; call `self.file.finish()` after the last one (done here when exhausted).

        The checks of a batch are computed in one pass (one flag per column) and rows are filtered only
        when a flag is up, so a clean batch costs one parse per typed column. Raw blocks that `take`
        converts itself (a reader's fast path, `iter_batches`) yield no batch.
        """
        renames = {h: c for c, h in self.mapping.items()}
        types = self.schema.types()
        required = [c.name for c in self.schema.columns if not c.nullable and c.name in self.mapping]
        typed_cols = [c for c in self.columns if types[c] != "string"]
        fast: dict[str, str] = {}  # per timestamp column: the plain format of its first batch
        columns = list(self.mapping.values())
        for raw in iter_batches(self.file.path, self.header, columns, self.file.bad, take):
            frame = raw.rename(renames)
            missing = frame.select(_maybe_blank(n).any() for n in required).row(0) if required else ()
            for name, flagged in zip(required, missing, strict=True):
                if flagged:  # NA markers are null already
                    values = frame.get_column(name)
                    bad = values.is_null() | values.str.contains(r"^\s*$")
                    frame = self._drop(frame, bad, f"missing required value {name}")
            for name in typed_cols:
                raw_col = frame.get_column(name)
                if types[name] == "timestamp[us]":
                    parsed = self._times(raw_col, fast)
                    reason = f"unparseable date in {name}"
                else:
                    parsed = parse_numbers(raw_col)
                    reason = f"non-numeric value in {name}"
                frame = frame.with_columns(parsed.alias(typed(name)))
                if parsed.null_count() != raw_col.null_count():
                    frame = self._drop(frame, raw_col.is_not_null() & parsed.is_null(), reason)
            if frame.height:
                yield frame
            self.file.flush()
        self.file.finish()

    def _times(self, raw: pl.Series, fast: dict[str, str]) -> pl.Series:
        """`parse_times`, trying first the plain format that parsed this column's last batch whole."""
        fmt = fast.get(raw.name)
        if fmt and self.date_format is None and (self.tz == "UTC" or fmt.endswith("Z")):
            got = raw.str.to_datetime(fmt, strict=False, time_unit="us")
            if got.null_count() == raw.null_count():
                return got
        parsed = parse_times(raw, tz=self.tz, fmt=self.date_format)
        if fmt is None:  # learnt once per file ("" = no plain format: parse_times every batch)
            fast[raw.name] = _plain_format(raw, parsed)
        return parsed

    def _drop(self, frame: pl.DataFrame, bad: pl.Series, reason: str) -> pl.DataFrame:
        if not bad.any():
            return frame
        self.file.reject(frame.filter(bad), reason, self.columns)
        return frame.filter(~bad)

    def reject(self, frame: pl.DataFrame, bad: pl.Series | pl.Expr, reason: str) -> pl.DataFrame:
        """Reject the rows of `frame` where `bad` holds (with `reason`); return the others."""
        mask = frame.select(bad).to_series() if isinstance(bad, pl.Expr) else bad
        return self._drop(frame, mask.fill_null(False), reason)

    def check_values(self, b: pl.DataFrame, values: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Canonical units and plausibility for `values` (code, numeric_value, unit; aligned with `b`).

        Rows with an unconvertible unit or an impossible value are rejected with a value-free reason;
        returns both frames without them, numbers in canonical units (unit null where there is no number).
        """
        values, errors, bad = _convert_values(values)
        if errors.null_count() < len(errors):
            for reason in errors.drop_nulls().unique().sort().to_list():
                this = (errors == reason).fill_null(False)
                b, values = self.reject(b, this, reason), values.filter(~this)
                errors, bad = errors.filter(~this), bad.filter(~this)
        if bad.any():
            for code in values.filter(bad).get_column("code").unique().sort().to_list():
                rng = units.plausible_range(code)
                where = f" (outside {rng[0]:g}-{rng[1]:g} {rng[2]})" if rng else ""
                this = bad & (values.get_column("code") == code)
                b, values, bad = (
                    self.reject(b, this, f"implausible value for {code}{where}"),
                    values.filter(~this),
                    bad.filter(~this),
                )
        # a unit without a number (NA value, text answer) says nothing: dropped, as FHIR has none there
        unit = pl.when(pl.col("numeric_value").is_not_null()).then(pl.col("unit").replace("", None))
        return b, values.with_columns(unit.alias("unit"))


_UNIT_CODES = list(units.BY_CODE)


def _maybe_blank(name: str) -> pl.Expr:
    """Null, or possibly white space only: a value whose first character is below `!` or at least U+0085
    (UTF-8 orders bytes as code points) is a candidate. Two string comparisons cost a fifth of the regex,
    which then runs only on a batch with a candidate."""
    col = pl.col(name)
    return col.is_null() | (col < "!") | (col >= "\x85")


def _convert_values(values: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series, pl.Series]:
    """(values in canonical units, unit error reason or null, implausible) for code/numeric_value/unit.

    Only rows whose code has a canonical unit are converted and range-checked (`convert_values`);
    other numbers pass through as read and only NaN/infinity is implausible there.
    Implausible is false where the unit is an error (that reason wins).
    """
    code, number = values.get_column("code"), values.get_column("numeric_value")
    bad = (~number.is_finite()).fill_null(False)
    errors = pl.repeat(None, values.height, dtype=pl.String, eager=True).alias("_unit_error")
    where = (number.is_not_null() & code.is_in(_UNIT_CODES)).arg_true()
    if where.is_empty():
        return values, errors, bad
    sub = convert_values(values[where].with_columns(pl.col("numeric_value").cast(pl.Float64)))
    values = values.with_columns(
        number.clone().scatter(where, sub.get_column("numeric_value")),
        values.get_column("unit").clone().scatter(where, sub.get_column("unit")),
    )
    errors = errors.scatter(where, sub.get_column("_unit_error"))
    bad = bad.scatter(where, sub.get_column("_implausible"))
    return values, errors, bad


def _plain_format(raw: pl.Series, parsed: pl.Series) -> str:
    """The plain format of a whole column that `parse_times` read ("" when it needed another)."""
    if parsed.null_count() != raw.null_count():
        return ""
    for fmt in (ISO_UTC, "%Y-%m-%d"):
        if raw.str.to_datetime(fmt, strict=False, time_unit="us").null_count() == raw.null_count():
            return fmt
    return ""


__all__ = ["LINE", "SchemaFile", "typed"]
