"""Canonical units for the cardiovascular and renal measurements, and plausibility ranges.

`canonical(code, value, unit)` returns the value in the canonical unit of `code` (a `LOINC/…` event code)
or raises `UnitError` when the unit is missing or cannot be converted: a wrong number is worse than a
reject. Codes outside the table pass through unchanged. `plausible(code, value)` flags physically
impossible values (in canonical units) so readers can reject them with a reason.

Conversion factors (mg/dL per mmol/L = molar mass in g/mol / 10):
- cholesterol (total, HDL, LDL): 38.67 — molar mass of cholesterol 386.65 g/mol; the SI factor 0.02586
  used by NCEP ATP III and the AMA Manual of Style SI conversion table.
- triglycerides: 88.57 — triolein 885.7 g/mol; the conventional SI factor 0.01129 (AMA table).
- glucose: 18.016 — glucose 180.16 g/mol; SI factor 0.0555 (AMA table).
- creatinine: 1 mg/dL = 88.42 µmol/L — creatinine 113.12 g/mol (KDIGO 2012 CKD guideline, units note).
- HbA1c: NGSP % = 0.09148 × IFCC mmol/mol + 2.152 — the NGSP/IFCC master equation (ngsp.org/ifccngsp.asp).
- weight: 1 [lb_av] = 0.45359237 kg, height: 1 [in_i] = 2.54 cm (exact, UCUM definitions).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache


class UnitError(ValueError):
    """A unit that is missing or cannot be converted; `reason` holds no patient value."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


Convert = Callable[[float], float]


@dataclass(frozen=True)
class Analyte:
    name: str
    unit: str  # canonical UCUM unit
    conversions: dict[str, Convert]  # normalised unit spelling → conversion to the canonical unit
    low: float  # plausible range in the canonical unit (inclusive)
    high: float
    assume_if_missing: bool = False  # a missing unit can only mean the canonical one (BP, BMI, eGFR)
    codes: tuple[str, ...] = field(default=())


def _same(v: float) -> float:
    return v


def _factor(f: float) -> Convert:
    return lambda v: v * f


def _ifcc_to_ngsp(v: float) -> float:
    return 0.09148 * v + 2.152


_MG_DL = ("mg/dl",)
_MOLAR_CHOL = {"mmol/l": _factor(38.67), "umol/l": _factor(0.03867), "g/l": _factor(100.0)}

ANALYTES: tuple[Analyte, ...] = (
    Analyte(
        "total_cholesterol",
        "mg/dL",
        {**dict.fromkeys(_MG_DL, _same), **_MOLAR_CHOL},
        50,
        1000,
        codes=("LOINC/2093-3", "LOINC/35200-5", "LOINC/14647-2"),
    ),
    Analyte(
        "hdl",
        "mg/dL",
        {**dict.fromkeys(_MG_DL, _same), **_MOLAR_CHOL},
        5,
        300,
        codes=("LOINC/2085-9", "LOINC/14646-4"),
    ),
    Analyte(
        "ldl",
        "mg/dL",
        {**dict.fromkeys(_MG_DL, _same), **_MOLAR_CHOL},
        1,
        1000,
        codes=("LOINC/18262-6", "LOINC/13457-7", "LOINC/2089-1", "LOINC/22748-8", "LOINC/39469-2"),
    ),
    Analyte(
        "triglycerides",
        "mg/dL",
        {**dict.fromkeys(_MG_DL, _same), "mmol/l": _factor(88.57), "g/l": _factor(100.0)},
        5,
        20000,
        codes=("LOINC/2571-8", "LOINC/35217-9", "LOINC/14927-8"),
    ),
    Analyte(
        "glucose",
        "mg/dL",
        {**dict.fromkeys(_MG_DL, _same), "mmol/l": _factor(18.016), "g/l": _factor(100.0)},
        10,
        3000,
        codes=("LOINC/2345-7", "LOINC/2339-0", "LOINC/14749-6", "LOINC/15074-8", "LOINC/1558-6"),
    ),
    Analyte(
        "hba1c",
        "%",
        {"%": _same, "%{hba1c}": _same, "mmol/mol": _ifcc_to_ngsp, "mmol/mol{hb}": _ifcc_to_ngsp},
        2,
        25,
        codes=("LOINC/4548-4", "LOINC/17856-6", "LOINC/59261-8"),
    ),
    Analyte(
        "creatinine",
        "mg/dL",
        {"mg/dl": _same, "umol/l": _factor(1 / 88.42), "mmol/l": _factor(1000 / 88.42), "mg/l": _factor(0.1)},
        0.05,
        40,
        codes=("LOINC/2160-0", "LOINC/14682-9", "LOINC/38483-4"),
    ),
    Analyte(
        "egfr",
        "mL/min/{1.73_m2}",
        # eGFR codes are normalised to 1.73 m² body surface by definition; a bare `mL/min` on these codes
        # (Synthea writes it) is a label slip, not a different quantity.
        {"ml/min/1.73m2": _same, "ml/min": _same, "ml/s/1.73m2": _factor(60.0)},
        0,
        250,
        assume_if_missing=True,
        codes=(
            "LOINC/33914-3",
            "LOINC/48643-1",
            "LOINC/48642-3",
            "LOINC/62238-1",
            "LOINC/98979-8",
            "LOINC/88293-6",
            "LOINC/88294-4",
            "LOINC/50044-7",
            "LOINC/69405-9",
        ),
    ),
    Analyte(
        "bmi",
        "kg/m2",
        {"kg/m2": _same},
        5,
        250,
        assume_if_missing=True,
        codes=("LOINC/39156-5",),
    ),
    Analyte(
        "systolic_bp",
        "mm[Hg]",
        {"mm[hg]": _same, "mmhg": _same, "kpa": _factor(7.50062)},
        40,
        300,
        assume_if_missing=True,
        codes=("LOINC/8480-6", "LOINC/8459-0", "LOINC/8479-8", "LOINC/76534-7"),
    ),
    Analyte(
        "diastolic_bp",
        "mm[Hg]",
        {"mm[hg]": _same, "mmhg": _same, "kpa": _factor(7.50062)},
        10,
        250,
        assume_if_missing=True,
        codes=("LOINC/8462-4", "LOINC/8453-3", "LOINC/8454-1", "LOINC/76535-4"),
    ),
    Analyte(
        "body_weight",
        "kg",
        {"kg": _same, "g": _factor(0.001), "[lb_av]": _factor(0.45359237), "lb": _factor(0.45359237)},
        0.2,
        700,
        codes=("LOINC/29463-7", "LOINC/3141-9"),
    ),
    Analyte(
        "body_height",
        "cm",
        {"cm": _same, "m": _factor(100.0), "mm": _factor(0.1), "[in_i]": _factor(2.54), "in": _factor(2.54)},
        15,
        280,
        codes=("LOINC/8302-2", "LOINC/8306-3", "LOINC/8308-9"),
    ),
)
BY_CODE: dict[str, Analyte] = {code: a for a in ANALYTES for code in a.codes}
# Event codes of each analyte, for feature builders: {"total_cholesterol": ("LOINC/2093-3", …), …}.
CODES_BY_ANALYTE: dict[str, tuple[str, ...]] = {a.name: a.codes for a in ANALYTES}

