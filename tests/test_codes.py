"""Code vocabularies: FHIR systems → `VOCAB/code`, coding preference, demographic codes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehr_risk.ingest import codes

LOINC, SNOMED, ICD10CM = "http://loinc.org", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"


@pytest.mark.parametrize(
    ("system", "code", "expected"),
    [
        (LOINC, "2093-3", "LOINC/2093-3"),
        (SNOMED, "22298006", "SNOMED/22298006"),
        ("http://www.nlm.nih.gov/research/umls/rxnorm", "197361", "RxNorm/197361"),
        (ICD10CM, "I21.9", "ICD10CM/I21.9"),
        ("http://hl7.org/fhir/sid/icd-9-cm", "410.9", "ICD9CM/410.9"),
        ("http://hl7.org/fhir/sid/cvx", "140", "CVX/140"),
        ("http://hl7.org/fhir/sid/icd-10", "I21", "ICD10/I21"),
        ("http://hl7.org/fhir/sid/ndc", "0093-7146-98", "NDC/0093-7146-98"),
        ("urn:oid:2.16.840.1.113883.6.1", "2093-3", "LOINC/2093-3"),
        (LOINC + "/", " 2093-3 ", "LOINC/2093-3"),
        ("http://unitsofmeasure.org", "mg/dL", None),  # units are not a code system for facts
        ("http://local.example/codes", "X1", None),
        (None, "X1", None),
        (LOINC, "", None),
        (LOINC, 2093, None),
    ],
)
def test_code_from_system(system: str | None, code: object, expected: str | None) -> None:
    assert codes.code_from_system(system, code) == expected


def test_pick_coding_prefers_standard_vocabularies_then_order() -> None:
    icd = {"system": ICD10CM, "code": "I10", "display": "Essential hypertension"}
    sct = {"system": SNOMED, "code": "38341003", "display": "Hypertensive disorder"}
    local = {"system": "http://local.example", "code": "HTN"}
    assert codes.pick_coding([local, icd, sct]) == ("SNOMED/38341003", "Hypertensive disorder")
    assert codes.pick_coding([icd, local]) == ("ICD10CM/I10", "Essential hypertension")
    assert codes.pick_coding([sct, {"system": SNOMED, "code": "59621000"}]) == sct_pair(sct)
    assert codes.pick_coding([local]) is None
    assert codes.pick_coding([]) is None and codes.pick_coding(None) is None
    assert codes.pick_coding(["not a coding", icd]) == ("ICD10CM/I10", "Essential hypertension")


def sct_pair(coding: dict[str, str]) -> tuple[str, str]:
    return f"SNOMED/{coding['code']}", coding["display"]


def test_pick_coding_prefer_argument() -> None:
    sct = {"system": SNOMED, "code": "86198006"}
    cvx = {"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}
    assert codes.pick_coding([sct, cvx])[0] == "SNOMED/86198006"  # type: ignore[index]
    assert codes.pick_coding([sct, cvx], ("CVX",))[0] == "CVX/140"  # type: ignore[index]


@given(st.permutations(["ICD9CM", "ICD10CM", "SNOMED", "LOINC"]))
def test_pick_coding_does_not_depend_on_order_across_vocabularies(order: list[str]) -> None:
    systems = {v: s for s, v in codes.SYSTEM_VOCAB.items() if v and s.startswith("http")}
    codings = [{"system": systems[v], "code": "1"} for v in order]
    assert codes.pick_coding(codings) == ("LOINC/1", None)


def test_demographic_codes() -> None:
    assert codes.gender_code("female") == codes.GENDER_FEMALE == "GENDER/female"
    assert codes.gender_code("M") == "GENDER/male" and codes.gender_code("unknown") == "GENDER/unknown"
    assert codes.gender_code("") is None and codes.gender_code("x") is None
    assert codes.race_code("2106-3") == codes.RACE_WHITE == codes.RACE_BY_NAME["white"]
    assert codes.RACE_BY_NAME["black"] == codes.RACE_BLACK == "RACE/2054-5"
    assert codes.ethnicity_code("2135-2") == codes.ETHNICITY_BY_NAME["hispanic"]
    assert codes.ETHNICITY_BY_NAME["nonhispanic"] == "ETHNICITY/2186-5"
    assert codes.encounter_class_code("AMB") == codes.encounter_class_code("wellness") == "ENCOUNTER/AMB"
    assert codes.encounter_class_code("inpatient") == "ENCOUNTER/IMP"
    assert codes.encounter_class_code("emergency") == "ENCOUNTER/EMER"
    assert codes.encounter_class_code("no such class!") is None


def test_known_vocabs_and_validation() -> None:
    assert {"LOINC", "SNOMED", "RxNorm", "ICD10CM", "ICD9CM", "CVX", "GENDER", "RACE"} <= codes.KNOWN_VOCABS
    assert codes.is_valid_code("LOINC/2093-3") and codes.is_valid_code("MEDS_BIRTH")
    assert codes.is_valid_code("ICD10CM/I21.9") and codes.is_valid_code("ENCOUNTER/AMB")
    assert not codes.is_valid_code("FOO/1") and not codes.is_valid_code("LOINC/")
    assert not codes.is_valid_code("LOINC") and not codes.is_valid_code("LOINC/ 2093-3")
    assert codes.normalize_vocab("SNOMED-CT") == "SNOMED" and codes.normalize_vocab("rxnorm") == "RxNorm"
    assert codes.normalize_vocab("ICD-10-CM") == "ICD10CM" and codes.normalize_vocab("nope") is None
