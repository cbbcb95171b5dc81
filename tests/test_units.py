"""Canonical units and plausibility of the cardiovascular and renal measurements."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehr_risk.ingest import units
from ehr_risk.ingest.units import UnitError, canonical, plausible


@pytest.mark.parametrize(
    ("code", "value", "unit", "expected", "canon"),
    [
        ("LOINC/2093-3", 5.0, "mmol/L", 193.35, "mg/dL"),  # 5.0 × 38.67
        ("LOINC/2085-9", 1.3, "mmol/l", 50.271, "mg/dL"),
        ("LOINC/13457-7", 3.0, "mmol/L", 116.01, "mg/dL"),
        ("LOINC/2571-8", 1.7, "mmol/L", 150.569, "mg/dL"),  # × 88.57
        ("LOINC/2345-7", 5.5, "mmol/L", 99.088, "mg/dL"),  # × 18.016
        ("LOINC/2160-0", 88.42, "µmol/L", 1.0, "mg/dL"),
        ("LOINC/2160-0", 88.42, "μmol/L", 1.0, "mg/dL"),  # Greek mu
        ("LOINC/2160-0", 88.42, "umol/L", 1.0, "mg/dL"),
        ("LOINC/2160-0", 1.2, "mg/dl", 1.2, "mg/dL"),
        ("LOINC/4548-4", 48.0, "mmol/mol", 6.54304, "%"),  # NGSP = 0.09148 × IFCC + 2.152
        ("LOINC/4548-4", 7.1, "%", 7.1, "%"),
        ("LOINC/33914-3", 72.0, "mL/min/{1.73_m2}", 72.0, "mL/min/{1.73_m2}"),
        ("LOINC/48643-1", 72.0, "mL/min/1.73 m2", 72.0, "mL/min/{1.73_m2}"),
        ("LOINC/62238-1", 72.0, "mL/min/1.73m^2", 72.0, "mL/min/{1.73_m2}"),
        ("LOINC/98979-8", 72.0, "mL/min", 72.0, "mL/min/{1.73_m2}"),
        ("LOINC/39156-5", 27.0, "kg/m^2", 27.0, "kg/m2"),
        ("LOINC/39156-5", 27.0, "kg/m²", 27.0, "kg/m2"),
        ("LOINC/8480-6", 120.0, "mmHg", 120.0, "mm[Hg]"),
        ("LOINC/8462-4", 80.0, "mm Hg", 80.0, "mm[Hg]"),
        ("LOINC/8480-6", 16.0, "kPa", 120.00992, "mm[Hg]"),
        ("LOINC/29463-7", 154.0, "[lb_av]", 69.8532, "kg"),
        ("LOINC/8302-2", 70.0, "[in_i]", 177.8, "cm"),
        ("2093-3", 200.0, "mg/dL", 200.0, "mg/dL"),  # a bare LOINC code is accepted
    ],
)
def test_conversions(code: str, value: float, unit: str, expected: float, canon: str) -> None:
    got, got_unit = canonical(code, value, unit)
    assert got == pytest.approx(expected, rel=1e-6)
    assert got_unit == canon


def test_unknown_codes_pass_through() -> None:
    assert canonical("LOINC/718-7", 13.2, "g/dL") == (13.2, "g/dL")
    assert canonical("SNOMED/1", 1.0, None) == (1.0, "")


def test_unconvertible_or_missing_units_raise_without_the_value() -> None:
    with pytest.raises(UnitError) as exc:
        canonical("LOINC/2093-3", 123.456, "g/dL")
    assert "123.456" not in exc.value.reason and "LOINC/2093-3" in exc.value.reason
    with pytest.raises(UnitError, match="missing unit"):
        canonical("LOINC/2093-3", 190.0, None)
    with pytest.raises(UnitError):
        canonical("LOINC/4548-4", 6.0, "mg/dL")
    # blood pressure, BMI and eGFR have one unit in use: a missing unit means that one
    assert canonical("LOINC/8480-6", 120.0, None) == (120.0, "mm[Hg]")
    assert canonical("LOINC/39156-5", 24.0, "") == (24.0, "kg/m2")


def test_plausibility() -> None:
    assert plausible("LOINC/8480-6", 120.0) and not plausible("LOINC/8480-6", 2000.0)
    assert not plausible("LOINC/8480-6", 39.0) and plausible("LOINC/8480-6", 300.0)
    assert plausible("LOINC/2093-3", 180.0) and not plausible("LOINC/2093-3", 20.0)
    assert not plausible("LOINC/4548-4", 48.0)  # an IFCC value left unconverted is not a % value
    assert not plausible("LOINC/2093-3", math.nan) and not plausible("LOINC/718-7", math.inf)
    assert plausible("LOINC/718-7", -5.0)  # no range known: only finiteness is checked
    assert units.plausible_range("LOINC/8480-6") == (40, 300, "mm[Hg]")
    assert units.plausible_range("LOINC/718-7") is None


def test_every_analyte_accepts_its_canonical_unit_unchanged() -> None:
    for analyte in units.ANALYTES:
        for code in analyte.codes:
            assert canonical(code, 1.5, analyte.unit) == (1.5, analyte.unit), code
    assert units.CODES_BY_ANALYTE["total_cholesterol"][0] == "LOINC/2093-3"


@given(
    st.sampled_from([a for a in units.ANALYTES]),
    st.floats(min_value=0.01, max_value=1e4, allow_nan=False),
    st.floats(min_value=0.01, max_value=1e4, allow_nan=False),
)
def test_conversions_are_increasing(analyte: units.Analyte, a: float, b: float) -> None:
    for unit in analyte.conversions:
        low, high = sorted((a, b))
        x = canonical(analyte.codes[0], low, unit)[0]
        y = canonical(analyte.codes[0], high, unit)[0]
        assert x <= y and math.isfinite(x)
