"""What the synthetic records look like: lab and vital distributions with their age drift and correlations,
visit frequency, missing data, treatment after diagnosis and its effect, and real codes (check digits)."""

from __future__ import annotations

import numpy as np
import pytest

from ehr_risk.synth import codes as C
from ehr_risk.synth.generate import Chunk, SynthOptions, simulate_chunk
from ehr_risk.synth.life import risk_factors
from ehr_risk.synth.params import DEFAULT
from ehr_risk.synth.state import day_of, initial_population

ROUTINE = (C.CHECKUP, C.FOLLOWUP)


@pytest.fixture(scope="module")
def chunk() -> Chunk:
    return simulate_chunk(SynthOptions(patients=1500, seed=11, replicates=1), 0, 1500)


def _obs(ch: Chunk, kind: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value in the canonical unit, age at the visit, encounter index) of one observation kind."""
    obs, enc = ch.tables["obs"], ch.tables["enc"]
    m = obs["kind"] == kind
    e = obs["enc"][m]
    return obs["value"][m], (enc["day"][e] - ch.state.birth_day[enc["pat"][e]]) / 365.25, e


def _paired(ch: Chunk, a: int, b: int) -> float:
    """Correlation of two observation kinds measured at the same encounter."""
    va, _, ea = _obs(ch, a)
    vb, _, eb = _obs(ch, b)
    common, ia, ib = np.intersect1d(ea, eb, return_indices=True)
    assert len(common) > 500
    return float(np.corrcoef(va[ia], vb[ib])[0, 1])


def test_lab_distributions_are_plausible(chunk: Chunk) -> None:
    # NHANES-like adult means: LDL ~115-125, TG median ~100-130, glucose ~95-110 mg/dL, creatinine ~0.8-1.1
    ldl, age, _ = _obs(chunk, C.LDL)
    assert 100 < ldl.mean() < 140 and ldl[age < 40].mean() < ldl[(age >= 40) & (age < 65)].mean()
    tg, _, _ = _obs(chunk, C.TG)
    assert 85 < np.median(tg) < 150 and tg.mean() > np.median(tg)  # right-skewed
    glu, age, _ = _obs(chunk, C.GLUCOSE)
    assert 85 < glu.mean() < 120 and glu[age < 40].mean() < glu[age >= 60].mean()
    a1c, age, e = _obs(chunk, C.HBA1C)
    enc = chunk.tables["enc"]
    diabetic = chunk.state.t2d_day[enc["pat"][e]] <= enc["day"][e]
    assert diabetic.any() and (~diabetic).any()
    assert 4.8 < a1c[~diabetic].mean() < 5.9 < 6.3 < a1c[diabetic].mean() < 8.5
    scr, _, e = _obs(chunk, C.CREAT)
    male = chunk.state.male[enc["pat"][e]]
    assert 0.7 < scr[~male].mean() < scr[male].mean() < 1.3
    tc, age, _ = _obs(chunk, C.TC)
    assert tc[age < 35].mean() + 10 < tc[(age >= 45) & (age < 65)].mean()  # cholesterol drifts up with age


def test_vitals_are_plausible(chunk: Chunk) -> None:
    obs = chunk.tables["obs"]
    dbp = obs["value2"][obs["kind"] == C.SBP]
    assert 68 < dbp.mean() < 82
    weight, _, e = _obs(chunk, C.WEIGHT)
    male = chunk.state.male[chunk.tables["enc"]["pat"][e]]
    assert 60 < weight[~male].mean() < weight[male].mean() < 100


def test_measurements_are_correlated_as_in_life(chunk: Chunk) -> None:
    assert _paired(chunk, C.TC, C.LDL) > 0.7
    assert _paired(chunk, C.BMI, C.WEIGHT) > 0.7
    assert 0.05 < _paired(chunk, C.BMI, C.SBP) < 0.5  # heavier people have higher pressure
    assert _paired(chunk, C.CREAT, C.EGFR) < -0.5
    assert _paired(chunk, C.BMI, C.HDL) < -0.1 < 0.15 < _paired(chunk, C.BMI, C.TG)
    # atherogenic dyslipidaemia: population HDL–log TG correlation about −0.3 to −0.5
    hdl, _, e_hdl = _obs(chunk, C.HDL)
    tg, _, e_tg = _obs(chunk, C.TG)
    _, ia, ib = np.intersect1d(e_hdl, e_tg, return_indices=True)
    assert -0.5 < float(np.corrcoef(hdl[ia], np.log(tg[ib]))[0, 1]) < -0.25
    assert 0.65 < _paired(chunk, C.HBA1C, C.GLUCOSE) < 0.88  # fasting glucose varies day to day


def test_visits_are_yearly_ish_and_rise_with_age_and_illness(chunk: Chunk) -> None:
    s, enc = chunk.state, chunk.tables["enc"]
    y0, y1 = day_of(2010), day_of(2011)
    routine = np.isin(enc["kind"], ROUTINE) & (enc["day"] >= y0) & (enc["day"] < y1)
    visits = np.bincount(enc["pat"][routine], minlength=len(chunk.ids))
    in_care = (s.enroll_day < y0) & (s.death_day >= y1)  # in the records all year
    age = (y0 - s.birth_day) / 365.25
    ill = (s.htn_day < y0) | (s.t2d_day < y0) | (s.ckd_day < y0) | (s.hf_day < y0) | (s.af_day < y0)
    rate = {band: visits[in_care & (age >= lo) & (age < hi)].mean() for band, (lo, hi) in
            {"young": (18, 40), "middle": (40, 60), "old": (60, 110)}.items()}  # fmt: skip
    assert 0.3 < rate["young"] < rate["middle"] < rate["old"] < 4.0
    middle = in_care & (age >= 40) & (age < 60)
    assert visits[middle & ill].mean() > 1.2 * visits[middle & ~ill].mean()


def test_some_records_are_missing(chunk: Chunk) -> None:
    enc, obs = chunk.tables["enc"], chunk.tables["obs"]
    routine = np.flatnonzero(np.isin(enc["kind"], ROUTINE))
    with_bp = np.isin(routine, obs["enc"][obs["kind"] == C.SBP]).mean()
    assert 0.8 < with_bp < 0.99
    checkups = np.flatnonzero(enc["kind"] == C.CHECKUP)
    assert 0.5 < np.isin(checkups, obs["enc"][obs["kind"] == C.WEIGHT]).mean() < 0.99
    lipids = np.unique(enc["pat"][obs["enc"][obs["kind"] == C.LDL]])
    assert 0.5 < len(lipids) / len(chunk.ids) < 0.99  # not everyone has a lipid panel


def test_smoking_status_is_recorded_with_plausible_shares(chunk: Chunk) -> None:
    status, _, _ = _obs(chunk, C.SMOKING)
    share = np.bincount(status.astype(int), minlength=3) / len(status)
    assert 0.45 < share[0] < 0.8 and 0.08 < share[1] < 0.30 and 0.08 < share[2] < 0.35


def test_diagnoses_outcomes_and_causes_of_death_are_coded(chunk: Chunk) -> None:
    kinds = set(chunk.tables["cond"]["kind"].tolist())
    assert {C.HTN, C.HLD, C.T2D, C.CKD3, C.AF, C.MI, C.STROKE, C.HF} <= kinds
    causes, _, _ = _obs(chunk, C.CAUSE_OF_DEATH)
    assert {C.DEATH_MI, C.DEATH_STROKE} <= set(causes.astype(int).tolist())  # coronary and stroke deaths
    assert len(set(causes.astype(int).tolist()) - set(C.ASCVD_DEATHS)) >= 3  # and other causes


def test_medications_start_after_the_diagnosis_they_treat(chunk: Chunk) -> None:
    cond, med = chunk.tables["cond"], chunk.tables["med"]
    onset: dict[tuple[int, int], int] = {}
    rows = zip(cond["pat"].tolist(), cond["kind"].tolist(), cond["onset"].tolist(), strict=True)
    for pat, kind, day in rows:
        onset[pat, kind] = min(day, onset.get((pat, kind), day))
    statin_reasons = (C.HLD, C.T2D, C.MI, C.STROKE)  # hyperlipidaemia, diabetes at 40+, after an event
    reasons = {d: (r,) for d, r in C.MED_REASON.items()} | {C.SIMVASTATIN: statin_reasons,
                                                             C.ATORVASTATIN: statin_reasons}  # fmt: skip
    seen = set()
    for pat, drug, day in zip(med["pat"].tolist(), med["drug"].tolist(), med["day"].tolist(), strict=True):
        first = min(onset.get((pat, r), np.iinfo(np.int64).max) for r in reasons[drug])
        assert first <= day, (C.MEDICATIONS[drug][0].display, pat)
        seen.add(drug)
    assert seen == set(C.MED_REASON)  # every drug class occurs


def test_treatment_lowers_the_risk_factor_it_treats() -> None:
    p, n = DEFAULT, 300
    s = initial_population(n, np.random.default_rng(1), p)
    age, yes, no = np.full(n, 60.0), np.ones(n, bool), np.zeros(n, bool)
    s.a1c_jump[:] = 1.5

    def values(**kw: object) -> dict[str, np.ndarray]:
        t = s.copy()
        coverage = np.asarray(kw.pop("coverage", 0.0))
        for k, v in kw.items():
            getattr(t, k)[:] = v
        return risk_factors(t, age, yes, no, np.broadcast_to(coverage, (n,)).astype(float), p)

    untreated = values()
    drop = untreated["sbp"] - values(bp_drugs=2)["sbp"]
    assert drop.mean() > 1.5 * p.risk.sbp_per_drug and (drop >= 0).all()
    statin = values(statin=1, coverage=1.0)
    assert np.allclose(statin["ldl"] / untreated["ldl"], 1 - p.risk.statin_ldl_cut)
    assert (statin["tc"] < untreated["tc"]).all()
    half = values(statin=1, coverage=0.5)  # missed refills: half the lowering
    assert np.allclose(1 - half["ldl"] / untreated["ldl"], p.risk.statin_ldl_cut / 2)
    assert (values(metformin=True)["hba1c"] < untreated["hba1c"]).all()


def test_rising_pressure_phases_show_as_rising_readings(chunk: Chunk) -> None:
    """The hidden rising-pressure process is visible only as the trend of a person's repeated readings."""
    sbp, _, e = _obs(chunk, C.SBP)
    enc, n = chunk.tables["enc"], len(chunk.ids)
    pat, years = enc["pat"][e], enc["day"][e] / 365.25
    count = np.bincount(pat, minlength=n)
    x = years - (np.bincount(pat, years, n) / np.maximum(count, 1))[pat]
    y = sbp - (np.bincount(pat, sbp, n) / np.maximum(count, 1))[pat]
    sxx = np.bincount(pat, x * x, n)
    enough = (count >= 6) & (sxx > count * 4)  # six readings or more, spread over several years
    slope = np.bincount(pat, x * y, n)[enough] / sxx[enough]  # mm Hg per year, per person (OLS)
    rise = chunk.state.rise_cum[enough]  # mm Hg added by the person's rising phases so far
    assert (rise > 10).sum() > 100 and (rise == 0).sum() > 100
    assert slope[rise > 10].mean() > slope[rise == 0].mean() + 0.3
    assert np.corrcoef(slope, rise)[0, 1] > 0.2


