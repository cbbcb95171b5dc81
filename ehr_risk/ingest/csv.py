"""CSV extracts → events: Synthea CSV export folders, long event tables, mapped cohort tables.

Which reader takes a CSV is decided by layout, never by guessing values:
- a folder with `patients.csv[.gz]` and clinical tables → the Synthea export reader (`csv_synthea.py`);
- a file whose name and header are a Synthea table (`observations.csv` …) → that table alone;
- `--mapping FILE.yaml` → the mapped cohort reader (`csv_mapped.py`) for every CSV input of the run;
- a header with `subject_id`, `time` and `code` (or their aliases) → the long reader (`csv_long.py`);
- anything else: a one-line error naming the file (a layout problem stops the run).
A file whose bytes cannot be read (truncated gzip, not UTF-8) is named in one error line, counted in the
summary (`files_failed`, one reject) and the run goes on, as for FHIR; rows read before the damage stay.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ehr_risk.errors import InputDataError
from ehr_risk.ingest.csv_read import UnreadableFile, read_header
from ehr_risk.ingest.csv_synthea import (
    ingest_synthea_dir,
    ingest_synthea_file,
    is_synthea_dir,
    synthea_table_of,
)

if TYPE_CHECKING:
    from ehr_risk.ingest.run import Ingestor

__all__ = ["ingest_csv_file", "ingest_synthea_dir", "is_synthea_dir"]


def ingest_csv_file(path: Path, ing: Ingestor) -> None:
    try:
        _ingest_csv_file(path, ing)
    except UnreadableFile as exc:  # damaged bytes: named in one line, counted, the run goes on
        ing.file_failed(str(path), exc.reason)


def _ingest_csv_file(path: Path, ing: Ingestor) -> None:
    if ing.options.mapping is not None:
        from ehr_risk.ingest.csv_mapped import ingest_mapped_file

        ingest_mapped_file(path, ing.options.mapping, ing)
        return
    header = read_header(path)
    table = synthea_table_of(path, header)
    if table is not None:
        ingest_synthea_file(path, table, ing)
        return
    from ehr_risk.ingest.csv_long import ingest_long_file, is_long_header

    if is_long_header(header):
        ingest_long_file(path, header, ing)
        return
    raise InputDataError(
        f"{path}: unrecognised CSV layout: expected a long event table (subject_id, time, code, "
        "numeric_value, text_value, unit), a Synthea table, or a cohort table with --mapping FILE.yaml"
    )
