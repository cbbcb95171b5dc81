"""The synthetic population: plausible distributions, outcome incidence, and a truth that is consistent
with what happens and reacts to the history-only effects."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ehr_risk.synth import codes as C
from ehr_risk.synth.generate import Chunk, SynthOptions, simulate_chunk
from ehr_risk.synth.hazards import Covariates, hazards
from ehr_risk.synth.life import advance
from ehr_risk.synth.params import DEFAULT, OUTCOMES, SynthParams
from ehr_risk.synth.state import day_of, initial_population
from ehr_risk.synth.truth import history_effects, landmark_risk


@pytest.fixture(scope="module")
def chunk() -> Chunk:
    return simulate_chunk(SynthOptions(patients=1500, seed=11, replicates=4), 0, 1500)


def _obs(ch: Chunk, kind: int) -> tuple[np.ndarray, np.ndarray]:
    """Values of one observation kind and the patient's age at the visit."""
    obs, enc = ch.tables["obs"], ch.tables["enc"]
    m = obs["kind"] == kind
    e = obs["enc"][m]
    age = (enc["day"][e] - ch.state.birth_day[enc["pat"][e]]) / 365.25
    return obs["value"][m], age


def _truth(ch: Chunk, outcome: str, horizon: int, landmark: int = 2010) -> dict[str, np.ndarray]:
    t = ch.truth
    m = (
        (t["outcome"] == OUTCOMES.index(outcome))
        & (t["horizon"] == horizon)
        & (t["landmark"] == day_of(landmark))
        & ~t["prevalent"]
    )
    rows = {k: v[m] for k, v in t.items()}
    rows["observed"] = rows["event_day"] < rows["landmark"] + round(horizon * 365.25)
    return rows


def test_mean_sbp_by_age_band_is_plausible(chunk: Chunk) -> None:
    sbp, age = _obs(chunk, C.SBP)
    means = [sbp[(age >= lo) & (age < hi)].mean() for lo, hi in ((18, 40), (40, 60), (60, 80))]
    assert 110 < means[0] < 125  # NHANES: ~117 / ~126 / ~134 mm Hg
    assert 118 < means[1] < 134
    assert 124 < means[2] < 142
    assert means[0] < means[1] < means[2]


def test_lipids_bmi_and_glycaemia_are_plausible(chunk: Chunk) -> None:
    tc, age = _obs(chunk, C.TC)
    mid = (age >= 40) & (age < 65)
    assert 175 < tc[mid].mean() < 215
    hdl, age = _obs(chunk, C.HDL)
    assert 42 < hdl.mean() < 62
    bmi, age = _obs(chunk, C.BMI)
    assert 25 < bmi[(age >= 40) & (age < 65)].mean() < 31
    assert bmi[age < 30].mean() < bmi[(age >= 45) & (age < 65)].mean()
    egfr, age = _obs(chunk, C.EGFR)
    assert egfr[age < 40].mean() > egfr[age >= 70].mean() + 20


def test_prevalence_at_sixty(chunk: Chunk) -> None:
    s, d = chunk.state, day_of(2015)
    age = (d - s.birth_day) / 365.25
    m = (age >= 57) & (age < 65) & (s.death_day > d) & (s.enroll_day < d)
    assert m.sum() > 50
    # documented ranges (README, "Synthetic data: the hazard model"), around US figures for ages 55-64
    assert 0.35 < np.mean(s.htn_day[m] < d) < 0.75  # diagnosed hypertension around 60
    assert 0.05 < np.mean(s.t2d_day[m] < d) < 0.30
    assert 0.25 < np.mean(s.hld_day[m] < d) < 0.65  # diagnosed hyperlipidaemia
    assert 0.01 < np.mean(s.ckd_day[m] < d) < 0.12  # CKD stage 3 or worse
    assert 0.005 < np.mean(s.af_day[m] < d) < 0.06  # atrial fibrillation


def test_outcome_incidence_is_in_documented_ranges(chunk: Chunk) -> None:
    ranges = {"ascvd": (0.04, 0.15), "hf": (0.02, 0.10), "t2d": (0.03, 0.12), "ckd": (0.03, 0.14)}
    for outcome, (lo, hi) in ranges.items():
        t = _truth(chunk, outcome, 10)
        mid = (t["age"] >= 40) & (t["age"] < 80)
        assert lo < np.nanmean(t["risk"][mid]) < hi, outcome


