"""The fast path of the Synthea observations table: what `csv_synthea_tables.observations` gives, cheaper.

The observations table is most of a Synthea export (issue 3 measures it), and its text columns that
decide everything (CODE, UNITS, TYPE) take a few hundred distinct combinations. So the work per row is
cut to a lookup: each batch's (CODE, UNITS, TYPE) triples are hashed, the few new ones get a plan row
(stripped code, `LOINC/` event code, kind, canonical unit conversion, plausible range, keyed code hash)
computed with the very expressions the careful converter uses, and every derived column is gathered
from the plan. Only VALUE, DATE and PATIENT are handled per row.

Cheap checks decide whether a batch takes this path. A batch with anything the careful converter would
reject (a non-numeric value of a numeric observation, an unconvertible unit, an implausible or infinite
value) or treat specially (`1,234` numbers, old layouts without TYPE or UNITS) goes to the careful
converter whole, so rejects keep their file, line and reason and both paths give the same events
(tested property). Plan lookups use two independent 64-bit hashes of the triple, and a row is trusted
only when both agree with the plan's (a false match needs a 128-bit collision).

Measured (benchmarks/ingest_csv.py, 16x and 64x Synthea): about 5 % less CPU for the whole ingest than the
careful converter; the converter was already vectorised, and the rest of the ingest (CSV parse, Parquet
write, ordering) dominates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from ehr_risk.ingest import csv_synthea_tables as tables
from ehr_risk.ingest.csv_lookup import HashedLookup
from ehr_risk.ingest.csv_table import SchemaFile, typed
from ehr_risk.ingest.csv_values import unit_plan
from ehr_risk.ingest.units import BY_CODE

_KEYS = ["CODE", "UNITS", "TYPE"]
_UNIT_CODES = list(BY_CODE)
# plan columns gathered per row (the others serve the plan only)
_ROW_COLUMNS = [
    "code", "_num", "_text", "_has_unit", "_metric", "_convert", "_err", "_a", "_b", "_lo", "_hi",
    "_unit_num", "_code_hash",
]  # fmt: skip


class ObservationState:
    """Per-export lookups of the fast path: plan rows by (CODE, UNITS, TYPE), subject ids by PATIENT."""

    def __init__(self, ctx: tables.SyntheaContext):
        self.plan = HashedLookup(_KEYS, lambda keys: _plan_frame(ctx, keys))
        self.subjects = HashedLookup(["PATIENT"], lambda keys: _subject_frame(ctx, keys))
        self.described = np.zeros(0, dtype=bool)  # per plan row: its code has a description


def _plan_frame(ctx: tables.SyntheaContext, raw: pl.DataFrame) -> pl.DataFrame:
    """Plan rows for distinct raw triples: the careful converter's expressions, run on the triples."""
    stripped = raw.select(
        pl.col("CODE").str.strip_chars().alias("_code"),
        pl.col("UNITS").str.strip_chars().alias("unit"),
        pl.col("TYPE").str.strip_chars().str.to_lowercase().alias("kind"),
    )
    codes = ("LOINC/" + stripped.get_column("_code")).to_list()
    units = stripped.get_column("unit").to_list()
    for c in codes:
        if c not in ctx.code_hashes:
            ctx.code_hashes[c] = ctx.ing.ids.record_id("csv-key", c)
    plan = unit_plan(zip(codes, units, strict=True))
    kind, unit, convert = pl.col("kind"), pl.col("unit"), pl.col("_convert")
    converts = convert & pl.col("_a").is_not_null()
    return (
        pl.concat([stripped, plan.drop("unit")], how="horizontal")
        .with_columns(
            pl.Series("_code_hash", [ctx.code_hashes[c] for c in codes], dtype=pl.UInt64),
            pl.col("code").is_in(_UNIT_CODES).alias("_convert"),
        )
        .select(
            "code",
            (kind == "numeric").alias("_num"),
            (kind == "text").alias("_text"),
            unit.is_not_null().alias("_has_unit"),
            pl.col("_code").is_in(tables.SYNTHEA_METRICS).alias("_metric"),
            convert,
            (convert & pl.col("_unit_error").is_not_null()).alias("_err"),
            "_a",
            "_b",
            "_lo",
            "_hi",
            # the unit of a row with a number: canonical where converted, "" as missing
            pl.when(converts).then(pl.col("_out_unit")).otherwise(unit).replace("", None).alias("_unit_num"),
            "_code_hash",
        )
    )


def _subject_frame(ctx: tables.SyntheaContext, raw: pl.DataFrame) -> pl.DataFrame:
    ids = [ctx.ing.ids.subject_id(v) for v in raw.get_column("PATIENT").to_list()]
    return pl.DataFrame({"subject_id": pl.Series(ids, dtype=pl.Int64)})


