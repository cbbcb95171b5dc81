"""What counts as "one kind of event" for the featurizers: the event key.

The key of an event is its code, or `code=text_value` when the text value is a coded answer from a known
vocabulary (smoking status `LOINC/72166-2=SNOMED/449868002`). Free-text values never become part of a key,
so no free text can reach a vocabulary file or a column name.
"""

from __future__ import annotations

import polars as pl

from ehr_risk.ingest.codes import ETHNICITY, GENDER, KNOWN_VOCABS, MEDS_BIRTH, MEDS_DEATH, RACE

STATIC_PREFIXES = (f"{GENDER}/", f"{RACE}/", f"{ETHNICITY}/")
BIRTH = MEDS_BIRTH
DEATH = MEDS_DEATH
_VOCABS = "|".join(sorted(v for v in KNOWN_VOCABS if v.isalnum()))
CODED_VALUE_PATTERN = rf"^(?:{_VOCABS})/[A-Za-z0-9][A-Za-z0-9.\-_]{{0,39}}$"


def coded_value_expr(column: str = "text_value") -> pl.Expr:
    """True where `column` is a coded answer `VOCAB/code` (known vocabulary, code without spaces)."""
    return pl.col(column).str.contains(CODED_VALUE_PATTERN).fill_null(False)


def key_expr() -> pl.Expr:
    """The event key: `code`, or `code=text_value` for coded answers."""
    return (
        pl.when(coded_value_expr())
        .then(pl.concat_str([pl.col("code"), pl.lit("="), pl.col("text_value")]))
        .otherwise(pl.col("code"))
        .alias("key")
    )


def is_static_code() -> pl.Expr:
    """Static demographic codes (sex, race, ethnicity) by prefix."""
    code = pl.col("code")
    return pl.any_horizontal([code.str.starts_with(p) for p in STATIC_PREFIXES])