def test_incidence_rates_are_in_documented_ranges(chunk: Chunk) -> None:
    """Realised first events per 1,000 person-years, ages 40-79, 2010-2019 (ranges in the README)."""
    ranges = {"ascvd": (6, 20), "hf": (3, 12), "t2d": (4, 15), "ckd": (4, 15), "death_other": (8, 30)}
    stop_day = day_of(2020)
    for outcome, (lo, hi) in ranges.items():
        t = _truth(chunk, outcome, 10)
        mid = (t["age"] >= 40) & (t["age"] < 80)
        event = t["event_day"][mid] < stop_day
        stop = np.minimum(np.minimum(t["event_day"][mid], t["end_day"][mid]), stop_day)
        person_years = (stop - t["landmark"][mid]).sum() / 365.25
        assert event.sum() >= 25, outcome
        assert lo < 1000 * event.sum() / person_years < hi, outcome


def test_truth_is_consistent(chunk: Chunk) -> None:
    t = chunk.truth
    r = t["risk"][~np.isnan(t["risk"])]
    assert len(r) and r.min() >= 0 and r.max() <= 1
    for outcome in OUTCOMES:
        r5, r10 = _truth(chunk, outcome, 5)["risk"], _truth(chunk, outcome, 10)["risk"]
        assert np.all(r10 >= r5 - 1e-12), outcome
    prevalent_t2d = (t["outcome"] == OUTCOMES.index("t2d")) & t["prevalent"]
    assert prevalent_t2d.any() and np.isnan(t["risk"][prevalent_t2d]).all()
    a = _truth(chunk, "ascvd", 10)
    assert np.corrcoef(a["age"], a["risk"])[0, 1] > 0.3  # risk rises with age
    assert a["risk"][a["age"] >= 65].mean() > 2 * a["risk"][a["age"] < 50].mean()


def test_truth_agrees_with_realised_outcomes_and_gives_an_oracle_auroc(chunk: Chunk) -> None:
    for outcome in ("ascvd", "death_other", "t2d"):
        t = _truth(chunk, outcome, 10)
        n, p = len(t["risk"]), float(np.nanmean(t["risk"]))
        se = np.sqrt(p * (1 - p) / n)
        assert abs(t["observed"].mean() - p) < 4 * se + 0.01, outcome
    a = _truth(chunk, "ascvd", 10)
    mid = (a["age"] >= 40) & (a["age"] < 80)
    auroc = roc_auc_score(a["observed"][mid], a["risk"][mid])
    assert 0.65 < auroc < 0.95


def _covariates(n: int, **overrides: np.ndarray) -> Covariates:
    f, b = np.full(n, 0.0), np.zeros(n, bool)
    base = dict(
        age=f + 55, male=~b, black=b, hispanic=b, tc=f + 200, hdl=f + 50, sbp=f + 120, bmi=f + 28,
        hba1c_latent=f + 5.6, egfr_latent=f + 75, bp_treated=b, statin=b, smoker=b, former_smoker=b,
        diabetes=b, ckd=b, hf=b, af=b, prior_ascvd=b, prior_mi=b, hypertension=b, sbp_rise=f, statin_gap=b,
        unstable=b, bp_variability=f, burden=f, family_history=b,
    )  # fmt: skip
    base.update(overrides)
    return Covariates(**base)


