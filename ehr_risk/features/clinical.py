"""The named clinical variables the risk equations need, as of each prediction time.

One row per prediction time (row order = `times`), columns as in contracts.md: age_years, sex, race,
latest lab/vital values with `<var>_age_days`, and 0/1 flags on_bp_treatment, on_statin, current_smoker,
diabetes. Only events visible at t (ehr_risk.events rule) are read.

Look-back windows (days before t; override with `lookback_days={name: days or None}`):

    total_cholesterol_mg_dl, hdl_mg_dl, ldl_mg_dl, triglycerides_mg_dl, glucose_mg_dl, hba1c_pct,
    egfr_ml_min_1_73m2, bmi_kg_m2 ............ 730   (2 years)
    systolic_bp_mm_hg, diastolic_bp_mm_hg ..... 365   (1 year)
    bp_treatment, statin, diabetes_medication . 365   a drug of the list prescribed within the window, or
                                                      a prescription whose end_time is after t (ongoing)
    smoking ................................... 1825  latest smoking status within 5 years
    diabetes_diagnosis, diabetes_lab .......... None  (ever): a diabetes code, HbA1c >= 6.5 % or fasting
                                                      glucose (LOINC 1558-6) >= 126 mg/dL

Values: the latest value in the window; several values at that same time are averaged (e.g. repeated
BP readings). Values whose unit is not the variable's canonical unit, and implausible values, are ignored
and counted in the quality report (`clinical_variables_with_quality`). Flags are 0/1, and null when the
subject has no visible clinical event at all at t (nothing is known); current_smoker is null when no
smoking status is recorded in the window. Sex is female/male from GENDER/*; race is white (RACE/2106-3),
black (RACE/2054-5), other (another or several of the five OMB race categories or 2131-1 "other race"),
or null; RACE/ codes outside those six (e.g. an ethnicity code in a race field) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ehr_risk.errors import ConfigError
from ehr_risk.events import (
    DAYS_PER_YEAR,
    ROW,
    EventsLike,
    birth_time_at,
    days_before,
    ensure_event_columns,
    events_at,
    first_available_time,
    unique_times,
)
from ehr_risk.features.codelists import load_codelist
from ehr_risk.features.tokens import BIRTH, DEATH
from ehr_risk.ingest.codes import (
    GENDER_FEMALE,
    GENDER_MALE,
    RACE_AIAN,
    RACE_ASIAN,
    RACE_BLACK,
    RACE_NHPI,
    RACE_OTHER,
    RACE_WHITE,
)

_MG_DL = ("mg/dL",)


@dataclass(frozen=True)
class LabSpec:
    codes: tuple[str, ...]  # LOINC codes (without the LOINC/ prefix)
    units: tuple[str, ...]  # spellings of the canonical unit
    low: float  # plausible range, inclusive
    high: float


LABS: dict[str, LabSpec] = {
    "total_cholesterol_mg_dl": LabSpec(("2093-3", "35200-5"), _MG_DL, 50, 1000),
    "hdl_mg_dl": LabSpec(("2085-9",), _MG_DL, 5, 250),
    "ldl_mg_dl": LabSpec(("18262-6", "13457-7", "2089-1"), _MG_DL, 5, 700),
    "systolic_bp_mm_hg": LabSpec(("8480-6",), ("mm[Hg]", "mmHg"), 40, 300),
    "diastolic_bp_mm_hg": LabSpec(("8462-4",), ("mm[Hg]", "mmHg"), 20, 200),
    "bmi_kg_m2": LabSpec(("39156-5",), ("kg/m2", "kg/m^2", "kg/(m2)"), 10, 100),
    "egfr_ml_min_1_73m2": LabSpec(
        ("33914-3", "48643-1", "48642-3", "62238-1", "98979-8", "50044-7", "69405-9"),
        ("mL/min/{1.73_m2}", "mL/min/1.73m2", "mL/min/{1.73m2}", "mL/min/1.73_m2"),
        1,
        250,
    ),
    "hba1c_pct": LabSpec(("4548-4", "17856-6"), ("%",), 2, 25),
    "glucose_mg_dl": LabSpec(("2345-7", "2339-0", "1558-6"), _MG_DL, 10, 2000),
    "triglycerides_mg_dl": LabSpec(("2571-8", "35217-9"), _MG_DL, 10, 10000),
}
FASTING_GLUCOSE = "LOINC/1558-6"
HBA1C_DIABETES_PCT = 6.5
FASTING_GLUCOSE_DIABETES_MG_DL = 126.0

# OMB race categories (CDC Race & Ethnicity code set) plus "other race".
OMB_RACES = [RACE_AIAN, RACE_ASIAN, RACE_BLACK, RACE_NHPI, RACE_WHITE, RACE_OTHER]

SMOKING_STATUS = "LOINC/72166-2"
# SNOMED answers of LOINC 72166-2 (US Core smoking status value set) and equivalent findings.
CURRENT_SMOKER = frozenset(
    f"SNOMED/{c}"
    for c in (
        "449868002",  # smokes tobacco daily
        "428041000124106",  # occasional tobacco smoker
        "77176002",  # smoker
        "65568007",  # cigarette smoker
        "428071000124103",  # current heavy tobacco smoker
        "428061000124105",  # current light tobacco smoker
        "230059006",  # occasional cigarette smoker
        "56578002",  # moderate smoker
        "56771006",  # heavy smoker
        "59978006",  # cigar smoker
        "82302008",  # pipe smoker
    )
)
NOT_SMOKER = frozenset(
    f"SNOMED/{c}"
    for c in (
        "8517006",  # ex-smoker
        "266919005",  # never smoked tobacco
        "405746006",  # current non-smoker
        "160617001",  # stopped smoking
    )
)

DEFAULT_LOOKBACK_DAYS: dict[str, int | None] = {
    **{name: 730 for name in LABS},
    "systolic_bp_mm_hg": 365,
    "diastolic_bp_mm_hg": 365,
    "bp_treatment": 365,
    "statin": 365,
    "diabetes_medication": 365,
    "smoking": 1825,
    "diabetes_diagnosis": None,
    "diabetes_lab": None,
}
FLAGS = ("on_bp_treatment", "on_statin", "current_smoker", "diabetes")
NUMERIC_COLUMNS = ("age_years", *(c for name in LABS for c in (name, f"{name}_age_days")))
COLUMNS = ("subject_id", "prediction_time", "age_years", "sex", "race", *NUMERIC_COLUMNS[1:], *FLAGS)


def resolve_lookback(lookback_days: dict[str, int | None] | None) -> dict[str, int | None]:
    """Defaults updated with `lookback_days`; unknown names and negative windows are config errors."""
    merged = dict(DEFAULT_LOOKBACK_DAYS)
    for name, days in (lookback_days or {}).items():
        if name not in merged:
            raise ConfigError(f"lookback_days: unknown variable {name!r} (known: {', '.join(merged)})")
        if days is not None and days < 0:
            raise ConfigError(f"lookback_days: {name} must be >= 0 days or null")
        merged[name] = days
    return merged


def _within(days: int | None) -> pl.Expr:
    return pl.lit(True) if days is None else days_before() <= days


def clinical_variables(
    events: EventsLike,
    times: pl.DataFrame,
    lookback_days: dict[str, int | None] | None = None,
    *,
    codelist_dir: str | Path | None = None,
) -> pl.DataFrame:
    """The clinical-variables table (contracts.md) for `times`, in `times` row order."""
    return clinical_variables_with_quality(events, times, lookback_days, codelist_dir=codelist_dir)[0]


def clinical_variables_with_quality(
    events: EventsLike,
    times: pl.DataFrame,
    lookback_days: dict[str, int | None] | None = None,
    *,
    codelist_dir: str | Path | None = None,
) -> tuple[pl.DataFrame, dict[str, dict[str, int]]]:
    """(clinical variables, quality): quality[var] counts the events of the subjects in `times` ignored
    for that variable: `unit` (not the canonical unit), `implausible` (outside the plausible range)."""
    windows = resolve_lookback(lookback_days)
    lf = ensure_event_columns(events)
    keys, index = unique_times(times)
    subjects = keys.get_column("subject_id").unique().implode()
    present = lf.select(pl.col("code").unique()).collect().get_column("code")
    lists = {
        name: load_codelist(name, codelist_dir).among(present)
        for name in ("bp_medications", "statins", "diabetes", "diabetes_medications")
    }
    labs = _lab_events(lf.filter(pl.col("subject_id").is_in(subjects)), windows)
    checked = events_at(
        labs.filter(pl.col("_unit_ok") & pl.col("_plausible")),
        keys,
        ["code", "numeric_value", "var", "window"],
        static=False,
    ).with_columns(days_before().alias("days"))
    parts = [
        _demographics(lf, keys),
        _latest_labs(checked),
        _medications(lf, keys, windows, lists),
        _smoking(lf, keys, windows),
        _diabetes(lf, keys, checked, windows, lists),
        _has_history(lf, keys),
    ]
    wide = keys.lazy()
    for part in parts:
        wide = wide.join(part, on=ROW, how="left")
    quality = labs.group_by("var").agg(
        (~pl.col("_unit_ok")).sum().alias("unit"),
        (pl.col("_unit_ok") & ~pl.col("_plausible")).sum().alias("implausible"),
    )
    table, counts = pl.collect_all([wide, quality])
    table = _finish(table)
    out = pl.DataFrame({ROW: index}).join(table, on=ROW, how="left", maintain_order="left").drop(ROW)
    report = {
        var: {"unit": int(u), "implausible": int(i)}
        for var, u, i in counts.select("var", "unit", "implausible").iter_rows()
    }
    return out.select(COLUMNS), {var: report.get(var, {"unit": 0, "implausible": 0}) for var in LABS}


def _lab_events(lf: pl.LazyFrame, windows: dict[str, int | None]) -> pl.LazyFrame:
    """Lab/vital events with their variable, look-back window and unit/plausibility checks."""
    spec = pl.DataFrame(
        [
            (f"LOINC/{code}", name, windows[name], float(s.low), float(s.high))
            for name, s in LABS.items()
            for code in s.codes
        ],
        schema={
            "code": pl.String,
            "var": pl.String,
            "window": pl.Int64,
            "_low": pl.Float64,
            "_high": pl.Float64,
        },
        orient="row",
    )
    # Spellings compared case- and space-insensitively (mg/dl = mg/dL, mm Hg = mmHg).
    units = (
        pl.DataFrame(
            [(name, unit) for name, s in LABS.items() for unit in s.units],
            schema={"var": pl.String, "_unit": pl.String},
            orient="row",
        )
        .with_columns(_normal_unit(pl.col("_unit")).alias("_unit"), pl.lit(True).alias("_canonical"))
        .unique(["var", "_unit"])
    )
    return (
        lf.filter(pl.col("numeric_value").is_not_null())
        .join(spec.lazy(), on="code", how="inner")
        .with_columns(_normal_unit(pl.col("unit")).alias("_unit"))
        .join(units.lazy(), on=["var", "_unit"], how="left")
        .with_columns(
            # Values without a unit passed ingestion's conversion to the canonical unit: trusted.
            (pl.col("unit").is_null() | pl.col("_canonical").fill_null(False)).alias("_unit_ok"),
            pl.col("numeric_value").is_between(pl.col("_low"), pl.col("_high")).alias("_plausible"),
        )
    )


def _normal_unit(unit: pl.Expr) -> pl.Expr:
    return unit.str.to_lowercase().str.replace_all(" ", "", literal=True)


def _latest_labs(checked: pl.LazyFrame) -> pl.LazyFrame:
    in_window = pl.col("window").is_null() | (pl.col("days") <= pl.col("window"))
    latest = (
        checked.filter(in_window)
        .group_by([ROW, "var"])
        .agg(
            pl.col("numeric_value")
            .filter(pl.col("time") == pl.col("time").max())
            .cast(pl.Float64)
            .mean()
            .alias("value"),
            pl.col("days").min(),
        )
    )
    aggs = []
    for name in LABS:
        this = pl.col("var") == name
        aggs += [
            pl.col("value").filter(this).first().alias(name),
            pl.col("days").filter(this).first().alias(f"{name}_age_days"),
        ]
    return latest.group_by(ROW).agg(aggs)


def _demographics(lf: pl.LazyFrame, keys: pl.DataFrame) -> pl.LazyFrame:
    births = birth_time_at(lf, keys)
    age = (
        keys.lazy()
        .join(births, on=ROW, how="inner")
        .select(ROW, (days_before(time="birth_time") * (1.0 / DAYS_PER_YEAR)).alias("age_years"))
    )
    subjects = keys.get_column("subject_id").unique().implode()
    static = (
        lf.filter(pl.col("time").is_null() & pl.col("subject_id").is_in(subjects))
        .group_by("subject_id")
        .agg(
            pl.when(pl.col("code").eq(GENDER_FEMALE).any() & ~pl.col("code").eq(GENDER_MALE).any())
            .then(pl.lit("female"))
            .when(pl.col("code").eq(GENDER_MALE).any() & ~pl.col("code").eq(GENDER_FEMALE).any())
            .then(pl.lit("male"))
            .alias("sex"),
            pl.col("code").filter(pl.col("code").is_in(OMB_RACES)).unique().alias("races"),
        )
        .with_columns(
            pl.when(pl.col("races").list.len() == 0)
            .then(None)
            .when(pl.col("races").list.len() > 1)
            .then(pl.lit("other"))
            .when(pl.col("races").list.first() == RACE_WHITE)
            .then(pl.lit("white"))
            .when(pl.col("races").list.first() == RACE_BLACK)
            .then(pl.lit("black"))
            .otherwise(pl.lit("other"))
            .alias("race")
        )
        .select("subject_id", "sex", "race")
    )
    return (
        keys.lazy()
        .join(static, on="subject_id", how="left")
        .join(age, on=ROW, how="left")
        .select(ROW, "age_years", "sex", "race")
    )


def _recent_or_ongoing(days: int | None) -> pl.Expr:
    ongoing = pl.col("end_time").is_not_null() & (pl.col("end_time") > pl.col("prediction_time"))
    return _within(days) | ongoing


def _medications(
    lf: pl.LazyFrame, keys: pl.DataFrame, windows: dict[str, int | None], lists: dict[str, list[str]]
) -> pl.LazyFrame:
    bp = pl.col("code").is_in(lists["bp_medications"])
    statin = pl.col("code").is_in(lists["statins"])
    meds = events_at(lf, keys, ["code", "end_time"], codes=bp | statin, static=False)
    return meds.group_by(ROW).agg(
        (bp & _recent_or_ongoing(windows["bp_treatment"])).any().alias("_bp"),
        (statin & _recent_or_ongoing(windows["statin"])).any().alias("_statin"),
    )


def _smoking(lf: pl.LazyFrame, keys: pl.DataFrame, windows: dict[str, int | None]) -> pl.LazyFrame:
    answers = sorted(CURRENT_SMOKER | NOT_SMOKER)
    codes = (pl.col("code") == SMOKING_STATUS) | pl.col("code").is_in(answers)
    status = pl.when(pl.col("code") == SMOKING_STATUS).then(pl.col("text_value")).otherwise(pl.col("code"))
    smoking = (
        events_at(lf, keys, ["code", "text_value"], codes=codes, static=False)
        .with_columns(
            pl.when(status.is_in(sorted(CURRENT_SMOKER)))
            .then(1)
            .when(status.is_in(sorted(NOT_SMOKER)))
            .then(0)
            .alias("_smoker")
        )
        .filter(pl.col("_smoker").is_not_null() & _within(windows["smoking"]))
    )
    # Latest status wins; a tie at the same time is resolved towards "current smoker".
    return (
        smoking.filter(pl.col("time") == pl.col("time").max().over(ROW))
        .group_by(ROW)
        .agg(pl.col("_smoker").max().cast(pl.Int8).alias("current_smoker"))
    )


def _diabetes(
    lf: pl.LazyFrame,
    keys: pl.DataFrame,
    checked: pl.LazyFrame,
    windows: dict[str, int | None],
    lists: dict[str, list[str]],
) -> pl.LazyFrame:
    dx = pl.col("code").is_in(lists["diabetes"])
    drug = pl.col("code").is_in(lists["diabetes_medications"])
    coded = (
        events_at(lf, keys, ["code", "end_time"], codes=dx | drug, static=False)
        .group_by(ROW)
        .agg(
            (dx & _within(windows["diabetes_diagnosis"])).any().alias("_dm_dx"),
            (drug & _recent_or_ongoing(windows["diabetes_medication"])).any().alias("_dm_drug"),
        )
    )
    lab_window = windows["diabetes_lab"]
    high = ((pl.col("var") == "hba1c_pct") & (pl.col("numeric_value") >= HBA1C_DIABETES_PCT)) | (
        (pl.col("code") == FASTING_GLUCOSE) & (pl.col("numeric_value") >= FASTING_GLUCOSE_DIABETES_MG_DL)
    )
    in_window = pl.lit(True) if lab_window is None else pl.col("days") <= lab_window
    labs = checked.filter(high & in_window).group_by(ROW).agg(pl.lit(True).alias("_dm_lab"))
    return coded.join(labs, on=ROW, how="full", coalesce=True)


def _has_history(lf: pl.LazyFrame, keys: pl.DataFrame) -> pl.LazyFrame:
    first = first_available_time(lf, codes=~pl.col("code").is_in([BIRTH, DEATH]))
    return (
        keys.lazy()
        .join(first, on="subject_id", how="inner")
        .filter(pl.col("first_available_time") <= pl.col("prediction_time"))
        .select(ROW, pl.lit(True).alias("_history"))
    )


def _finish(table: pl.DataFrame) -> pl.DataFrame:
    known = pl.col("_history").fill_null(False)

    def flag(expr: pl.Expr, name: str) -> pl.Expr:
        return pl.when(known).then(expr.fill_null(False).cast(pl.Int8)).alias(name)

    return table.with_columns(
        flag(pl.col("_bp"), "on_bp_treatment"),
        flag(pl.col("_statin"), "on_statin"),
        flag(pl.col("_dm_dx") | pl.col("_dm_drug") | pl.col("_dm_lab"), "diabetes"),
        pl.when(known).then(pl.col("current_smoker")).cast(pl.Int8).alias("current_smoker"),
        *(pl.col(c).cast(pl.Float64) for c in NUMERIC_COLUMNS),
    )
