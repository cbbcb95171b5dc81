"""The per-export lookups of the Synthea observations fast path (`csv_synthea_obs`).

A plan row per distinct raw (CODE, UNITS, TYPE) triple, built once per export with the careful
converter's own expressions (NA markers null, stripped code, `LOINC/` event code, canonical unit
conversion, plausible range, keyed code hash) and the flags a row needs packed in one byte; two
independent 64-bit hashes of the triple find and check a row's plan row. Subject ids come from a
hashed lookup of PATIENT values (one pseudonym per distinct patient per export).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ehr_risk.ingest import csv_synthea_tables as tables
from ehr_risk.ingest.csv_lookup import HashedLookup, check_hash, key_hash
from ehr_risk.ingest.csv_read import null_markers
from ehr_risk.ingest.csv_values import unit_plan
from ehr_risk.ingest.units import BY_CODE

KEYS = ["CODE", "UNITS", "TYPE"]
_UNIT_CODES = list(BY_CODE)
# bits of a plan row's `_flags`
NUM, TEXT, HAS_UNIT, METRIC, CONVERT, ERR, BAD_CODE, QUESTION = (1 << i for i in range(8))
# codes whose text answers may be coded (`answer_table`'s question codes, whatever conditions hold)
_QUESTIONS = sorted({c for c, _ in tables.SYNTHEA_ANSWERS} | {tables.CAUSE_OF_DEATH})


class ObservationState:
    """Per-export lookups of the fast path: plan rows by raw (CODE, UNITS, TYPE), subject ids by PATIENT."""

    def __init__(self, ctx: tables.SyntheaContext):
        self.ctx = ctx
        self.plan = pl.DataFrame()
        self.add(pl.DataFrame(schema=dict.fromkeys(KEYS, pl.String())))  # the columns, no rows yet
        self.subjects = HashedLookup(["PATIENT"], lambda keys: _subject_frame(ctx, keys))
        self.described = np.zeros(0, dtype=bool)  # per plan row: its code has a description

    def add(self, keys: pl.DataFrame) -> None:
        """Plan rows for new distinct raw triples (`keys`), appended with consecutive `_pid`s. A triple
        whose hash another plan row has already (a 64-bit collision) gets none: its rows fail the
        check of the joined triple and take the careful converter."""
        keys = keys.with_columns(key_hash(KEYS).alias("_h"), check_hash(KEYS).alias("_h2"))
        if self.plan.width:
            keys = keys.filter(~pl.col("_h").is_in(self.plan.get_column("_h").implode()))
        keys = keys.unique("_h", keep="first", maintain_order=True)
        start = self.plan.height
        built = _plan_frame(self.ctx, keys).with_columns(
            pl.int_range(start, start + keys.height, dtype=pl.UInt32).alias("_pid")
        )
        rows = pl.concat([keys.select("_h", "_h2"), built], how="horizontal")
        self.plan = pl.concat([self.plan, rows], how="vertical") if self.plan.width else rows


def _plan_frame(ctx: tables.SyntheaContext, raw: pl.DataFrame) -> pl.DataFrame:
    """Plan rows for distinct raw triples: the careful converter's expressions, run on the triples
    (NA markers null, as the reader makes them; a missing or blank CODE flagged `_bad_code`)."""
    raw = raw.select(null_markers(pl.col(k)).alias(k) for k in KEYS)
    bad_code = raw.select(pl.col("CODE").is_null() | pl.col("CODE").str.contains(r"^\s*$")).to_series()
    stripped = raw.select(
        pl.col("CODE").fill_null("").str.strip_chars().alias("_code"),
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
            bad_code.alias("_bad_code"),
            pl.col("code").is_in(_UNIT_CODES).alias("_convert"),
        )
        .select(
            "code",
            # the flags a row needs, one bit each (one gather per row instead of eight)
            pl.sum_horizontal(
                flag.fill_null(False).cast(pl.UInt8) * bit
                for flag, bit in (
                    (kind == "numeric", NUM),
                    (kind == "text", TEXT),
                    (unit.is_not_null(), HAS_UNIT),
                    (pl.col("_code").is_in(tables.SYNTHEA_METRICS), METRIC),
                    (convert, CONVERT),
                    (convert & pl.col("_unit_error").is_not_null(), ERR),
                    (pl.col("_bad_code"), BAD_CODE),
                    (pl.col("code").is_in(_QUESTIONS), QUESTION),
                )
            )
            .cast(pl.UInt8)
            .alias("_flags"),
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
