"""Helpers for the FHIR ingestion tests: run an ingest, read its events back as a text table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from ehr_risk.ingest.run import IngestOptions, ingest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "fhir"
TEST_KEY = "0123456789abcdef-test-key-not-secret"
GOLDEN_COLUMNS = (
    "patient",
    "time",
    "code",
    "numeric_value",
    "text_value",
    "unit",
    "end_time",
    "recorded_time",
    "resource_type",
)


def run_ingest(inputs: list[Path], out: Path, **options: Any) -> dict[str, Any]:
    """Ingest with default options (overridable) and return summary.json as a dict."""
    ingest(inputs, out, IngestOptions(**options))
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def read_events(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "events" / "*.parquet")


def _fmt_time(value: Any) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _fmt_num(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6g}"


def events_as_rows(out: Path) -> list[tuple[str, ...]]:
    """Events as golden-table rows: source patient id in place of subject_id, sorted."""
    events = read_events(out)
    id_map = pl.read_parquet(out / "private" / "subject_ids.parquet")
    names = dict(zip(id_map["subject_id"].to_list(), id_map["source_id"].to_list(), strict=True))
    rows = []
    for r in events.iter_rows(named=True):
        rows.append(
            (
                names[r["subject_id"]],
                _fmt_time(r["time"]),
                r["code"],
                _fmt_num(r["numeric_value"]),
                r["text_value"] or "",
                r["unit"] or "",
                _fmt_time(r["end_time"]),
                _fmt_time(r["recorded_time"]),
                r["resource_type"],
            )
        )
    return sorted(rows)


def read_golden(path: Path) -> list[tuple[str, ...]]:
    """A golden text table: `|`-separated cells, a `-+-` rule under the header, `#` comments."""
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    header = tuple(c.strip() for c in lines[0].split("|"))
    assert header == GOLDEN_COLUMNS, f"{path}: unexpected header {header}"
    rows = []
    for ln in lines[2:]:
        cells = tuple(c.strip() for c in ln.split("|"))
        assert len(cells) == len(header), f"{path}: row has {len(cells)} cells: {ln!r}"
        rows.append(cells)
    return sorted(rows)


def rejects(out: Path) -> pl.DataFrame:
    folder = out / "rejects"
    if not folder.exists():
        return pl.DataFrame(schema={"file": pl.String, "position": pl.String, "reason": pl.String})
    return pl.read_parquet(folder / "*.parquet")
