"""FHIR reference resolution for ingestion: which patient a resource is about, which Medication it names.

A `Scope` is one bundle (or one NDJSON file / single-resource file): its entries by fullUrl and by
`Type/id`. `FhirIndex` lives for the whole run: Patient identifiers (for conditional references such as
`Patient?identifier=system|value`) and the codes of Medication resources seen in any input, so that a
NDJSON `MedicationRequest.ndjson` read before `Medication.ndjson` still resolves (the record is deferred).

Subject ids need no Patient resource: they are a keyed hash of the patient id, which literal references
(`Patient/123`, `https://server/fhir/Patient/123/_history/2`) carry themselves.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from ehr_risk.ingest.codes import pick_coding

_MEDS = ("RxNorm",)  # medication codes: RxNorm first


# Resource types that Observation.subject & co. (Patient, Group, Device, Location) or medicationReference
# (Medication) can point to; references to the others are reported as "not a Patient".
TARGET_TYPES = frozenset(
    {"Patient", "Group", "Device", "Location", "Medication", "Substance", "Practitioner"}
)


class Skip(Exception):
    """The record is valid but carries no fact to keep (e.g. entered-in-error); `reason` is counted."""

    def __init__(self, reason: str):
        self.reason = reason


class Reject(Exception):
    """The record cannot be converted; `reason` holds no patient value."""

    def __init__(self, reason: str):
        self.reason = reason


class Defer(Exception):
    """A reference may resolve once later inputs are read; retried at the end of the run."""

    def __init__(self, reason: str):
        self.reason = reason


@dataclass
class FhirIndex:
    """Run-wide lookups filled as inputs are read."""

    identifiers: dict[str, str] = field(default_factory=dict)  # "system|value" and "|value" → patient id
    ambiguous: set[str] = field(default_factory=set)
    medications: dict[str, tuple[str, str | None] | None] = field(default_factory=dict)  # "Medication/id"
    # (file, position, resource, fullUrl, scope) of records waiting for a later input
    deferred: list[tuple[str, str, dict[str, Any], str | None, Scope]] = field(default_factory=list)

    def add_patient(self, pid: str, resource: dict[str, Any]) -> None:
        for ident in resource.get("identifier") or ():
            if not isinstance(ident, dict):
                continue
            value = ident.get("value")
            if not isinstance(value, str):
                continue
            for key in (f"{ident.get('system') or ''}|{value}", f"|{value}"):
                known = self.identifiers.setdefault(key, pid)
                if known != pid:
                    self.ambiguous.add(key)

    def patient_by_identifier(self, system: str | None, value: str) -> str | None:
        key = f"{system or ''}|{value}"
        if key in self.ambiguous:
            raise Reject("conditional patient reference matches several patients")
        return self.identifiers.get(key)


class Scope:
    """The resources that references in one bundle / file may point to."""

    __slots__ = ("by_url", "index", "report_times")

    def __init__(self, index: FhirIndex):
        self.index = index
        self.by_url: dict[str, dict[str, Any]] = {}
        # result reference → (effective, issued) of the DiagnosticReport listing it: the time of a
        # result Observation that carries none itself (e.g. the HL7 lipid report example)
        self.report_times: dict[str, tuple[Any, Any]] = {}

    def report_time(self, resource: dict[str, Any], full_url: str | None) -> tuple[Any, Any] | None:
        if not self.report_times:
            return None
        found = self.report_times.get(full_url) if full_url else None
        if found is None and isinstance(resource.get("id"), str):
            found = self.report_times.get(f"{resource.get('resourceType')}/{resource['id']}")
        return found

    def _add_report(self, report: dict[str, Any]) -> None:
        period = report.get("effectivePeriod")
        effective = report.get("effectiveDateTime") or (
            period.get("start") if isinstance(period, dict) else None
        )
        for result in report.get("result") or ():
            ref = result.get("reference") if isinstance(result, dict) else None
            if isinstance(ref, str):
                self.report_times[ref] = (effective, report.get("issued"))

    def add(self, full_url: str | None, resource: dict[str, Any]) -> None:
        """Make `resource` a reference target of this scope (and register it run-wide).

        Only types a subject or medication reference can point to are kept: clinical resources are
        never targets, and skipping them keeps the pre-pass over a large bundle cheap."""
        rt = resource.get("resourceType")
        if rt not in TARGET_TYPES:
            if rt == "DiagnosticReport" and "result" in resource:
                self._add_report(resource)
            return
        if full_url:
            self.by_url[full_url] = resource
        rt, rid = resource.get("resourceType"), resource.get("id")
        if isinstance(rt, str) and isinstance(rid, str):
            self.by_url[f"{rt}/{rid}"] = resource
        self.register(resource, full_url)

    def register(self, resource: dict[str, Any], full_url: str | None = None) -> None:
        """Run-wide indexes only: Patient identifiers and Medication codes."""
        rt = resource.get("resourceType")
        if rt == "Patient":
            with suppress(Reject):  # reported when the Patient itself is converted
                self.index.add_patient(patient_id(resource, full_url), resource)
        elif rt == "Medication" and isinstance(resource.get("id"), str):
            picked = pick_coding(_codings(resource.get("code")), _MEDS)
            self.index.medications[f"Medication/{resource['id']}"] = picked


def _codings(concept: Any) -> Any:
    return concept.get("coding") if isinstance(concept, dict) else None


def patient_id(resource: dict[str, Any], full_url: str | None) -> str:
    """The source id of a Patient: its `id`, else the tail of its fullUrl (transaction POST entries)."""
    rid = resource.get("id")
    if isinstance(rid, str) and rid:
        return rid
    if full_url:
        tail = full_url.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
        if tail:
            return tail
    raise Reject("Patient without id or fullUrl")


def _literal_patient(ref: str) -> str | None:
    """`Patient/1`, `Patient/1/_history/2` or an absolute URL ending so → `1`; raise for other types."""
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-1]:
        return None
    if parts[-2] == "Patient":
        return parts[-1]
    if parts[-2][:1].isupper():
        raise Reject(f"subject is a {parts[-2][:40]}, not a Patient")
    return None


def _type_id(ref: str) -> str:
    """`Type/id` of a literal or absolute reference (version suffix dropped); other text unchanged."""
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return "/".join(parts[-2:]) if len(parts) >= 2 else ref


def resolve_patient(reference: Any, scope: Scope) -> str:
    """The source patient id a Reference points to; raises Reject, or Defer when a later input may help."""
    if not isinstance(reference, dict):
        raise Reject("no subject/patient reference")
    ref = reference.get("reference")
    if isinstance(ref, str) and ref:
        target = scope.by_url.get(ref)
        if target is not None:
            if target.get("resourceType") != "Patient":
                raise Reject(f"subject is a {str(target.get('resourceType'))[:40]}, not a Patient")
            return patient_id(target, ref)
        if ref.startswith(("urn:uuid:", "urn:oid:")):
            raise Reject("subject reference not found in the bundle")
        if ref.startswith("#"):
            raise Reject("subject refers to a contained resource")
        if "?" in ref:
            return _conditional(ref, scope)
        pid = _literal_patient(ref)
        if pid is None:
            raise Reject("subject reference is not a Patient reference")
        return pid
    ident = reference.get("identifier")
    if isinstance(ident, dict) and isinstance(ident.get("value"), str):
        pid = scope.index.patient_by_identifier(ident.get("system"), ident["value"])
        if pid is None:
            raise Defer("subject identifier matches no Patient")
        return pid
    raise Reject("no subject/patient reference")


def _conditional(ref: str, scope: Scope) -> str:
    """`Patient?identifier=system|value` (or `identifier=value`) against the Patients read so far."""
    rtype, _, query = ref.partition("?")
    if rtype.rsplit("/", 1)[-1] != "Patient":
        raise Reject("conditional subject reference is not to a Patient")
    for param in query.split("&"):
        name, _, value = param.partition("=")
        if name == "identifier" and value:
            system, bar, code = value.partition("|")
            pid = scope.index.patient_by_identifier(system if bar else None, code if bar else system)
            if pid is None:
                raise Defer("conditional patient reference matches no Patient")
            return pid
    raise Reject("conditional patient reference without an identifier parameter")


def resolve_medication(resource: dict[str, Any], scope: Scope) -> tuple[str, str | None]:
    """The (code, display) of medication[x]: a CodeableConcept, or a reference to a contained,
    bundled or previously read Medication."""
    concept = resource.get("medicationCodeableConcept")
    if concept is not None:
        picked = pick_coding(_codings(concept), _MEDS)
        if picked is None:
            raise Reject("medication has no coding from a supported code system")
        return picked
    reference = resource.get("medicationReference")
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(ref, str) or not ref:
        raise Reject("no medication code or reference")
    if ref.startswith("#"):
        for contained in resource.get("contained") or ():
            if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                picked = pick_coding(_codings(contained.get("code")), _MEDS)
                if picked is None:
                    raise Reject("contained Medication has no coding from a supported code system")
                return picked
        raise Reject("medication reference to a missing contained resource")
    target = scope.by_url.get(ref)
    if target is not None:
        picked = pick_coding(_codings(target.get("code")), _MEDS)
    else:
        key = _type_id(ref)
        if key not in scope.index.medications:
            raise Defer("medication reference to a Medication not (yet) read")
        picked = scope.index.medications[key]
    if picked is None:
        raise Reject("referenced Medication has no coding from a supported code system")
    return picked
