"""Which reader takes which input: decided by folder layout, file name and, failing that, first bytes."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ehr_risk.ingest.run import Ingestor

FHIR_JSON, FHIR_NDJSON, CSV_FILE, SYNTHEA_CSV = "fhir-json", "fhir-ndjson", "csv", "synthea-csv"
_SNIFF_BYTES = 1 << 14  # a longer first NDJSON line reads as JSON; the JSON reader then falls back


def _stem(path: Path) -> str:
    name = path.name.lower()
    return name[:-3] if name.endswith(".gz") else name


def _sniff(path: Path) -> str | None:
    """Tell NDJSON from a JSON document by its first two non-blank lines (within the first 16 KiB)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:  # bounded read: a minified bundle is one huge line
            head = fh.read(_SNIFF_BYTES)
    except (OSError, EOFError):
        return FHIR_JSON  # unreadable: the JSON reader reports it with its reason
    head = head.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
    lines = [ln.strip() for ln in head.splitlines()[:50] if ln.strip()][:2]
    if not lines or not lines[0].startswith(b"{"):
        return FHIR_JSON  # a .json that is no JSON object: the reader names it as a failed file
    if len(lines) > 1 and lines[0].endswith(b"}") and lines[1].startswith(b"{"):
        return FHIR_NDJSON
    return FHIR_JSON


def classify(path: Path) -> str | None:
    stem = _stem(path)
    if stem.endswith(".ndjson") or stem.endswith(".jsonl"):
        return FHIR_NDJSON
    if stem.endswith(".json"):
        return _sniff(path)
    if stem.endswith(".csv"):
        return CSV_FILE
    return None


def detect(path: Path) -> list[tuple[str, Path]]:
    from ehr_risk.ingest import csv as csv_reader

    if path.is_file():
        kind = classify(path)
        return [(kind or FHIR_JSON, path)]  # an explicitly named file is read; bad content is reported
    if csv_reader.is_synthea_dir(path):
        return [(SYNTHEA_CSV, path)]
    found: list[tuple[str, Path]] = []
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            found.extend(detect(child))
        else:
            kind = classify(child)
            if kind is not None:
                found.append((kind, child))
    return found


def read(kind: str, path: Path, ing: Ingestor) -> None:
    if kind in (FHIR_JSON, FHIR_NDJSON):
        from ehr_risk.ingest import fhir

        (fhir.ingest_ndjson if kind == FHIR_NDJSON else fhir.ingest_json)(path, ing)
    elif kind == SYNTHEA_CSV:
        from ehr_risk.ingest import csv as csv_reader

        csv_reader.ingest_synthea_dir(path, ing)
    elif kind == CSV_FILE:
        from ehr_risk.ingest import csv as csv_reader

        csv_reader.ingest_csv_file(path, ing)
    else:
        raise ValueError(f"unknown input kind {kind}")
