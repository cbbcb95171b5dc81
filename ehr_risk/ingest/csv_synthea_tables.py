"""One converter per Synthea CSV table: a typed batch → (events with `_row`, number of rows converted).

Conventions are those of `fhir_resources.py` (see `csv_synthea.py` for the table). Rows a converter
cannot use are rejected through `SchemaFile.reject` (file, line, value-free reason) or counted as skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ehr_risk.ingest import codes
from ehr_risk.ingest.csv_emit import as_u64, combine, keyed
from ehr_risk.ingest.csv_table import SchemaFile, typed
from ehr_risk.ingest.csv_values import parse_numbers

if TYPE_CHECKING:
    from ehr_risk.ingest.run import Ingestor

# Synthea writes coded answers in the CSV as their display text; these are the codes its FHIR exporter
# gives the same answers (smoking status: the Synthea/US Core value set; urinalysis: Synthea modules).
SYNTHEA_ANSWERS: dict[tuple[str, str], str] = {
    ("LOINC/72166-2", "never smoker"): "SNOMED/266919005",
    ("LOINC/72166-2", "never smoked tobacco (finding)"): "SNOMED/266919005",
    ("LOINC/72166-2", "former smoker"): "SNOMED/8517006",
    ("LOINC/72166-2", "ex-smoker (finding)"): "SNOMED/8517006",
    ("LOINC/72166-2", "current every day smoker"): "SNOMED/449868002",
    ("LOINC/72166-2", "smokes tobacco daily (finding)"): "SNOMED/449868002",
    ("LOINC/72166-2", "current some day smoker"): "SNOMED/428041000124106",
    ("LOINC/72166-2", "smoker, current status unknown"): "SNOMED/77176002",
    ("LOINC/72166-2", "unknown if ever smoked"): "SNOMED/266927001",
    ("LOINC/72166-2", "heavy tobacco smoker"): "SNOMED/428071000124103",
    ("LOINC/72166-2", "light tobacco smoker"): "SNOMED/428061000124105",
    ("LOINC/20454-5", "urine protein test = + (finding)"): "SNOMED/167275009",
    ("LOINC/20454-5", "urine protein test = ++ (finding)"): "SNOMED/167276005",
    ("LOINC/20454-5", "urine protein test = +++ (finding)"): "SNOMED/167277001",
    ("LOINC/2514-8", "urine ketone test = + (finding)"): "SNOMED/167289004",
    ("LOINC/2514-8", "urine ketone test = +++ (finding)"): "SNOMED/167291007",
    ("LOINC/2514-8", "urine ketone test = trace (finding)"): "SNOMED/167288007",
    ("LOINC/25428-4", "urine glucose test = ++ (finding)"): "SNOMED/167265006",
    ("LOINC/5794-3", "blood in urine (finding)"): "SNOMED/34436003",
    ("LOINC/5794-3", "urine blood test = negative (finding)"): "SNOMED/167297006",
    ("LOINC/5799-2", "urine leukocyte test negative (finding)"): "SNOMED/394717006",
    ("LOINC/5802-4", "urine nitrite negative (finding)"): "SNOMED/314138001",
}
CAUSE_OF_DEATH = "LOINC/69453-9"
SYNTHEA_METRICS = ("QALY", "DALY", "QOLS")
Converted = tuple[pl.DataFrame, int]


class SyntheaContext:
    """State shared by the tables of one export: pseudonyms, and condition codes by description."""

    def __init__(self, ing: Ingestor):
        self.ing = ing
        self.condition_codes: dict[str, str] = {}  # lower-case description → SNOMED/… (causes of death)
        self.code_hashes: dict[str, int] = {}  # keyed hashes of codes, reused across batches
        self._answers: tuple[int, pl.DataFrame] | None = None  # answer table, rebuilt when conditions grow
        self._described: pl.Series | None = None  # codes with a description (refreshed when that grows)
        self.obs_state: object | None = None  # the observations fast path's lookups (csv_synthea_obs)

    def subjects(self, source_ids: pl.Series) -> pl.Series:
        ids = {v: self.ing.ids.subject_id(v) for v in source_ids.unique().to_list()}
        return source_ids.replace_strict(ids, return_dtype=pl.Int64)

    def answer_table(self) -> pl.DataFrame:
        """(question code, lower-case answer text, answer code): SYNTHEA_ANSWERS and causes of death."""
        if self._answers is None or self._answers[0] != len(self.condition_codes):
            known = [(c, t, v) for (c, t), v in SYNTHEA_ANSWERS.items()]
            known += [(CAUSE_OF_DEATH, d, v) for d, v in self.condition_codes.items()]
            table = pl.DataFrame(known, schema={"c": pl.String, "l": pl.String, "v": pl.String}, orient="row")
            self._answers = (len(self.condition_codes), table)
        return self._answers[1]

    def skip(self, resource_type: str, n: int, reason: str) -> None:
        if n:
            self.ing.summary.read[resource_type] += n
            self.ing.summary.skipped[resource_type] += n
            self.ing.summary.skipped_reasons[reason] += n

    def describe(self, code: pl.Series, description: pl.Series | None) -> None:
        if description is None:
            return
        known = self.ing.events.descriptions
        if self._described is not None and len(self._described) == len(known):
            new = ~code.is_in(self._described.implode())  # codes described already cost one lookup
            if not new.any():
                return
            code, description = code.filter(new), description.filter(new)
        pairs = pl.DataFrame({"c": code, "d": description}).drop_nulls().unique("c", keep="first")
        for c, d in pairs.iter_rows():
            if c not in known:
                self.ing.events.describe(c, d)
        self._described = pl.Series(list(known), dtype=pl.String)

    def record_ids(self, src: SchemaFile, parts: list[pl.Series | np.ndarray]) -> np.ndarray:
        """Keyed id of rows without a source id: subject, code, time plus the same-key ordinal.

        Parts are keyed already (subject ids; uint64 arrays of codes hashed as `code_hashes` holds them) or
        hashed with the key per distinct value (codes), so no per-row HMAC is needed; the encounter is left
        out on purpose (implied by subject and time).
        """
        n = len(parts[0])
        table = np.full(n, self.ing.ids.record_id("csv-table", src.schema.name), dtype=np.uint64)
        arrays = [table]
        for part in parts:
            if isinstance(part, np.ndarray):
                arrays.append(part)
            elif part.dtype == pl.String:
                arrays.append(keyed(self.ing, "csv-key", part, self.code_hashes))
            else:
                arrays.append(as_u64(part))
        key = combine(arrays)
        rank = src.file.ordinals(key.view(np.uint64))
        return combine([key.view(np.uint64), rank.view(np.uint64)])


def _col(b: pl.DataFrame, src: SchemaFile, name: str) -> pl.Series:
    if src.has(name):
        return b.get_column(name)
    return pl.repeat(None, b.height, dtype=pl.String, eager=True).alias(name)


def _time(b: pl.DataFrame, src: SchemaFile, name: str) -> pl.Series:
    if src.has(name):
        return b.get_column(typed(name))
    return pl.repeat(None, b.height, dtype=pl.Datetime("us"), eager=True).alias(name)


def _frame(b: pl.DataFrame, subject: pl.Series, **columns: pl.Series | pl.Expr | object) -> pl.DataFrame:
    """An events frame, one event per row of `b` (`_row` = row position)."""
    out = pl.DataFrame({"subject_id": subject, "_row": pl.int_range(b.height, eager=True)})
    exprs = [(v if isinstance(v, pl.Expr | pl.Series) else pl.lit(v)).alias(k) for k, v in columns.items()]
    return out.with_columns(exprs)


def _vocab_codes(src: SchemaFile, b: pl.DataFrame, default: str) -> tuple[pl.DataFrame, pl.Series]:
    """`VOCAB/CODE` from the optional SYSTEM column (default vocabulary when absent); unknown → reject."""
    code = b.get_column("CODE").str.strip_chars()
    if not src.has("SYSTEM"):
        return b, default + "/" + code
    systems = b.get_column("SYSTEM")
    table = {s: codes.normalize_vocab(s) or "" for s in systems.drop_nulls().unique().to_list()}
    mapped = systems.replace_strict(table, default="", return_dtype=pl.String)
    vocab = pl.select(pl.when(systems.is_null()).then(pl.lit(default)).otherwise(mapped)).to_series()
    bad = vocab == ""
    if bad.any():
        b = src.reject(b, bad, "unknown code system")
        vocab, code = vocab.filter(~bad), code.filter(~bad)
    return b, vocab + "/" + code


def patients(ctx: SyntheaContext, src: SchemaFile, b: pl.DataFrame) -> Converted:
    birth, death = _time(b, src, "BIRTHDATE"), _time(b, src, "DEATHDATE")
    b = src.reject(b, death.is_not_null() & (death < birth), "death date before birth date")
    birth, death = _time(b, src, "BIRTHDATE"), _time(b, src, "DEATHDATE")
    subject = ctx.subjects(b.get_column("Id"))
    rid = pl.Series(keyed(ctx.ing, "Patient", b.get_column("Id")).astype(np.int64))
    base = {"resource_type": "Patient", "record_id": rid}

    def lookup(column: str, table: dict[str, str] | Callable[[str], str | None]) -> pl.Series:
        values = _col(b, src, column)
        get = table.get if isinstance(table, dict) else table
        mapping = {v: get(v.strip().lower()) for v in values.drop_nulls().unique().to_list()}
        return values.replace_strict(mapping, default=None, return_dtype=pl.String)

    frames = [
        _frame(b, subject, time=birth, code=codes.MEDS_BIRTH, **base),
        _frame(b, subject, time=death, code=codes.MEDS_DEATH, **base).filter(pl.col("time").is_not_null()),
    ]
    for column, table in (
        ("GENDER", codes.gender_code),
        ("RACE", codes.RACE_BY_NAME),
        ("ETHNICITY", codes.ETHNICITY_BY_NAME),
    ):
        code = lookup(column, table)
        frames.append(_frame(b, subject, time=None, code=code, **base).filter(pl.col("code").is_not_null()))
    ctx.ing.events.describe(codes.MEDS_BIRTH, "Birth")
    ctx.ing.events.describe(codes.MEDS_DEATH, "Death")
    return pl.concat(frames, how="diagonal_relaxed"), b.height


def encounters(ctx: SyntheaContext, src: SchemaFile, b: pl.DataFrame) -> Converted:
    subject = ctx.subjects(b.get_column("PATIENT"))
    start, stop = _time(b, src, "START"), _time(b, src, "STOP")
    rid = pl.Series(keyed(ctx.ing, "Encounter", b.get_column("Id")).astype(np.int64))
    classes = _col(b, src, "ENCOUNTERCLASS")
    mapping = {v: codes.encounter_class_code(v) for v in classes.drop_nulls().unique().to_list()}
    klass = classes.replace_strict(mapping, default=None, return_dtype=pl.String)
    kind = "SNOMED/" + b.get_column("CODE").str.strip_chars()
    ctx.describe(kind, _col(b, src, "DESCRIPTION"))
    common = {"time": start, "end_time": stop, "resource_type": "Encounter", "record_id": rid}
    frames = [
        _frame(b, subject, code=klass, **common).filter(pl.col("code").is_not_null()),
        _frame(b, subject, code=kind, **common),
    ]
    return pl.concat(frames, how="diagonal_relaxed"), b.height


def _simple(
    resource_type: str, time_col: str, default_vocab: str, end_col: str | None = None, recorded: bool = False
) -> Callable[[SyntheaContext, SchemaFile, pl.DataFrame], Converted]:
    """Tables with one coded event per row (conditions, medications, procedures, immunizations, allergies)."""

    def convert(ctx: SyntheaContext, src: SchemaFile, b: pl.DataFrame) -> Converted:
        b, code = _vocab_codes(src, b, default_vocab)
        time = _time(b, src, time_col)
        end = _time(b, src, end_col) if end_col else None
        subject = ctx.subjects(b.get_column("PATIENT"))
        rid = ctx.record_ids(src, [subject, code, time])
        description = _col(b, src, "DESCRIPTION")
        ctx.describe(code, description)
        if resource_type == "Condition":
            pairs = pl.DataFrame({"d": description.str.to_lowercase(), "c": code}).drop_nulls().unique("d")
            for d, c in pairs.iter_rows():
                ctx.condition_codes.setdefault(d, c)
        events = _frame(
            b,
            subject,
            time=time,
            code=code,
            end_time=end,
            recorded_time=time if recorded else None,
            resource_type=resource_type,
            record_id=pl.Series(rid),
        )
        return events, b.height

    return convert


def observations(ctx: SyntheaContext, src: SchemaFile, b: pl.DataFrame) -> Converted:
    """Numeric values in canonical units, text answers as codes. The busiest table: its columns and
    flags come from a few whole-column passes per batch, each derived column computed once, and rows are
    filtered only when a batch has skipped or rejected rows."""
    b, values = observation_values(ctx, src, b)
    code = values.get_column("code")
    text = code_answers(ctx, code, values.get_column("text_value"))
    time = b.get_column(typed("DATE"))
    subject = ctx.subjects(b.get_column("PATIENT"))
    rid = ctx.record_ids(src, [subject, code, time])
    ctx.describe(code, _col(b, src, "DESCRIPTION"))
    return observation_events(subject, time, code, values, text, rid), b.height


def observation_values(
    ctx: SyntheaContext, src: SchemaFile, b: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows of `b` kept (summary metrics skipped, bad values rejected) and their values: code,
    numeric_value (canonical unit), unit, text_value (answers not yet coded)."""
    x = b.select(
        pl.col("CODE").str.strip_chars().alias("code"),
        pl.col("VALUE").str.strip_chars().alias("value"),
        _col(b, src, "UNITS").str.strip_chars().alias("unit"),
        (pl.col("TYPE").str.strip_chars().str.to_lowercase() if src.has("TYPE") else pl.lit(None)).alias(
            "kind"
        ),
    )
    value, unit, kind, number = pl.col("value"), pl.col("unit"), pl.col("kind"), pl.col("number")
    x = x.with_columns(value.cast(pl.Float64, strict=False).alias("number"))
    if x.select((number.is_null() & value.str.contains(",", literal=True)).any()).item():  # `1,234.5`: rare
        x = x.with_columns(parse_numbers(x.get_column("value"), stripped=True).alias("number"))
    if src.has("TYPE"):
        # Synthea writes a few quantities as TYPE text with a unit (income 63586-2 in `/a`); its FHIR
        # exporter writes them as numbers, so a number with a unit is numeric whatever TYPE says.
        quantity = (kind == "text") & number.is_not_null() & unit.is_not_null()
        numeric = ((kind == "numeric") | quantity).fill_null(False)
    else:  # older layouts: a value that parses as a number is numeric
        numeric = number.is_not_null()
    # each derived column once (chained, one collect): an expression used twice would be computed twice
    has_number = pl.col("numeric") & number.is_not_null()
    values = (
        x.lazy()
        .with_columns(numeric.alias("numeric"), pl.col("code").is_in(SYNTHEA_METRICS).alias("_metric"))
        .select(
            ("LOINC/" + pl.col("code")).alias("code"),
            pl.when(has_number).then(number).alias("numeric_value"),
            unit,
            pl.when(~has_number).then(value).alias("text_value"),
            pl.col("_metric"),
            (pl.col("numeric") & number.is_null() & value.is_not_null() & ~pl.col("_metric")).alias("_bad"),
        )
        .collect()
    )
    metric_rows, bad_rows = values.get_column("_metric"), values.get_column("_bad")
    if metric_rows.any() or bad_rows.any():
        ctx.skip("Observation", int(metric_rows.sum()), "Synthea QALY/DALY/QOLS summary metric")
        if bad_rows.any():
            src.file.reject(b.filter(bad_rows), "non-numeric value for a numeric observation", src.columns)
        keep = ~(metric_rows | bad_rows)
        b, values = b.filter(keep), values.filter(keep)
    return src.check_values(b, values.drop("_metric", "_bad"))


