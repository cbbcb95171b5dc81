"""One simulated calendar year for everyone at once (vectorised over people).

Order within a year: risk factors drift (AR(1) deviations around age/sex means, treatments, hidden
processes) → hazards (hazards.py) → outcome and death times (exponential within the year) → care:
visits, measurements, diagnoses and treatment decisions (care.py), which act from the next year on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ehr_risk.synth import codes as C
from ehr_risk.synth.hazards import (
    Covariates,
    ascvd_fatality,
    ascvd_log_hr,
    expected_fatality,
    hazards,
    p_stroke,
)
from ehr_risk.synth.params import SynthParams
from ehr_risk.synth.state import NEVER, State, day_of

Array = np.ndarray


@dataclass
class Year:
    """What one simulated year exposes to the care process, the records and the truth computation."""

    year: int
    y0: int
    ylen: int
    age: Array
    active: Array  # alive adult at the start of the year
    values: dict[str, Array]
    cov: Covariates
    hazard: dict[str, Array]  # zero where the person already has the condition (onset hazards)
    hazard_raw: dict[str, Array]  # the same before zeroing: what the truth integrates along a path
    death_hazard_ascvd: Array  # the fatal share of the ASCVD hazard
    ed_visits: Array  # emergency visits from the unstable process and other causes
    unstable_first: Array
    statin_missed: Array  # (n, 4) quarters missed this year
    events: dict[str, Array]  # outcome → day it happened this year (NEVER if not)
    ascvd_stroke: Array
    ascvd_fatal: Array
    clopidogrel_before: Array  # on clopidogrel before this year's events (an MI may start it mid-year)


def risk_factors(
    s: State, age: Array, t2d: Array, ckd: Array, coverage: Array, p: SynthParams
) -> dict[str, Array]:
    """True current values (canonical units) from latent traits, AR deviations and treatment."""
    r = p.risk
    male = s.male
    a20 = np.maximum(age - 20.0, 0.0)
    bmi_age = r.bmi_slope * np.minimum(a20, 35.0) - 0.10 * np.maximum(age - 70.0, 0.0)
    bmi = np.clip(r.bmi_at_20 + bmi_age + r.bmi_sd * s.u_bmi * 0.8 + s.e_bmi, 15.5, 65.0)
    sbp_u = (
        r.sbp_at_20
        + r.sbp_slope * a20
        + r.sbp_slope_late * np.maximum(age - 50.0, 0.0)
        + r.sbp_male_young * (male & (age < 50))
        + r.sbp_black * (s.race == 1)
        + r.sbp_bmi * (bmi - 27.0)
        + r.sbp_sd * s.u_bp
        + s.e_sbp
        + s.rise_cum
    )
    sbp = np.maximum(sbp_u - r.sbp_per_drug * s.bp_drugs, 88.0)
    dbp = np.clip(22.0 + 0.42 * sbp - 0.22 * np.maximum(age - 55.0, 0.0) + 4.0 * s.u_dbp, 45.0, 130.0)
    tc_u = (
        r.tc_at_20
        + r.tc_slope * np.minimum(a20, 35.0)
        + r.tc_female_late * (~male & (age > 50))
        + r.tc_bmi * (bmi - 27.0)
        + r.tc_sd * s.u_tc
        + s.e_tc
    )
    hdl = np.clip(
        np.where(male, r.hdl_male, r.hdl_female)
        + r.hdl_bmi * (bmi - 27.0)
        + r.hdl_sd * (np.sqrt(1.0 - r.hdl_tg_corr**2) * s.u_hdl - r.hdl_tg_corr * s.u_tg)
        + s.e_hdl,
        20,
        110,
    )
    tg = np.exp(r.tg_log_mean + r.tg_bmi * (bmi - 27.0) + r.tg_sd * s.u_tg + s.e_tg) * np.where(
        t2d, 1.25, 1.0
    )
    tg = np.clip(tg, 30, 1500)
    ldl_u = np.maximum(tc_u - hdl - tg / 5.0, 35.0)
    ldl = ldl_u * (1.0 - r.statin_ldl_cut * coverage * (1.0 + 0.25 * (s.statin == 2)))
    tc = ldl + hdl + tg / 5.0
    a1c_lat = r.hba1c_at_20 + r.hba1c_age * a20 + r.hba1c_bmi * (bmi - 27.0) + r.hba1c_sd * s.u_gly + s.e_gly
    a1c_lat = np.clip(a1c_lat, 4.2, 6.45)
    a1c = a1c_lat + np.where(t2d, s.a1c_jump - r.metformin_effect * s.metformin, 0.0)
    a1c = np.clip(a1c, 4.2, 14.0)
    egfr_lat = r.egfr_at_25 - r.egfr_decline * np.maximum(age - 25.0, 0.0) - r.egfr_sd * s.u_kid + s.e_egfr
    egfr_lat = np.clip(egfr_lat, r.egfr_floor_pre_ckd, 150.0)
    egfr = np.where(ckd, s.egfr_ckd, egfr_lat)
    return {
        "bmi": bmi,
        "sbp": sbp,
        "dbp": dbp,
        "tc": tc,
        "hdl": hdl,
        "ldl": ldl,
        "tg": tg,
        "hba1c": a1c,
        "hba1c_latent": a1c_lat,
        "glucose": 28.7 * a1c - 56.0,
        "egfr": egfr,
        "egfr_latent": egfr_lat,
    }


def _ar(rng: np.random.Generator, e: Array, sd: float, ar: float) -> Array:
    return ar * e + np.sqrt(1 - ar * ar) * sd * rng.standard_normal(len(e))


def advance(s: State, year: int, rng: np.random.Generator, p: SynthParams, replicate: bool = False) -> Year:
    """Risk factors, hazards and outcome events of `year`; applies events to `s` (not care decisions).

    `replicate=True` (truth computation) leaves everyone alive: deaths are integrated analytically.
    """
    n, r, lat = s.n, p.risk, p.latent
    y0, ylen = day_of(year), day_of(year + 1) - day_of(year)
    age = (y0 + ylen / 2 - s.birth_day) / 365.25
    adult = age >= 18.0
    newly = adult & ~s.started
    s.smoke[newly & s.ever_smoker] = 1
    s.started |= adult
    active = s.alive & adult
    for name, sd in (("bmi", r.bmi_noise), ("sbp", r.sbp_noise), ("tc", r.tc_noise), ("hdl", r.hdl_noise)):
        setattr(s, f"e_{name}", _ar(rng, getattr(s, f"e_{name}"), sd, r.ar))
    s.e_tg = _ar(rng, s.e_tg, r.tg_noise, r.ar)
    s.e_gly = _ar(rng, s.e_gly, r.hba1c_noise, r.ar)
    s.e_egfr = _ar(rng, s.e_egfr, r.egfr_noise, r.ar)
    # smoking cessation
    quit_p = p.population.quit_rate + p.population.quit_age * np.maximum(age - 30.0, 0.0)
    s.smoke[active & (s.smoke == 1) & (rng.random(n) < quit_p)] = 2
    # hidden rising-pressure phase
    start = active & (s.rise_left == 0) & (age >= 30) & (age <= 80) & (rng.random(n) < lat.rise_rate)
    s.rise_slope = np.where(start, rng.uniform(*lat.rise_slope, n), s.rise_slope)
    s.rise_left = np.where(
        start, rng.integers(lat.rise_years[0], lat.rise_years[1] + 1, n), s.rise_left
    ).astype(np.int16)
    rising = active & (s.rise_left > 0)
    s.rise_cum = s.rise_cum + np.where(rising, s.rise_slope, 0.0)
    cur_rise = np.where(rising, s.rise_slope, 0.0)
    s.rise_left = np.maximum(s.rise_left - rising, 0).astype(np.int16)
    # statin refills: quarters missed this year; the gap effect looks at the 8 quarters before the year
    on_statin = active & (s.statin > 0)
    missed = (rng.random((n, 4)) < s.miss_q[:, None]) & on_statin[:, None]
    coverage = np.where(on_statin, 1.0 - missed.mean(axis=1), 0.0)
    gap = on_statin & (s.miss_y1 + s.miss_y2 >= 2)
    s.miss_y2, s.miss_y1 = s.miss_y1, missed.sum(axis=1).astype(np.int8)
    t2d, ckd, hf, af = (s.t2d_day < y0), (s.ckd_day < y0), (s.hf_day < y0), (s.af_day < y0)
    v = risk_factors(s, age, t2d, ckd, coverage, p)
    cov = Covariates(
        age=age,
        male=s.male,
        black=s.race == 1,
        hispanic=s.hispanic,
        tc=v["tc"],
        hdl=v["hdl"],
        sbp=v["sbp"],
        bmi=v["bmi"],
        hba1c_latent=v["hba1c_latent"],
        egfr_latent=v["egfr_latent"],
        bp_treated=s.bp_drugs > 0,
        statin=on_statin,
        smoker=s.smoke == 1,
        former_smoker=s.smoke == 2,
        diabetes=t2d,
        ckd=ckd,
        hf=hf,
        af=af,
        prior_ascvd=s.n_ascvd > 0,
        prior_mi=s.prior_mi,
        hypertension=s.htn_day < y0,
        sbp_rise=cur_rise,
        statin_gap=gap,
        unstable=s.unstable_left > 0,
        bp_variability=s.u_bpv,
        burden=np.log(s.intensity),
        family_history=s.family_history,
    )
    # hidden unstable phase: starts now with a chance that rises with ASCVD risk; lasts this and next year
    p_unstable = lat.unstable_base * np.exp(lat.unstable_power * ascvd_log_hr(cov, p))
    first = active & (s.unstable_left == 0) & (rng.random(n) < np.minimum(p_unstable, 0.5))
    s.unstable_left = np.where(first, 2, s.unstable_left).astype(np.int8)
    cov.unstable = active & (s.unstable_left > 0)
    ed = rng.poisson(
        np.where(first, lat.unstable_ed_visits, np.where(cov.unstable, 1.0, 0.0)) + p.care.other_ed_rate
    )
    ed = np.where(active, ed, 0)
    raw = hazards(cov, p)
    for k in raw:
        raw[k] = np.where(active, raw[k], 0.0)
    h = dict(raw)
    h["hf"] = np.where(hf, 0.0, h["hf"])
    h["t2d"] = np.where(t2d, 0.0, h["t2d"])
    h["ckd"] = np.where(ckd, 0.0, h["ckd"])
    h_af = lat.af_base * np.exp(
        lat.af_age * (age - 70) + lat.af_male * s.male + lat.af_bmi * (v["bmi"] - 28) + lat.af_hf * hf
    )
    h_af = np.where(active & ~af, h_af, 0.0)
    stroke = rng.random(n) < p_stroke(af, p)
    fatal = rng.random(n) < ascvd_fatality(stroke, cov.prior_ascvd, p)
    names = ["ascvd", "hf", "t2d", "ckd", "death_other", "af"]
    rates = np.stack([h["ascvd"], h["hf"], h["t2d"], h["ckd"], h["death_other"], h_af], axis=1)
    with np.errstate(divide="ignore"):
        t = rng.exponential(1.0, (n, len(names))) / rates
    when = {k: t[:, i] for i, k in enumerate(names)}
    t_death = np.minimum(when["death_other"], np.where(fatal, when["ascvd"], np.inf))
    if replicate:
        t_death = np.full(n, np.inf)
    events: dict[str, Array] = {}
    for k in names:
        happens = (when[k] < 1.0) & (when[k] <= t_death)
        if k == "death_other":
            happens &= when[k] < np.where(fatal, when["ascvd"], np.inf)
            happens &= not replicate
        events[k] = np.where(
            happens, y0 + np.floor(np.where(happens, when[k], 0.0) * ylen).astype(np.int64), NEVER
        )
    year_out = Year(
        year=year,
        y0=y0,
        ylen=ylen,
        age=age,
        active=active,
        values=v,
        cov=cov,
        hazard=h,
        hazard_raw=raw,
        death_hazard_ascvd=h["ascvd"] * expected_fatality(af, cov.prior_ascvd, p),
        ed_visits=ed,
        unstable_first=first,
        statin_missed=missed,
        events=events,
        ascvd_stroke=stroke,
        ascvd_fatal=fatal & (events["ascvd"] < NEVER) & (not replicate),
        clopidogrel_before=s.clopidogrel.copy(),
    )
    _apply_events(s, year_out, rng, p)
    s.unstable_left = np.maximum(s.unstable_left - active, 0).astype(np.int8)
    return year_out


def _apply_events(s: State, y: Year, rng: np.random.Generator, p: SynthParams) -> None:
    n, r, ev = s.n, p.risk, y.events
    died_other = ev["death_other"] < NEVER
    died_ascvd = y.ascvd_fatal
    if died_other.any() or died_ascvd.any():
        cause = _other_cause(s, y, rng)
        cause = np.where(died_ascvd, np.where(y.ascvd_stroke, C.DEATH_STROKE, C.DEATH_MI), cause)
        dead = died_other | died_ascvd
        s.death_day = np.where(
            dead, np.minimum(ev["death_other"], np.where(died_ascvd, ev["ascvd"], NEVER)), s.death_day
        )
        s.death_cause = np.where(dead, cause, s.death_cause).astype(np.int8)
        s.alive &= ~dead
    a = (ev["ascvd"] < NEVER) & ~died_ascvd
    s.n_ascvd = (s.n_ascvd + a).astype(np.int16)
    s.prior_mi |= a & ~y.ascvd_stroke
    s.prior_stroke |= a & y.ascvd_stroke
    s.first_ascvd_day = np.where(a & (s.first_ascvd_day == NEVER), ev["ascvd"], s.first_ascvd_day)
    start_statin = a & (rng.random(n) < p.care.statin_after_ascvd) & (y.year >= p.care.statin_from_year)
    s.statin_day = np.where(start_statin & (s.statin == 0), ev["ascvd"], s.statin_day)
    s.statin = np.where(start_statin, 2, s.statin).astype(np.int8)
    s.clopidogrel |= a & ~y.ascvd_stroke & (rng.random(n) < 0.6)
    s.smoke[a & (s.smoke == 1) & (rng.random(n) < p.population.quit_after_event)] = 2
    t = ev["t2d"] < NEVER
    s.t2d_day = np.where(t, ev["t2d"], s.t2d_day)
    s.a1c_jump = np.where(t, r.t2d_jump[0] + rng.exponential(r.t2d_jump[1], n), s.a1c_jump)
    s.metformin |= t & (rng.random(n) < 0.8)
    k = ev["ckd"] < NEVER
    s.ckd_day = np.where(k, ev["ckd"], s.ckd_day)
    s.egfr_ckd = np.where(
        k, rng.uniform(*r.ckd_drop, n), np.where(s.ckd_day < y.y0, s.egfr_ckd - r.ckd_decline, s.egfr_ckd)
    )
    s.egfr_ckd = np.maximum(s.egfr_ckd, 8.0)
    s.ckd4_day = np.where(
        (s.ckd_day < y.y0) & (s.egfr_ckd < 30) & (s.ckd4_day == NEVER), y.y0 + y.ylen // 2, s.ckd4_day
    )
    s.hf_day = np.where(ev["hf"] < NEVER, ev["hf"], s.hf_day)
    f = ev["af"] < NEVER
    s.af_day = np.where(f, ev["af"], s.af_day)
    s.warfarin |= f & (rng.random(n) < 0.6)


def _other_cause(s: State, y: Year, rng: np.random.Generator) -> Array:
    """Cause of a non-ASCVD death: cancer, COPD, dementia, pneumonia, sepsis, heart failure."""
    n = s.n
    w = np.tile(np.array([0.42, 0.10, 0.16, 0.12, 0.10, 0.04]), (n, 1))
    w[:, 1] += 0.15 * (s.smoke > 0)
    w[:, 5] += 0.45 * y.cov.hf
    w[:, 2] *= np.clip((y.age - 60) / 20, 0.05, 2.0)
    cum = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    pick = (rng.random(n)[:, None] > cum).sum(axis=1)
    return np.array(
        [C.DEATH_CANCER, C.DEATH_COPD, C.DEATH_DEMENTIA, C.DEATH_PNEUMONIA, C.DEATH_SEPSIS, C.DEATH_HF]
    )[np.minimum(pick, 5)]