def fast_observations(
    ctx: tables.SyntheaContext, src: SchemaFile, b: pl.DataFrame
) -> tables.Converted | None:
    """The events of a batch as `tables.observations` makes them, or None when the batch needs it."""
    if not all(src.has(c) for c in _KEYS) or not b.height or b.get_column("PATIENT").null_count():
        return None
    if not isinstance(ctx.obs_state, ObservationState):
        ctx.obs_state = ObservationState(ctx)
    state = ctx.obs_state
    row = state.plan.rows(b)
    people = state.subjects.rows(b)
    if row is None or people is None:
        return None
    assert state.plan.table is not None and state.subjects.table is not None
    plan = state.plan.table
    questions = plan.get_column("code").is_in(ctx.answer_table().get_column("c").implode()).alias("_q")
    x = (
        plan.select(_ROW_COLUMNS)
        .with_columns(questions)[row]
        .with_columns(b.get_column("VALUE").str.strip_chars().alias("value"))
    )
    value, number = pl.col("value"), pl.col("number")
    # the careful converter's expressions (tables.observations, then check_values), on plan columns
    quantity = pl.col("_text") & number.is_not_null() & pl.col("_has_unit")
    numeric = (pl.col("_num") | quantity).fill_null(False)
    has_number = numeric & number.is_not_null()
    conv = has_number & pl.col("_convert")
    scaled = pl.when(pl.col("_a").is_not_null()).then(number * pl.col("_a") + pl.col("_b")).otherwise(number)
    outside = pl.col("_lo").is_not_null() & ((scaled < pl.col("_lo")) | (scaled > pl.col("_hi")))
    careful = (
        (number.is_null() & value.str.contains(",", literal=True))  # `1,234.5`: parse_numbers
        | (numeric & number.is_null() & value.is_not_null())  # rejected: non-numeric value
        | (has_number & ~number.is_finite())  # rejected: implausible (NaN, infinity)
        | (conv & (pl.col("_err") | outside | ~scaled.is_finite()))  # rejected: unit, implausible
    ) & ~pl.col("_metric")
    ev = (
        x.lazy()
        .with_columns(value.cast(pl.Float64, strict=False).alias("number"))
        .select(
            pl.when(conv).then(scaled).when(has_number).then(number).alias("numeric_value"),
            pl.when(has_number).then(pl.col("_unit_num")).alias("unit"),
            pl.when(~has_number).then(value).alias("text_value"),
            "code",
            "_code_hash",
            "_q",
            "_metric",
            careful.alias("_careful"),
        )
        .collect()
    )
    if ev.get_column("_careful").any():
        return None
    metric_rows = ev.get_column("_metric")
    n_metric = int(metric_rows.sum())
    subject = state.subjects.table.get_column("subject_id")[people]
    if n_metric:
        ctx.skip("Observation", n_metric, "Synthea QALY/DALY/QOLS summary metric")
        keep = ~metric_rows
        ev, b, subject, row = ev.filter(keep), b.filter(keep), subject.filter(keep), row[keep.to_numpy()]
    code = ev.get_column("code")
    text = _answers(ctx, code, ev.get_column("text_value"), ev.get_column("_q"))
    time = b.get_column(typed("DATE"))
    rid = ctx.record_ids(src, [subject, ev.get_column("_code_hash").to_numpy(), time])
    _describe(ctx, state, src, b, code, row)
    return tables.observation_events(subject, time, code, ev, text, rid), b.height


def _answers(ctx: tables.SyntheaContext, code: pl.Series, text: pl.Series, question: pl.Series) -> pl.Series:
    """`tables._code_answers`, looking up only rows with a text answer to a coded question."""
    where = (text.is_not_null() & question).arg_true()
    if where.is_empty():
        return text.alias("text_value")
    return tables.code_answers_at(ctx, code, text, where)


def _describe(
    ctx: tables.SyntheaContext,
    state: ObservationState,
    src: SchemaFile,
    b: pl.DataFrame,
    code: pl.Series,
    row: np.ndarray,
) -> None:
    """`ctx.describe`, called only when the batch has a code without a description yet."""
    assert state.plan.table is not None
    if not src.has("DESCRIPTION"):
        return
    described = state.described
    if len(described) < state.plan.table.height:
        described = state.described = np.concatenate(
            [described, np.zeros(state.plan.table.height - len(described), dtype=bool)]
        )
    present = np.flatnonzero(np.bincount(row, minlength=len(described)))
    if described[present].all():
        return
    ctx.describe(code, b.get_column("DESCRIPTION"))
    known, codes = ctx.ing.events.descriptions, state.plan.table.get_column("code")
    described[present] = [codes[i] in known for i in present.tolist()]


def observations(ctx: tables.SyntheaContext, src: SchemaFile, b: pl.DataFrame) -> tables.Converted:
    """Observations: the fast path when the batch allows it, else the careful converter."""
    fast = fast_observations(ctx, src, b)
    return fast if fast is not None else tables.observations(ctx, src, b)


CONVERTERS: dict[str, Callable[[tables.SyntheaContext, SchemaFile, pl.DataFrame], tables.Converted]] = {
    **tables.CONVERTERS,
    "observations": observations,
}
