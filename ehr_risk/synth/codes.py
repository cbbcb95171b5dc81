"""The codes the synthetic records use: SNOMED CT, LOINC, RxNorm, ICD-10-CM, CDC race/ethnicity.

Each table is indexed by a small integer the simulation stores; writers look the codes up here.
"""

from __future__ import annotations

from typing import NamedTuple

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
CDC_RACE = "urn:oid:2.16.840.1.113883.6.238"


class Concept(NamedTuple):
    code: str
    display: str


class Diagnosis(NamedTuple):
    snomed: Concept
    icd10: Concept


# Condition kinds (index = value stored by the simulation)
HTN, HLD, T2D, CKD3, AF, MI, STROKE, HF, CHEST_PAIN, PREDIABETES, CKD4, FAMILY_HX = range(12)
CONDITIONS: list[Diagnosis] = [
    Diagnosis(
        Concept("59621000", "Essential hypertension (disorder)"),
        Concept("I10", "Essential (primary) hypertension"),
    ),
    Diagnosis(
        Concept("55822004", "Hyperlipidemia (disorder)"), Concept("E78.5", "Hyperlipidemia, unspecified")
    ),
    Diagnosis(
        Concept("44054006", "Diabetes mellitus type 2 (disorder)"),
        Concept("E11.9", "Type 2 diabetes mellitus without complications"),
    ),
    Diagnosis(
        Concept("433144002", "Chronic kidney disease stage 3 (disorder)"),
        Concept("N18.3", "Chronic kidney disease, stage 3 (moderate)"),
    ),
    Diagnosis(
        Concept("49436004", "Atrial fibrillation (disorder)"),
        Concept("I48.91", "Unspecified atrial fibrillation"),
    ),
    Diagnosis(
        Concept("22298006", "Myocardial infarction (disorder)"),
        Concept("I21.9", "Acute myocardial infarction, unspecified"),
    ),
    Diagnosis(
        Concept("230690007", "Cerebrovascular accident (disorder)"),
        Concept("I63.9", "Cerebral infarction, unspecified"),
    ),
    Diagnosis(
        Concept("84114007", "Heart failure (disorder)"), Concept("I50.9", "Heart failure, unspecified")
    ),
    Diagnosis(Concept("29857009", "Chest pain (finding)"), Concept("R07.9", "Chest pain, unspecified")),
    Diagnosis(Concept("714628002", "Prediabetes (finding)"), Concept("R73.03", "Prediabetes")),
    Diagnosis(
        Concept("431857002", "Chronic kidney disease stage 4 (disorder)"),
        Concept("N18.4", "Chronic kidney disease, stage 4 (severe)"),
    ),
    Diagnosis(
        Concept("266897007", "Family history: Myocardial infarction (situation)"),
        Concept(
            "Z82.49", "Family history of ischemic heart disease and other diseases of the circulatory system"
        ),
    ),
]

# Encounter kinds
CHECKUP, FOLLOWUP, EMERGENCY, INPATIENT, DEATH_CERT = range(5)
ENCOUNTERS: list[tuple[Concept, str, str]] = [  # (type, v3 ActCode class, Synthea ENCOUNTERCLASS)
    (Concept("185349003", "Encounter for check up (procedure)"), "AMB", "wellness"),
    (Concept("185345009", "Encounter for symptom (procedure)"), "AMB", "ambulatory"),
    (Concept("50849002", "Emergency room admission (procedure)"), "EMER", "emergency"),
    (Concept("32485007", "Hospital admission (procedure)"), "IMP", "inpatient"),
    (Concept("308646001", "Death certification (procedure)"), "AMB", "wellness"),
]
ENCOUNTER_MINUTES = [30, 20, 240, 3 * 24 * 60, 15]

# Observation kinds: (LOINC code, display, canonical unit, SI unit or "", factor canonical→SI, decimals)
SBP, DBP, WEIGHT, HEIGHT, BMI, TC, HDL, LDL, TG, GLUCOSE, HBA1C, CREAT, EGFR, SMOKING, CAUSE_OF_DEATH = range(
    15
)


class LabDef(NamedTuple):
    code: str
    display: str
    unit: str
    si_unit: str
    si_factor: float
    decimals: int  # in the conventional unit
    si_decimals: int
    category: str


