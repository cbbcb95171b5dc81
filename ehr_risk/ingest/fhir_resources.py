"""Per-type extraction: one FHIR R4 resource (a parsed dict) → the source patient id and its events.

Extractors are pure functions of the resource and the reference `Scope`; they raise `Skip` (valid but no
fact to keep), `Reject` (unusable, with a value-free reason) or `Defer` (a reference a later input may
resolve). An event is the tuple `Ev` = (time_us, code, numeric_value, text_value, unit, end_us,
recorded_us, description).

Field conventions (CSV readers should mirror them so both sources give the same events):
- time: the clinical time (onset, effective, performed, occurrence, authoredOn, period start); resources
  without one are rejected. Conditions and allergies fall back to recordedDate, observations and reports
  to issued (later than the clinical time, so never a leak); an observation with neither, listed as a
  result of a DiagnosticReport in the same bundle, takes the report's effective (and issued) time.
- recorded_time: recordedDate / issued / authoredOn / dateAsserted / Immunization.recorded.
- end_time: period end; Condition abatement (abatementPeriod → its start).
- Observation: one event for the observation's own code (unless it only groups components, like a
  blood-pressure panel) and one per component with a usable code. valueQuantity → numeric_value in the
  canonical unit (units.py), comparator (`<`, `>=`) → text_value; valueCodeableConcept → text_value
  `VOCAB/code` (or the concept's text); valueString/DateTime/Time → text_value; valueBoolean → 1.0/0.0;
  valueInteger → numeric_value; dataAbsentReason or an unsupported value type → the code event alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ehr_risk.ingest import codes, units
from ehr_risk.ingest.fhir_refs import Reject, Scope, Skip, patient_id, resolve_medication, resolve_patient
from ehr_risk.ingest.timeparse import parse_datetime_us

Ev = tuple[int | None, str, float | None, str | None, str | None, int | None, int | None, str | None]
Extracted = tuple[str, list[Ev]]
Extractor = Callable[[dict[str, Any], Scope, "str | None"], Extracted]
CodeGetter = Callable[[dict[str, Any], Scope], tuple[str, str | None]]

UCUM = "http://unitsofmeasure.org"
BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
_VALUE_KEYS = (
    "valueQuantity",
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueDateTime",
    "valueTime",
    "valueRatio",
    "valueRange",
    "valuePeriod",
    "valueSampledData",
)


def _dt(holder: dict[str, Any], name: str, where: str = "") -> int | None:
    value = holder.get(name)
    if value is None:
        return None
    t = parse_datetime_us(value) if isinstance(value, str) else None
    if t is None:
        raise Reject(f"unparseable date in {where}{name}")
    return t


def _period(res: dict[str, Any], name: str) -> tuple[int | None, int | None]:
    period = res.get(name)
    if period is None:
        return None, None
    if not isinstance(period, dict):
        raise Reject(f"{name} is not a Period")
    return _dt(period, "start", f"{name}."), _dt(period, "end", f"{name}.")


def _first_time(res: dict[str, Any], names: tuple[str, ...]) -> int | None:
    """The first present time among `names`; a `…Period` gives its start (else its end)."""
    for name in names:
        if name.endswith("Period"):
            start, end = _period(res, name)
            t = start if start is not None else end
        else:
            t = _dt(res, name)
        if t is not None:
            return t
    return None


def _codings(concept: Any) -> Any:
    return concept.get("coding") if isinstance(concept, dict) else None


def _status_codes(concept: Any) -> set[str]:
    return {str(c.get("code")) for c in _codings(concept) or () if isinstance(c, dict)}


def _coded(res: dict[str, Any], field: str, prefer: tuple[str, ...] = ()) -> tuple[str, str | None]:
    picked = codes.pick_coding(_codings(res.get(field)), prefer)
    if picked is None:
        raise Reject(f"{field} has no coding from a supported code system")
    return picked


# --- Patient -------------------------------------------------------------------------------------------


def patient(res: dict[str, Any], scope: Scope, full_url: str | None) -> Extracted:
    pid = patient_id(res, full_url)
    events: list[Ev] = []
    birth = _dt(res, "birthDate")
    for ext in (res.get("_birthDate") or {}).get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == BIRTH_TIME:
            birth = _dt(ext, "valueDateTime", "birthTime ") or birth
    if birth is not None:
        events.append((birth, codes.MEDS_BIRTH, None, None, None, None, None, "Birth"))
    gender = codes.gender_code(res.get("gender"))
    if gender:
        events.append((None, gender, None, None, None, None, None, f"Administrative gender {gender[7:]}"))
    for ext in res.get("extension") or ():
        if not isinstance(ext, dict):
            continue
        url = ext.get("url")
        if url == codes.US_CORE_RACE or url == codes.US_CORE_ETHNICITY:
            make = codes.race_code if url == codes.US_CORE_RACE else codes.ethnicity_code
            seen = set()
            for sub in ext.get("extension") or ():
                coding = sub.get("valueCoding") if isinstance(sub, dict) else None
                if sub.get("url") == "ombCategory" and isinstance(coding, dict) and coding.get("code"):
                    code = make(str(coding["code"]))
                    if code not in seen:
                        seen.add(code)
                        events.append((None, code, None, None, None, None, None, coding.get("display")))
    death = _dt(res, "deceasedDateTime")
    if death is not None:
        events.append((death, codes.MEDS_DEATH, None, None, None, None, None, "Death"))
    return pid, events


# --- Observation ---------------------------------------------------------------------------------------


def _value(holder: dict[str, Any], code: str) -> tuple[float | None, str | None, str | None]:
    """(numeric_value, text_value, unit) of an Observation or component value[x]."""
    q = holder.get("valueQuantity")
    if q is not None:
        if not isinstance(q, dict):
            raise Reject("valueQuantity is not an object")
        v = q.get("value")
        comparator = q.get("comparator")
        if v is None:
            return None, None, None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise Reject(f"valueQuantity.value is not a number for {code}")
        ucum = q.get("code")
        unit = ucum if ucum and q.get("system") in (UCUM, None) else q.get("unit")
        return _quantity(code, float(v), unit if isinstance(unit, str) else None, comparator)
    concept = holder.get("valueCodeableConcept")
    if concept is not None:
        picked = codes.pick_coding(_codings(concept))
        text = picked[0] if picked else concept.get("text") if isinstance(concept, dict) else None
        return None, text if isinstance(text, str) else None, None
    if "valueString" in holder:
        return None, str(holder["valueString"]), None
    if "valueBoolean" in holder:
        return (1.0 if holder["valueBoolean"] is True else 0.0), None, None
    if "valueInteger" in holder:
        v = holder["valueInteger"]
        if isinstance(v, bool) or not isinstance(v, int):
            raise Reject(f"valueInteger is not an integer for {code}")
        num, unit = _canonical(code, float(v), None)
        return num, None, unit
    for key in ("valueDateTime", "valueTime"):
        if isinstance(holder.get(key), str):
            return None, holder[key], None
    return None, None, None


def _canonical(code: str, value: float, unit: str | None) -> tuple[float, str | None]:
    """The value in the canonical unit of `code` (units.py), rejected when unconvertible or implausible."""
    plan = units.converter(code, unit)
    if plan is None:  # no canonical unit for this code: kept as given
        if not math.isfinite(value):
            raise Reject(f"non-finite value for {code}")
        return value, unit or None
    if isinstance(plan, str):
        raise Reject(plan)
    convert, canonical_unit, low, high = plan
    value = convert(value)
    if not low <= value <= high:  # also False for NaN
        raise Reject(f"implausible value for {code} (outside {low:g}-{high:g} {canonical_unit})")
    return value, canonical_unit


def _quantity(
    code: str, value: float, unit: str | None, comparator: Any
) -> tuple[float | None, str | None, str | None]:
    num, canon = _canonical(code, value, unit)
    return num, comparator if isinstance(comparator, str) else None, canon


def observation(res: dict[str, Any], scope: Scope, full_url: str | None) -> Extracted:
    status = res.get("status")
    if status == "entered-in-error" or status == "cancelled":
        raise Skip(f"Observation status {status}")
    pid = resolve_patient(res.get("subject"), scope)
    effective = res.get("effectiveDateTime")
    if type(effective) is str:  # the common shape, parsed without the generic fallbacks
        time = parse_datetime_us(effective)
        if time is None:
            raise Reject("unparseable date in effectiveDateTime")
    else:
        time = _first_time(res, ("effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"))
    recorded = _dt(res, "issued")
    if time is None:
        report = scope.report_time(res, full_url)
        if report is not None:  # a report result without its own time: the report's effective/issued
            time = parse_datetime_us(report[0]) or parse_datetime_us(report[1])
            recorded = parse_datetime_us(report[1])
        if time is None:
            raise Reject("no effective[x] or issued time")
    end = _period(res, "effectivePeriod")[1] if "effectivePeriod" in res else None
    events: list[Ev] = []
    components = res.get("component") or ()
    own = codes.pick_coding(_codings(res.get("code")))
    has_value = not components or "dataAbsentReason" in res or any(k in res for k in _VALUE_KEYS)
    if own is not None and has_value:
        num, text, unit = _value(res, own[0])
        events.append((time, own[0], num, text, unit, end, recorded, own[1]))
    for comp in components:
        if not isinstance(comp, dict):
            continue
        picked = codes.pick_coding(_codings(comp.get("code")))
        if picked is not None:
            num, text, unit = _value(comp, picked[0])
            events.append((time, picked[0], num, text, unit, end, recorded, picked[1]))
    if not events:
        raise Reject("code has no coding from a supported code system")
    return pid, events


# --- Encounter -----------------------------------------------------------------------------------------


def encounter(res: dict[str, Any], scope: Scope, full_url: str | None) -> Extracted:
    status = res.get("status")
    if status == "entered-in-error" or status == "cancelled":
        raise Skip(f"Encounter status {status}")
    pid = resolve_patient(res.get("subject"), scope)
    start, end = _period(res, "period")
    time = start if start is not None else end
    if time is None:
        raise Reject("no period start or end")
    events: list[Ev] = []
    klass = res.get("class")
    if isinstance(klass, list):  # R5 shape: a list of CodeableConcepts
        klass = next(iter(_codings(klass[0]) or ()), None) if klass else None
    if isinstance(klass, dict):
        code = codes.encounter_class_code(klass.get("code"))
        if code:
            events.append((time, code, None, None, None, end, None, klass.get("display")))
    for concept in res.get("type") or ():
        picked = codes.pick_coding(_codings(concept))
        if picked is not None:
            events.append((time, picked[0], None, None, None, end, None, picked[1]))
            break
    if not events:
        raise Reject("no usable class or type code")
    return pid, events


# --- Resources with one code at one time -----------------------------------------------------------------


def _simple(
    *,
    subject: str,
    code: CodeGetter,
    times: tuple[str, ...],
    end: tuple[str, ...] = (),
    recorded: str | None = None,
    skip_status: tuple[str, ...] = ("entered-in-error",),
    skip_verification: tuple[str, ...] = (),
) -> Extractor:
    """An extractor for a resource type that yields one event (see the module docstring)."""

    def extract(res: dict[str, Any], scope: Scope, full_url: str | None) -> Extracted:
        status = res.get("status")
        if status in skip_status:
            raise Skip(f"{res.get('resourceType')} status {status}")
        if skip_verification:
            hit = _status_codes(res.get("verificationStatus")).intersection(skip_verification)
            if hit:
                raise Skip(f"{res.get('resourceType')} verificationStatus {sorted(hit)[0]}")
        pid = resolve_patient(res.get(subject), scope)
        vocab_code, display = code(res, scope)
        time = _first_time(res, times)
        if time is None:
            raise Reject(f"no usable time ({', '.join(times)})")
        end_us = None
        for name in end:
            if name.endswith("Period"):
                start_us, period_end = _period(res, name)
                end_us = start_us if name.startswith("abatement") else period_end
            else:
                end_us = _dt(res, name)
            if end_us is not None:
                break
        rec = _dt(res, recorded) if recorded else None
        return pid, [(time, vocab_code, None, None, None, end_us, rec, display)]

    return extract


def _code_of(field: str, prefer: tuple[str, ...] = ()) -> CodeGetter:
    return lambda res, _scope: _coded(res, field, prefer)


EXTRACTORS: dict[str, Extractor] = {
    "Patient": patient,
    "Observation": observation,
    "Encounter": encounter,
    "Condition": _simple(
        subject="subject",
        code=_code_of("code"),
        times=("onsetDateTime", "onsetPeriod", "recordedDate"),
        end=("abatementDateTime", "abatementPeriod"),
        recorded="recordedDate",
        skip_verification=("entered-in-error", "refuted"),
    ),
    "Procedure": _simple(
        subject="subject",
        code=_code_of("code"),
        times=("performedDateTime", "performedPeriod"),
        end=("performedPeriod",),
        skip_status=("entered-in-error", "not-done"),
    ),
    "Immunization": _simple(
        subject="patient",
        code=_code_of("vaccineCode", ("CVX",)),
        times=("occurrenceDateTime",),
        recorded="recorded",
        skip_status=("entered-in-error", "not-done"),
    ),
    "AllergyIntolerance": _simple(
        subject="patient",
        code=_code_of("code"),
        times=("onsetDateTime", "onsetPeriod", "recordedDate"),
        recorded="recordedDate",
        skip_verification=("entered-in-error", "refuted"),
    ),
    "DiagnosticReport": _simple(
        subject="subject",
        code=_code_of("code"),
        times=("effectiveDateTime", "effectivePeriod", "issued"),
        end=("effectivePeriod",),
        recorded="issued",
        skip_status=("entered-in-error", "cancelled"),
    ),
    "MedicationRequest": _simple(
        subject="subject",
        code=resolve_medication,
        times=("authoredOn",),
        recorded="authoredOn",
        skip_status=("entered-in-error", "cancelled", "draft"),
    ),
    "MedicationStatement": _simple(
        subject="subject",
        code=resolve_medication,
        times=("effectiveDateTime", "effectivePeriod", "dateAsserted"),
        end=("effectivePeriod",),
        recorded="dateAsserted",
        skip_status=("entered-in-error", "not-taken"),
    ),
    "MedicationAdministration": _simple(
        subject="subject",
        code=resolve_medication,
        times=("effectiveDateTime", "effectivePeriod"),
        end=("effectivePeriod",),
        skip_status=("entered-in-error", "not-done"),
    ),
}
