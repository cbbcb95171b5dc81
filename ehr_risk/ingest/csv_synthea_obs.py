"""The fast paths of the Synthea observations table: what `csv_synthea_tables.observations` gives, cheaper.

The observations table is most of a Synthea export (issue 3 measures it), and its text columns that
decide everything (CODE, UNITS, TYPE) take a few hundred distinct combinations. So the work per row is
cut to a lookup: each distinct raw (CODE, UNITS, TYPE) triple gets a plan row once per export
(`csv_synthea_obs_plan`: stripped code, `LOINC/` event code, kind flags packed in one byte, canonical unit
conversion, plausible range, keyed code hash), computed with the careful converter's expressions, and one
lazy query per batch finds every row's plan row by a 64-bit hash of the raw triple (`replace_strict` to a
plan row number, then a gather of the seven plan columns the rows need: half the cost of a join on the
hash), checks it with a second, independent hash (a row whose check disagrees, a hash collision, sends
its batch to the careful converter), parses VALUE and computes the event columns and the flags. Subject
ids come from a hashed lookup of PATIENT values (one pseudonym per distinct patient per export) run on
the column's runs of equal values (an export writes a patient's rows together), not on every row.

Two entry points. `block_taker` works on raw CSV blocks (`csv_read.iter_batches`' `take`, two 4 MB
blocks at a time): the block is parsed once by polars and converted straight from its string columns,
NA markers handled where they matter (VALUE in the query, the triple in its plan row), DATE parsed as
ISO UTC; no typed batch (markers of every column, date parse, line numbers) is built. Blocks it cannot
vouch for (not plain CSV, a blank or suspicious PATIENT, an undated row, anything below) are declined
and read the usual way, one typed batch per block, which `fast_observations` then tries.

Cheap checks decide whether rows take a fast path. Raw blocks with anything the careful converter would
reject (a missing or blank CODE, an unparseable date, a non-numeric value of a numeric observation, an
unconvertible unit, an implausible or infinite value) or treat specially (`1,234` numbers) are declined
(and, while blocks keep being declined, offered less often); in their typed batches only the flagged
rows take the careful converter (`_routed`), with their lines, and the rest keep the fast columns. Old
layouts without TYPE or UNITS take the careful converter. Both paths give the same events, record ids,
rejects and summary (tested property; record ids are made block by block, since their same-key
ordinals carry over one batch).

Measured (one thread, runs interleaved with round 3's code on the shared, loaded machine): the 64×
observations run takes 2.1-2.3 CPU-s against 2.9-3.3, the 16× one about 0.88× the CPU; the per-row
query costs 0.36 s of it at 64×, the polars parse of the blocks about 0.45 s, the writer about 0.8 s.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import polars as pl

from ehr_risk.ingest import csv_synthea_tables as tables
from ehr_risk.ingest.csv_emit import emit
from ehr_risk.ingest.csv_lookup import check_hash, key_hash
from ehr_risk.ingest.csv_read import LINE, MARKER_BYTES, BlockTaker, null_markers, plain_block
from ehr_risk.ingest.csv_synthea_obs_plan import (
    BAD_CODE,
    CONVERT,
    ERR,
    HAS_UNIT,
    KEYS,
    METRIC,
    NUM,
    QUESTION,
    TEXT,
    ObservationState,
)
from ehr_risk.ingest.csv_table import SchemaFile, typed
from ehr_risk.ingest.csv_values import ISO_UTC


def fast_observations(
    ctx: tables.SyntheaContext, src: SchemaFile, b: pl.DataFrame
) -> tables.Converted | None:
    """The events of a typed batch as `tables.observations` makes them, or None when the batch needs it."""
    if not _fast_layout(src) or not b.height or b.get_column("PATIENT").null_count():
        return None
    return _fast_events(ctx, src, b, pl.col("VALUE").str.strip_chars(), pl.col(typed("DATE")), route=True)


def block_taker(ctx: tables.SyntheaContext, src: SchemaFile) -> BlockTaker | None:
    """The fast path on raw blocks (`iter_batches`' `take`): a plain block is converted and emitted here
    from the columns the events need, without the typed batch (NA markers of every column, date parse,
    `_line`); any block it cannot vouch for is declined, read the usual way and converted by
    `observations`. None when the file's layout has no fast path."""
    if not _fast_layout(src) or src.date_format is not None:
        return None
    names = ["DATE", "PATIENT", *KEYS, "VALUE", *(["DESCRIPTION"] if src.has("DESCRIPTION") else [])]
    at = {name: src.header.index(src.mapping[name]) for name in names}  # as iter_batches picks them
    n_columns = len(src.header)
    # a NA marker is null in a batch: here VALUE's are nulled in the query, the triple's in its plan row
    value = null_markers(pl.col("VALUE")).str.strip_chars()
    time = pl.col("DATE").str.to_datetime(ISO_UTC, strict=False, time_unit="us")  # as a typed batch reads it

    declined = [0, 0]  # declines in a row; groups still to leave to the usual reading

    def take(blocks: list[bytes]) -> int | None:
        if declined[1]:
            declined[1] -= 1
            return None
        got = convert(blocks)
        # a file whose blocks keep failing (a bad row every few MB) is not tried on every block: the try
        # is wasted work there (a parse and a query); the typed batches route their odd rows instead
        declined[:] = [0, 0] if got is not None else [declined[0] + 1, min(1 << declined[0], 8)]
        return got

    def convert(blocks: list[bytes]) -> int | None:
        frames = []
        for block in blocks:
            frame = plain_block(block, n_columns)
            if frame is None or not frame.height:
                return None
            frames.append(frame.select(pl.col(f"c{i}").alias(name) for name, i in at.items()))
        b = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
        patient = pl.col("PATIENT")
        # a missing, NA-marker or blank PATIENT is rejected by the batch's checks: decline such blocks
        suspect = patient.is_null() | (patient.str.len_bytes() <= MARKER_BYTES) | (patient < "!")
        if b.select((suspect | (patient >= "\x85")).any()).item():
            return None
        converted = _fast_events(ctx, src, b, value, time, [f.height for f in frames])
        if converted is None:
            return None
        emit(ctx.ing, converted[0], src.schema.resource_type, converted[1])
        return b.height

    return take


def _fast_layout(src: SchemaFile) -> bool:
    return all(src.has(c) for c in KEYS)


def _fast_events(
    ctx: tables.SyntheaContext,
    src: SchemaFile,
    b: pl.DataFrame,
    value: pl.Expr,
    time: pl.Expr,
    blocks: list[int] | None = None,
    route: bool = False,
) -> tables.Converted | None:
    """The events of `b` (a typed batch, or raw blocks' columns: `value` and `time` say how to read
    VALUE and DATE), or None when a row needs the careful converter. `blocks`: the rows of each block
    in `b`, whose record ids are made block by block, as batches of one block would get them. `route`
    (a typed batch): rows for the careful converter take it alone (`_routed`), the batch still returns."""
    if not isinstance(ctx.obs_state, ObservationState):
        ctx.obs_state = ObservationState(ctx)
    state = ctx.obs_state
    passed = ["PATIENT", *(["DESCRIPTION"] if src.has("DESCRIPTION") else []), *([LINE] if route else [])]
    ev = _events_query(b, state.plan, value, time, passed).collect()
    if ev.get_column("_pid").null_count():  # triples not seen before: plan them, then look up again
        new = b.filter(ev.get_column("_pid").is_null()).select(KEYS).unique(maintain_order=True)
        state.add(new)
        ev = _events_query(b, state.plan, value, time, passed).collect()
    if not ev.get_column("_same").all():
        return None
    careful = ev.get_column("_careful")
    if careful.any():
        return _routed(ctx, src, b, ev, careful) if route else None
    metric = ev.get_column("_metric")
    n_metric = int(metric.sum())
    bounds = np.cumsum([0, *(blocks or [ev.height])])
    if n_metric:  # the batch's rows are needed no more: only the query's narrow output is filtered
        bounds -= np.concatenate([[0], np.cumsum(metric.to_numpy())])[bounds]
        ev = ev.filter(~pl.col("_metric"))
    people = _subjects(state, ev.get_column("PATIENT"))
    if people is None:
        return None
    ctx.skip("Observation", n_metric, "Synthea QALY/DALY/QOLS summary metric")
    code = ev.get_column("code")
    text = _answers(ctx, code, ev.get_column("text_value"), ev.get_column("_q"))
    stamp = ev.get_column("time")
    pid = ev.get_column("_pid").to_numpy()
    parts = [people.to_numpy(), state.plan.get_column("_code_hash").to_numpy()[pid], stamp]
    rid = np.concatenate(
        [ctx.record_ids(src, [p[lo:hi] for p in parts]) for lo, hi in itertools.pairwise(bounds.tolist())]
    )
    _describe(ctx, state, ev, code, pid)
    return tables.observation_events(people, stamp, code, ev, text, rid), ev.height


def _routed(
    ctx: tables.SyntheaContext, src: SchemaFile, b: pl.DataFrame, ev: pl.DataFrame, careful: pl.Series
) -> tables.Converted:
    """A typed batch with rows for the careful converter: only those rows take it (its skips, rejects
    with file, line and reason, and values), the others keep the fast query's columns; rows are merged
    back in line order, and subject ids, coded answers, record ids (whose same-key ordinals run over the
    batch in row order) and descriptions are made once over the batch, as the careful converter makes
    them. One bad row no longer sends its whole batch (~40k rows) the careful way."""
    kept, values = tables.observation_values(ctx, src, b.filter(careful))
    good = ev.filter(~careful)
    metric = good.get_column("_metric")
    ctx.skip("Observation", int(metric.sum()), "Synthea QALY/DALY/QOLS summary metric")
    described = ["DESCRIPTION"] if src.has("DESCRIPTION") else []
    columns = ["code", "numeric_value", "unit", "text_value"]
    slow = pl.concat(
        [
            kept.select(LINE, "PATIENT", pl.col(typed("DATE")).alias("time"), *described),
            values.select(columns),
        ],
        how="horizontal",
    )
    fast = good.filter(~metric).select(LINE, "PATIENT", "time", *described, *columns)
    merged = pl.concat([fast, slow.select(fast.columns)], how="vertical_relaxed").sort(LINE)
    code, time = merged.get_column("code"), merged.get_column("time")
    text = tables.code_answers(ctx, code, merged.get_column("text_value"))
    subject = ctx.subjects(merged.get_column("PATIENT"))
    rid = ctx.record_ids(src, [subject, code, time])
    ctx.describe(code, merged.get_column("DESCRIPTION") if described else None)
    return tables.observation_events(subject, time, code, merged, text, rid), merged.height


def _events_query(
    b: pl.DataFrame, plan: pl.DataFrame, text: pl.Expr, time: pl.Expr, passed: list[str]
) -> pl.LazyFrame:
    """One query per batch: each row's plan row found by the hash of its raw triple (`_pid`, null where
    the triple is new) and checked by a second hash (`_same`), VALUE (`text`) and DATE (`time`) parsed,
    and the careful converter's expressions (tables.observations, then check_values) on the plan's
    columns, down to the event columns, the flags and the `passed` columns that the events still need.

    Plan columns are gathered by `_pid` (a join on the hash cost twice as much: 0.24 s against 0.11 s
    for the 64× export), flags packed in one byte."""
    pid, value, number, flags = pl.col("_pid"), pl.col("value"), pl.col("number"), pl.col("_flags")

    def at(name: str) -> pl.Expr:  # a plan column, row by row
        return pl.lit(plan.get_column(name)).gather(pid)

    def has(bit: int) -> pl.Expr:
        return (flags & bit) != 0

    quantity = has(TEXT) & number.is_not_null() & has(HAS_UNIT)
    numeric = has(NUM) | quantity
    has_number = numeric & number.is_not_null()
    conv = has_number & has(CONVERT)
    scaled = pl.when(pl.col("_a").is_not_null()).then(number * pl.col("_a") + pl.col("_b")).otherwise(number)
    outside = pl.col("_lo").is_not_null() & ((scaled < pl.col("_lo")) | (scaled > pl.col("_hi")))
    careful = (
        (number.is_null() & value.str.contains(",", literal=True))  # `1,234.5`: parse_numbers
        | (numeric & number.is_null() & value.is_not_null())  # rejected: non-numeric value
        | (has_number & ~number.is_finite())  # rejected: implausible (NaN, infinity)
        | (conv & (has(ERR) | outside | ~scaled.is_finite()))  # rejected: unit, implausible
    ) & ~has(METRIC)
    # rejected whatever the value: a missing or blank CODE, a DATE that is not plain ISO UTC (raw blocks)
    careful = careful | has(BAD_CODE) | pl.col("time").is_null()
    find = key_hash(KEYS).replace_strict(
        plan.get_column("_h"), plan.get_column("_pid"), default=None, return_dtype=pl.UInt32
    )
    return (
        b.lazy()
        .select(
            *passed,
            time.alias("time"),
            text.alias("value"),
            find.alias("_pid"),
            check_hash(KEYS).alias("_h2"),
        )
        .with_columns(
            value.cast(pl.Float64, strict=False).alias("number"),
            *(at(c).alias(c) for c in ("_flags", "_a", "_b", "_lo", "_hi", "code", "_unit_num")),
            (at("_h2") == pl.col("_h2")).alias("_same"),
        )
        .select(
            pl.when(conv).then(scaled).when(has_number).then(number).alias("numeric_value"),
            pl.when(has_number).then(pl.col("_unit_num")).alias("unit"),
            pl.when(~has_number).then(value).alias("text_value"),
            "code",
            has(QUESTION).alias("_q"),
            has(METRIC).alias("_metric"),
            careful.fill_null(False).alias("_careful"),
            (pl.col("_same") | pid.is_null()).alias("_same"),  # the plan row found is the row's triple
            "_pid",
            "time",
            *passed,
        )
    )


def _subjects(state: ObservationState, patient: pl.Series) -> pl.Series | None:
    """Subject ids of a PATIENT column by the hashed lookup (a pseudonym per distinct value, once per
    export). Exports write a patient's rows in runs (Synthea: ten rows a run on average), so the values
    of the runs are looked up and repeated, unless runs are shorter than two rows. None on a hash
    disagreement."""
    if patient.is_empty():
        return pl.Series("subject_id", [], dtype=pl.Int64)
    runs = patient.rle()
    grouped = len(runs) * 2 <= len(patient)
    keys = runs.struct.field("value") if grouped else patient
    rows = state.subjects.rows(keys.alias("PATIENT").to_frame())
    if rows is None:
        return None
    assert state.subjects.table is not None
    sid = state.subjects.table.get_column("subject_id").to_numpy()[rows]
    return pl.Series("subject_id", np.repeat(sid, runs.struct.field("len").to_numpy()) if grouped else sid)


def _answers(ctx: tables.SyntheaContext, code: pl.Series, text: pl.Series, question: pl.Series) -> pl.Series:
    """`tables.code_answers`, looking up only rows with a text answer to a coded question."""
    where = (text.is_not_null() & question).arg_true()
    if where.is_empty():
        return text.alias("text_value")
    return tables.code_answers_at(ctx, code, text, where)


def _describe(
    ctx: tables.SyntheaContext,
    state: ObservationState,
    b: pl.DataFrame,
    code: pl.Series,
    row: np.ndarray,
) -> None:
    """`ctx.describe`, called only when the batch has a code without a description yet (`row`: the
    plan row of each batch row)."""
    if "DESCRIPTION" not in b.columns:
        return
    n_plan = state.plan.height
    described = state.described
    if len(described) < n_plan:
        described = state.described = np.concatenate([described, np.zeros(n_plan - len(described), bool)])
    present = np.flatnonzero(np.bincount(row, minlength=len(described)))
    if described[present].all():
        return
    text = b.get_column("DESCRIPTION")  # a raw block's: its NA markers are nulled here
    ctx.describe(code, text.to_frame().select(null_markers(pl.col(text.name))).to_series())
    known, codes = ctx.ing.events.descriptions, state.plan.get_column("code")
    described[present] = [codes[i] in known for i in present.tolist()]


def observations(ctx: tables.SyntheaContext, src: SchemaFile, b: pl.DataFrame) -> tables.Converted:
    """Observations: the fast path when the batch allows it, else the careful converter."""
    fast = fast_observations(ctx, src, b)
    return fast if fast is not None else tables.observations(ctx, src, b)


CONVERTERS: dict[str, Callable[[tables.SyntheaContext, SchemaFile, pl.DataFrame], tables.Converted]] = {
    **tables.CONVERTERS,
    "observations": observations,
}
BLOCK_TAKERS: dict[str, Callable[[tables.SyntheaContext, SchemaFile], BlockTaker | None]] = {
    "observations": block_taker
}
