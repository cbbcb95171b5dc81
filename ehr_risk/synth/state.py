"""The simulated population as arrays (one entry per person) and its initial draw.

Static traits are drawn once; the dynamic fields change each simulated calendar year (life.py).
Days are integer days since 1970-01-01 (numpy datetime64[D] values).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ehr_risk.synth.params import SynthParams

NEVER = np.iinfo(np.int64).max // 4  # "no such day" marker; compares greater than any real day


def day_of(year: int, month: int = 1, dom: int = 1) -> int:
    return int(np.datetime64(f"{year:04d}-{month:02d}-{dom:02d}", "D").astype(np.int64))


@dataclass
class State:
    # static
    male: np.ndarray
    race: np.ndarray  # 0 white, 1 black, 2 asian, 3 other
    hispanic: np.ndarray
    birth_day: np.ndarray
    enroll_day: np.ndarray
    height: np.ndarray  # cm
    u_bmi: np.ndarray
    u_bp: np.ndarray
    u_dbp: np.ndarray
    u_tc: np.ndarray
    u_hdl: np.ndarray
    u_tg: np.ndarray
    u_gly: np.ndarray
    u_kid: np.ndarray
    ever_smoker: np.ndarray
    miss_q: np.ndarray  # chance of missing a quarterly statin refill
    intensity: np.ndarray  # person-level multiplier of visit rates
    si_units: np.ndarray
    icd10: np.ndarray
    # dynamic
    started: np.ndarray
    alive: np.ndarray
    death_day: np.ndarray
    death_cause: np.ndarray
    smoke: np.ndarray  # 0 never, 1 current, 2 former
    e_bmi: np.ndarray
    e_sbp: np.ndarray
    e_tc: np.ndarray
    e_hdl: np.ndarray
    e_tg: np.ndarray
    e_gly: np.ndarray
    e_egfr: np.ndarray
    rise_slope: np.ndarray
    rise_left: np.ndarray
    rise_cum: np.ndarray
    unstable_left: np.ndarray
    htn_day: np.ndarray
    bp_drugs: np.ndarray
    hld_day: np.ndarray
    statin: np.ndarray  # 0 none, 1 simvastatin, 2 atorvastatin
    statin_day: np.ndarray
    miss_y1: np.ndarray  # refills missed last year / the year before (quarters)
    miss_y2: np.ndarray
    t2d_day: np.ndarray
    a1c_jump: np.ndarray
    metformin: np.ndarray
    ckd_day: np.ndarray
    egfr_ckd: np.ndarray
    ckd4_day: np.ndarray
    af_day: np.ndarray
    warfarin: np.ndarray
    hf_day: np.ndarray
    n_ascvd: np.ndarray
    prior_mi: np.ndarray
    prior_stroke: np.ndarray
    first_ascvd_day: np.ndarray
    clopidogrel: np.ndarray
    u_bpv: np.ndarray  # visit-to-visit blood-pressure variability (person-level, standard normal)
    family_history: np.ndarray  # premature ASCVD in a first-degree relative
    family_history_coded: np.ndarray  # ... and the records say so

    @property
    def n(self) -> int:
        return len(self.male)

    def take(self, idx: np.ndarray) -> State:
        return State(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})

    def copy(self) -> State:
        return State(**{f.name: getattr(self, f.name).copy() for f in dataclasses.fields(self)})


def initial_population(n: int, rng: np.random.Generator, p: SynthParams) -> State:
    """Draw n people: birth, sex, race/ethnicity, latent traits; nothing has happened to them yet."""
    pop, care = p.population, p.care
    first, last = day_of(pop.birth_years[0]), day_of(pop.birth_years[1])
    birth = rng.integers(first, last, n)
    male = rng.random(n) < pop.p_male
    race = rng.choice(4, n, p=np.asarray(pop.race_p) / sum(pop.race_p))
    hispanic = rng.random(n) < pop.p_hispanic
    birth_year = 1970 + birth / 365.25
    cohort = np.clip((birth_year - 1930) / 70, 0, 1)
    p_smoke = (pop.smoke_start_1930 + (pop.smoke_start_2000 - pop.smoke_start_1930) * cohort) * np.where(
        male, 1.0, pop.smoke_female
    )
    adult = birth + np.round(18 * 365.25).astype(np.int64)
    records_start = day_of(pop.records_start_year) + rng.integers(0, int(pop.enroll_spread_years * 365), n)
    enroll = np.maximum(records_start, adult + rng.integers(0, 730, n))
    r = p.risk
    h_mean = np.where(male, r.height_male[0], r.height_female[0])
    h_sd = np.where(male, r.height_male[1], r.height_female[1])
    z = np.zeros(n)
    never = np.full(n, NEVER, np.int64)

    def normal() -> np.ndarray:
        return rng.standard_normal(n)

    return State(
        male=male,
        race=race.astype(np.int8),
        hispanic=hispanic,
        birth_day=birth.astype(np.int64),
        enroll_day=enroll.astype(np.int64),
        height=h_mean + h_sd * normal(),
        u_bmi=normal(),
        u_bp=normal(),
        u_dbp=normal(),
        u_tc=normal(),
        u_hdl=normal(),
        u_tg=normal(),
        u_gly=normal(),
        u_kid=normal(),
        ever_smoker=rng.random(n) < p_smoke,
        miss_q=rng.beta(*care.miss_quarter_shape, n),
        intensity=rng.gamma(care.visit_intensity_shape, 1 / care.visit_intensity_shape, n),
        si_units=rng.random(n) < care.si_units_fraction,
        icd10=rng.random(n) < care.icd10_fraction,
        started=np.zeros(n, bool),
        alive=np.ones(n, bool),
        death_day=never.copy(),
        death_cause=np.full(n, -1, np.int8),
        smoke=np.zeros(n, np.int8),
        e_bmi=normal() * r.bmi_noise,
        e_sbp=normal() * r.sbp_noise,
        e_tc=normal() * r.tc_noise,
        e_hdl=normal() * r.hdl_noise,
        e_tg=normal() * r.tg_noise,
        e_gly=normal() * r.hba1c_noise,
        e_egfr=normal() * r.egfr_noise,
        rise_slope=z.copy(),
        rise_left=np.zeros(n, np.int16),
        rise_cum=z.copy(),
        unstable_left=np.zeros(n, np.int8),
        htn_day=never.copy(),
        bp_drugs=np.zeros(n, np.int8),
        hld_day=never.copy(),
        statin=np.zeros(n, np.int8),
        statin_day=never.copy(),
        miss_y1=np.zeros(n, np.int8),
        miss_y2=np.zeros(n, np.int8),
        t2d_day=never.copy(),
        a1c_jump=z.copy(),
        metformin=np.zeros(n, bool),
        ckd_day=never.copy(),
        egfr_ckd=z.copy(),
        ckd4_day=never.copy(),
        af_day=never.copy(),
        warfarin=np.zeros(n, bool),
        hf_day=never.copy(),
        n_ascvd=np.zeros(n, np.int16),
        prior_mi=np.zeros(n, bool),
        prior_stroke=np.zeros(n, bool),
        first_ascvd_day=never.copy(),
        clopidogrel=np.zeros(n, bool),
        u_bpv=normal(),  # drawn after all the above: the draws before it keep their random stream
        family_history=(fam := rng.random(n) < pop.p_family_history),
        family_history_coded=fam & (rng.random(n) < care.family_history_recorded),
    )
