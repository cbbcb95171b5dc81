"""Code vocabularies of the event table: FHIR system URIs → `VOCAB/code`, and the project's own codes.

Every `code` in the event table is `VOCAB/code` (e.g. `LOINC/2093-3`) or one of the MEDS reserved codes
`MEDS_BIRTH` / `MEDS_DEATH`. The FHIR and the CSV readers both build codes through this module so that the
same fact from either source gets the same code.

Project codes (static facts have a null time):

    GENDER/female | GENDER/male | GENDER/other | GENDER/unknown     Patient.gender (administrative gender)
    RACE/<CDC race code>          US Core race ombCategory, e.g. RACE/2106-3 white, RACE/2054-5 black,
                                  RACE/2028-9 asian, RACE/1002-5 American Indian/Alaska Native,
                                  RACE/2076-8 Native Hawaiian/Pacific Islander, RACE/2131-1 other race
    ETHNICITY/2135-2 | ETHNICITY/2186-5                          Hispanic or Latino | not Hispanic or Latino
    ENCOUNTER/<v3 ActCode>        Encounter.class, e.g. ENCOUNTER/AMB, ENCOUNTER/EMER, ENCOUNTER/IMP
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MEDS_BIRTH = "MEDS_BIRTH"
MEDS_DEATH = "MEDS_DEATH"

# FHIR (and common OID) system identifiers → vocabulary prefix. `None` marks systems that are not code
# systems for facts (UCUM units, data-absent reasons): a coding from them is never an event code.
SYSTEM_VOCAB: dict[str, str | None] = {
    "http://loinc.org": "LOINC",
    "urn:oid:2.16.840.1.113883.6.1": "LOINC",
    "http://snomed.info/sct": "SNOMED",
    "urn:oid:2.16.840.1.113883.6.96": "SNOMED",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "urn:oid:2.16.840.1.113883.6.88": "RxNorm",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD10CM",
    "urn:oid:2.16.840.1.113883.6.90": "ICD10CM",
    "http://hl7.org/fhir/sid/icd-9-cm": "ICD9CM",
    "http://hl7.org/fhir/sid/icd-9-cm/diagnosis": "ICD9CM",
    "urn:oid:2.16.840.1.113883.6.103": "ICD9CM",
    "http://hl7.org/fhir/sid/icd-9-cm/procedure": "ICD9PROC",
    "urn:oid:2.16.840.1.113883.6.104": "ICD9PROC",
    "http://hl7.org/fhir/sid/icd-10": "ICD10",  # WHO ICD-10 (not the US clinical modification)
    "urn:oid:2.16.840.1.113883.6.3": "ICD10",
    "http://www.cms.gov/Medicare/Coding/ICD10": "ICD10PCS",
    "urn:oid:2.16.840.1.113883.6.4": "ICD10PCS",
    "http://hl7.org/fhir/sid/cvx": "CVX",
    "urn:oid:2.16.840.1.113883.12.292": "CVX",
    "http://hl7.org/fhir/sid/ndc": "NDC",
    "urn:oid:2.16.840.1.113883.6.69": "NDC",
    "http://www.ama-assn.org/go/cpt": "CPT4",
    "urn:oid:2.16.840.1.113883.6.12": "CPT4",
    "http://www.whocc.no/atc": "ATC",
    "urn:oid:2.16.840.1.113883.6.73": "ATC",
    "urn:oid:2.16.840.1.113883.6.238": "CDCREC",  # CDC race & ethnicity (as a plain coding)
    "http://unitsofmeasure.org": None,
    "http://terminology.hl7.org/CodeSystem/data-absent-reason": None,
}

# Preference when a CodeableConcept carries several codings: standard clinical vocabularies first
# (LOINC for observations, SNOMED for findings/procedures, RxNorm/CVX for drugs/vaccines), then
# billing/classification systems (ICD-10-CM before ICD-9-CM, then WHO ICD-10, CPT, NDC, ATC, …).
# Ties keep the order of the codings in the resource. Lower rank = preferred.
VOCAB_PREFERENCE: tuple[str, ...] = (
    "LOINC",
    "SNOMED",
    "RxNorm",
    "CVX",
    "ICD10CM",
    "ICD9CM",
    "ICD10",
    "ICD10PCS",
    "ICD9PROC",
    "CPT4",
    "NDC",
    "ATC",
    "CDCREC",
)
_RANK = {v: i for i, v in enumerate(VOCAB_PREFERENCE)}

GENDER = "GENDER"
RACE = "RACE"
ETHNICITY = "ETHNICITY"
ENCOUNTER = "ENCOUNTER"

GENDER_FEMALE = "GENDER/female"
GENDER_MALE = "GENDER/male"
GENDER_OTHER = "GENDER/other"
GENDER_UNKNOWN = "GENDER/unknown"
GENDER_CODES: dict[str, str] = {
    "female": GENDER_FEMALE,
    "f": GENDER_FEMALE,
    "male": GENDER_MALE,
    "m": GENDER_MALE,
    "other": GENDER_OTHER,
    "unknown": GENDER_UNKNOWN,
    "u": GENDER_UNKNOWN,
}

# CDC Race & Ethnicity code set (urn:oid:2.16.840.1.113883.6.238), OMB categories.
RACE_WHITE = "RACE/2106-3"
RACE_BLACK = "RACE/2054-5"
RACE_ASIAN = "RACE/2028-9"
RACE_AIAN = "RACE/1002-5"
RACE_NHPI = "RACE/2076-8"
RACE_OTHER = "RACE/2131-1"
ETHNICITY_HISPANIC = "ETHNICITY/2135-2"
ETHNICITY_NOT_HISPANIC = "ETHNICITY/2186-5"
# Names used by Synthea CSV exports (and common free-text spellings) → the same codes.
RACE_BY_NAME: dict[str, str] = {
    "white": RACE_WHITE,
    "black": RACE_BLACK,
    "black or african american": RACE_BLACK,
    "asian": RACE_ASIAN,
    "native": RACE_AIAN,
    "american indian or alaska native": RACE_AIAN,
    "hawaiian": RACE_NHPI,
    "native hawaiian or other pacific islander": RACE_NHPI,
    "other": RACE_OTHER,
}
ETHNICITY_BY_NAME: dict[str, str] = {
    "hispanic": ETHNICITY_HISPANIC,
    "hispanic or latino": ETHNICITY_HISPANIC,
    "nonhispanic": ETHNICITY_NOT_HISPANIC,
    "non-hispanic": ETHNICITY_NOT_HISPANIC,
    "not hispanic or latino": ETHNICITY_NOT_HISPANIC,
}
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"

# Encounter classes are HL7 v3 ActCode codes. Synthea's CSV ENCOUNTERCLASS names map as Synthea's own
# FHIR exporter maps them (EncounterType in FhirR4.java), so CSV and FHIR give the same code.
ENCOUNTER_CLASS_BY_NAME: dict[str, str] = {
    "ambulatory": "ENCOUNTER/AMB",
    "wellness": "ENCOUNTER/AMB",
    "outpatient": "ENCOUNTER/AMB",
    "urgentcare": "ENCOUNTER/AMB",
    "emergency": "ENCOUNTER/EMER",
    "inpatient": "ENCOUNTER/IMP",
    "snf": "ENCOUNTER/IMP",
    "hospice": "ENCOUNTER/HH",
    "home": "ENCOUNTER/HH",
    "virtual": "ENCOUNTER/VR",
    "telemedicine": "ENCOUNTER/VR",
}

# Every vocabulary a `VOCAB/code` string may use (CSV inputs are checked against this).
KNOWN_VOCABS: frozenset[str] = frozenset(
    {v for v in SYSTEM_VOCAB.values() if v} | {GENDER, RACE, ETHNICITY, ENCOUNTER}
)
# Spellings met in CSV extracts → the canonical prefix (keys compared upper-case, without - _ . or space).
VOCAB_ALIASES: dict[str, str] = {
    "LOINC": "LOINC",
    "LN": "LOINC",
    "SNOMED": "SNOMED",
    "SNOMEDCT": "SNOMED",
    "SCT": "SNOMED",
    "RXNORM": "RxNorm",
    "ICD10CM": "ICD10CM",
    "ICD9CM": "ICD9CM",
    "ICD9": "ICD9CM",
    "ICD10": "ICD10",
    "ICD10PCS": "ICD10PCS",
    "ICD9PROC": "ICD9PROC",
    "CVX": "CVX",
    "NDC": "NDC",
    "CPT": "CPT4",
    "CPT4": "CPT4",
    "ATC": "ATC",
    "CDCREC": "CDCREC",
    "GENDER": GENDER,
    "RACE": RACE,
    "ETHNICITY": ETHNICITY,
    "ENCOUNTER": ENCOUNTER,
}
_CODE_RE = re.compile(r"^([A-Za-z][A-Za-z0-9]*)/(\S(?:.*\S)?)$")


def vocab_of_system(system: str | None) -> str | None:
    """The vocabulary prefix of a FHIR `system` URI or OID, None when unknown or not a code system."""
    if not system:
        return None
    return SYSTEM_VOCAB.get(system) or SYSTEM_VOCAB.get(system.rstrip("/"))


def normalize_vocab(name: str) -> str | None:
    """A vocabulary name as written in a CSV (`SNOMED-CT`, `rxnorm`, `ICD-10-CM`) → canonical prefix."""
    key = re.sub(r"[-_. ]", "", name).upper()
    return VOCAB_ALIASES.get(key)


def code_from_system(system: str | None, code: Any) -> str | None:
    """`VOCAB/code` for a FHIR coding, or None when the system is unknown or the code is empty."""
    vocab = vocab_of_system(system)
    if vocab is None or not isinstance(code, str):
        return None
    code = code.strip()
    return f"{vocab}/{code}" if code else None


def pick_coding(
    codings: Iterable[Mapping[str, Any]] | None, prefer: tuple[str, ...] = ()
) -> tuple[str, str | None] | None:
    """The preferred coding of a CodeableConcept's `coding` list → (`VOCAB/code`, display).

    Vocabularies in `prefer` come first (e.g. CVX for vaccines), then VOCAB_PREFERENCE; among codings of
    one vocabulary the first wins. Codings from unknown systems are ignored; None when none is usable.
    """
    if not codings:
        return None
    if type(codings) is list and len(codings) == 1:  # the common case, kept cheap
        only = codings[0]
        if isinstance(only, dict):
            vocab, code = SYSTEM_VOCAB.get(only.get("system") or ""), only.get("code")
            if vocab and type(code) is str and code and not code[0].isspace() and not code[-1].isspace():
                display = only.get("display")
                return f"{vocab}/{code}", display if isinstance(display, str) else None
    best: tuple[int, str, str | None] | None = None
    n_prefer = len(prefer)
    for coding in codings:
        if not isinstance(coding, Mapping):
            continue
        code = code_from_system(coding.get("system"), coding.get("code"))
        if code is None:
            continue
        vocab = code.split("/", 1)[0]
        rank = prefer.index(vocab) if vocab in prefer else n_prefer + _RANK.get(vocab, len(_RANK))
        if best is None or rank < best[0]:
            display = coding.get("display")
            best = (rank, code, display if isinstance(display, str) else None)
            if rank == 0:
                break
    return None if best is None else (best[1], best[2])


def is_valid_code(code: str) -> bool:
    """True for `MEDS_BIRTH`, `MEDS_DEATH` and `VOCAB/code` with a known vocabulary."""
    if code in (MEDS_BIRTH, MEDS_DEATH):
        return True
    m = _CODE_RE.match(code)
    return m is not None and m.group(1) in KNOWN_VOCABS


def gender_code(value: str | None) -> str | None:
    """FHIR administrative gender or Synthea CSV `F`/`M` → `GENDER/…`; None when absent/unknown text."""
    if not value or not isinstance(value, str):
        return None
    return GENDER_CODES.get(value.strip().lower())


def race_code(cdc_code: str) -> str:
    return f"{RACE}/{cdc_code}"


def ethnicity_code(cdc_code: str) -> str:
    return f"{ETHNICITY}/{cdc_code}"


def encounter_class_code(value: str | None) -> str | None:
    """A v3 ActCode (`AMB`) or Synthea class name (`ambulatory`) → `ENCOUNTER/AMB`."""
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    by_name = ENCOUNTER_CLASS_BY_NAME.get(value.lower())
    if by_name:
        return by_name
    return f"{ENCOUNTER}/{value.upper()}" if re.fullmatch(r"[A-Za-z_]{2,12}", value) else None
