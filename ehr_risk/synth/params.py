"""Every parameter of the synthetic population and of its hazard model, in one place.

Hazards are annual rates; a log-hazard is `log(base) + Σ β·x` with the covariates centred at the
reference profile noted next to each block. Risk-factor means are functions of age (years) and sex.
The README section "Synthetic data: the hazard model" writes the same model as equations in these names (a
test keeps it complete); the numbers live only here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AscvdParams:
    """First or recurrent hard ASCVD (MI, stroke, coronary or stroke death): PCE-like log-hazard.

    Reference: man aged 55, TC 200, HDL 50, untreated SBP 120 mm Hg, non-smoker, no diabetes.
    Coefficients of ln TC, ln HDL and smoking fade with age as the PCE's ln-age interactions do.
    """

    base: float = 0.0022  # annual hazard of the reference man (10-year risk ≈ 2.2 %)
    age_male: float = 0.078  # per year of age (hazard doubles every ~9 years)
    age_female: float = 0.092
    female: float = -0.80  # women at 55: HR 0.45
    black: float = 0.15
    ln_tc: float = 1.15  # at age 55; minus ln_tc_age per year above 55, floored at ln_tc_min
    ln_tc_age: float = 0.040
    ln_tc_min: float = 0.30
    ln_hdl: float = -0.90  # at age 55; plus ln_hdl_age per year, capped at ln_hdl_max
    ln_hdl_age: float = 0.025
    ln_hdl_max: float = -0.30
    ln_sbp: float = 1.85  # per ln(SBP/120), SBP = true current systolic pressure
    bp_treated: float = 0.15  # treated hypertension at the same SBP (PCE's treated/untreated terms)
    smoker: float = 0.65  # current smoker at 55; minus smoker_age per year, floored at smoker_min
    smoker_age: float = 0.025
    smoker_min: float = 0.15
    former_smoker: float = 0.15
    diabetes: float = 0.66
    prior_ascvd: float = 0.90  # recurrent events
    # Risk the PCE leaves out, at published magnitudes; a model that reads the whole record can use it:
    ckd: float = 0.50  # CKD stage ≥ 3: HR 1.65 (CKD Prognosis Consortium, Matsushita et al. Lancet 2010)
    bmi: float = 0.02  # per kg/m2 above 28, beyond its effect through BP, lipids and diabetes
    af: float = 0.65  # atrial fibrillation: stroke RR ≈ 5 (Wolf et al. Stroke 1991), hard-ASCVD HR ≈ 1.9
    hba1c: float = 0.40  # per % of latent HbA1c above 5.6 (ARIC: Selvin et al. NEJM 2010, HR ≈ 1.3-1.8)
    # premature ASCVD in a parent or sibling, a guideline "risk-enhancing factor" because the PCE omit it
    # (Grundy et al. Circulation 2019); parental premature CVD: HR 2.0 in men, 1.7 in women after the
    # classic factors (Lloyd-Jones et al. JAMA 2004)
    family_history: float = 0.60
    # Effects that only a history shows (no single last value carries them):
    sbp_rise: float = 0.15  # per mm Hg/year of an ongoing rising-pressure phase (trajectory slope)
    statin_gap: float = 0.60  # ≥ 2 of the last 8 quarters without a statin refill while prescribed
    unstable: float = 1.10  # an unstable phase (HR 3), seen only as a recent cluster of ED visits
    # per SD of the person's visit-to-visit SBP variability, seen only as the spread of repeated readings
    # (Rothwell et al. Lancet 2010; QRISK3 uses the SD of SBP): HR 1.5 per SD
    bp_variability: float = 0.40
    # per unit of log visit-rate multiplier (SD ≈ 0.6): comorbidity burden the records do not code, seen
    # only as how often the person comes to care (HR ≈ 1.45 per SD; utilisation predicts CVD events)
    burden: float = 0.60
    # Event type and case fatality:
    p_stroke: float = 0.38
    p_stroke_af: float = 0.65
    fatal_mi: float = 0.20
    fatal_stroke: float = 0.15
    fatal_prior_mult: float = 1.4


@dataclass(frozen=True)
class HfParams:
    """Heart-failure onset. Reference: man aged 65, SBP 130, BMI 28, no MI/AF/diabetes."""

    base: float = 0.0030
    age: float = 0.080
    female: float = -0.30
    prior_mi: float = 0.95
    af: float = 1.00
    diabetes: float = 0.60
    sbp: float = 0.018  # per mm Hg
    bmi: float = 0.045  # per kg/m2
    smoker: float = 0.35
    ckd: float = 0.45
    sbp_rise: float = 0.10


@dataclass(frozen=True)
class T2dParams:
    """Type 2 diabetes onset. Reference: age 50, untreated HbA1c 5.6 %, BMI 28."""

    base: float = 0.0050
    hba1c: float = 1.9  # per % of the latent (untreated) HbA1c
    bmi: float = 0.05
    age: float = 0.012
    black_hispanic: float = 0.30
    statin: float = 0.15


@dataclass(frozen=True)
class CkdParams:
    """CKD stage ≥ 3 onset (eGFR < 60). Reference: age 60, latent eGFR 75, SBP 130."""

    base: float = 0.0060
    age: float = 0.030
    egfr: float = -0.085  # per mL/min/1.73m2 above 75
    diabetes: float = 0.65
    sbp: float = 0.015
    hypertension: float = 0.35
    hf: float = 0.40


@dataclass(frozen=True)
class DeathParams:
    """Death from causes other than ASCVD (the competing risk). Reference: woman aged 60, never smoker."""

    base: float = 0.0045
    age: float = 0.090
    male: float = 0.35
    smoker: float = 0.75
    former_smoker: float = 0.25
    diabetes: float = 0.40
    ckd: float = 0.45
    hf: float = 1.10
    af: float = 0.30
    bmi_sq: float = 0.0025  # per (BMI − 25)²
    unstable: float = 0.30
    burden: float = 0.30  # per unit of log visit-rate multiplier (see AscvdParams.burden)


@dataclass(frozen=True)
class LatentParams:
    """Onset of the hidden processes behind the history-only effects, and of AF."""

    rise_rate: float = 0.015  # per year, ages 30–80: start of a rising-pressure phase
    rise_slope: tuple[float, float] = (2.0, 5.5)  # mm Hg per year, uniform
    rise_years: tuple[int, int] = (4, 9)
    unstable_base: float = 0.060  # per year at the ASCVD reference profile, × (ASCVD hazard ratio)^0.6
    unstable_power: float = 0.6
    unstable_ed_visits: float = 2.5  # Poisson mean of emergency visits during an unstable year
    af_base: float = 0.0050  # reference: woman aged 70
    af_age: float = 0.085
    af_male: float = 0.45
    af_bmi: float = 0.04
    af_hf: float = 0.60


@dataclass(frozen=True)
class RiskFactorParams:
    """Risk-factor means by age/sex, person-level spread and year-to-year AR(1) noise."""

    ar: float = 0.75  # year-to-year autocorrelation of the within-person deviations
    bmi_at_20: float = 23.5
    bmi_slope: float = 0.16  # kg/m2 per year to age 55, flat to 70, then −0.10
    bmi_sd: float = 4.8
    bmi_noise: float = 0.8
    sbp_at_20: float = 111.0
    sbp_slope: float = 0.40  # mm Hg per year of age after 20, plus sbp_slope_late after 50
    sbp_slope_late: float = 0.20
    sbp_male_young: float = 5.0  # men before 50
    sbp_black: float = 4.0
    sbp_bmi: float = 0.55
    sbp_sd: float = 10.0
    sbp_noise: float = 5.0
    sbp_visit_sd: float = 7.0  # visit-to-visit SD of a measured SBP around the year's value, median person
    sbp_visit_spread: float = 0.45  # × exp(spread · u): 10th-90th percentile person SD ≈ 3.9-12.5 mm Hg
    sbp_per_drug: float = 10.0  # mm Hg per antihypertensive (up to 3)
    tc_at_20: float = 172.0
    tc_slope: float = 1.05  # mg/dL per year to 55
    tc_female_late: float = 12.0  # after 50
    tc_bmi: float = 0.9
    tc_sd: float = 30.0
    tc_noise: float = 10.0
    statin_ldl_cut: float = 0.40  # LDL reduction on full adherence (moderate/high intensity)
    hdl_male: float = 46.0
    hdl_female: float = 58.0
    hdl_bmi: float = -0.6
    hdl_sd: float = 10.0
    hdl_noise: float = 4.0
    # low HDL goes with high triglycerides beyond their shared BMI effect (atherogenic dyslipidaemia): this
    # person-level correlation brings the population's HDL–log TG correlation to about −0.35 (−0.3 to −0.5
    # in population studies, e.g. NHANES), from −0.09 through BMI alone
    hdl_tg_corr: float = 0.50
    tg_log_mean: float = 4.65  # ≈ 105 mg/dL
    tg_bmi: float = 0.025
    tg_sd: float = 0.35
    tg_noise: float = 0.18
    hba1c_at_20: float = 5.15
    hba1c_age: float = 0.008
    hba1c_bmi: float = 0.035
    hba1c_sd: float = 0.28
    hba1c_noise: float = 0.12
    # a fasting glucose reading around the HbA1c-implied mean (ADAG: 28.7·A1c − 46.7 mg/dL, minus ~10 for
    # fasting): day-to-day CV of fasting glucose ≈ 10-15 %, plus the glycation gap between people, so
    # glucose correlates with HbA1c at ≈ 0.8 as in NHANES
    glucose_cv: float = 0.18
    t2d_jump: tuple[float, float] = (1.0, 0.8)  # HbA1c rise at onset: constant + exponential mean
    metformin_effect: float = 0.8
    egfr_at_25: float = 116.0
    egfr_decline: float = 0.85  # per year after 25
    egfr_sd: float = 9.0
    egfr_noise: float = 3.5
    egfr_floor_pre_ckd: float = 61.0
    ckd_drop: tuple[float, float] = (44.0, 59.0)  # eGFR right after stage-3 onset, uniform
    ckd_decline: float = 2.0
    height_male: tuple[float, float] = (176.0, 7.0)
    height_female: tuple[float, float] = (162.5, 6.5)


@dataclass(frozen=True)
class CareParams:
    """Health-care contacts, diagnosis, treatment, refills and record-keeping."""

    visit_rate: float = 0.70  # routine visits per year at 40 with no chronic disease
    visit_age: float = 0.018  # multiplicative per year above 40
    visit_chronic: float = 0.30  # per chronic condition
    visit_intensity_shape: float = 3.0  # gamma shape of the person-level visit multiplier
    max_visits: int = 6
    other_ed_rate: float = 0.05  # ED visits per year unrelated to the unstable process
    htn_detect: float = 0.40  # probability a visit with measured SBP ≥ 140 (or DBP ≥ 90) leads to diagnosis
    htn_treat: float = 0.75
    intensify: float = 0.45  # per year, a further drug when a treated SBP stays ≥ 140
    lipid_panel: float = 0.22  # per routine visit; × 2.5 when hypertension/diabetes/statin/age ≥ 50
    glucose_test: float = 0.30
    hba1c_test: float = 0.08  # × 8 with diabetes
    renal_test: float = 0.28  # × 2.5 with hypertension/diabetes/CKD
    statin_if_ldl160: float = 0.35
    statin_if_dm40: float = 0.45
    statin_after_ascvd: float = 0.85
    statin_stop: float = 0.06  # per year
    statin_from_year: int = 1990  # no statin starts before (simvastatin/atorvastatin era)
    miss_quarter_shape: tuple[float, float] = (1.2, 9.0)  # beta(a, b): person's chance of missing a refill
    smoking_recorded: float = 0.30
    family_history_recorded: float = 0.70  # of those with one, coded on the problem list at registration
    bp_recorded: float = 0.93
    weight_recorded: float = 0.85
    height_recorded: float = 0.10
    si_units_fraction: float = 0.25  # patients whose lab reports in SI units
    icd10_fraction: float = 0.30  # patients whose problem list is coded in ICD-10-CM
    record_lag_days: tuple[int, int] = (0, 3)  # lab results issued this many days after the draw


@dataclass(frozen=True)
class PopulationParams:
    birth_years: tuple[int, int] = (1930, 2001)  # uniform [start, end)
    records_start_year: int = 1995
    enroll_spread_years: float = 6.0  # records start at max(1995 + U(0, spread), 18th birthday)
    p_male: float = 0.49
    race_p: tuple[float, float, float, float] = (0.70, 0.13, 0.06, 0.11)  # white, black, asian, other
    p_hispanic: float = 0.16
    p_family_history: float = 0.18  # premature ASCVD in a first-degree relative (NHANES: ~12-20 %)
    smoke_start_1930: float = 0.50  # ever-smoking by birth cohort, falling linearly to 2000
    smoke_start_2000: float = 0.18
    smoke_female: float = 0.80
    quit_rate: float = 0.025  # per year; + quit_age per year of age over 30
    quit_age: float = 0.0005
    quit_after_event: float = 0.45


@dataclass(frozen=True)
class SynthParams:
    population: PopulationParams = field(default_factory=PopulationParams)
    risk: RiskFactorParams = field(default_factory=RiskFactorParams)
    care: CareParams = field(default_factory=CareParams)
    ascvd: AscvdParams = field(default_factory=AscvdParams)
    hf: HfParams = field(default_factory=HfParams)
    t2d: T2dParams = field(default_factory=T2dParams)
    ckd: CkdParams = field(default_factory=CkdParams)
    death: DeathParams = field(default_factory=DeathParams)
    latent: LatentParams = field(default_factory=LatentParams)


DEFAULT = SynthParams()
OUTCOMES = ("ascvd", "hf", "t2d", "ckd", "death_other")
