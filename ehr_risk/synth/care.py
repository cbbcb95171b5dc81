"""Health care in one simulated year: visits, measurements, diagnoses, treatment and the records.

Decisions act on the state (diagnosis days, drugs) and so on next year's risk factors; they are made for
everyone alive, before and after the first day of records, so that people enter the records with a
realistic history. Only visits on or after that day are written (records.Recorder).
"""

from __future__ import annotations

import numpy as np

from ehr_risk.synth import codes as C
from ehr_risk.synth.life import Year
from ehr_risk.synth.params import SynthParams
from ehr_risk.synth.record_year import record_year
from ehr_risk.synth.records import Recorder, lex_order
from ehr_risk.synth.state import NEVER, State

Array = np.ndarray


def _first(vp: Array, mask: Array) -> Array:
    """Index of the first visit per patient among those where mask holds (visits sorted by patient, day)."""
    idx = np.flatnonzero(mask)
    pats = vp[idx]
    new = np.ones(len(idx), bool)
    new[1:] = pats[1:] != pats[:-1]
    return idx[new]


def _visits(s: State, y: Year, rng: np.random.Generator, p: SynthParams) -> dict[str, Array]:
    c, n, ev = p.care, s.n, y.events
    y0, ylen = y.y0, y.ylen
    chronic = (
        (s.htn_day < y0).astype(int)
        + (s.t2d_day < y0)
        + (s.ckd_day < y0)
        + (s.hf_day < y0)
        + (s.af_day < y0)
        + (s.n_ascvd > 0)
    )
    lam = c.visit_rate * s.intensity * np.exp(c.visit_age * (y.age - 40)) * (1 + c.visit_chronic * chronic)
    nv = np.where(y.active, np.minimum(rng.poisson(lam), c.max_visits), 0)
    pats = [np.repeat(np.arange(n), nv)]
    days = [y0 + rng.integers(0, ylen, int(nv.sum()))]
    kinds = [np.full(int(nv.sum()), C.FOLLOWUP)]
    reasons = [np.full(int(nv.sum()), -1)]
    reg = np.flatnonzero(y.active & (s.enroll_day >= y0) & (s.enroll_day < y0 + ylen))
    pats.append(reg)
    days.append(s.enroll_day[reg])
    kinds.append(np.full(len(reg), C.CHECKUP))
    reasons.append(np.full(len(reg), -2))  # -2 marks the registration visit
    forced = [
        ("t2d", C.FOLLOWUP, C.T2D),
        ("ckd", C.FOLLOWUP, C.CKD3),
        ("af", C.FOLLOWUP, C.AF),
        ("hf", C.INPATIENT, C.HF),
    ]
    for name, kind, reason in forced:
        who = np.flatnonzero(ev[name] < NEVER)
        pats.append(who)
        days.append(ev[name][who])
        kinds.append(np.full(len(who), kind))
        reasons.append(np.full(len(who), reason))
    who = np.flatnonzero(ev["ascvd"] < NEVER)
    cause = np.where(y.ascvd_stroke[who], C.STROKE, C.MI)
    pats.append(who)
    days.append(ev["ascvd"][who])
    kinds.append(np.full(len(who), C.EMERGENCY))
    reasons.append(cause)
    adm = who[~y.ascvd_fatal[who]]
    pats.append(adm)
    days.append(ev["ascvd"][adm])
    kinds.append(np.full(len(adm), C.INPATIENT))
    reasons.append(np.where(y.ascvd_stroke[adm], C.STROKE, C.MI))
    ned = np.where(y.active, y.ed_visits, 0)
    edp = np.repeat(np.arange(n), ned)
    pats.append(edp)
    days.append(y0 + rng.integers(0, ylen, len(edp)))
    kinds.append(np.full(len(edp), C.EMERGENCY))
    unstable = y.cov.unstable[edp]
    reasons.append(np.where(unstable, C.CHEST_PAIN, -1))
    vp, vday = np.concatenate(pats), np.concatenate(days)
    vkind, vreason = np.concatenate(kinds).astype(np.int8), np.concatenate(reasons).astype(np.int16)
    keep = vday <= s.death_day[vp]
    vp, vday, vkind, vreason = vp[keep], vday[keep], vkind[keep], vreason[keep]
    order = lex_order((vkind, vday, vp))
    vp, vday, vkind, vreason = vp[order], vday[order], vkind[order], vreason[order]
    first_routine = _first(vp, (vkind == C.CHECKUP) | (vkind == C.FOLLOWUP))
    vkind[first_routine] = C.CHECKUP
    return {"pat": vp, "day": vday, "kind": vkind, "reason": vreason}


