"""Long event CSV → events: one row per event, `subject_id,time,code,numeric_value,text_value,unit`.

Layout: `data_schemas/long_csv.json` (aliases such as `patient_id`, `date`; optional `end_time`,
`recorded_time`, `record_id`). Rules:
- subject_id: any string; pseudonymised like every source id.
- code: `VOCAB/code` with a vocabulary of `codes.KNOWN_VOCABS` (spelling variants such as `SNOMED-CT/…`
  or `loinc/…` are normalised), or `MEDS_BIRTH` / `MEDS_DEATH`; anything else is rejected
  ("unknown code system").
- time: required, except for static facts (GENDER/, RACE/, ETHNICITY/ codes), whose time is dropped.
- numeric_value: a number, converted to the code's canonical unit; impossible values are rejected.
- record_id: when given, a newer load with the same id replaces the row's event; otherwise the row's
  identity is (subject, code, time) plus its ordinal among identical keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ehr_risk.ingest import codes
from ehr_risk.ingest.csv_emit import as_u64, combine, emit, keyed
from ehr_risk.ingest.csv_schema import load_input_schema
from ehr_risk.ingest.csv_table import SchemaFile, typed

if TYPE_CHECKING:
    from ehr_risk.ingest.run import Ingestor

RESOURCE_TYPE = "LongCSV"
STATIC_VOCABS = (codes.GENDER, codes.RACE, codes.ETHNICITY)


def is_long_header(header: list[str]) -> bool:
    try:
        load_input_schema("long_csv").resolve(header, Path("-"))
    except Exception:
        return False
    return True


def normalize_codes(raw: pl.Series) -> pl.Series:
    """`vocab/code` strings → canonical `VOCAB/code`; null where the vocabulary is unknown."""
    text = raw.str.strip_chars()
    parts = text.str.splitn("/", 2).struct.rename_fields(["v", "c"]).struct.unnest()
    vocab, code = parts.get_column("v"), parts.get_column("c").str.strip_chars()
    table = {v: codes.normalize_vocab(v) for v in vocab.drop_nulls().unique().to_list()}
    canon = vocab.replace_strict(table, default=None, return_dtype=pl.String)
    out = pl.select(
        pl.when(text.is_in([codes.MEDS_BIRTH, codes.MEDS_DEATH]))
        .then(text)
        .when(canon.is_not_null() & code.is_not_null() & (code.str.len_chars() > 0))
        .then(canon + "/" + code)
        .otherwise(None)
    ).to_series()
    return out.alias("code")


def ingest_long_file(path: Path, header: list[str], ing: Ingestor) -> None:
    src = SchemaFile(ing, path, load_input_schema("long_csv"), header=header)
    for b in src.batches():
        code = normalize_codes(b.get_column("code"))
        b = src.reject(b, code.is_null(), "unknown code system")
        code = code.drop_nulls()
        time = b.get_column(typed("time"))
        static = code.str.split("/").list.first().is_in(STATIC_VOCABS)
        b, code, time, static = _reject_time(src, b, code, time, static)
        b = b.with_columns(time.alias(typed("time")))
        values = pl.DataFrame(
            {
                "code": code,
                "numeric_value": _typed_or_null(src, b, "numeric_value", pl.Float64()),
                "unit": _raw_or_null(src, b, "unit").str.strip_chars(),
            }
        )
        b, values = src.check_values(b, values)
        time = b.get_column(typed("time"))
        code = values.get_column("code")
        subject_src = b.get_column("subject_id").str.strip_chars()
        subjects = {v: ing.ids.subject_id(v) for v in subject_src.unique().to_list()}
        subject = subject_src.replace_strict(subjects, return_dtype=pl.Int64)
        if src.has("record_id"):
            given = keyed(ing, RESOURCE_TYPE, b.get_column("record_id").str.strip_chars())
        else:
            given = np.zeros(b.height, dtype=np.uint64)
        key = combine([as_u64(subject), keyed(ing, "csv-key", code), as_u64(time)])
        derived = combine([key.view(np.uint64), src.file.ordinals(key.view(np.uint64)).view(np.uint64)])
        record_id = np.where(given != 0, given.astype(np.int64), derived)
        events = pl.DataFrame(
            {
                "_row": pl.int_range(b.height, eager=True),
                "subject_id": subject,
                "time": time,
                "code": code,
                "numeric_value": values.get_column("numeric_value"),
                "text_value": _raw_or_null(src, b, "text_value"),
                "unit": values.get_column("unit").replace("", None),
                "end_time": _typed_or_null(src, b, "end_time", pl.Datetime("us")),
                "recorded_time": _typed_or_null(src, b, "recorded_time", pl.Datetime("us")),
                "resource_type": pl.repeat(RESOURCE_TYPE, b.height, eager=True),
                "record_id": pl.Series(record_id),
            }
        )
        emit(ing, events, RESOURCE_TYPE, b.height)


def _reject_time(
    src: SchemaFile, b: pl.DataFrame, code: pl.Series, time: pl.Series, static: pl.Series
) -> tuple[pl.DataFrame, pl.Series, pl.Series, pl.Series]:
    bad = time.is_null() & ~static
    if bad.any():
        b = src.reject(b, bad, "missing time (only GENDER/RACE/ETHNICITY facts are static)")
        code, time, static = code.filter(~bad), time.filter(~bad), static.filter(~bad)
    return b, code, time.set(static, None), static


def _raw_or_null(src: SchemaFile, b: pl.DataFrame, name: str) -> pl.Series:
    if src.has(name):
        return b.get_column(name)
    return pl.repeat(None, b.height, dtype=pl.String, eager=True).alias(name)


def _typed_or_null(src: SchemaFile, b: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Series:
    if src.has(name):
        return b.get_column(typed(name))
    return pl.repeat(None, b.height, dtype=dtype, eager=True).alias(name)
