"""Synthetic patients with known ground-truth risk (`ehr-risk synth`).

params.py      every parameter of the simulation and the hazard model, in one place
codes.py       the SNOMED / LOINC / RxNorm / ICD-10-CM codes the records use
hazards.py     the outcome hazard model (annual hazards from a state)
life.py        the vectorised life-course simulation (one calendar year per step)
records.py     the simulation's record tables (visits, labs, diagnoses, medications)
fhir_writer.py FHIR R4 Bulk NDJSON / transaction Bundles;  csv_writer.py  Synthea-style CSV
truth.py       true cumulative incidence per outcome and horizon at landmark dates
generate.py    chunked, streaming driver used by the CLI and the benchmark
"""

from ehr_risk.synth.generate import SynthOptions, generate

__all__ = ["SynthOptions", "generate"]
