"""Subgroups (sex, race, age bands) and small-cell suppression.

A subgroup's metrics are published only when it holds at least `MIN_CELL` patients, `MIN_CELL` events and
`MIN_CELL` non-events; otherwise its counts are shown as "<10" and its metrics withheld, both because small
cells can identify patients and because metrics on them are noise. Missing subgroup values form their own
level ("missing"), so no row disappears from the subgroup table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from numpy.typing import NDArray

from ehr_risk.errors import InputDataError

MIN_CELL = 10
MAX_LEVELS = 30  # a column with more levels is an identifier or a continuous value, not a subgroup
MISSING = "missing"
# Decades, with the pooled-cohort-equation range (40–79) split the way guidelines report it.
AGE_EDGES = (18.0, 40.0, 50.0, 60.0, 70.0, 80.0)


def age_band(age_years: NDArray[np.floating], edges: Sequence[float] = AGE_EDGES) -> NDArray[np.object_]:
    """'<18', '18-39', '40-49', …, '80+' and None where age is unknown."""
    age = np.asarray(age_years, dtype=np.float64)
    labels = [f"<{edges[0]:g}"]
    labels += [f"{lo:g}-{hi - 1:g}" for lo, hi in pairwise(edges)]
    labels.append(f"{edges[-1]:g}+")
    k = np.searchsorted(np.asarray(edges), age, side="right")
    out = np.asarray(labels, dtype=object)[k]
    out[np.isnan(age)] = None
    return out


@dataclass(frozen=True)
class Subgroup:
    variable: str
    level: str
    rows: NDArray[np.intp]  # positions in the evaluated rows


def subgroup_levels(columns: Mapping[str, NDArray[np.object_]]) -> list[Subgroup]:
    """One Subgroup per (variable, level), levels sorted with 'missing' last."""
    out: list[Subgroup] = []
    for var, values in columns.items():
        labels = np.asarray([MISSING if v is None or v != v else str(v) for v in values], dtype=object)
        levels = sorted(set(labels.tolist()), key=lambda s: (s == MISSING, _sort_key(s)))
        if len(levels) > MAX_LEVELS:
            raise InputDataError(
                f"predictions: subgroup column {var!r} has {len(levels)} levels (at most {MAX_LEVELS}); "
                "band it first (age_band is derived from age_years)"
            )
        for level in levels:
            out.append(Subgroup(var, level, np.flatnonzero(labels == level).astype(np.intp)))
    return out


def _sort_key(label: str) -> tuple[float, str]:
    digits = "".join(ch for ch in label.split("-")[0] if ch.isdigit() or ch == ".")
    try:
        return (float(digits) - (0.5 if label.startswith("<") else 0.0), label)
    except ValueError:
        return (float("inf"), label)


def is_suppressed(n_subjects: int, n_events: int, n_non_events: int, min_cell: int = MIN_CELL) -> bool:
    return min(n_subjects, n_events, n_non_events) < min_cell


def cell(count: int, min_cell: int = MIN_CELL) -> str:
    """A count as published: exact at or above the threshold, '<10' below (0 stays 0: it discloses nobody)."""
    return str(count) if count == 0 or count >= min_cell else f"<{min_cell}"