_SPELLINGS = {"µ": "u", "μ": "u", "²": "2", "^": "", " ": "", "{1.73_m2}": "1.73m2", "1.73.m2": "1.73m2"}


def normalize_unit(unit: str) -> str:
    """A comparable spelling of a unit: lower case, µ/μ → u, no spaces, `m^2`/`m²` → `m2`."""
    text = unit.strip().lower()
    for old, new in _SPELLINGS.items():
        text = text.replace(old, new)
    return text.replace("1.73_m2", "1.73m2")


def _key(code: str) -> str:
    return code if "/" in code else f"LOINC/{code}"


def canonical(code: str, value: float, unit: str | None) -> tuple[float, str]:
    """`value` in `unit` → (value, unit) in the canonical unit of `code`; unknown codes pass through.

    Raises UnitError (reason names the code and unit, never the value) for a missing or unconvertible unit.
    """
    analyte = BY_CODE.get(_key(code))
    if analyte is None:
        return value, unit or ""
    if unit is None or not unit.strip():
        if analyte.assume_if_missing:
            return value, analyte.unit
        raise UnitError(f"missing unit for {_key(code)}")
    convert = analyte.conversions.get(normalize_unit(unit))
    if convert is None:
        raise UnitError(f"unit {unit.strip()[:24]!r} not convertible to {analyte.unit} for {_key(code)}")
    return convert(value), analyte.unit


@lru_cache(maxsize=4096)
def converter(code: str, unit: str | None) -> tuple[Convert, str, float, float] | str | None:
    """Cached plan for one (code, unit) pair, for readers converting many values: None when the code has
    no canonical unit, a reason string when the unit cannot be converted, else (convert, canonical unit,
    plausible low, plausible high)."""
    analyte = BY_CODE.get(_key(code))
    if analyte is None:
        return None
    try:
        canonical(code, 1.0, unit)
    except UnitError as exc:
        return exc.reason
    if unit is None or not unit.strip():
        return _same, analyte.unit, analyte.low, analyte.high
    return analyte.conversions[normalize_unit(unit)], analyte.unit, analyte.low, analyte.high


def plausible(code: str, value: float) -> bool:
    """False for NaN/infinite values and for values outside the analyte's range (canonical units)."""
    if not math.isfinite(value):
        return False
    analyte = BY_CODE.get(_key(code))
    return analyte is None or analyte.low <= value <= analyte.high


def plausible_range(code: str) -> tuple[float, float, str] | None:
    """(low, high, unit) of an analyte code, for reject reasons; None for codes without a range."""
    analyte = BY_CODE.get(_key(code))
    return None if analyte is None else (analyte.low, analyte.high, analyte.unit)
