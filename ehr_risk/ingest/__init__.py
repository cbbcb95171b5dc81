"""Raw records (FHIR R4, CSV) → the canonical MEDS event table."""
