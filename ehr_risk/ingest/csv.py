"""CSV extracts → events: Synthea CSV export folders, long tables, mapped cohort tables.

(Being written: the CSV ingestion issue.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ehr_risk.errors import InputDataError

if TYPE_CHECKING:
    from ehr_risk.ingest.run import Ingestor


def is_synthea_dir(path: Path) -> bool:
    names = {p.name.lower().removesuffix(".gz") for p in path.iterdir()}
    return "patients.csv" in names and ("observations.csv" in names or "conditions.csv" in names)


def ingest_synthea_dir(path: Path, ing: Ingestor) -> None:
    raise InputDataError(f"{path}: Synthea CSV ingestion is not available yet")


def ingest_csv_file(path: Path, ing: Ingestor) -> None:
    raise InputDataError(f"{path}: CSV ingestion is not available yet")
