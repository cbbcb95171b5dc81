"""True risk at a landmark date: the cumulative incidence of each outcome over each horizon.

Given everything simulated up to the landmark (the state, including what the records cannot show), the
future is simulated `replicates` times. Along each replicate path the risk factors, treatments and
non-fatal events evolve at random, while the outcome itself and the competing deaths are integrated
analytically (Rao-Blackwellised): with piecewise-constant annual hazards h_k (outcome) and h_c (competing
death) in year j,

    CIF_k(H) = Σ_{j<H} W_j · h_k,j / (h_k,j + h_c,j) · (1 − exp(−(h_k,j + h_c,j))),
    W_j = Π_{i<j} exp(−(h_k,i + h_c,i)),

and the true risk is the mean of CIF_k(H) over replicates. Competing deaths: for ASCVD, death from other
causes; for death_other, fatal ASCVD; for HF, T2D and CKD, both. The ASCVD hazard is taken with the
prior-ASCVD status of the landmark (first event for people without one, a recurrence for the others).
Outcomes already present at the landmark (HF, T2D, CKD) have no onset risk (null).

Each row also carries the part of the outcome's log-hazard that the planted temporal effects contribute at
the landmark, from the history alone (`history_effects`): an ongoing rising-pressure phase, a statin
refill gap, an unstable phase that began in the year before, the person's visit-to-visit SBP variability
and visit-rate burden. The records show these only as patterns over time (a rising slope, missing refills,
a cluster of emergency visits, spread between readings, visit counts), so this is the signal a sequence
model can find and a table of last values cannot; `temporal_active` marks rows where one of the
time-varying ones (rise, gap, unstable) is on for that outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ehr_risk.synth.care import care_year
from ehr_risk.synth.life import advance
from ehr_risk.synth.params import OUTCOMES, SynthParams
from ehr_risk.synth.state import State, day_of

Array = np.ndarray


@dataclass
class LandmarkRisk:
    landmark_day: int
    person: Array  # index into the simulated population
    age: Array
    risk: dict[str, Array]  # outcome → (n, n_horizons), NaN where prevalent
    prevalent: dict[str, Array]
    temporal_log_hr: dict[str, Array]  # outcome → (n,): log-hazard from the planted temporal effects
    temporal_active: dict[str, Array]  # outcome → (n,): a time-varying effect of that outcome is on


def history_effects(s: State, p: SynthParams) -> tuple[dict[str, Array], dict[str, Array]]:
    """Per outcome, the temporal effects' log-hazard at the start of the next year and whether a
    time-varying one is on, from the state alone (what has happened, not what the next year draws):
    the terms of `hazards.hazards` that carry sbp_rise, statin_gap, unstable, bp_variability, burden."""
    rise = np.where(s.rise_left > 0, s.rise_slope, 0.0)
    gap = (s.statin > 0) & (s.miss_y1 + s.miss_y2 >= 2)
    unstable = s.unstable_left > 0
    a, h, d = p.ascvd, p.hf, p.death
    burden = np.log(s.intensity)
    zero = np.zeros(s.n)
    log_hr = {
        "ascvd": a.sbp_rise * rise
        + a.statin_gap * gap
        + a.unstable * unstable
        + a.bp_variability * s.u_bpv
        + a.burden * burden,
        "hf": h.sbp_rise * rise,
        "t2d": zero,
        "ckd": zero,
        "death_other": d.unstable * unstable + d.burden * burden,
    }
    off = np.zeros(s.n, bool)
    active = {
        "ascvd": (rise > 0) | gap | unstable,
        "hf": rise > 0,
        "t2d": off,
        "ckd": off,
        "death_other": unstable,
    }
    return log_hr, active


def landmark_risk(
    state: State,
    year: int,
    horizons: tuple[int, ...],
    replicates: int,
    rng: np.random.Generator,
    p: SynthParams,
) -> LandmarkRisk:
    """`state` is the population at the end of year−1 (it is not modified)."""
    day = day_of(year)
    age = (day - state.birth_day) / 365.25
    person = np.flatnonzero(state.alive & (age >= 18.0) & (state.enroll_day < day))
    n = len(person)
    rep = state.take(np.tile(person, replicates))
    prior0 = rep.n_ascvd > 0
    beta_prior = p.ascvd.prior_ascvd
    w = {k: np.ones(len(prior0)) for k in OUTCOMES}
    cif = {k: np.zeros(len(prior0)) for k in OUTCOMES}
    out = {k: np.zeros((n, len(horizons))) for k in OUTCOMES}
    for j in range(max(horizons)):
        y = advance(rep, year + j, rng, p, replicate=True)
        care_year(rep, y, rng, p, None)
        h = y.hazard_raw
        # y.cov.prior_ascvd was the status at the start of the year: undo recurrences after the landmark
        h_ascvd = h["ascvd"] * np.exp(beta_prior * (prior0.astype(float) - y.cov.prior_ascvd))
        fatal = y.death_hazard_ascvd
        death = h["death_other"]
        pairs = {
            "ascvd": (h_ascvd, death),
            "death_other": (death, fatal),
            "hf": (h["hf"], death + fatal),
            "t2d": (h["t2d"], death + fatal),
            "ckd": (h["ckd"], death + fatal),
        }
        for k, (hk, hc) in pairs.items():
            tot = hk + hc
            with np.errstate(invalid="ignore", divide="ignore"):
                share = np.where(tot > 0, hk / tot, 0.0)
            cif[k] += w[k] * share * -np.expm1(-tot)
            w[k] *= np.exp(-tot)
        if j + 1 in horizons:
            col = horizons.index(j + 1)
            for k in OUTCOMES:
                out[k][:, col] = cif[k].reshape(replicates, n).mean(axis=0)
    s0 = state.take(person)
    log_hr, active = history_effects(s0, p)
    prevalent = {
        "ascvd": s0.n_ascvd > 0,
        "hf": s0.hf_day < day,
        "t2d": s0.t2d_day < day,
        "ckd": s0.ckd_day < day,
        "death_other": np.zeros(n, bool),
    }
    for k in ("hf", "t2d", "ckd"):
        out[k][prevalent[k]] = np.nan
    return LandmarkRisk(
        landmark_day=day,
        person=person,
        age=age[person],
        risk=out,
        prevalent=prevalent,
        temporal_log_hr=log_hr,
        temporal_active=active,
    )
