"""Random but plausible event tables for the feature tests and benchmarks/features.py (numpy, vectorised).

Not patient data: subjects, times and values are drawn from a seeded generator. The codes are real
(LOINC labs and vitals in canonical units, SNOMED/ICD-10-CM conditions, RxNorm drugs, smoking status
answers) so that the clinical variables find what they look for; a few values carry a wrong unit and a
few records are recorded (recorded_time) after they happened.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

US_PER_DAY = 86_400_000_000
EPOCH = dt.datetime(1970, 1, 1)
_NONE = np.array(None, dtype=object)  # a null in object arrays (np.where)

# code, unit, mean, sd (None: no value)
LABS = [
    ("LOINC/2093-3", "mg/dL", 200.0, 35.0),
    ("LOINC/2085-9", "mg/dL", 50.0, 12.0),
    ("LOINC/18262-6", "mg/dL", 120.0, 30.0),
    ("LOINC/8480-6", "mm[Hg]", 128.0, 18.0),
    ("LOINC/8462-4", "mm[Hg]", 80.0, 10.0),
    ("LOINC/4548-4", "%", 5.8, 0.9),
    ("LOINC/39156-5", "kg/m2", 28.0, 5.0),
    ("LOINC/33914-3", "mL/min/{1.73_m2}", 85.0, 20.0),
    ("LOINC/2339-0", "mg/dL", 100.0, 25.0),
]
CODES = [
    "SNOMED/59621000",
    "SNOMED/44054006",
    "ICD10CM/I10",
    "ICD10CM/E11.9",
    "SNOMED/55822004",
    "RxNorm/314076",
    "RxNorm/617312",
    "RxNorm/860975",
    "RxNorm/197361",
    "ENCOUNTER/AMB",
    "SNOMED/185349003",
    "CVX/140",
]
SMOKING = ["SNOMED/449868002", "SNOMED/8517006", "SNOMED/266919005"]

CODELISTS = {
    "bp_medications": [
        ("314076", "RxNorm", "lisinopril 10 MG Oral Tablet"),
        ("197361", "RxNorm", "amlodipine 5 MG"),
    ],
    "statins": [("617312", "RxNorm", "atorvastatin 10 MG Oral Tablet")],
    "diabetes_medications": [("860975", "RxNorm", "metformin 500 MG 24HR")],
    "diabetes": [
        ("44054006", "SNOMED", "Diabetes mellitus type 2"),
        ("E11", "ICD10CM", "Type 2 diabetes mellitus"),
    ],
}


def write_codelists(directory: Path) -> Path:
    """Minimal code lists for the tests (the real ones live in pipelines/codelists/)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in CODELISTS.items():
        lines = ["code,system,term", *(f"{c},{s},{t}" for c, s, t in rows)]
        (directory / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return directory


def _us(d: dt.datetime) -> int:
    return (d - EPOCH) // dt.timedelta(microseconds=1)


def random_events(
    n_subjects: int,
    seed: int = 0,
    events_per_subject: int = 60,
    start: dt.datetime = dt.datetime(2005, 1, 1),
    end: dt.datetime = dt.datetime(2024, 12, 31),
    first_subject: int = 1,
) -> pl.DataFrame:
    """An event table for `n_subjects` subjects, sorted by (subject_id, time) with static rows first."""
    rng = np.random.default_rng(seed)
    subjects = np.arange(first_subject, first_subject + n_subjects, dtype=np.int64)
    birth = rng.integers(_us(dt.datetime(1935, 1, 1)), _us(dt.datetime(1995, 1, 1)), n_subjects)
    n_ev = rng.poisson(events_per_subject, n_subjects).clip(1)
    sid = np.repeat(subjects, n_ev)
    total = int(n_ev.sum())
    t = rng.integers(_us(start), _us(end), total)
    kind = rng.random(total)
    n_labs = len(LABS)
    lab_idx = rng.integers(0, n_labs, total)
    code_idx = rng.integers(0, len(CODES), total)
    is_lab = kind < 0.55
    is_smoking = (kind >= 0.55) & (kind < 0.6)
    lab_codes = np.array([c for c, *_ in LABS], dtype=object)
    units = np.array([u for _, u, *_ in LABS], dtype=object)
    means = np.array([m for *_, m, _ in LABS])
    sds = np.array([s for *_, s in LABS])
    code = np.where(is_lab, lab_codes[lab_idx], np.array(CODES, dtype=object)[code_idx])
    code = np.where(is_smoking, "LOINC/72166-2", code)
    value = np.where(is_lab, rng.normal(means[lab_idx], sds[lab_idx]), np.nan).astype(np.float32)
    unit = np.where(is_lab, units[lab_idx], _NONE)
    wrong_unit = is_lab & (rng.random(total) < 0.03)
    unit = np.where(wrong_unit, "mmol/L", unit)
    text = np.where(is_smoking, np.array(SMOKING, dtype=object)[rng.integers(0, 3, total)], _NONE)
    late = rng.random(total) < 0.1
    recorded = np.where(late, t + rng.integers(1, 60, total) * US_PER_DAY, -1)
    timed = pl.DataFrame(
        {
            "subject_id": sid,
            "time": pl.Series(t, dtype=pl.Int64).cast(pl.Datetime("us")),
            "code": pl.Series(code.astype(str), dtype=pl.String),
            "numeric_value": pl.Series(value, dtype=pl.Float32).fill_nan(None),
            "text_value": pl.Series(text.tolist(), dtype=pl.String),
            "unit": pl.Series(unit.tolist(), dtype=pl.String),
            "recorded_time": pl.Series(recorded, dtype=pl.Int64).cast(pl.Datetime("us")),
        }
    ).with_columns(
        pl.when(pl.col("recorded_time").dt.year() < 1971)
        .then(None)
        .otherwise(pl.col("recorded_time"))
        .alias("recorded_time")
    )
    sex = np.where(rng.random(n_subjects) < 0.5, "GENDER/female", "GENDER/male")
    race = np.array(["RACE/2106-3", "RACE/2054-5", "RACE/2028-9"], dtype=object)[
        rng.integers(0, 3, n_subjects)
    ]
    static = pl.DataFrame(
        {
            "subject_id": np.concatenate([subjects, subjects, subjects]),
            "time": pl.Series(
                np.concatenate([np.full(2 * n_subjects, None, dtype=object), birth.astype(object)]).tolist(),
                dtype=pl.Int64,
            ).cast(pl.Datetime("us")),
            "code": np.concatenate(
                [sex.astype(object), race, np.full(n_subjects, "MEDS_BIRTH", dtype=object)]
            ).astype(str),
        }
    )
    events = pl.concat([static, timed], how="diagonal_relaxed")
    return events.with_columns(
        pl.lit(None, dtype=pl.Datetime("us")).alias("end_time"),
        pl.lit("test").alias("resource_type"),
        pl.lit(None, dtype=pl.Int64).alias("record_id"),
    ).sort(["subject_id", "time"], nulls_last=False, maintain_order=True)


def prediction_times(
    events: pl.DataFrame, dates: tuple[dt.datetime, ...] = (dt.datetime(2012, 1, 1), dt.datetime(2018, 6, 1))
) -> pl.DataFrame:
    """Every subject at each of `dates`."""
    subjects = events.get_column("subject_id").unique().sort()
    return pl.DataFrame(
        {
            "subject_id": np.repeat(subjects.to_numpy(), len(dates)),
            "prediction_time": pl.Series(list(dates) * subjects.len(), dtype=pl.Datetime("us")),
        }
    )
