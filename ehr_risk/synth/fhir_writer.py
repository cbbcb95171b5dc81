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
import polars as pl

from ehr_risk.synth import codes as C
from ehr_risk.synth import fhir_lines as L
from ehr_risk.synth.fhir_lines import Batch
from ehr_risk.synth.generate import Chunk

Res = dict[str, Any]
TYPES = ("Patient", "Encounter", "Observation", "Condition", "MedicationRequest", "Procedure")
_US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"


def iso(day: np.ndarray, sec: np.ndarray | int = 0) -> list[str]:
    """Days since 1970 (+ seconds of the day) → FHIR instants in UTC."""
    out: list[str] = L.iso_s(day, sec).to_list()
    return out


def dates(day: np.ndarray) -> list[str]:
    out: list[str] = L.dates_s(day).to_list()
    return out


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


def _patient_lines(ch: Chunk) -> Iterator[Batch]:
    lines = [_j(res) + "\n" for _, res in _patients(ch)]
    yield np.arange(len(lines)), pl.Series(lines, dtype=pl.String)


# Everything but Patient (one per person) is assembled column-wise by polars (fhir_lines.py).
BUILDERS: dict[str, Callable[[Chunk], Iterator[Batch]]] = {
    "Patient": _patient_lines,
    "Encounter": L.encounters,
    "Observation": L.observations,
    "Condition": L.conditions,
    "MedicationRequest": L.medications,
    "Procedure": L.procedures,
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
            for _, lines in build(ch):  # batches of bounded size: memory stays flat whatever the chunk
                if len(lines):
                    L.write_lines(self._files[t], lines)
                    self.counts[t] += len(lines)

    def _write_bundles(self, ch: Chunk) -> None:
        entries: list[list[str]] = [[] for _ in ch.ids]
        for t, build in BUILDERS.items():
            for pats, lines in build(ch):
                for pat, line in zip(pats.tolist(), lines.to_list(), strict=True):
                    res = line[:-1]
                    start = res.index('"id":"') + 6
                    rid = res[start : res.index('"', start)]
                    entries[pat].append(
                        f'{{"resource":{res},"request":{{"method":"PUT","url":"{t}/{rid}"}}}}'
                    )
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