def care_year(s: State, y: Year, rng: np.random.Generator, p: SynthParams, rec: Recorder | None) -> None:
    """Visits of year y: diagnoses and treatment decisions on `s`; records into `rec` when given."""
    c, v, y0 = p.care, y.values, y.y0
    vis = _visits(s, y, rng, p)
    vp, vday, vkind, vreason = vis["pat"], vis["day"], vis["kind"], vis["reason"]
    m = len(vp)
    routine = (vkind == C.CHECKUP) | (vkind == C.FOLLOWUP)
    reg = vreason == -2
    bp_meas = reg | (rng.random(m) < c.bp_recorded)
    bpv_sd = p.risk.sbp_visit_sd * np.exp(p.risk.sbp_visit_spread * s.u_bpv[vp])  # each person's own spread
    sbp_m = np.round(v["sbp"][vp] + bpv_sd * rng.standard_normal(m))
    dbp_m = np.round(v["dbp"][vp] + 5.0 * rng.standard_normal(m))
    # hypertension: diagnosis at a high reading, treatment, intensification
    treated0 = s.bp_drugs > 0
    high = bp_meas & ((sbp_m >= 140) | (dbp_m >= 90))
    dx = _first(vp, high & (rng.random(m) < c.htn_detect) & (s.htn_day[vp] == NEVER))
    s.htn_day[vp[dx]] = vday[dx]
    new_drug: list[tuple[Array, Array]] = []  # (visit indices, drug) started this year
    tr = dx[rng.random(len(dx)) < c.htn_treat]
    tr = tr[s.bp_drugs[vp[tr]] == 0]
    s.bp_drugs[vp[tr]] = 1
    new_drug.append((tr, np.full(len(tr), C.LISINOPRIL)))
    up = _first(vp, high & treated0[vp])
    up = up[(rng.random(len(up)) < c.intensify) & (s.bp_drugs[vp[up]] < 3)]
    new_drug.append((up, np.where(s.bp_drugs[vp[up]] == 1, C.AMLODIPINE, C.HCTZ)))
    s.bp_drugs[vp[up]] += 1
    # labs: at most one of each per patient and year
    risk = (s.htn_day[vp] < y0) | (s.t2d_day[vp] < y0) | (s.statin[vp] > 0) | (y.age[vp] >= 50)
    lipid = _first(
        vp,
        (routine & (rng.random(m) < c.lipid_panel * np.where(risk, 2.5, 1.0)))
        | (reg & (rng.random(m) < 0.6)),
    )
    dm = s.t2d_day[vp] <= vday
    onset_t2d = vreason == C.T2D
    a1c = _first(vp, (routine & (rng.random(m) < c.hba1c_test * np.where(dm, 8.0, 1.0))) | onset_t2d)
    glu = _first(vp, (routine & (rng.random(m) < c.glucose_test)) | onset_t2d)
    kid_risk = dm | (s.htn_day[vp] < vday) | (s.ckd_day[vp] <= vday)
    renal = _first(
        vp, (routine & (rng.random(m) < c.renal_test * np.where(kid_risk, 2.5, 1.0))) | (vreason == C.CKD3)
    )
    lp = vp[lipid]
    tc_m = v["tc"][lp] * (1 + 0.04 * rng.standard_normal(len(lp)))
    hdl_m = v["hdl"][lp] * (1 + 0.05 * rng.standard_normal(len(lp)))
    tg_m = v["tg"][lp] * (1 + 0.08 * rng.standard_normal(len(lp)))
    ldl_m = v["ldl"][lp] * (1 + 0.05 * rng.standard_normal(len(lp)))
    # hyperlipidaemia and statins
    hi = ldl_m >= 160
    newdx = lipid[hi & (s.hld_day[lp] == NEVER)]
    s.hld_day[vp[newdx]] = vday[newdx]
    first_dx = (
        s.hld_day[lp] == vday[lipid]
    )  # a statin is most often offered when hyperlipidaemia is first found
    p_st = np.where(first_dx, c.statin_if_ldl160, c.statin_if_ldl160 / 4)
    st = lipid[hi & (s.statin[lp] == 0) & (rng.random(len(lp)) < p_st)]
    first_vis = _first(vp, routine)
    dmst = first_vis[(s.t2d_day[vp[first_vis]] < y0) & (y.age[vp[first_vis]] >= 40)]
    dmst = dmst[(s.statin[vp[dmst]] == 0) & (rng.random(len(dmst)) < c.statin_if_dm40)]
    chosen = np.zeros(m, bool)
    chosen[st] = True
    chosen[dmst] = True
    st = _first(vp, chosen)
    if y.year < c.statin_from_year:
        st = st[:0]
    s.statin[vp[st]] = 1
    s.statin_day[vp[st]] = vday[st]
    new_drug.append((st, np.full(len(st), C.SIMVASTATIN)))
    stop = y.active & (s.statin > 0) & (s.statin_day < y0) & (rng.random(s.n) < c.statin_stop)
    s.statin[stop] = 0
    s.statin_day[stop] = NEVER
    if rec is None:
        return
    labs = {
        "lipid": (lipid, tc_m, hdl_m, tg_m, ldl_m),
        "a1c": a1c,
        "glu": glu,
        "renal": renal,
        "htn": dx,
        "hld": newdx,
    }
    record_year(s, y, rng, p, rec, vis, {"bp": bp_meas, "sbp": sbp_m, "dbp": dbp_m}, new_drug, labs)