def observation_events(
    subject: pl.Series,
    time: pl.Series,
    code: pl.Series,
    values: pl.DataFrame,
    text: pl.Series,
    rid: np.ndarray,
) -> pl.DataFrame:
    """The event rows of converted observations (`values` holds numeric_value and unit)."""
    n = len(subject)
    return pl.DataFrame(
        [
            subject.alias("subject_id"),
            pl.int_range(n, eager=True, dtype=pl.Int64).alias("_row"),
            time.alias("time"),
            code,
            values.get_column("numeric_value"),
            text,
            values.get_column("unit"),
            pl.repeat("Observation", n, eager=True).alias("resource_type"),
            pl.Series("record_id", rid),
        ]
    )


def code_answers(ctx: SyntheaContext, code: pl.Series, text: pl.Series) -> pl.Series:
    """Display texts of coded answers → `VOCAB/code` (SYNTHEA_ANSWERS; causes of death by condition)."""
    table = ctx.answer_table()
    # only the few rows with a text answer to a coded question are looked up (lower-cased, joined)
    where = (text.is_not_null() & code.is_in(table.get_column("c").unique().implode())).arg_true()
    if where.is_empty():
        return text.alias("text_value")
    return code_answers_at(ctx, code, text, where)


def code_answers_at(ctx: SyntheaContext, code: pl.Series, text: pl.Series, where: pl.Series) -> pl.Series:
    """`code_answers` for the rows `where` (text answers to coded questions), found by the caller."""
    table = ctx.answer_table()
    rows = pl.DataFrame({"c": code.gather(where), "t": text.gather(where)})
    joined = rows.with_columns(pl.col("t").str.to_lowercase().alias("l")).join(
        table, on=["c", "l"], how="left", maintain_order="left"
    )
    return text.scatter(where, joined.select(pl.coalesce("v", "t")).to_series()).alias("text_value")


CONVERTERS: dict[str, Callable[[SyntheaContext, SchemaFile, pl.DataFrame], Converted]] = {
    "patients": patients,
    "encounters": encounters,
    "conditions": _simple("Condition", "START", "SNOMED", end_col="STOP"),
    "observations": observations,
    "medications": _simple("MedicationRequest", "START", "RxNorm", end_col="STOP", recorded=True),
    "procedures": _simple("Procedure", "START", "SNOMED", end_col="STOP"),
    "immunizations": _simple("Immunization", "DATE", "CVX"),
    "allergies": _simple("AllergyIntolerance", "START", "SNOMED", end_col="STOP"),
}
