"""FHIR R4 output: Bulk-Data NDJSON (one file per resource type) or one transaction Bundle per patient.

Resources: Patient (US Core race/ethnicity/birth-sex extensions), Encounter, Observation (vital signs
with a 85354-9 blood-pressure panel, labs in conventional or SI units, smoking status, cause of death),
Condition (SNOMED CT, or ICD-10-CM for part of the patients), MedicationRequest (orders and refills with
the days supplied), Procedure. Ids: Patient.id is the source id; other ids are `<patient id>-<letter><n>`.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ehr_risk.synth import codes as C
from ehr_risk.synth.generate import Chunk

Res = dict[str, Any]
TYPES = ("Patient", "Encounter", "Observation", "Condition", "MedicationRequest", "Procedure")
_US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
_CAT_OBS = "http://terminology.hl7.org/CodeSystem/observation-category"


def _cc(system: str, code: str, display: str) -> Res:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def iso(day: np.ndarray, sec: np.ndarray | int = 0) -> list[str]:
    """Days since 1970 (+ seconds of the day) → FHIR instants in UTC."""
    t = (np.asarray(day, np.int64) * 86400 + sec).astype("datetime64[s]")
    out: list[str] = np.datetime_as_string(t, unit="s", timezone="UTC").tolist()
    return out


def dates(day: np.ndarray) -> list[str]:
    out: list[str] = np.datetime_as_string(np.asarray(day, np.int64).astype("datetime64[D]")).tolist()
    return out


_ENC_TYPE = [[_cc(C.SNOMED, c.code, c.display)] for c, _, _ in C.ENCOUNTERS]
_ENC_CLASS = [
    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls} for _, cls, _ in C.ENCOUNTERS
]
_COND_SNOMED = [_cc(C.SNOMED, d.snomed.code, d.snomed.display) for d in C.CONDITIONS]
_COND_ICD = [_cc(C.ICD10, d.icd10.code, d.icd10.display) for d in C.CONDITIONS]
_REASON = [[_cc(C.SNOMED, d.snomed.code, d.snomed.display)] for d in C.CONDITIONS]
_OBS_CODE = [_cc(C.LOINC, o.code, o.display) for o in C.OBSERVATIONS]
_OBS_CAT = [[{"coding": [{"system": _CAT_OBS, "code": o.category}]}] for o in C.OBSERVATIONS]
_SMOKING = [_cc(C.SNOMED, c.code, c.display) for c in C.SMOKING_STATUS]
_DEATH = [_cc(C.SNOMED, c.code, c.display) for c in C.DEATH_CAUSES]
_MED = [_cc(C.RXNORM, c.code, c.display) for c, _ in C.MEDICATIONS]
_PROC = [_cc(C.SNOMED, c.code, c.display) for c in C.PROCEDURES]
_CLIN = {
    a: {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": a}]}
    for a in ("active", "resolved")
}
_VERIFIED = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
}
_COND_CAT = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                "code": "encounter-diagnosis",
            }
        ]
    }
]


def _patients(ch: Chunk) -> Iterator[tuple[int, Res]]:
    s = ch.state
    birth = dates(s.birth_day)
    death = iso(np.where(s.alive, 0, s.death_day), 23 * 3600)
    for i, pid in enumerate(ch.ids):
        race_code, race_display, _ = C.RACES[int(s.race[i])]
        eth_code, eth_display, _ = C.ETHNICITIES[int(s.hispanic[i])]
        male = bool(s.male[i])
        res: Res = {
            "resourceType": "Patient",
            "id": pid,
            "meta": {"profile": [_US_CORE + "us-core-patient"]},
            "extension": [
                {
                    "url": _US_CORE + "us-core-race",
                    "extension": [
                        {
                            "url": "ombCategory",
                            "valueCoding": {"system": C.CDC_RACE, "code": race_code, "display": race_display},
                        },
                        {"url": "text", "valueString": race_display},
                    ],
                },
                {
                    "url": _US_CORE + "us-core-ethnicity",
                    "extension": [
                        {
                            "url": "ombCategory",
                            "valueCoding": {"system": C.CDC_RACE, "code": eth_code, "display": eth_display},
                        },
                        {"url": "text", "valueString": eth_display},
                    ],
                },
                {"url": _US_CORE + "us-core-birthsex", "valueCode": "M" if male else "F"},
            ],
            "identifier": [{"system": "urn:ehr-risk:synth", "value": pid}],
            "name": [{"use": "official", "family": ch.family[i], "given": [ch.given[i]]}],
            "gender": "male" if male else "female",
            "birthDate": birth[i],
            "address": [{"state": "MA", "country": "US"}],
        }
        if not s.alive[i]:
            res["deceasedDateTime"] = death[i]
        yield i, res


def _j(obj: object) -> str:
    return orjson.dumps(obj).decode()


# Observations, encounters and medication orders are most of the output: they are written from
# pre-serialised JSON fragments (codes are constants, ids are UUID-based, values are numbers), which is
# several times faster than building a dict per resource; tests validate the result with fhir.resources.
_OBS_HEAD = [
    f'","status":"final","category":{_j(_OBS_CAT[k])},"code":{_j(_OBS_CODE[k])},"subject":{{"reference":"Patient/'
    for k in range(len(C.OBSERVATIONS))
]
_OBS_HEAD[C.SBP] = _OBS_HEAD[C.SBP].replace(
    _j(_OBS_CODE[C.SBP]), _j(_cc(C.LOINC, C.BP_PANEL.code, C.BP_PANEL.display))
)
_Q = ',"system":"http://unitsofmeasure.org","code":"'
_UNIT = {
    u: f'"unit":{_j(C.UNIT_DISPLAY.get(u, u))}{_Q}{u}"}}'
    for o in C.OBSERVATIONS
    for u in (o.unit, o.si_unit)
    if u
}
_BP = (  # systolic value, then diastolic value, then the closing part
    f'"component":[{{"code":{_j(_OBS_CODE[C.SBP])},"valueQuantity":{{"value":',
    f',{_UNIT["mm[Hg]"]}}},{{"code":{_j(_OBS_CODE[C.DBP])},"valueQuantity":{{"value":',
    f",{_UNIT['mm[Hg]']}}}]",
)
_CODED = {
    C.SMOKING: [f'"valueCodeableConcept":{_j(c)}' for c in _SMOKING],
    C.CAUSE_OF_DEATH: [f'"valueCodeableConcept":{_j(c)}' for c in _DEATH],
}


def _fmt(v: float, decimals: int) -> str:
    return str(round(v)) if decimals == 0 else repr(round(v, decimals))


def encounters(ch: Chunk) -> Iterator[tuple[int, str]]:
    e = ch.tables["enc"]
    minutes = np.asarray(C.ENCOUNTER_MINUTES)[e["kind"]]
    start, end = iso(e["day"], e["sec"]), iso(e["day"], e["sec"] + minutes * 60)
    head = [f'","status":"finished","class":{_j(_ENC_CLASS[k])},"type":{_j(_ENC_TYPE[k])}' for k in range(5)]
    reasons = [f',"reasonCode":{_j(r)}' for r in _REASON]
    ids = ch.ids
    for j, (pat, kind, reason) in enumerate(
        zip(e["pat"].tolist(), e["kind"].tolist(), e["reason"].tolist(), strict=True)
    ):
        pid = ids[pat]
        rc = reasons[reason] if reason >= 0 else ""
        yield (
            pat,
            (
                f'{{"resourceType":"Encounter","id":"{pid}-e{j}{head[kind]},"subject":{{"reference":"Patient/{pid}"}},'
                f'"period":{{"start":"{start[j]}","end":"{end[j]}"}}{rc}}}'
            ),
        )


def observations(ch: Chunk) -> Iterator[tuple[int, str]]:
    o, e = ch.tables["obs"], ch.tables["enc"]
    enc = o["enc"]
    pat_of = e["pat"][enc]
    eff = iso(e["day"][enc], e["sec"][enc])
    issued = iso(e["day"][enc] + o["lag"], e["sec"][enc] + 3600 * (o["lag"] > 0) * 4)
    si = ch.state.si_units[pat_of].tolist()
    ids, defs = ch.ids, C.OBSERVATIONS
    rows = zip(
        pat_of.tolist(),
        o["kind"].tolist(),
        enc.tolist(),
        o["value"].tolist(),
        o["value2"].tolist(),
        strict=True,
    )
    for j, (pat, kind, en, value, value2) in enumerate(rows):
        pid = ids[pat]
        d = defs[kind]
        if kind == C.SBP:
            val = f"{_BP[0]}{round(value)}{_BP[1]}{round(value2)}{_BP[2]}"
        elif kind in _CODED:
            val = _CODED[kind][int(value)]
        elif si[j] and d.si_unit:
            val = f'"valueQuantity":{{"value":{_fmt(C.to_si(kind, value), d.si_decimals)},{_UNIT[d.si_unit]}'
        else:
            val = f'"valueQuantity":{{"value":{_fmt(value, d.decimals)},{_UNIT[d.unit]}'
        yield (
            pat,
            (
                f'{{"resourceType":"Observation","id":"{pid}-o{j}{_OBS_HEAD[kind]}{pid}"}},'
                f'"encounter":{{"reference":"Encounter/{pid}-e{en}"}},"effectiveDateTime":"{eff[j]}",'
                f'"issued":"{issued[j]}",{val}}}'
            ),
        )


def _conditions(ch: Chunk) -> Iterator[tuple[int, Res]]:
    c, e = ch.tables["cond"], ch.tables["enc"]
    enc = c["enc"]
    onset = dates(c["onset"])
    recorded = iso(
        np.where(enc >= 0, e["day"][np.maximum(enc, 0)], c["onset"]),
        np.where(enc >= 0, e["sec"][np.maximum(enc, 0)], 12 * 3600),
    )
    abate = dates(np.maximum(c["abate"], 0))
    icd = ch.state.icd10[c["pat"]]
    for j in range(len(enc)):
        pat, kind = int(c["pat"][j]), int(c["kind"][j])
        pid = ch.ids[pat]
        res: Res = {
            "resourceType": "Condition",
            "id": f"{pid}-c{j}",
            "clinicalStatus": _CLIN["resolved" if c["abate"][j] >= 0 else "active"],
            "verificationStatus": _VERIFIED,
            "category": _COND_CAT,
            "code": (_COND_ICD if icd[j] else _COND_SNOMED)[kind],
            "subject": {"reference": f"Patient/{pid}"},
            "onsetDateTime": onset[j],
            "recordedDate": recorded[j],
        }
        if enc[j] >= 0:
            res["encounter"] = {"reference": f"Encounter/{pid}-e{int(enc[j])}"}
        if c["abate"][j] >= 0:
            res["abatementDateTime"] = abate[j]
        yield pat, res


def medications(ch: Chunk) -> Iterator[tuple[int, str]]:
    m = ch.tables["med"]
    supply = np.asarray([days for _, days in C.MEDICATIONS])[m["drug"]]
    authored = iso(m["day"], m["sec"])
    start, end = dates(m["day"]), dates(m["day"] + supply)
    done = ((m["day"] + supply <= ch.end_day) | ~ch.state.alive[m["pat"]]).tolist()
    med = [
        f'"intent":"order","medicationCodeableConcept":{_j(_MED[k])},"subject":{{"reference":"Patient/'
        for k in range(len(C.MEDICATIONS))
    ]
    tail = [
        f',"reasonCode":{_j(_REASON[C.MED_REASON[k]])},"dispenseRequest":{{"validityPeriod":'
        for k in range(len(C.MEDICATIONS))
    ]
    supplies = [
        f'"expectedSupplyDuration":{{"value":{days},"unit":"days","system":"{C.UCUM}","code":"d"}}}}'
        for _, days in C.MEDICATIONS
    ]
    ids = ch.ids
    rows = zip(m["pat"].tolist(), m["drug"].tolist(), m["enc"].tolist(), strict=True)
    for j, (pat, drug, en) in enumerate(rows):
        pid = ids[pat]
        status = "completed" if done[j] else "active"
        encounter = f',"encounter":{{"reference":"Encounter/{pid}-e{en}"}}' if en >= 0 else ""
        yield (
            pat,
            (
                f'{{"resourceType":"MedicationRequest","id":"{pid}-m{j}","status":"{status}",{med[drug]}{pid}"}}'
                f'{encounter},"authoredOn":"{authored[j]}"{tail[drug]}{{"start":"{start[j]}","end":"{end[j]}"}},'
                f"{supplies[drug]}}}"
            ),
        )


def _procedures(ch: Chunk) -> Iterator[tuple[int, Res]]:
    p, e = ch.tables["proc"], ch.tables["enc"]
    enc = p["enc"]
    pat_of = e["pat"][enc]
    start, end = iso(e["day"][enc], e["sec"][enc] + 1800), iso(e["day"][enc], e["sec"][enc] + 5400)
    for j in range(len(enc)):
        pat = int(pat_of[j])
        pid = ch.ids[pat]
        yield (
            pat,
            {
                "resourceType": "Procedure",
                "id": f"{pid}-p{j}",
                "status": "completed",
                "code": _PROC[int(p["code"][j])],
                "subject": {"reference": f"Patient/{pid}"},
                "encounter": {"reference": f"Encounter/{pid}-e{int(enc[j])}"},
                "performedPeriod": {"start": start[j], "end": end[j]},
            },
        )


def _serialised(
    build: Callable[[Chunk], Iterator[tuple[int, Res]]],
) -> Callable[[Chunk], Iterator[tuple[int, str]]]:
    def run(ch: Chunk) -> Iterator[tuple[int, str]]:
        for pat, res in build(ch):
            yield pat, _j(res)

    return run


BUILDERS: dict[str, Callable[[Chunk], Iterator[tuple[int, str]]]] = {
    "Patient": _serialised(_patients),
    "Encounter": encounters,
    "Observation": observations,
    "Condition": _serialised(_conditions),
    "MedicationRequest": medications,
    "Procedure": _serialised(_procedures),
}


class FhirWriter:
    """Streams chunks to OUT/fhir/: `<Type>.ndjson[.gz]`, or `<patient id>.json` transaction Bundles."""

    def __init__(self, out: Path, bundle: bool = False, gz: bool = False):
        self.dir = out / "fhir"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.bundle, self.gz = bundle, gz
        self.counts: dict[str, int] = dict.fromkeys(TYPES, 0)
        self._files: dict[str, Any] = {}
        if not bundle:
            for t in TYPES:
                path = self.dir / (f"{t}.ndjson.gz" if gz else f"{t}.ndjson")
                raw = open(path, "wb")  # noqa: SIM115 - closed in close()
                # mtime=0 and no file name in the header: the same seed gives the same bytes
                self._files[t] = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") if gz else raw
                if gz:
                    self._files[t + ".raw"] = raw

    def write(self, ch: Chunk) -> None:
        if self.bundle:
            self._write_bundles(ch)
            return
        for t, build in BUILDERS.items():
            fh = self._files[t]
            lines: list[str] = []
            for _, res in build(ch):
                lines.append(res)
                if len(lines) == 8192:  # bounded buffer: memory stays flat whatever the chunk size
                    self._flush(t, fh, lines)
            self._flush(t, fh, lines)

    def _flush(self, rtype: str, fh: Any, lines: list[str]) -> None:
        if lines:
            lines.append("")
            fh.write("\n".join(lines).encode())
            self.counts[rtype] += len(lines) - 1
            lines.clear()

    def _write_bundles(self, ch: Chunk) -> None:
        entries: list[list[str]] = [[] for _ in ch.ids]
        for t, build in BUILDERS.items():
            for pat, res in build(ch):
                rid = res[res.index('"id":"') + 6 : res.index('"', res.index('"id":"') + 6)]
                entries[pat].append(f'{{"resource":{res},"request":{{"method":"PUT","url":"{t}/{rid}"}}}}')
                self.counts[t] += 1
        for pid, entry in zip(ch.ids, entries, strict=True):
            head = f'{{"resourceType":"Bundle","id":"{pid}-bundle","type":"transaction","entry":['
            data = (head + ",".join(entry) + "]}").encode()
            path = self.dir / (f"{pid}.json.gz" if self.gz else f"{pid}.json")
            if self.gz:
                with (
                    open(path, "wb") as raw,
                    gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as fh,
                ):
                    fh.write(data)
            else:
                path.write_bytes(data)

    def close(self) -> None:
        for t in TYPES:
            fh = self._files.pop(t, None)
            if fh is not None:
                fh.close()
            raw = self._files.pop(t + ".raw", None)
            if raw is not None:
                raw.close()