def test_statin_refill_gaps_show_in_the_records(chunk: Chunk) -> None:
    s, med = chunk.state, chunk.tables["med"]
    statin = np.isin(med["drug"], (C.SIMVASTATIN, C.ATORVASTATIN)) & (med["enc"] < 0)  # quarterly refills
    in_2010 = statin & (med["day"] >= day_of(2010)) & (med["day"] < day_of(2011))
    refills = np.bincount(med["pat"][in_2010], minlength=len(chunk.ids))
    users = np.flatnonzero(refills > 0)
    assert len(users) > 50 and refills.max() <= 4
    assert np.corrcoef(refills[users], s.miss_q[users])[0, 1] < -0.3


# --- real codes: SNOMED CT identifiers carry a Verhoeff check digit, LOINC codes a mod-10 one -----------
_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]  # fmt: skip
_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]  # fmt: skip


def _snomed_ok(sctid: str) -> bool:
    check = 0
    for i, digit in enumerate(reversed(sctid)):
        check = _D[check][_P[i % 8][int(digit)]]
    return check == 0 and sctid[-3:-1] in ("00", "10")  # a concept id (partition 00 or 10)


def _loinc_ok(code: str) -> bool:
    body, check = code.split("-")
    total = 0
    for i, digit in enumerate(int(d) for d in reversed(body)):
        total += sum(divmod(2 * digit, 10)) if i % 2 == 0 else digit
    return (10 - total % 10) % 10 == int(check)


