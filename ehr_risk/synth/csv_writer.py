"""Synthea-style CSV output (the layout and columns of Synthea's CSV exporter, version 3) in OUT/csv/.

patients.csv, encounters.csv, conditions.csv, observations.csv, medications.csv, procedures.csv.
As in Synthea, a blood-pressure panel becomes two observation rows (8480-6, 8462-4) and coded answers
(smoking status, cause of death) are written as their display text with TYPE `text`. Conditions carry
SYSTEM `SNOMED-CT` or `ICD-10-CM`. Costs and payers are not simulated and are left empty.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import IO, Any

import numpy as np

from ehr_risk.synth import codes as C
from ehr_risk.synth.fhir_writer import dates, iso
from ehr_risk.synth.generate import Chunk

HEADERS = {
    "patients": "Id,BIRTHDATE,DEATHDATE,SSN,DRIVERS,PASSPORT,PREFIX,FIRST,MIDDLE,LAST,SUFFIX,MAIDEN,MARITAL,"
    "RACE,ETHNICITY,GENDER,BIRTHPLACE,ADDRESS,CITY,STATE,COUNTY,FIPS,ZIP,LAT,LON,HEALTHCARE_EXPENSES,"
    "HEALTHCARE_COVERAGE,INCOME",
    "encounters": "Id,START,STOP,PATIENT,ORGANIZATION,PROVIDER,PAYER,ENCOUNTERCLASS,CODE,DESCRIPTION,"
    "BASE_ENCOUNTER_COST,TOTAL_CLAIM_COST,PAYER_COVERAGE,REASONCODE,REASONDESCRIPTION",
    "conditions": "START,STOP,PATIENT,ENCOUNTER,SYSTEM,CODE,DESCRIPTION",
    "observations": "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE",
    "medications": "START,STOP,PATIENT,PAYER,ENCOUNTER,CODE,DESCRIPTION,BASE_COST,PAYER_COVERAGE,DISPENSES,"
    "TOTALCOST,REASONCODE,REASONDESCRIPTION",
    "procedures": "START,STOP,PATIENT,ENCOUNTER,SYSTEM,CODE,DESCRIPTION,BASE_COST,REASONCODE,"
    "REASONDESCRIPTION",
}


def _fmt(v: float, decimals: int) -> str:
    return str(round(v)) if decimals == 0 else f"{v:.{decimals}f}"


class CsvWriter:
    def __init__(self, out: Path, gz: bool = False):
        self.dir = out / "csv"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.counts: dict[str, int] = dict.fromkeys(HEADERS, 0)
        self._raw: list[IO[Any]] = []
        self._w: dict[str, Any] = {}
        for name, header in HEADERS.items():
            path = self.dir / (f"{name}.csv.gz" if gz else f"{name}.csv")
            raw = open(path, "wb")  # noqa: SIM115 - closed in close()
            self._raw.append(raw)
            binary: Any = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") if gz else raw
            text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
            self._raw.insert(0, text)
            w = csv.writer(text, lineterminator="\n")
            w.writerow(header.split(","))
            self._w[name] = w

    def _rows(self, name: str, rows: list[list[Any]]) -> None:
        self._w[name].writerows(rows)
        self.counts[name] += len(rows)

    def write(self, ch: Chunk) -> None:
        s, t, ids = ch.state, ch.tables, ch.ids
        birth = dates(s.birth_day)
        death = dates(np.where(s.alive, 0, s.death_day))
        self._rows(
            "patients",
            [
                [
                    pid,
                    birth[i],
                    "" if s.alive[i] else death[i],
                    "",
                    "",
                    "",
                    "",
                    ch.given[i],
                    "",
                    ch.family[i],
                    "",
                    "",
                    "",
                    C.RACES[int(s.race[i])][2],
                    C.ETHNICITIES[int(s.hispanic[i])][2],
                    "M" if s.male[i] else "F",
                    "",
                    "",
                    "",
                    "Massachusetts",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
                for i, pid in enumerate(ids)
            ],
        )
        e = t["enc"]
        minutes = np.asarray(C.ENCOUNTER_MINUTES)[e["kind"]]
        start, stop = iso(e["day"], e["sec"]), iso(e["day"], e["sec"] + minutes * 60)
        rows = []
        for j in range(len(start)):
            concept, _cls_v3, cls = C.ENCOUNTERS[int(e["kind"][j])]
            reason = int(e["reason"][j])
            rc = C.CONDITIONS[reason].snomed if reason >= 0 else None
            rows.append(
                [
                    f"{ids[e['pat'][j]]}-e{j}",
                    start[j],
                    stop[j],
                    ids[e["pat"][j]],
                    "",
                    "",
                    "",
                    cls,
                    concept.code,
                    concept.display,
                    "",
                    "",
                    "",
                    rc.code if rc else "",
                    rc.display if rc else "",
                ]
            )
        self._rows("encounters", rows)
        self._observations(ch)
        c = t["cond"]
        onset, abate = dates(c["onset"]), dates(np.maximum(c["abate"], 0))
        rows = []
        for j in range(len(onset)):
            pid = ids[c["pat"][j]]
            d = C.CONDITIONS[int(c["kind"][j])]
            system, concept = ("ICD-10-CM", d.icd10) if s.icd10[c["pat"][j]] else ("SNOMED-CT", d.snomed)
            enc = f"{pid}-e{c['enc'][j]}" if c["enc"][j] >= 0 else ""
            rows.append(
                [
                    onset[j],
                    abate[j] if c["abate"][j] >= 0 else "",
                    pid,
                    enc,
                    system,
                    concept.code,
                    concept.display,
                ]
            )
        self._rows("conditions", rows)
        m = t["med"]
        supply = np.asarray([days for _, days in C.MEDICATIONS])[m["drug"]]
        mstart, mstop = iso(m["day"], m["sec"]), iso(m["day"] + supply, m["sec"])
        rows = []
        for j in range(len(mstart)):
            pid = ids[m["pat"][j]]
            med_c = C.MEDICATIONS[int(m["drug"][j])][0]
            med_reason = C.CONDITIONS[C.MED_REASON[int(m["drug"][j])]].snomed
            enc = f"{pid}-e{m['enc'][j]}" if m["enc"][j] >= 0 else ""
            stop_s = mstop[j] if m["day"][j] + supply[j] <= ch.end_day else ""
            rows.append(
                [
                    mstart[j],
                    stop_s,
                    pid,
                    "",
                    enc,
                    med_c.code,
                    med_c.display,
                    "",
                    "",
                    1,
                    "",
                    med_reason.code,
                    med_reason.display,
                ]
            )
        self._rows("medications", rows)
        p = t["proc"]
        pe = p["enc"]
        pstart, pstop = iso(e["day"][pe], e["sec"][pe] + 1800), iso(e["day"][pe], e["sec"][pe] + 5400)
        rows = []
        for j in range(len(pe)):
            pid = ids[e["pat"][pe[j]]]
            proc_c = C.PROCEDURES[int(p["code"][j])]
            rows.append(
                [
                    pstart[j],
                    pstop[j],
                    pid,
                    f"{pid}-e{pe[j]}",
                    "SNOMED-CT",
                    proc_c.code,
                    proc_c.display,
                    "",
                    "",
                    "",
                ]
            )
        self._rows("procedures", rows)

    def _observations(self, ch: Chunk) -> None:
        o, e, ids = ch.tables["obs"], ch.tables["enc"], ch.ids
        enc = o["enc"]
        pat = e["pat"][enc]
        when = iso(e["day"][enc], e["sec"][enc])
        si = ch.state.si_units[pat]
        rows: list[list[Any]] = []
        for j in range(len(enc)):
            kind, value = int(o["kind"][j]), float(o["value"][j])
            pid = ids[pat[j]]
            head = [when[j], pid, f"{pid}-e{enc[j]}"]
            d = C.OBSERVATIONS[kind]
            if kind == C.SBP:
                dbp = C.OBSERVATIONS[C.DBP]
                rows.append([*head, d.category, d.code, d.display, _fmt(value, 0), d.unit, "numeric"])
                rows.append(
                    [*head, d.category, dbp.code, dbp.display, _fmt(o["value2"][j], 0), d.unit, "numeric"]
                )
            elif kind in (C.SMOKING, C.CAUSE_OF_DEATH):
                concept = (C.SMOKING_STATUS if kind == C.SMOKING else C.DEATH_CAUSES)[int(value)]
                category = "survey" if kind == C.SMOKING else ""
                rows.append([*head, category, d.code, d.display, concept.display, "", "text"])
            elif si[j] and d.si_unit:
                rows.append(
                    [
                        *head,
                        d.category,
                        d.code,
                        d.display,
                        _fmt(C.to_si(kind, value), d.si_decimals),
                        d.si_unit,
                        "numeric",
                    ]
                )
            else:
                rows.append(
                    [*head, d.category, d.code, d.display, _fmt(value, d.decimals), d.unit, "numeric"]
                )
        self._rows("observations", rows)

    def close(self) -> None:
        for fh in self._raw:
            fh.close()
