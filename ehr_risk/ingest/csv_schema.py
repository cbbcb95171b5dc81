"""Input-CSV schemas (`data_schemas/<name>.json` with `"kind": "input-csv"`): columns, types, aliases.

Each column has a canonical `name`, a `type` (`string`, `float64`, `timestamp[us]`: how the reader parses
it), `required` (must be in the header), `nullable` (false: a row without a value is rejected), and
`aliases` (other header spellings, e.g. older Synthea layouts). Header names match case-insensitively.
The files are also valid `tables.py` schemas (extra keys are ignored there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ehr_risk.errors import InputDataError, SchemaError
from ehr_risk.tables import schema_dir

TYPES = ("string", "float64", "timestamp[us]")


@dataclass(frozen=True)
class InputColumn:
    name: str
    type: str
    required: bool  # the column must be in the header
    nullable: bool  # a row may leave it empty
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class InputSchema:
    name: str
    resource_type: str
    columns: tuple[InputColumn, ...]

    def resolve(self, header: list[str], path: Path) -> dict[str, str]:
        """Canonical column name → header name in this file; InputDataError naming the missing ones."""
        by_lower: dict[str, str] = {}
        for h in header:
            by_lower.setdefault(h.strip().lower(), h)
        found: dict[str, str] = {}
        missing: list[str] = []
        for col in self.columns:
            for candidate in (col.name, *col.aliases):
                if candidate.lower() in by_lower:
                    found[col.name] = by_lower[candidate.lower()]
                    break
            else:
                if col.required:
                    missing.append(col.name)
        if missing:
            raise InputDataError(
                f"{path}: missing required column(s) {', '.join(missing)} for {self.name} "
                f"(header has {len(header)} columns; see data_schemas/{self.name}.json)"
            )
        return found

    def types(self) -> dict[str, str]:
        return {c.name: c.type for c in self.columns}


@cache
def load_input_schema(name: str) -> InputSchema:
    path = schema_dir() / f"{name}.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path}: cannot read input schema {name!r}") from exc
    columns = []
    for c in doc["columns"]:
        if c["type"] not in TYPES:
            raise SchemaError(f"{path}: column {c['name']!r} has type {c['type']!r}, expected one of {TYPES}")
        columns.append(
            InputColumn(
                c["name"],
                c["type"],
                required=bool(c.get("required")),
                nullable=bool(c.get("nullable", True)),
                aliases=tuple(c.get("aliases", ())),
            )
        )
    return InputSchema(doc["name"], doc.get("resource_type", doc["name"]), tuple(columns))
