"""Clinician-reviewed code lists (`pipelines/codelists/<name>.csv`: code, system, term) as event filters.

`system` may be a vocabulary name (`SNOMED`, `SNOMED-CT`, `ICD-10-CM`, `RxNorm`, ...) or a FHIR system
URI; codes become the event table's `VOCAB/code`. ICD codes (ICD-10-CM, ICD-9-CM, WHO ICD-10) match their
descendants too (`E11` matches `E11.9`, dots ignored), as ICD lists are usually written as categories;
every other vocabulary matches exactly.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl

from ehr_risk.errors import ConfigError
from ehr_risk.ingest.codes import normalize_vocab, vocab_of_system

CODELIST_DIR = Path(__file__).resolve().parent.parent.parent / "pipelines" / "codelists"
ICD_VOCABS = frozenset({"ICD10CM", "ICD9CM", "ICD10"})
_MIN_ICD_PREFIX = 3  # shortest ICD category (E11, 410)
_MAX_ICD_LEN = 8


@dataclass(frozen=True)
class CodeList:
    """Exact `VOCAB/code` strings plus ICD prefixes (`ICD10CM/E11`, dots removed) that match descendants."""

    name: str
    exact: frozenset[str]
    icd_prefixes: frozenset[str]

    @classmethod
    def of(cls, name: str, codes: Iterable[str]) -> CodeList:
        exact: set[str] = set()
        prefixes: set[str] = set()
        for code in codes:
            vocab, _, value = code.partition("/")
            if vocab in ICD_VOCABS:
                prefixes.add(f"{vocab}/{value.replace('.', '')}")
            else:
                exact.add(code)
        return cls(name, frozenset(exact), frozenset(prefixes))

    def __len__(self) -> int:
        return len(self.exact) + len(self.icd_prefixes)

    def expr(self, column: str = "code") -> pl.Expr:
        """True where `column` is in the list (ICD: the code or one of its ancestors is in the list)."""
        col = pl.col(column)
        hit = col.is_in(sorted(self.exact)) if self.exact else pl.lit(False)
        if self.icd_prefixes:
            prefixes = sorted(self.icd_prefixes)
            vocab = col.str.split_exact("/", 1).struct.field("field_0")
            undotted = col.str.replace_all(".", "", literal=True)
            head = vocab.str.len_chars() + 1
            icd = pl.any_horizontal(
                [
                    undotted.str.slice(0, head + n).is_in(prefixes)
                    for n in range(_MIN_ICD_PREFIX, _MAX_ICD_LEN + 1)
                ]
            )
            hit = hit | (vocab.is_in(sorted(ICD_VOCABS)) & icd)
        return hit.fill_null(False)

    def among(self, codes: pl.Series) -> list[str]:
        """The members of `codes` (e.g. the distinct codes of an event table) that the list matches.

        Matching the few distinct codes once and then filtering events with a plain `is_in` is much
        cheaper than evaluating the ICD prefix logic on every event.
        """
        return codes.to_frame("code").filter(self.expr()).get_column("code").to_list()


def _code_of(system: str, code: str, where: str) -> str:
    vocab = normalize_vocab(system) if "/" not in system and ":" not in system else vocab_of_system(system)
    if vocab is None:
        raise ConfigError(f"{where}: unknown code system {system!r}")
    return f"{vocab}/{code}"


@cache
def _load(path: Path) -> CodeList:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(line for line in handle if not line.startswith("#"))
            fields = set(reader.fieldnames or [])
            if not {"code", "system"} <= fields:
                raise ConfigError(f"{path}: a code list needs columns code, system (and term)")
            codes = []
            for i, row in enumerate(reader, start=2):
                code, system = (row.get("code") or "").strip(), (row.get("system") or "").strip()
                if not code or not system:
                    raise ConfigError(f"{path}:{i}: empty code or system")
                codes.append(_code_of(system, code, f"{path}:{i}"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: code list not found") from exc
    return CodeList.of(path.stem, codes)


def load_codelist(name: str, directory: str | Path | None = None) -> CodeList:
    """The code list `name` (file stem, e.g. `statins`) from `directory` (default pipelines/codelists)."""
    base = Path(directory) if directory is not None else CODELIST_DIR
    return _load((base / f"{name}.csv").resolve())