def test_hazard_model_acts_like_the_published_equations() -> None:
    p = DEFAULT
    ref = hazards(_covariates(1), p)["ascvd"][0]
    assert ref == pytest.approx(p.ascvd.base)
    one = np.ones(1, bool)

    def hr(**kw: np.ndarray) -> float:
        return float(hazards(_covariates(1, **kw), p)["ascvd"][0] / ref)

    assert hr(smoker=one) == pytest.approx(np.exp(p.ascvd.smoker))
    assert hr(diabetes=one) == pytest.approx(np.exp(p.ascvd.diabetes))
    assert hr(sbp=np.array([160.0])) == pytest.approx((160 / 120) ** p.ascvd.ln_sbp)
    assert hr(hdl=np.array([35.0])) > 1.2 > 1 > hr(hdl=np.array([70.0]))
    assert hr(age=np.array([65.0])) > 2.0
    assert hr(male=~one) < 0.6
    # the effects only a history shows
    assert hr(sbp_rise=np.array([4.0])) == pytest.approx(np.exp(4 * p.ascvd.sbp_rise))
    assert hr(statin_gap=one) == pytest.approx(np.exp(p.ascvd.statin_gap))
    assert hr(unstable=one) == pytest.approx(np.exp(p.ascvd.unstable))
    assert hr(bp_variability=np.array([1.0])) == pytest.approx(np.exp(p.ascvd.bp_variability))
    assert hr(burden=np.array([np.log(2.0)])) == pytest.approx(2.0**p.ascvd.burden)
    # what the PCE leaves out
    assert hr(af=one) == pytest.approx(np.exp(p.ascvd.af))
    assert hr(ckd=one) == pytest.approx(np.exp(p.ascvd.ckd))
    assert hr(hba1c_latent=np.array([6.6])) == pytest.approx(np.exp(p.ascvd.hba1c))
    assert hr(family_history=one) == pytest.approx(np.exp(p.ascvd.family_history))


def test_ascvd_hazard_follows_the_pooled_cohort_equations() -> None:
    """On random profiles within the PCE's range, the log hazard ratio of the classic factors tracks the PCE's
    own linear predictor (Goff et al. 2014, white equations) with slope near 1."""
    from ehr_risk.scores.pce import PooledCohortEquations

    rng, n = np.random.default_rng(0), 4000
    for sex in ("male", "female"):
        age, tc, hdl = rng.uniform(40, 79, n), rng.uniform(140, 300, n), rng.uniform(30, 80, n)
        sbp, treated = rng.uniform(100, 180, n), rng.random(n) < 0.3
        smoker, diabetes = rng.random(n) < 0.2, rng.random(n) < 0.15
        male = np.full(n, sex == "male")
        x = _covariates(n, age=age, male=male, tc=tc, hdl=hdl, sbp=sbp, bp_treated=treated, smoker=smoker,
                        diabetes=diabetes)  # fmt: skip
        ours = np.log(hazards(x, DEFAULT)["ascvd"])
        pce, _, _ = PooledCohortEquations().linear_predictor(
            {"age_years": age, "sex": np.full(n, sex), "race": np.full(n, "white"),
             "total_cholesterol_mg_dl": tc, "hdl_mg_dl": hdl, "systolic_bp_mm_hg": sbp,
             "on_bp_treatment": treated.astype(int), "current_smoker": smoker.astype(float),
             "diabetes": diabetes.astype(float)}
        )  # fmt: skip
        assert np.corrcoef(ours, pce)[0, 1] > 0.95, sex
        assert 0.75 < np.polyfit(pce, ours, 1)[0] < 1.25, sex


def test_truth_reacts_to_hidden_history() -> None:
    """The oracle knows the hidden processes; records show them only over time."""
    p = replace(DEFAULT)
    rng = np.random.default_rng(3)
    s = initial_population(400, rng, p)
    s.birth_day[:] = day_of(1950)
    s.enroll_day[:] = day_of(2000)
    s.started[:] = True

    def mean_risk(**fields: np.ndarray | np.generic) -> float:
        t = s.copy()
        for k, v in fields.items():
            getattr(t, k)[:] = v
        lr = landmark_risk(t, 2010, (5,), 3, np.random.default_rng(5), p)
        return float(lr.risk["ascvd"][:, 0].mean())

    base = mean_risk()
    assert mean_risk(unstable_left=np.int8(2)) > 1.3 * base
    assert mean_risk(rise_left=np.int16(5), rise_slope=np.float64(5.0)) > 1.2 * base
    assert mean_risk(u_bpv=np.float64(1.5)) > 1.3 * mean_risk(u_bpv=np.float64(-1.5))


def test_statin_refill_gaps_raise_the_true_risk_of_non_adherent_users_only() -> None:
    rng = np.random.default_rng(4)
    s = initial_population(400, rng, DEFAULT)
    s.birth_day[:] = day_of(1950)
    s.enroll_day[:] = day_of(2000)
    s.started[:] = True
    s.statin[:] = 1
    s.statin_day[:] = day_of(2003)
    no_gap_effect = replace(DEFAULT, ascvd=replace(DEFAULT.ascvd, statin_gap=0.0))

    def mean_risk(miss_q: float, p: SynthParams) -> float:
        t = s.copy()
        t.miss_q[:] = miss_q
        t.miss_y1[:] = t.miss_y2[:] = round(4 * miss_q)  # quarters missed in each of the last two years
        lr = landmark_risk(t, 2010, (5,), 3, np.random.default_rng(5), p)
        return float(lr.risk["ascvd"][:, 0].mean())

    assert mean_risk(0.0, DEFAULT) == pytest.approx(mean_risk(0.0, no_gap_effect))  # no gaps, no effect
    assert mean_risk(0.5, DEFAULT) > 1.3 * mean_risk(0.5, no_gap_effect)


