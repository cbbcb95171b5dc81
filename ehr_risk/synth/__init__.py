"""Synthetic patients with known ground-truth risk (`ehr-risk synth`).

params.py       every parameter of the simulation and the hazard model, in one place
codes.py        the SNOMED CT / LOINC / RxNorm / ICD-10-CM / CDC codes the records use
state.py        the population as arrays, and its initial draw
hazards.py      the outcome hazard model (annual hazards from one person-year's state)
life.py         one calendar year for everyone: risk factors, hazards, outcome events
care.py         visits, measurements, diagnoses and treatment decisions
record_year.py  one year's record rows;  records.py  the columnar record tables
truth.py        true cumulative incidence per outcome and horizon at landmark dates
oracle.py       realised outcomes and the oracle AUROC from the truth table
generate.py     the chunked, streaming driver;  output.py  writer selection and the truth file
fhir_writer.py  FHIR R4 Bulk NDJSON / transaction Bundles;  csv_writer.py  Synthea-style CSV
fhir_lines.py   the NDJSON lines of a chunk, assembled column-wise with polars (the fast path)
"""

from ehr_risk.synth.generate import SynthOptions, generate

__all__ = ["SynthOptions", "generate"]
