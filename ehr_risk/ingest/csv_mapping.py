"""The mapping file of a wide cohort CSV (`--mapping FILE.yaml`): one row per person, one column per variable.

Validated by `CohortMapping` (frozen pydantic, `extra="forbid"`); its JSON schema is exported to
`data_schemas/cohort_mapping.schema.json` (`write_json_schema`, kept in sync by a test). Example:
`pipelines/mappings/framingham_tenyearchd.yaml`.

Semantics:
- `id_column` holds the person id (any string; `id_prefix` keeps ids of different studies apart).
- `time` is when the row's values were measured unless a column says otherwise: a date column of the file
  (`column`), a fixed date (`date`, e.g. the baseline exam of a file without dates), or `static: true`
  (no time: sex, race). `offset_days`/`offset_years` and `offset_column` (+ `offset_unit`) shift it, e.g.
  "age at baseline" columns or "days since enrolment".
- `birth`: MEDS_BIRTH = reference time − age (`age_column`) in calendar years (a fraction of a year as
  365.25-day years), so the age at the reference time is exactly the given age; an age truncated to whole
  years puts the birth up to a year late. Negative or > `max_age` ages are rejected.
- `offset_years` are calendar years too (2000-01-01 + 10 years = 2010-01-01).
- columns: `numeric` (value × `scale`, in `unit`, converted to the code's canonical unit), `boolean`
  (`true_values` → an event; `false_values` → nothing, or with `when_false: negative` an event with
  numeric_value 0 and the true event gets 1: use that only for codes whose readers look at the value,
  never for diagnosis or outcome codes), `categorical` (`values`: source value → code; or, when `code` is
  set, → the answer stored as text_value, as FHIR valueCodeableConcept; a null target means no event).
  A value outside `values`/`true_values`/`false_values`, a non-number or an impossible number rejects the row.
- `row_events`: events every row gets (e.g. the baseline exam, the end of follow-up of a study).
- Every file column must be mapped, be the id column or be listed in `ignore` (`strict_columns`).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ehr_risk.errors import ConfigError
from ehr_risk.ingest import codes

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def _check_code(code: str | None) -> str | None:
    if code is not None and not codes.is_valid_code(code):
        raise ValueError(f"{code!r} is not VOCAB/code with a known vocabulary (or MEDS_BIRTH/MEDS_DEATH)")
    return code


class TimeSpec(BaseModel):
    """When a value refers to: exactly one of `column`, `date`, `static`; optional offsets."""

    model_config = _FROZEN
    column: str | None = Field(None, description="a date/datetime column of the file")
    date: dt.date | None = Field(None, description="a fixed date (e.g. the study baseline)")
    static: bool = Field(False, description="no time (sex, race, ethnicity)")
    offset_days: float = 0.0
    offset_years: float = Field(0.0, description="years of 365.25 days")
    offset_column: str | None = Field(None, description="a numeric column added to the time")
    offset_unit: Literal["days", "years"] = "years"

    @model_validator(mode="after")
    def _one_anchor(self) -> TimeSpec:
        anchors = sum([self.column is not None, self.date is not None, self.static])
        if anchors != 1:
            raise ValueError("time needs exactly one of `column`, `date` or `static: true`")
        if self.static and (self.offset_days or self.offset_years or self.offset_column):
            raise ValueError("a static time takes no offset")
        return self


class ColumnSpec(BaseModel):
    model_config = _FROZEN
    type: Literal["numeric", "boolean", "categorical"]
    code: str | None = Field(None, description="event code (numeric, boolean; categorical answers' question)")
    unit: str | None = Field(None, description="unit of the source values after `scale`")
    scale: float = Field(1.0, description="multiplier applied to source numbers before unit conversion")
    time: TimeSpec | None = Field(None, description="default: the mapping's `time`")
    values: dict[str, str | None] = Field(default_factory=dict, description="categorical value → code")
    true_values: tuple[str, ...] = ("1", "true", "yes", "y", "t")
    false_values: tuple[str, ...] = ("0", "false", "no", "n", "f")
    when_false: Literal["nothing", "negative"] = "nothing"
    min: float | None = Field(None, description="reject values below (after scale and unit conversion)")
    max: float | None = Field(None, description="reject values above (after scale and unit conversion)")
    description: str | None = None

    _code = field_validator("code")(classmethod(lambda cls, v: _check_code(v)))

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        if self.type in ("numeric", "boolean") and self.code is None:
            raise ValueError(f"a {self.type} column needs a `code`")
        if self.type == "categorical":
            if not self.values:
                raise ValueError("a categorical column needs `values`")
            for target in self.values.values():
                if target is not None and not codes.is_valid_code(target):
                    raise ValueError(
                        f"categorical target {target!r} is not VOCAB/code with a known vocabulary"
                    )
        elif self.values:
            raise ValueError("`values` is only for categorical columns")
        return self


class BirthSpec(BaseModel):
    model_config = _FROZEN
    age_column: str
    time: TimeSpec | None = Field(
        None, description="when the age was measured; default: the mapping's `time`"
    )
    max_age: float = 130.0


class RowEvent(BaseModel):
    model_config = _FROZEN
    code: str
    time: TimeSpec
    description: str | None = None

    _code = field_validator("code")(classmethod(lambda cls, v: _check_code(v)))


class CohortMapping(BaseModel):
    """A wide cohort CSV → events (see the module docstring)."""

    model_config = _FROZEN
    version: Literal[1] = 1
    description: str | None = None
    id_column: str
    id_prefix: str = ""
    time: TimeSpec
    timezone: str = Field("UTC", description="zone of date columns without an offset")
    date_format: str | None = Field(None, description="strftime format of date columns; default: ISO and US")
    birth: BirthSpec | None = None
    columns: dict[str, ColumnSpec]
    row_events: tuple[RowEvent, ...] = ()
    ignore: tuple[str, ...] = ()
    strict_columns: bool = True

    def referenced_columns(self) -> set[str]:
        times = [
            self.time,
            *(c.time for c in self.columns.values() if c.time),
            *(e.time for e in self.row_events),
        ]
        if self.birth:
            times.append(self.birth.time or self.time)
        used = {self.id_column, *self.columns}
        used |= {self.birth.age_column} if self.birth else set()
        for t in times:
            used |= {c for c in (t.column, t.offset_column) if c}
        return used


def load_mapping(path: Path) -> CohortMapping:
    """Read and validate a mapping YAML; ConfigError naming the file and the first problem."""
    try:
        doc: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the mapping file ({type(exc).__name__})") from exc
    try:
        return CohortMapping.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {first['msg']} ({exc.error_count()} problem(s))") from exc


def json_schema() -> dict[str, Any]:
    return CohortMapping.model_json_schema()


def write_json_schema(path: Path) -> None:
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
