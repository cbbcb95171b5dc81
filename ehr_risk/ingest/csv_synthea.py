"""Synthea CSV export folder → events, with the same codes and field conventions as the FHIR reader.

Tables read (`<table>.csv` or `.csv.gz`, layouts described by `data_schemas/synthea_csv_<table>.json`):
patients, encounters, conditions, observations, medications, procedures, immunizations, allergies. Other
tables of the export (claims, careplans, payers, …) are counted as skipped by type. Each CSV row is one
source record with the FHIR resource type Synthea's own FHIR exporter gives it, so both sources of one
Synthea run give the same events:

| table         | resource type      | events (time; end_time)                                          |
|---------------|--------------------|------------------------------------------------------------------|
| patients      | Patient            | MEDS_BIRTH (BIRTHDATE), MEDS_DEATH (DEATHDATE); static GENDER/,  |
|               |                    | RACE/, ETHNICITY/                                                |
| encounters    | Encounter          | ENCOUNTER/<class> and SNOMED/<CODE> (START; STOP)                |
| conditions    | Condition          | SNOMED/<CODE>, or SYSTEM's vocabulary (START; STOP)              |
| observations  | Observation        | LOINC/<CODE> (DATE): numeric value in the canonical unit, or text |
| medications   | MedicationRequest  | RxNorm/<CODE> (START; STOP), recorded_time = START (authoredOn)  |
| procedures    | Procedure          | SNOMED/<CODE> (START; STOP)                                      |
| immunizations | Immunization       | CVX/<CODE> (DATE)                                                |
| allergies     | AllergyIntolerance | SNOMED/ or RxNorm/<CODE> by SYSTEM (START; STOP)                 |

Differences from FHIR that the CSV cannot avoid (tested): condition, allergy and death dates are dates,
not instants; no recorded/issued times; survey answers other than those in `SYNTHEA_ANSWERS` stay as
their display text, where FHIR has the answer code; DiagnosticReports are not in the CSV export. Synthea's
QALY/DALY/QOLS rows are summary metrics (FHIR has them as Patient extensions): skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ehr_risk.ingest.csv_emit import emit
from ehr_risk.ingest.csv_read import BadRows, UnreadableFile, count_rows, read_header
from ehr_risk.ingest.csv_schema import load_input_schema
from ehr_risk.ingest.csv_synthea_obs import BLOCK_TAKERS, CONVERTERS
from ehr_risk.ingest.csv_synthea_tables import SyntheaContext
from ehr_risk.ingest.csv_table import SchemaFile

if TYPE_CHECKING:
    from ehr_risk.ingest.run import Ingestor

# Conditions come before observations: their descriptions code the causes of death (LOINC/69453-9).
TABLES = (
    "patients",
    "encounters",
    "conditions",
    "observations",
    "medications",
    "procedures",
    "immunizations",
    "allergies",
)
# Export tables that hold no clinical facts for the event table (or none the FHIR reader keeps).
OTHER_TABLES = {
    "careplans": "CarePlan",
    "claims": "Claim",
    "claims_transactions": "ClaimTransaction",
    "devices": "Device",
    "imaging_studies": "ImagingStudy",
    "supplies": "SupplyDelivery",
    "payer_transitions": "PayerTransition",
    "payers": "Payer",
    "organizations": "Organization",
    "providers": "Practitioner",
}


def table_files(path: Path) -> dict[str, Path]:
    """Table name → file in a folder (`observations.csv` or `observations.csv.gz`)."""
    found: dict[str, Path] = {}
    for child in sorted(path.iterdir()):
        name = child.name.lower()
        stem = name[:-3] if name.endswith(".gz") else name
        if child.is_file() and stem.endswith(".csv"):
            found.setdefault(stem[:-4], child)
    return found


def is_synthea_dir(path: Path) -> bool:
    names = table_files(path)
    return "patients" in names and ("observations" in names or "conditions" in names or "encounters" in names)


def ingest_synthea_dir(path: Path, ing: Ingestor) -> None:
    files = table_files(path)
    # Check every header first: a missing required column stops the run before anything is read.
    opened: dict[str, SchemaFile] = {}
    for table in TABLES:
        if table in files:
            try:
                opened[table] = SchemaFile(ing, files[table], load_input_schema(f"synthea_csv_{table}"))
            except UnreadableFile as exc:
                ing.file_failed(str(files[table]), exc.reason)
    ctx = SyntheaContext(ing)
    for source in opened.values():
        _convert(ctx, source)
    for table, file in files.items():
        try:
            if table in OTHER_TABLES:
                _skip_rows(ing, file, OTHER_TABLES[table], f"Synthea {table} table not converted")
            elif table not in TABLES:
                _skip_rows(ing, file, table, "CSV file of an unknown Synthea table")
        except UnreadableFile as exc:
            ing.file_failed(str(file), exc.reason)


def _convert(ctx: SyntheaContext, source: SchemaFile) -> None:
    """Convert one table; a file that turns out unreadable midway keeps what was read and is counted."""
    table = source.schema.name.removeprefix("synthea_csv_")
    convert = CONVERTERS[table]
    take = BLOCK_TAKERS[table](ctx, source) if table in BLOCK_TAKERS else None
    try:
        for batch in source.batches(take):
            events, n = convert(ctx, source, batch)
            emit(ctx.ing, events, source.schema.resource_type, n)
    except UnreadableFile as exc:
        source.file.finish(exact=False)
        ctx.ing.file_failed(str(source.file.path), exc.reason)


def ingest_synthea_file(path: Path, table: str, ing: Ingestor) -> None:
    """One Synthea table file given on its own (e.g. `observations.csv`)."""
    _convert(SyntheaContext(ing), SchemaFile(ing, path, load_input_schema(f"synthea_csv_{table}")))


def synthea_table_of(path: Path, header: list[str]) -> str | None:
    """The Synthea table a lone file holds, by its name and header (None when it is not one)."""
    name = path.name.lower().removesuffix(".gz").removesuffix(".csv")
    if name not in TABLES:
        return None
    try:
        load_input_schema(f"synthea_csv_{name}").resolve(header, path)
    except Exception:
        return None
    return name


def _skip_rows(ing: Ingestor, path: Path, resource_type: str, reason: str) -> None:
    """Count the rows of a table that is not converted (malformed rows included): skipped by type."""
    header = read_header(path)
    bad = BadRows()
    n = count_rows(path, header, bad) + len(bad.texts)
    if n:
        ing.summary.read[resource_type] += n
        ing.summary.skipped[resource_type] += n
        ing.summary.skipped_reasons[reason] += n