def test_history_effects_are_the_temporal_terms_of_the_next_years_hazards() -> None:
    """`temporal_log_hr` equals the hazard the temporal covariates add in the landmark year, wherever
    that year does not start a new rising or unstable phase (those are drawn after the landmark)."""
    rng = np.random.default_rng(8)
    s = initial_population(3000, rng, DEFAULT)
    s.birth_day[:] = day_of(1950)
    s.enroll_day[:] = day_of(2000)
    s.started[:] = True
    s.rise_left[:1000], s.rise_slope[:1000] = 3, 4.0
    s.unstable_left[1000:1500] = 1
    s.statin[1500:2500], s.miss_y1[1500:2000] = 1, 2
    log_hr, active = history_effects(s, DEFAULT)
    before = s.copy()
    y = advance(s, 2010, np.random.default_rng(9), DEFAULT)
    plain = replace(y.cov)
    plain.sbp_rise = np.zeros(s.n)
    plain.statin_gap = plain.unstable = np.zeros(s.n, bool)
    plain.bp_variability = plain.burden = np.zeros(s.n)
    h, h0 = hazards(y.cov, DEFAULT), hazards(plain, DEFAULT)
    same = (y.cov.sbp_rise == np.where(before.rise_left > 0, before.rise_slope, 0.0)) & ~y.unstable_first
    assert same.mean() > 0.9 and active["ascvd"][same].sum() >= 1400
    for k in ("ascvd", "hf", "death_other"):
        np.testing.assert_allclose(np.log(h[k] / h0[k])[same], log_hr[k][same], atol=1e-9)
    for k in ("t2d", "ckd"):
        assert not active[k].any() and not log_hr[k].any()
    assert active["ascvd"][:1000].all() and active["hf"][:1000].all() and not active["hf"][1000:].any()
    assert active["death_other"][1000:1500].all() and active["ascvd"][1500:2000].all()


def test_emergency_clusters_in_records_mark_higher_true_risk(chunk: Chunk) -> None:
    enc = chunk.tables["enc"]
    ed = (enc["kind"] == C.EMERGENCY) & (enc["day"] >= day_of(2008, 7)) & (enc["day"] < day_of(2010))
    counts = np.bincount(enc["pat"][ed], minlength=len(chunk.ids))
    t = _truth(chunk, "ascvd", 5)
    pat = t["pat"]
    cluster, none = counts[pat] >= 2, counts[pat] == 0
    assert cluster.sum() >= 5
    assert t["risk"][cluster].mean() > 1.5 * t["risk"][none].mean()


def test_family_history_is_coded_for_most_who_have_it_and_never_for_others(chunk: Chunk) -> None:
    s, cond = chunk.state, chunk.tables["cond"]
    coded = np.unique(cond["pat"][cond["kind"] == C.FAMILY_HX])
    seen = np.unique(chunk.tables["enc"]["pat"])  # people with a registration visit in the records
    assert s.family_history[coded].all()  # never for someone without one
    carriers = np.intersect1d(np.flatnonzero(s.family_history), seen)
    share = len(np.intersect1d(coded, carriers)) / len(carriers)
    assert abs(share - DEFAULT.care.family_history_recorded) < 0.1
    assert abs(s.family_history.mean() - DEFAULT.population.p_family_history) < 0.04


def test_readme_documents_every_hazard_parameter() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Synthetic data: the hazard model", 1)[1].split("\n## ", 1)[0]
    blocks = (DEFAULT.ascvd, DEFAULT.hf, DEFAULT.t2d, DEFAULT.ckd, DEFAULT.death, DEFAULT.latent)
    missing = [f"{type(b).__name__}.{f.name}" for b in blocks for f in fields(b) if f.name not in section]
    assert not missing