OBSERVATIONS: list[LabDef] = [
    LabDef("8480-6", "Systolic blood pressure", "mm[Hg]", "", 1.0, 0, 0, "vital-signs"),
    LabDef("8462-4", "Diastolic blood pressure", "mm[Hg]", "", 1.0, 0, 0, "vital-signs"),
    LabDef("29463-7", "Body weight", "kg", "", 1.0, 1, 1, "vital-signs"),
    LabDef("8302-2", "Body height", "cm", "", 1.0, 1, 1, "vital-signs"),
    LabDef("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", "", 1.0, 1, 1, "vital-signs"),
    LabDef(
        "2093-3",
        "Cholesterol [Mass/volume] in Serum or Plasma",
        "mg/dL",
        "mmol/L",
        1 / 38.67,
        0,
        2,
        "laboratory",
    ),
    LabDef(
        "2085-9",
        "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
        "mg/dL",
        "mmol/L",
        1 / 38.67,
        0,
        2,
        "laboratory",
    ),
    LabDef(
        "18262-6",
        "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay",
        "mg/dL",
        "mmol/L",
        1 / 38.67,
        0,
        2,
        "laboratory",
    ),
    LabDef(
        "2571-8",
        "Triglyceride [Mass/volume] in Serum or Plasma",
        "mg/dL",
        "mmol/L",
        1 / 88.57,
        0,
        2,
        "laboratory",
    ),
    LabDef(
        "2345-7",
        "Glucose [Mass/volume] in Serum or Plasma",
        "mg/dL",
        "mmol/L",
        1 / 18.016,
        0,
        1,
        "laboratory",
    ),
    LabDef("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", "mmol/mol", 0.0, 1, 0, "laboratory"),
    LabDef(
        "2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "umol/L", 88.42, 2, 0, "laboratory"
    ),
    LabDef(
        "33914-3",
        "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum or Plasma by "
        "Creatinine-based formula (MDRD)",
        "mL/min/{1.73_m2}",
        "",
        1.0,
        0,
        0,
        "laboratory",
    ),
    LabDef("72166-2", "Tobacco smoking status", "", "", 1.0, 0, 0, "social-history"),
    LabDef("69453-9", "Cause of Death [US Standard Certificate of Death]", "", "", 1.0, 0, 0, "exam"),
]
BP_PANEL = Concept("85354-9", "Blood pressure panel with all children optional")
UNIT_DISPLAY = {"mm[Hg]": "mm[Hg]", "mmol/mol": "mmol/mol", "umol/L": "µmol/L"}


def to_si(kind: int, value: float) -> float:
    """Conventional unit → the SI unit of OBSERVATIONS[kind] (HbA1c: NGSP % → IFCC mmol/mol)."""
    if kind == HBA1C:
        return (value - 2.15) * 10.929
    return value * OBSERVATIONS[kind].si_factor


SMOKING_STATUS = [
    Concept("266919005", "Never smoked tobacco (finding)"),
    Concept("449868002", "Smokes tobacco daily (finding)"),
    Concept("8517006", "Ex-smoker (finding)"),
]

# Medications: (RxNorm, display, supply days per request)
LISINOPRIL, AMLODIPINE, HCTZ, SIMVASTATIN, ATORVASTATIN, METFORMIN, CLOPIDOGREL, WARFARIN = range(8)
MEDICATIONS: list[tuple[Concept, int]] = [
    (Concept("314076", "lisinopril 10 MG Oral Tablet"), 365),
    (Concept("197361", "amlodipine 5 MG Oral Tablet"), 365),
    (Concept("310798", "Hydrochlorothiazide 25 MG Oral Tablet"), 365),
    (Concept("312961", "Simvastatin 20 MG Oral Tablet"), 90),
    (Concept("259255", "Atorvastatin 80 MG Oral Tablet"), 90),
    (Concept("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"), 365),
    (Concept("309362", "Clopidogrel 75 MG Oral Tablet"), 365),
    (Concept("855332", "Warfarin Sodium 5 MG Oral Tablet"), 365),
]
MED_REASON = {
    LISINOPRIL: HTN,
    AMLODIPINE: HTN,
    HCTZ: HTN,
    SIMVASTATIN: HLD,
    ATORVASTATIN: HLD,
    METFORMIN: T2D,
    CLOPIDOGREL: MI,
    WARFARIN: AF,
}

# Procedures
PCI, CABG, ECG = range(3)
PROCEDURES = [
    Concept("415070008", "Percutaneous coronary intervention (procedure)"),
    Concept("232717009", "Coronary artery bypass grafting (procedure)"),
    Concept("29303009", "Electrocardiographic procedure (procedure)"),
]

# Causes of death other than ASCVD; ASCVD deaths use MI (22298006) or stroke (230690007).
DEATH_MI, DEATH_STROKE, DEATH_CANCER, DEATH_COPD, DEATH_DEMENTIA, DEATH_PNEUMONIA, DEATH_SEPSIS, DEATH_HF = (
    range(8)
)
DEATH_CAUSES = [
    Concept("22298006", "Myocardial infarction (disorder)"),
    Concept("230690007", "Cerebrovascular accident (disorder)"),
    Concept("363346000", "Malignant neoplastic disease (disorder)"),
    Concept("13645005", "Chronic obstructive lung disease (disorder)"),
    Concept("26929004", "Alzheimer's disease (disorder)"),
    Concept("233604007", "Pneumonia (disorder)"),
    Concept("91302008", "Sepsis (disorder)"),
    Concept("84114007", "Heart failure (disorder)"),
]
ASCVD_DEATHS = (DEATH_MI, DEATH_STROKE)

RACES = [  # (CDC code, display, Synthea RACE value)
    ("2106-3", "White", "white"),
    ("2054-5", "Black or African American", "black"),
    ("2028-9", "Asian", "asian"),
    ("2131-1", "Other Race", "other"),
]
ETHNICITIES = [
    ("2186-5", "Not Hispanic or Latino", "nonhispanic"),
    ("2135-2", "Hispanic or Latino", "hispanic"),
]
