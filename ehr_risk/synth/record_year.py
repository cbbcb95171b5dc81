"""Turn one year's visits, measurements and decisions into record rows (encounters, observations,
conditions, medication orders and refills, procedures, death certification)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ehr_risk.synth import codes as C
from ehr_risk.synth.life import Year
from ehr_risk.synth.params import SynthParams
from ehr_risk.synth.records import Recorder, creatinine_from_egfr, egfr_from_creatinine
from ehr_risk.synth.state import NEVER, State

Array = np.ndarray
HOUR = 3600


def record_year(
    s: State,
    y: Year,
    rng: np.random.Generator,
    p: SynthParams,
    rec: Recorder,
    vis: dict[str, Array],
    bp: dict[str, Array],
    new_drug: list[tuple[Array, Array]],
    labs: dict[str, Any],
) -> None:
    c, v, y0, ylen = p.care, y.values, y.y0, y.ylen
    vp, vday, vkind, vreason = vis["pat"], vis["day"], vis["kind"], vis["reason"]
    m = len(vp)
    keep = vday >= s.enroll_day[vp]
    routine = np.isin(vkind, (C.CHECKUP, C.FOLLOWUP))
    sec = np.where(routine, rng.integers(8 * HOUR, 17 * HOUR, m), rng.integers(0, 18 * HOUR, m))
    sec = np.where(vkind == C.INPATIENT, rng.integers(18 * HOUR, 23 * HOUR, m), sec)
    rk = np.flatnonzero(keep)
    venc = np.full(m, -1, np.int64)
    venc[rk] = rec.add_encounters(vp[rk], vday[rk], sec[rk], vkind[rk], np.maximum(vreason[rk], -1))
    reg = (vreason == -2) & keep
    age, male = y.age[vp], s.male[vp]

    def at(mask: Array) -> Array:
        return np.flatnonzero(mask & keep)

    i = at(bp["bp"] & (vkind != C.DEATH_CERT))
    rec.add("obs", enc=venc[i], kind=C.SBP, value=bp["sbp"][i], value2=bp["dbp"][i], lag=0)
    height = s.height[vp] - 0.08 * np.maximum(age - 50, 0)
    checkup = vkind == C.CHECKUP
    wt_p = np.where(
        checkup, c.weight_recorded, np.where(routine, 0.25, np.where(vkind == C.INPATIENT, 0.5, 0.0))
    )
    wt_mask = reg | (rng.random(m) < wt_p)
    i = at(wt_mask)
    weight = np.round(v["bmi"][vp[i]] * (height[i] / 100) ** 2 + 0.7 * rng.standard_normal(len(i)), 1)
    rec.add("obs", enc=venc[i], kind=C.WEIGHT, value=weight, value2=np.nan, lag=0)
    rec.add(
        "obs",
        enc=venc[i],
        kind=C.BMI,
        value=np.round(weight / (height[i] / 100) ** 2, 1),
        value2=np.nan,
        lag=0,
    )
    i = at(reg | (routine & (rng.random(m) < c.height_recorded)))
    rec.add("obs", enc=venc[i], kind=C.HEIGHT, value=np.round(height[i], 1), value2=np.nan, lag=0)
    i = at(reg | ((vkind == C.CHECKUP) & (rng.random(m) < c.smoking_recorded)))
    rec.add("obs", enc=venc[i], kind=C.SMOKING, value=s.smoke[vp[i]].astype(float), value2=np.nan, lag=0)
    lipid, tc_m, hdl_m, tg_m, ldl_m = labs["lipid"]
    ok = keep[lipid]
    i, lag = lipid[ok], rng.integers(*c.record_lag_days, ok.sum(), endpoint=True)
    for kind, val in ((C.TC, tc_m), (C.HDL, hdl_m), (C.TG, tg_m), (C.LDL, ldl_m)):
        rec.add("obs", enc=venc[i], kind=kind, value=np.round(val[ok]), value2=np.nan, lag=lag)
    i = labs["a1c"][keep[labs["a1c"]]]
    a1c = np.round(v["hba1c"][vp[i]] + 0.1 * rng.standard_normal(len(i)), 1)
    rec.add("obs", enc=venc[i], kind=C.HBA1C, value=a1c, value2=np.nan, lag=rng.integers(0, 3, len(i)))
    i = labs["glu"][keep[labs["glu"]]]
    glu = v["glucose"][vp[i]] * (1 + p.risk.glucose_cv * rng.standard_normal(len(i)))
    glu = np.round(np.maximum(glu, 50))
    rec.add("obs", enc=venc[i], kind=C.GLUCOSE, value=glu, value2=np.nan, lag=rng.integers(0, 2, len(i)))
    i = labs["renal"][keep[labs["renal"]]]
    scr = creatinine_from_egfr(v["egfr"][vp[i]], age[i], male[i]) * (1 + 0.05 * rng.standard_normal(len(i)))
    scr = np.round(scr, 2)
    lag = rng.integers(0, 3, len(i))
    rec.add("obs", enc=venc[i], kind=C.CREAT, value=scr, value2=np.nan, lag=lag)
    egfr = np.round(egfr_from_creatinine(scr, age[i], male[i]))
    rec.add("obs", enc=venc[i], kind=C.EGFR, value=egfr, value2=np.nan, lag=lag)
    _conditions(s, y, rec, vis, venc, keep, labs)
    _medications(s, y, rng, rec, vis, venc, keep, new_drug)
    _procedures(y, rng, rec, vis, venc, keep)
    dead = np.flatnonzero((s.death_day >= y0) & (s.death_day < y0 + ylen) & (s.death_day >= s.enroll_day))
    k = len(dead)
    e = rec.add_encounters(
        dead, s.death_day[dead], np.full(k, 23 * HOUR + 1800), np.full(k, C.DEATH_CERT), np.full(k, -1)
    )
    rec.add(
        "obs", enc=e, kind=C.CAUSE_OF_DEATH, value=s.death_cause[dead].astype(float), value2=np.nan, lag=0
    )


def _conditions(
    s: State, y: Year, rec: Recorder, vis: dict[str, Array], venc: Array, keep: Array, labs: dict[str, Any]
) -> None:
    vp, vday, vkind, vreason = vis["pat"], vis["day"], vis["kind"], vis["reason"]
    for kind, idx in ((C.HTN, labs["htn"]), (C.HLD, labs["hld"])):
        idx = idx[keep[idx]]
        rec.add("cond", pat=vp[idx], kind=kind, onset=vday[idx], enc=venc[idx], abate=-1)
    onset_visit = keep & (vkind != C.INPATIENT) & np.isin(vreason, (C.T2D, C.CKD3, C.AF, C.MI, C.STROKE))
    onset_visit |= keep & (vkind == C.INPATIENT) & (vreason == C.HF)
    i = np.flatnonzero(onset_visit)
    rec.add("cond", pat=vp[i], kind=vreason[i], onset=vday[i], enc=venc[i], abate=-1)
    i = np.flatnonzero(keep & (vreason == C.CHEST_PAIN))
    rec.add("cond", pat=vp[i], kind=C.CHEST_PAIN, onset=vday[i], enc=venc[i], abate=vday[i])
    y0, y1 = y.y0, y.y0 + y.ylen
    i = np.flatnonzero((s.ckd4_day >= y0) & (s.ckd4_day < y1) & (s.ckd4_day >= s.enroll_day) & s.alive)
    rec.add("cond", pat=i, kind=C.CKD4, onset=s.ckd4_day[i], enc=-1, abate=-1)
    # history known at the first visit of the records
    r = np.flatnonzero((vreason == -2) & keep)
    pat = vp[r]
    enroll = s.enroll_day[pat]
    mi_day = np.where(s.prior_mi[pat], s.first_ascvd_day[pat], NEVER)
    stroke_day = np.where(s.prior_stroke[pat], s.first_ascvd_day[pat], NEVER)
    history = (
        (C.HTN, s.htn_day[pat]),
        (C.HLD, s.hld_day[pat]),
        (C.T2D, s.t2d_day[pat]),
        (C.CKD3, s.ckd_day[pat]),
        (C.CKD4, s.ckd4_day[pat]),
        (C.AF, s.af_day[pat]),
        (C.HF, s.hf_day[pat]),
        (C.MI, mi_day),
        (C.STROKE, stroke_day),
    )
    for kind, day in history:
        had = day < enroll
        rec.add("cond", pat=pat[had], kind=kind, onset=day[had], enc=venc[r[had]], abate=-1)
    fh = s.family_history_coded[pat]  # a situation, not a disease: dated at the registration visit
    rec.add("cond", pat=pat[fh], kind=C.FAMILY_HX, onset=vday[r[fh]], enc=venc[r[fh]], abate=-1)


def _medications(
    s: State,
    y: Year,
    rng: np.random.Generator,
    rec: Recorder,
    vis: dict[str, Array],
    venc: Array,
    keep: Array,
    new_drug: list[tuple[Array, Array]],
) -> None:
    vp, vday, vkind, vreason = vis["pat"], vis["day"], vis["kind"], vis["reason"]
    y0, ylen, n = y.y0, y.ylen, s.n
    live_from, live_to = np.maximum(s.enroll_day, y0), s.death_day

    def refill(who: Array, drug: int, day: Array, held: Array | None = None) -> None:
        ok = (day >= live_from[who]) & (day <= live_to[who])
        who, day = who[ok], day[ok]
        sec = rng.integers(9 * HOUR, 19 * HOUR, len(who))
        if held is not None:  # applied after the draws, so the random stream does not depend on it
            who, day, sec = who[held[who]], day[held[who]], sec[held[who]]
        rec.add("med", pat=who, drug=drug, day=day, sec=sec, enc=-1)

    started_bp = np.zeros(n, np.int8)
    for idx, drug in new_drug:
        started_bp[vp[idx]] += np.isin(drug, (C.LISINOPRIL, C.AMLODIPINE, C.HCTZ))
        k = idx[keep[idx]]
        d = drug[keep[idx]] if isinstance(drug, np.ndarray) else drug
        rec.add(
            "med", pat=vp[k], drug=d, day=vday[k], sec=rng.integers(8 * HOUR, 17 * HOUR, len(k)), enc=venc[k]
        )
    bp0 = (s.bp_drugs - started_bp) * y.active
    for j, bp_drug in enumerate((C.LISINOPRIL, C.AMLODIPINE, C.HCTZ)):
        who = np.flatnonzero(bp0 > j)
        refill(who, bp_drug, y0 + rng.integers(0, 60, len(who)))
    # the year's refill comes early in the year: only for a drug held before this year's events (an MI this
    # year may start clopidogrel in someone whose first ASCVD event was an earlier stroke)
    for flag, chronic_drug, held in (
        (s.metformin & (s.t2d_day < y0), C.METFORMIN, None),
        (s.clopidogrel & (s.first_ascvd_day < y0), C.CLOPIDOGREL, y.clopidogrel_before),
        (s.warfarin & (s.af_day < y0), C.WARFARIN, None),
    ):
        who = np.flatnonzero(flag & y.active)
        refill(who, chronic_drug, y0 + rng.integers(0, 60, len(who)), held)
    on = y.active & (s.statin > 0) & (s.statin_day < y0)
    for q in range(4):
        who = np.flatnonzero(on & ~y.statin_missed[:, q])
        statin_drug = np.where(s.statin[who] == 2, C.ATORVASTATIN, C.SIMVASTATIN)
        day = y0 + q * (ylen // 4) + rng.integers(0, 10, len(who))
        ok = (day >= live_from[who]) & (day <= live_to[who])
        rec.add(
            "med",
            pat=who[ok],
            drug=statin_drug[ok],
            day=day[ok],
            sec=rng.integers(9 * HOUR, 19 * HOUR, ok.sum()),
            enc=-1,
        )
    # starts at an event: metformin at diabetes onset, statin/clopidogrel after MI or stroke, warfarin for AF
    pats, sd = vp, vday
    starts = (
        (keep & (vreason == C.T2D) & s.metformin[pats], C.METFORMIN),
        (
            keep & (vkind == C.INPATIENT) & np.isin(vreason, (C.MI, C.STROKE)) & (s.statin_day[pats] == sd),
            C.ATORVASTATIN,
        ),
        (keep & (vkind == C.INPATIENT) & (vreason == C.MI) & s.clopidogrel[pats], C.CLOPIDOGREL),
        (keep & (vreason == C.AF) & s.warfarin[pats], C.WARFARIN),
    )
    for mask, start_drug in starts:
        i = np.flatnonzero(mask)
        rec.add(
            "med",
            pat=vp[i],
            drug=start_drug,
            day=vday[i],
            sec=rng.integers(8 * HOUR, 23 * HOUR, len(i)),
            enc=venc[i],
        )


def _procedures(
    y: Year, rng: np.random.Generator, rec: Recorder, vis: dict[str, Array], venc: Array, keep: Array
) -> None:
    vkind, vreason = vis["kind"], vis["reason"]
    mi = np.flatnonzero(keep & (vkind == C.INPATIENT) & (vreason == C.MI))
    u = rng.random(len(mi))
    rec.add("proc", enc=venc[mi[u < 0.5]], code=C.PCI)
    rec.add("proc", enc=venc[mi[(u >= 0.5) & (u < 0.6)]], code=C.CABG)
    ecg = np.flatnonzero(keep & np.isin(vreason, (C.AF, C.CHEST_PAIN)))
    rec.add("proc", enc=venc[ecg], code=C.ECG)
