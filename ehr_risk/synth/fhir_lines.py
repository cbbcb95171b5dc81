"""Column-wise FHIR NDJSON lines: every resource line of a chunk is assembled with polars string kernels.

Observations, encounters and medication orders are most of the output (~110, 25 and 22 per patient). A
per-resource dict or f-string costs a few µs in the interpreter; here each line is the concatenation of
constant JSON fragments (codes are constants, pre-serialised once with orjson) and columns (ids, numbers,
timestamps) gathered from the chunk's record arrays, in batches of `BATCH` rows so memory stays bounded.
The JSON is the same as a dict serialised with orjson would give; tests validate it with fhir.resources.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
from polars import CompatLevel

from ehr_risk.synth import codes as C
from ehr_risk.synth.generate import Chunk

Batch = tuple[np.ndarray, pl.Series]  # (patient index of each line, the lines, each ending in "\n")
BATCH = 16384
Part = str | pl.Series


def _j(obj: object) -> str:
    return orjson.dumps(obj).decode()


def _cc(system: str, code: str, display: str) -> dict[str, object]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def iso_s(day: np.ndarray, sec: np.ndarray | int = 0) -> pl.Series:
    """Days since 1970 (+ seconds of the day, may overflow into the next day) → FHIR instants in UTC."""
    ms = (np.asarray(day, np.int64) * 86400 + sec) * 1000
    return pl.Series(np.asarray(ms, np.int64)).cast(pl.Datetime("ms")).dt.to_string("%Y-%m-%dT%H:%M:%SZ")


def dates_s(day: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(day, np.int64)).cast(pl.Int32).cast(pl.Date).dt.to_string("%Y-%m-%d")


def _ints(a: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(a, np.int64)).cast(pl.String)


def _take(table: list[str], idx: np.ndarray) -> pl.Series:
    return pl.Series(table, dtype=pl.String).gather(np.asarray(idx, np.int64))


def _concat(*parts: Part) -> pl.Series:
    cols: dict[str, pl.Series] = {}
    exprs: list[pl.Expr] = []
    for p in parts:
        if isinstance(p, str):
            exprs.append(pl.lit(p))
        else:
            name = f"c{len(cols)}"
            cols[name] = p.alias(name)
            exprs.append(pl.col(name))
    return pl.DataFrame(cols).select(pl.concat_str(exprs).alias("line")).to_series()


def _where(mask: np.ndarray, s: pl.Series) -> pl.Series:
    """`s` where mask, else the empty string (an optional JSON member)."""
    df = pl.DataFrame({"m": np.asarray(mask, bool), "s": s})
    return df.select(pl.when(pl.col("m")).then(pl.col("s")).otherwise(pl.lit("")).alias("s")).to_series()


def _numbers(v: np.ndarray, dec: np.ndarray) -> pl.Series:
    """JSON numbers rounded to `dec` decimals (0: an integer; -1: the empty string)."""
    out = pl.Series("n", [], pl.String).extend_constant("", len(v))
    for d in range(4):  # format each precision only where it is used
        idx = np.flatnonzero(dec == d)
        if len(idx):
            x = pl.Series(v[idx])
            out.scatter(
                idx, x.round(0).cast(pl.Int64).cast(pl.String) if d == 0 else x.round(d).cast(pl.String)
            )
    return out


def write_lines(fh: BinaryIO, lines: pl.Series) -> None:
    """Write newline-terminated lines straight from their Arrow data buffers, without Python strings.

    polars builds a string column into its view buffers in row order, so those buffers already hold the
    lines back to back: they are written as they are, after a check of that layout (else one copy).
    """
    arr = lines.to_arrow(compat_level=CompatLevel.newest())
    if arr.type == pa.string_view() and arr.null_count == 0 and len(arr):
        bufs = arr.buffers()
        views = np.frombuffer(bufs[1], np.int32).reshape(-1, 4)[arr.offset : arr.offset + len(arr)]
        size, buf, off = views[:, 0].astype(np.int64), views[:, 2], views[:, 3].astype(np.int64)
        same = buf[1:] == buf[:-1]
        if (
            (size > 12).all()  # longer strings live in the data buffers (shorter ones in the view)
            and (buf[1:] >= buf[:-1]).all()
            and (off[1:][same] == (off[:-1] + size[:-1])[same]).all()
        ):
            firsts = np.flatnonzero(np.concatenate([[True], ~same]))
            lasts = np.concatenate([firsts[1:] - 1, [len(buf) - 1]])
            for f, la in zip(firsts.tolist(), lasts.tolist(), strict=True):
                fh.write(memoryview(bufs[2 + int(buf[f])])[off[f] : off[la] + size[la]])
            return
    large = lines.to_arrow().cast(pa.large_string())
    data = large.buffers()[2]
    if data is not None:
        ends = np.frombuffer(large.buffers()[1], np.int64)
        fh.write(memoryview(data)[ends[large.offset] : ends[large.offset + len(large)]])


def _batches(n: int) -> Iterator[tuple[int, int]]:
    for a in range(0, n, BATCH):
        yield a, min(n, a + BATCH)


# --- constant fragments -------------------------------------------------------------------------------
_CAT_OBS = "http://terminology.hl7.org/CodeSystem/observation-category"
_OBS_CODE = [_cc(C.LOINC, o.code, o.display) for o in C.OBSERVATIONS]
_OBS_HEAD = [
    f'","status":"final","category":{_j([{"coding": [{"system": _CAT_OBS, "code": o.category}]}])},'
    f'"code":{_j(_OBS_CODE[k])},"subject":{{"reference":"Patient/'
    for k, o in enumerate(C.OBSERVATIONS)
]
_OBS_HEAD[C.SBP] = _OBS_HEAD[C.SBP].replace(
    _j(_OBS_CODE[C.SBP]), _j(_cc(C.LOINC, C.BP_PANEL.code, C.BP_PANEL.display))
)
_Q = ',"system":"http://unitsofmeasure.org","code":"'
_UNITS = sorted({u for o in C.OBSERVATIONS for u in (o.unit, o.si_unit) if u})
_UNIT = {u: f'"unit":{_j(C.UNIT_DISPLAY.get(u, u))}{_Q}{u}"}}' for u in _UNITS}
_BP = (  # systolic value, then diastolic value, then the closing part
    f'"component":[{{"code":{_j(_OBS_CODE[C.SBP])},"valueQuantity":{{"value":',
    f',{_UNIT["mm[Hg]"]}}},{{"code":{_j(_OBS_CODE[C.DBP])},"valueQuantity":{{"value":',
    f",{_UNIT['mm[Hg]']}}}]",
)
_SMOKING = [f'"valueCodeableConcept":{_j(_cc(C.SNOMED, c.code, c.display))}' for c in C.SMOKING_STATUS]
_DEATH = [f'"valueCodeableConcept":{_j(_cc(C.SNOMED, c.code, c.display))}' for c in C.DEATH_CAUSES]
# value prefix: 0 a quantity, 1 a blood-pressure panel, then the coded values (smoking, cause of death)
_PREFIX = ['"valueQuantity":{"value":', _BP[0], *_SMOKING, *_DEATH]
# after the first number: 0 nothing (coded), 1 the panel's diastolic part, then ",<unit>" per unit
_MID = ["", _BP[1], *[f",{_UNIT[u]}" for u in _UNITS]]
_HAS_SI = np.array([bool(o.si_unit) for o in C.OBSERVATIONS])
_SI_FACTOR = np.array([o.si_factor for o in C.OBSERVATIONS])
_DEC = np.array([o.decimals for o in C.OBSERVATIONS])
_SI_DEC = np.array([o.si_decimals for o in C.OBSERVATIONS])
_UNIT_IX = np.array([_UNITS.index(o.unit) if o.unit else 0 for o in C.OBSERVATIONS])
_SI_UNIT_IX = np.array([_UNITS.index(o.si_unit) if o.si_unit else 0 for o in C.OBSERVATIONS])

_ENC_HEAD = [
    f'","status":"finished","class":'
    f"{_j({'system': 'http://terminology.hl7.org/CodeSystem/v3-ActCode', 'code': cls})},"
    f'"type":{_j([_cc(C.SNOMED, c.code, c.display)])}'
    for c, cls, _ in C.ENCOUNTERS
]
_REASON = [_j([_cc(C.SNOMED, d.snomed.code, d.snomed.display)]) for d in C.CONDITIONS]
_ENC_REASON = [f',"reasonCode":{r}' for r in _REASON] + [""]

_MED_HEAD = [
    f'"intent":"order","medicationCodeableConcept":{_j(_cc(C.RXNORM, c.code, c.display))},'
    '"subject":{"reference":"Patient/'
    for c, _ in C.MEDICATIONS
]
_MED_TAIL = [
    f',"reasonCode":{_REASON[C.MED_REASON[k]]},"dispenseRequest":{{"validityPeriod":{{"start":"'
    for k in range(len(C.MEDICATIONS))
]
_MED_SUPPLY = [
    f'"expectedSupplyDuration":{{"value":{days},"unit":"days","system":"{C.UCUM}","code":"d"}}}}'
    for _, days in C.MEDICATIONS
]
_SUPPLY_DAYS = np.array([days for _, days in C.MEDICATIONS], np.int64)

_CLIN = [
    _j({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": a}]})
    for a in ("active", "resolved")
]
_COND_HEAD = [
    '","clinicalStatus":' + clin + ',"verificationStatus":'
    '{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}]},'
    '"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category",'
    '"code":"encounter-diagnosis"}]}],"code":'
    for clin in _CLIN
]
_COND_CODE = [_j(_cc(C.SNOMED, d.snomed.code, d.snomed.display)) for d in C.CONDITIONS] + [
    _j(_cc(C.ICD10, d.icd10.code, d.icd10.display)) for d in C.CONDITIONS
]
_PROC = [_j(_cc(C.SNOMED, c.code, c.display)) for c in C.PROCEDURES]


# --- resources ----------------------------------------------------------------------------------------
def encounters(ch: Chunk) -> Iterator[Batch]:
    e = ch.tables["enc"]
    ids = pl.Series(ch.ids, dtype=pl.String)
    end_sec = e["sec"] + np.asarray(C.ENCOUNTER_MINUTES, np.int64)[e["kind"]] * 60
    for a, b in _batches(len(e["pat"])):
        pat, day = e["pat"][a:b], e["day"][a:b]
        pid, reason = ids.gather(pat), e["reason"][a:b]
        yield (
            pat,
            _concat(
                '{"resourceType":"Encounter","id":"', pid, "-e", _ints(np.arange(a, b)),
                _take(_ENC_HEAD, e["kind"][a:b]), ',"subject":{"reference":"Patient/', pid,
                '"},"period":{"start":"', iso_s(day, e["sec"][a:b]), '","end":"', iso_s(day, end_sec[a:b]),
                '"}', _take(_ENC_REASON, np.where(reason >= 0, reason, len(_REASON))), "}\n",
            ),
        )  # fmt: skip


def observations(ch: Chunk) -> Iterator[Batch]:
    o, e = ch.tables["obs"], ch.tables["enc"]
    ids = pl.Series(ch.ids, dtype=pl.String)
    # the part every observation of an encounter shares, built once per encounter (~4 observations each)
    epid, eff = ids.gather(e["pat"]), iso_s(e["day"], e["sec"])
    at_enc = _concat(
        epid, '"},"encounter":{"reference":"Encounter/', epid, "-e", _ints(np.arange(len(epid))),
        '"},"effectiveDateTime":"', eff, '","issued":"',
    )  # fmt: skip
    for a, b in _batches(len(o["kind"])):
        enc, kind, lag = o["enc"][a:b], o["kind"][a:b].astype(np.int64), o["lag"][a:b].astype(np.int64)
        value, value2 = o["value"][a:b], o["value2"][a:b]
        pat, day, sec = e["pat"][enc], e["day"][enc], e["sec"][enc].astype(np.int64)
        issued = eff.gather(enc)
        late = np.flatnonzero(lag > 0)  # results issued `lag` days after the draw, 4 h past its time of day
        if len(late):
            issued.scatter(late, iso_s(day[late] + lag[late], sec[late] + 4 * 3600))
        sbp, smoking, death = kind == C.SBP, kind == C.SMOKING, kind == C.CAUSE_OF_DEATH
        coded = smoking | death
        code = np.where(coded, value, 0.0).astype(np.int64)
        si = ch.state.si_units[pat] & _HAS_SI[kind]
        to_si = np.where(kind == C.HBA1C, (value - 2.15) * 10.929, value * _SI_FACTOR[kind])
        dec = np.where(coded, -1, np.where(si, _SI_DEC[kind], _DEC[kind]))
        unit = np.where(si, _SI_UNIT_IX[kind], _UNIT_IX[kind])
        prefix = np.select([sbp, smoking, death], [1, 2 + code, 2 + len(_SMOKING) + code], 0)
        yield (
            pat,
            _concat(
                '{"resourceType":"Observation","id":"', ids.gather(pat), "-o", _ints(np.arange(a, b)),
                _take(_OBS_HEAD, kind), at_enc.gather(enc), issued, '",',
                _take(_PREFIX, prefix), _numbers(np.where(si, to_si, value), dec),
                _take(_MID, np.where(sbp, 1, np.where(coded, 0, 2 + unit))),
                _numbers(value2, np.where(sbp, 0, -1)), _take(["", _BP[2]], sbp.astype(np.int64)), "}\n",
            ),
        )  # fmt: skip


def medications(ch: Chunk) -> Iterator[Batch]:
    m = ch.tables["med"]
    ids = pl.Series(ch.ids, dtype=pl.String)
    done_all = (m["day"] + _SUPPLY_DAYS[m["drug"]] <= ch.end_day) | ~ch.state.alive[m["pat"]]
    for a, b in _batches(len(m["pat"])):
        pat, drug, day, en = m["pat"][a:b], m["drug"][a:b], m["day"][a:b], m["enc"][a:b]
        pid = ids.gather(pat)
        status = _take(['","status":"active",', '","status":"completed",'], done_all[a:b].astype(np.int64))
        encounter = _where(
            en >= 0, _concat(',"encounter":{"reference":"Encounter/', pid, "-e", _ints(en), '"}')
        )
        yield (
            pat,
            _concat(
                '{"resourceType":"MedicationRequest","id":"', pid, "-m", _ints(np.arange(a, b)), status,
                _take(_MED_HEAD, drug), pid, '"}', encounter, ',"authoredOn":"', iso_s(day, m["sec"][a:b]),
                '"', _take(_MED_TAIL, drug), dates_s(day), '","end":"', dates_s(day + _SUPPLY_DAYS[drug]),
                '"},', _take(_MED_SUPPLY, drug), "}\n",
            ),
        )  # fmt: skip


def conditions(ch: Chunk) -> Iterator[Batch]:
    c, e = ch.tables["cond"], ch.tables["enc"]
    ids = pl.Series(ch.ids, dtype=pl.String)
    for a, b in _batches(len(c["pat"])):
        pat, enc, abate, onset = c["pat"][a:b], c["enc"][a:b], c["abate"][a:b], c["onset"][a:b]
        pid, at = ids.gather(pat), np.maximum(enc, 0)
        recorded = iso_s(
            np.where(enc >= 0, e["day"][at], onset), np.where(enc >= 0, e["sec"][at].astype(np.int64), 43200)
        )
        icd = ch.state.icd10[pat].astype(np.int64)
        encounter = _where(
            enc >= 0, _concat(',"encounter":{"reference":"Encounter/', pid, "-e", _ints(enc), '"}')
        )
        abated = _where(abate >= 0, _concat(',"abatementDateTime":"', dates_s(np.maximum(abate, 0)), '"'))
        yield (
            pat,
            _concat(
                '{"resourceType":"Condition","id":"', pid, "-c", _ints(np.arange(a, b)),
                _take(_COND_HEAD, (abate >= 0).astype(np.int64)),
                _take(_COND_CODE, c["kind"][a:b].astype(np.int64) + icd * len(C.CONDITIONS)),
                ',"subject":{"reference":"Patient/', pid, '"},"onsetDateTime":"', dates_s(onset),
                '","recordedDate":"', recorded, '"', encounter, abated, "}\n",
            ),
        )  # fmt: skip


def procedures(ch: Chunk) -> Iterator[Batch]:
    p, e = ch.tables["proc"], ch.tables["enc"]
    ids = pl.Series(ch.ids, dtype=pl.String)
    for a, b in _batches(len(p["enc"])):
        enc = p["enc"][a:b]
        pat, day, sec = e["pat"][enc], e["day"][enc], e["sec"][enc].astype(np.int64)
        pid = ids.gather(pat)
        yield (
            pat,
            _concat(
                '{"resourceType":"Procedure","id":"', pid, "-p", _ints(np.arange(a, b)),
                '","status":"completed","code":', _take(_PROC, p["code"][a:b]),
                ',"subject":{"reference":"Patient/', pid, '"},"encounter":{"reference":"Encounter/', pid,
                "-e", _ints(enc), '"},"performedPeriod":{"start":"', iso_s(day, sec + 1800), '","end":"',
                iso_s(day, sec + 5400), '"}}\n',
            ),
        )  # fmt: skip
