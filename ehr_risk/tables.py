"""Schema-checked reading and writing of every table that crosses a boundary.

Each table has a JSON schema file in `data_schemas/` (name, version, columns with arrow type and
nullability). Writers cast to the schema and refuse tables that do not fit it; readers check the same.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ehr_risk.errors import SchemaError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "data_schemas"

_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "large_string": pa.large_string(),
    "date32": pa.date32(),
    "timestamp[us]": pa.timestamp("us"),
}


def parse_type(spec: str) -> pa.DataType:
    """`int64`, `timestamp[us]`, `list<int32>`, `list<list<float32>>` → arrow type."""
    spec = spec.strip()
    if spec in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[spec]
    m = re.fullmatch(r"list<(.+)>", spec)
    if m:
        return pa.list_(parse_type(m.group(1)))
    raise SchemaError(f"unknown column type {spec!r} in a schema file")


@dataclass(frozen=True)
class TableSchema:
    name: str
    version: str
    arrow: pa.Schema
    allow_extra: bool

    @property
    def columns(self) -> list[str]:
        return list(self.arrow.names)


def schema_dir() -> Path:
    override = os.environ.get("EHR_RISK_SCHEMA_DIR")
    return Path(override) if override else SCHEMA_DIR


@cache
def load_schema(name: str) -> TableSchema:
    path = schema_dir() / f"{name}.json"
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SchemaError(f"{path}: no schema file for table {name!r}") from exc
    fields = [
        pa.field(c["name"], parse_type(c["type"]), nullable=bool(c.get("nullable", True)))
        for c in doc["columns"]
    ]
    return TableSchema(
        name=doc["name"],
        version=str(doc["version"]),
        arrow=pa.schema(fields),
        allow_extra=bool(doc.get("allow_extra_columns", False)),
    )


def conform(table: pa.Table, name: str, where: str = "") -> pa.Table:
    """Select, order and cast `table` to schema `name`; raise SchemaError naming what is wrong."""
    schema = load_schema(name)
    where = where or name
    missing = [f.name for f in schema.arrow if f.name not in table.column_names]
    if missing:
        raise SchemaError(f"{where}: missing column(s) {', '.join(missing)} for table {name!r}")
    extra = [c for c in table.column_names if c not in schema.arrow.names]
    if extra and not schema.allow_extra:
        raise SchemaError(f"{where}: unexpected column(s) {', '.join(extra)} for table {name!r}")
    columns = []
    for field in schema.arrow:
        col = table.column(field.name)
        if not field.nullable and col.null_count:
            raise SchemaError(f"{where}: column {field.name!r} has {col.null_count} null value(s)")
        if col.type != field.type:
            try:
                col = col.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(
                    f"{where}: column {field.name!r} is {col.type}, cannot be cast to {field.type}"
                ) from exc
        columns.append(col)
    out_schema = schema.arrow
    if extra:
        columns += [table.column(c) for c in extra]
        out_schema = pa.schema(list(schema.arrow) + [table.schema.field(c) for c in extra])
    return pa.Table.from_arrays(columns, schema=out_schema)


def write_table(table: pa.Table, path: str | Path, name: str, **parquet_kwargs: Any) -> Path:
    """Write `table` as Parquet after conforming it to schema `name`, atomically (tmp + rename)."""
    path = Path(path)
    table = conform(table, name, where=str(path))
    schema = load_schema(name)
    metadata = dict(table.schema.metadata or {})
    metadata[b"ehr_risk.schema"] = f"{schema.name}@{schema.version}".encode()
    table = table.replace_schema_metadata(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    parquet_kwargs.setdefault("compression", "zstd")
    pq.write_table(table, tmp, **parquet_kwargs)
    os.replace(tmp, path)
    return path


def read_table(path: str | Path, name: str, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file or folder of Parquet files and check it against schema `name`."""
    path = Path(path)
    if not path.exists():
        raise SchemaError(f"{path}: table {name!r} not found")
    table = pq.read_table(path) if path.is_file() else _read_dir(path)
    table = conform(table, name, where=str(path))
    return table.select(columns) if columns else table


def _read_dir(path: Path) -> pa.Table:
    files = sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise SchemaError(f"{path}: no parquet files")
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


def empty_table(name: str) -> pa.Table:
    return load_schema(name).arrow.empty_table()
