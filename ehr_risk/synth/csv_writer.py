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


def _q(text: str) -> str:
    """CSV quoting of a constant (as csv.writer's QUOTE_MINIMAL would do)."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _row_parts(d: C.LabDef, unit: str) -> tuple[str, str]:
    """An observation row around its value: (CATEGORY,CODE,DESCRIPTION, / ,UNITS,TYPE)."""
    return f"{d.category},{d.code},{_q(d.display)},", f",{_q(unit)},numeric"


def _fmt(v: float, decimals: int) -> str:
    return str(round(v)) if decimals == 0 else f"{v:.{decimals}f}"


class CsvWriter:
    def __init__(self, out: Path, gz: bool = False):
        self.dir = out / "csv"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.counts: dict[str, int] = dict.fromkeys(HEADERS, 0)
        self._raw: list[IO[Any]] = []
        self._w: dict[str, Any] = {}
        self._text: dict[str, Any] = {}
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
            self._text[name] = text

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
        for j, (pat, kind, reason) in enumerate(
            zip(e["pat"].tolist(), e["kind"].tolist(), e["reason"].tolist(), strict=True)
        ):
            concept, _cls_v3, cls = C.ENCOUNTERS[kind]
            rc = C.CONDITIONS[reason].snomed if reason >= 0 else None
            rows.append(
                [
                    f"{ids[pat]}-e{j}",
                    start[j],
                    stop[j],
                    ids[pat],
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
        ended = (m["day"] + supply <= ch.end_day).tolist()
        meds = zip(m["pat"].tolist(), m["drug"].tolist(), m["enc"].tolist(), strict=True)
        for j, (pt, drug, en) in enumerate(meds):
            pid = ids[pt]
            med_c = C.MEDICATIONS[drug][0]
            med_reason = C.CONDITIONS[C.MED_REASON[drug]].snomed
            enc = f"{pid}-e{en}" if en >= 0 else ""
            stop_s = mstop[j] if ended[j] else ""
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
        """The bulk of the output: lines are joined from pre-quoted constant parts (ids, times and numbers
        need no quoting), which is several times faster than csv.writer."""
        o, e, ids = ch.tables["obs"], ch.tables["enc"], ch.ids
        enc = o["enc"]
        pat = e["pat"][enc]
        when = iso(e["day"][enc], e["sec"][enc])
        si = ch.state.si_units[pat].tolist()
        defs = C.OBSERVATIONS
        sbp, dbp = _row_parts(defs[C.SBP], defs[C.SBP].unit), _row_parts(defs[C.DBP], defs[C.DBP].unit)
        conv = [_row_parts(d, d.unit) for d in defs]
        si_parts = [_row_parts(d, d.si_unit) for d in defs]
        coded = {
            C.SMOKING: [f"survey,{defs[C.SMOKING].code},{_q(defs[C.SMOKING].display)},{_q(c.display)},,text"
                        for c in C.SMOKING_STATUS],
            C.CAUSE_OF_DEATH: [f",{defs[C.CAUSE_OF_DEATH].code},{_q(defs[C.CAUSE_OF_DEATH].display)},"
                               f"{_q(c.display)},,text" for c in C.DEATH_CAUSES],
        }  # fmt: skip
        lines: list[str] = []
        value2 = o["value2"].tolist()
        items = zip(pat.tolist(), enc.tolist(), o["kind"].tolist(), o["value"].tolist(), strict=True)
        for j, (pt, en, kind, value) in enumerate(items):
            pid = ids[pt]
            head = f"{when[j]},{pid},{pid}-e{en},"
            if kind == C.SBP:
                lines.append(f"{head}{sbp[0]}{round(value)}{sbp[1]}")
                lines.append(f"{head}{dbp[0]}{round(value2[j])}{dbp[1]}")
            elif kind in coded:
                lines.append(head + coded[kind][int(value)])
            elif si[j] and defs[kind].si_unit:
                d = defs[kind]
                lines.append(
                    f"{head}{si_parts[kind][0]}{_fmt(C.to_si(kind, value), d.si_decimals)}{si_parts[kind][1]}"
                )
            else:
                lines.append(f"{head}{conv[kind][0]}{_fmt(value, defs[kind].decimals)}{conv[kind][1]}")
        if lines:
            lines.append("")
            self._text["observations"].write("\n".join(lines))
        self.counts["observations"] += max(len(lines) - 1, 0)

    def close(self) -> None:
        for fh in self._raw:
            fh.close()
