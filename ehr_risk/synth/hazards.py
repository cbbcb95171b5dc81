"""The outcome hazard model: annual hazards of the five outcomes from one person-year's state.

All functions are vectorised over people. With covariates x for a person-year,

    h_ascvd = base · exp(β_age,sex·(age−55) + β_female + β_black + β_tc(age)·ln(TC/200)
                         + β_hdl(age)·ln(HDL/50) + β_sbp·ln(SBP/120) + β_treated·[on BP drugs]
                         + β_smk(age)·[smoker] + β_former·[former] + β_dm·[diabetes] + β_ckd·[CKD]
                         + β_prior·[prior ASCVD] + β_af·[AF] + β_a1c·(latent HbA1c − 5.6)
                         + β_bmi·(BMI − 28) + β_fh·[family history of premature ASCVD]
                         + β_rise·(ongoing SBP rise, mm Hg/yr) + β_gap·[statin gap] + β_unstable·[unstable]
                         + β_bpv·(visit-to-visit SBP variability, SD units)
                         + β_burden·ln(visit-rate multiplier))

and log-linear hazards of the same form for heart failure, type 2 diabetes, CKD stage ≥ 3 and death
from other causes (parameters and reference profiles in params.py). Within a year hazards are constant,
so event times are exponential and the cumulative incidence over years is exact for that path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ehr_risk.synth.params import SynthParams

Array = np.ndarray


@dataclass
class Covariates:
    """One person-year: current true values (not the noisy measurements in the records)."""

    age: Array
    male: Array
    black: Array
    hispanic: Array
    tc: Array
    hdl: Array
    sbp: Array
    bmi: Array
    hba1c_latent: Array  # untreated glycaemia, without the jump at diabetes onset
    egfr_latent: Array  # kidney function before any CKD onset
    bp_treated: Array
    statin: Array
    smoker: Array
    former_smoker: Array
    diabetes: Array
    ckd: Array
    hf: Array
    af: Array
    prior_ascvd: Array
    prior_mi: Array
    hypertension: Array
    sbp_rise: Array  # mm Hg/year of an ongoing rising-pressure phase, 0 if none
    statin_gap: Array
    unstable: Array
    bp_variability: Array  # the person's visit-to-visit SBP variability, standard normal
    burden: Array  # log of the person's visit-rate multiplier: uncoded comorbidity burden
    family_history: Array  # premature ASCVD in a first-degree relative


def _f(x: Array) -> Array:
    return x.astype(np.float64)


def ascvd_log_hr(x: Covariates, p: SynthParams) -> Array:
    """Log hazard ratio against the ASCVD reference profile (used also for the unstable process)."""
    a = p.ascvd
    age = x.age - 55.0
    male, female = _f(x.male), 1.0 - _f(x.male)
    b_tc = np.maximum(a.ln_tc - a.ln_tc_age * np.maximum(age, 0.0), a.ln_tc_min)
    b_hdl = np.minimum(a.ln_hdl + a.ln_hdl_age * np.maximum(age, 0.0), a.ln_hdl_max)
    b_smk = np.maximum(a.smoker - a.smoker_age * age, a.smoker_min)
    return (
        (a.age_male * male + a.age_female * female) * age
        + a.female * female
        + a.black * _f(x.black)
        + b_tc * np.log(x.tc / 200.0)
        + b_hdl * np.log(x.hdl / 50.0)
        + a.ln_sbp * np.log(x.sbp / 120.0)
        + a.bp_treated * _f(x.bp_treated)
        + b_smk * _f(x.smoker)
        + a.former_smoker * _f(x.former_smoker)
        + a.diabetes * _f(x.diabetes)
        + a.ckd * _f(x.ckd)
    )


def hazards(x: Covariates, p: SynthParams) -> dict[str, Array]:
    """Annual hazards {ascvd, hf, t2d, ckd, death_other} for each person-year."""
    a = p.ascvd
    lp_ascvd = (
        ascvd_log_hr(x, p)
        + a.prior_ascvd * _f(x.prior_ascvd)
        + a.sbp_rise * x.sbp_rise
        + a.statin_gap * _f(x.statin_gap)
        + a.unstable * _f(x.unstable)
        + a.bp_variability * x.bp_variability
        + a.burden * x.burden
        + a.af * _f(x.af)
        + a.hba1c * (x.hba1c_latent - 5.6)
        + a.bmi * (x.bmi - 28.0)
        + a.family_history * _f(x.family_history)
    )
    h, d, t, c = p.hf, p.death, p.t2d, p.ckd
    lp_hf = (
        h.age * (x.age - 65.0)
        + h.female * (1.0 - _f(x.male))
        + h.prior_mi * _f(x.prior_mi)
        + h.af * _f(x.af)
        + h.diabetes * _f(x.diabetes)
        + h.sbp * (x.sbp - 130.0)
        + h.bmi * (x.bmi - 28.0)
        + h.smoker * _f(x.smoker)
        + h.ckd * _f(x.ckd)
        + h.sbp_rise * x.sbp_rise
    )
    lp_t2d = (
        t.hba1c * (x.hba1c_latent - 5.6)
        + t.bmi * (x.bmi - 28.0)
        + t.age * (x.age - 50.0)
        + t.black_hispanic * _f(x.black | x.hispanic)
        + t.statin * _f(x.statin)
    )
    lp_ckd = (
        c.age * (x.age - 60.0)
        + c.egfr * (x.egfr_latent - 75.0)
        + c.diabetes * _f(x.diabetes)
        + c.sbp * (x.sbp - 130.0)
        + c.hypertension * _f(x.hypertension)
        + c.hf * _f(x.hf)
    )
    lp_death = (
        d.age * (x.age - 60.0)
        + d.male * _f(x.male)
        + d.smoker * _f(x.smoker)
        + d.former_smoker * _f(x.former_smoker)
        + d.diabetes * _f(x.diabetes)
        + d.ckd * _f(x.ckd)
        + d.hf * _f(x.hf)
        + d.af * _f(x.af)
        + d.bmi_sq * (x.bmi - 25.0) ** 2
        + d.unstable * _f(x.unstable)
        + d.burden * x.burden
    )
    cap = 20.0  # keeps exp() finite for extreme synthetic values
    return {
        "ascvd": a.base * np.exp(np.minimum(lp_ascvd, cap)),
        "hf": h.base * np.exp(np.minimum(lp_hf, cap)),
        "t2d": t.base * np.exp(np.minimum(lp_t2d, cap)),
        "ckd": c.base * np.exp(np.minimum(lp_ckd, cap)),
        "death_other": d.base * np.exp(np.minimum(lp_death, cap)),
    }


def ascvd_fatality(stroke: Array, prior_ascvd: Array, p: SynthParams) -> Array:
    """Probability that an ASCVD event (stroke or MI) is fatal."""
    a = p.ascvd
    base = np.where(stroke, a.fatal_stroke, a.fatal_mi)
    return np.minimum(base * np.where(prior_ascvd, a.fatal_prior_mult, 1.0), 0.9)


def p_stroke(af: Array, p: SynthParams) -> Array:
    return np.where(af, p.ascvd.p_stroke_af, p.ascvd.p_stroke)


def expected_fatality(af: Array, prior_ascvd: Array, p: SynthParams) -> Array:
    """Share of ASCVD hazard that is fatal (stroke/MI mix) — the ASCVD part of the death hazard."""
    ps = p_stroke(af, p)
    return ps * ascvd_fatality(np.ones_like(ps, bool), prior_ascvd, p) + (1 - ps) * ascvd_fatality(
        np.zeros_like(ps, bool), prior_ascvd, p
    )