def test_check_digit_helpers_reject_corrupted_codes() -> None:
    assert _snomed_ok("22298006") and not _snomed_ok("22298007")
    assert _loinc_ok("2093-3") and not _loinc_ok("2093-4")


def test_codes_are_well_formed_real_codes() -> None:
    snomed = (
        [d.snomed.code for d in C.CONDITIONS]
        + [c.code for c, _, _ in C.ENCOUNTERS]
        + [c.code for c in (*C.SMOKING_STATUS, *C.DEATH_CAUSES, *C.PROCEDURES)]
    )
    assert all(_snomed_ok(code) for code in snomed), [c for c in snomed if not _snomed_ok(c)]
    loinc = [o.code for o in C.OBSERVATIONS] + [C.BP_PANEL.code]
    assert all(_loinc_ok(code) for code in loinc), [c for c in loinc if not _loinc_ok(c)]
    icd = [d.icd10.code for d in C.CONDITIONS]
    assert all(c[0].isalpha() and c[1:3].isdigit() and (len(c) == 3 or c[3] == ".") for c in icd)
    assert all(c.code.isdigit() for c, _ in C.MEDICATIONS)  # RxNorm concept ids (RXCUI)
    assert len({d.snomed.code for d in C.CONDITIONS}) == len(C.CONDITIONS)
