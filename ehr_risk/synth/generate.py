"""The streaming driver: people are simulated and written in fixed-size chunks, so memory stays flat and
the output for a seed does not depend on anything but the options.

Each chunk draws its own random streams from (seed, chunk index), simulates every calendar year from
the first 18th birthday to the end date, keeps the first `chunk_size` people alive on their first day of
records, writes their records and appends their truth rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from ehr_risk.errors import ConfigError
from ehr_risk.synth.care import care_year
from ehr_risk.synth.life import advance
from ehr_risk.synth.params import DEFAULT, OUTCOMES, SynthParams
from ehr_risk.synth.records import Recorder
from ehr_risk.synth.state import NEVER, State, day_of, initial_population
from ehr_risk.synth.truth import LandmarkRisk, landmark_risk

FORMATS = ("ndjson", "bundle", "synthea-csv")
MAX_HORIZON = 50  # years of simulated future per landmark (the truth table stores horizons as int8)
Array = np.ndarray


@dataclass(frozen=True)
class SynthOptions:
    patients: int
    seed: int = 0
    format: str = "ndjson"
    gzip: bool = False
    end_date: date = date(2024, 12, 31)
    landmarks: tuple[date, ...] = (date(2006, 1, 1), date(2010, 1, 1), date(2014, 1, 1), date(2015, 1, 1))
    horizons: tuple[int, ...] = (5, 10)
    replicates: int = 8
    chunk_size: int = 4000  # larger chunks amortise numpy call overhead; memory is bounded by it
    params: SynthParams = field(default_factory=lambda: DEFAULT)

    def check(self) -> None:
        if self.patients < 1:
            raise ConfigError("--patients must be at least 1")
        if self.format not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        start = self.params.population.records_start_year
        if self.end_date.year <= start:
            raise ConfigError(f"--end-date must be after {start}")
        for lm in self.landmarks:
            if (lm.month, lm.day) != (1, 1) or not start < lm.year <= self.end_date.year:
                raise ConfigError(
                    f"landmark {lm.isoformat()}: must be a 1 January after {start} and before the end date"
                )
        if not self.landmarks:
            raise ConfigError("--landmarks: give at least one landmark date")
        if not self.horizons or min(self.horizons) < 1 or max(self.horizons) > MAX_HORIZON:
            raise ConfigError(f"--horizons: each must be 1 to {MAX_HORIZON} years")
        if self.replicates < 1 or self.chunk_size < 1:
            raise ConfigError("--replicates and --chunk-size must be at least 1")


@dataclass
class Chunk:
    """One written chunk: people (index = `pat` in the tables), their records and truth rows."""

    index: int
    ids: list[str]
    state: State
    tables: dict[str, dict[str, Array]]
    truth: dict[str, Array]
    end_day: int
    given: list[str]
    family: list[str]


def _uuids(rng: np.random.Generator, n: int) -> list[str]:
    raw = bytearray(rng.bytes(16 * n))
    out = []
    for i in range(n):
        b = raw[16 * i : 16 * i + 16]
        b[6] = (b[6] & 0x0F) | 0x40
        b[8] = (b[8] & 0x3F) | 0x80
        h = b.hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


_GIVEN_F = [
    "Mary",
    "Linda",
    "Susan",
    "Karen",
    "Maria",
    "Aisha",
    "Mei",
    "Elena",
    "Grace",
    "Rosa",
    "Joan",
    "Amy",
]
_GIVEN_M = [
    "James",
    "John",
    "Robert",
    "Michael",
    "David",
    "Jose",
    "Wei",
    "Kwame",
    "Ahmed",
    "Luis",
    "Paul",
    "Tom",
]
_FAMILY = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Lee",
    "Nguyen",
    "Khan",
    "Lopez",
    "Clark",
    "Walker",
    "Young",
    "King",
    "Wright",
    "Hill",
    "Green",
    "Adams",
]


def simulate_chunk(opts: SynthOptions, index: int, n: int) -> Chunk:
    draw = math.ceil(n * 1.08) + 30  # ~97 % live to their first day of records; the loop covers the rest
    for attempt in range(8):
        chunk = _simulate(opts, index, n, draw, attempt)
        if len(chunk.ids) == n:
            return chunk
        draw *= 2  # too few survived to their first day of records: draw more people
    return chunk


def _simulate(opts: SynthOptions, index: int, n: int, draw: int, attempt: int) -> Chunk:
    p = opts.params
    end_day = day_of(opts.end_date.year, opts.end_date.month, opts.end_date.day)
    rng = np.random.default_rng([opts.seed, index, attempt])
    s = initial_population(draw, rng, p)
    truth_rng = np.random.default_rng([opts.seed, index, attempt, 1_000_003])
    rec = Recorder()
    landmark_years = sorted({lm.year for lm in opts.landmarks})
    risks: list[LandmarkRisk] = []
    events: dict[str, list[tuple[Array, Array]]] = {k: [] for k in OUTCOMES}
    first_year = int(1970 + (s.birth_day.min() / 365.25)) + 18
    for year in range(first_year, opts.end_date.year + 1):
        if year in landmark_years:
            risks.append(landmark_risk(s.copy(), year, opts.horizons, opts.replicates, truth_rng, p))
        y = advance(s, year, rng, p)
        for k in ("ascvd", "hf", "t2d", "ckd"):
            hit = np.flatnonzero(y.events[k] < NEVER)
            events[k].append((hit, y.events[k][hit]))
        care_year(s, y, rng, p, rec if year >= p.population.records_start_year else None)
    death_ok = s.death_day <= end_day
    s.alive |= ~death_ok
    s.death_day = np.where(death_ok, s.death_day, NEVER)
    kept = np.flatnonzero((s.death_day >= s.enroll_day) & (s.enroll_day <= end_day))[:n]
    tables = _select(rec.tables(), kept, len(s.male), end_day)
    other = np.flatnonzero((s.death_day < NEVER) & ~np.isin(s.death_cause, (0, 1)))
    events["death_other"].append((other, s.death_day[other]))
    truth = _truth_rows(risks, events, s, kept, end_day, opts)
    ids = _uuids(np.random.default_rng([opts.seed, index, 2]), len(kept))
    name_rng = np.random.default_rng([opts.seed, index, 3])
    st = s.take(kept)
    gi = name_rng.integers(0, len(_GIVEN_F), len(kept))
    given = [(_GIVEN_M if m else _GIVEN_F)[g] for m, g in zip(st.male, gi, strict=True)]
    family = [_FAMILY[f] for f in name_rng.integers(0, len(_FAMILY), len(kept))]
    return Chunk(index, ids, st, tables, truth, end_day, given, family)


def _select(
    t: dict[str, dict[str, Array]], kept: Array, n_all: int, end_day: int
) -> dict[str, dict[str, Array]]:
    """Keep the chosen people and what happened to them by the end date; renumber people and encounters."""
    new_pat = np.full(n_all, -1, np.int64)
    new_pat[kept] = np.arange(len(kept))
    enc = t["enc"]
    ok = (new_pat[enc["pat"]] >= 0) & (enc["day"] <= end_day)
    new_enc = np.full(len(ok), -1, np.int64)
    new_enc[ok] = np.arange(int(ok.sum()))
    out: dict[str, dict[str, Array]] = {"enc": {c: a[ok] for c, a in enc.items()}}
    out["enc"]["pat"] = new_pat[out["enc"]["pat"]]
    for name in ("obs", "proc"):
        tab = t[name]
        keep = new_enc[tab["enc"]] >= 0
        out[name] = {c: a[keep] for c, a in tab.items()}
        out[name]["enc"] = new_enc[out[name]["enc"]]
    for name, day in (("cond", "onset"), ("med", "day")):
        tab = t[name]
        keep = (new_pat[tab["pat"]] >= 0) & (tab[day] <= end_day)
        out[name] = {c: a[keep] for c, a in tab.items()}
        out[name]["pat"] = new_pat[out[name]["pat"]]
        e = out[name]["enc"]
        out[name]["enc"] = np.where(e >= 0, new_enc[np.maximum(e, 0)], -1)
    if "abate" in out["cond"]:
        a = out["cond"]["abate"]
        out["cond"]["abate"] = np.where(a > end_day, -1, a)
    return out


def _truth_rows(
    risks: list[LandmarkRisk],
    events: dict[str, list[tuple[Array, Array]]],
    s: State,
    kept: Array,
    end_day: int,
    opts: SynthOptions,
) -> dict[str, Array]:
    pos = np.full(len(s.male), -1, np.int64)
    pos[kept] = np.arange(len(kept))
    cols: dict[str, list[Array]] = {
        c: []
        for c in (
            *("pat", "landmark", "outcome", "horizon", "risk", "prevalent", "age", "event_day", "end_day"),
            *("temporal_log_hr", "temporal_active"),
        )
    }
    data_end = np.minimum(s.death_day, end_day)
    for lr in risks:
        sel = pos[lr.person] >= 0
        people = lr.person[sel]
        for k_i, k in enumerate(OUTCOMES):
            first = np.full(len(s.male), NEVER, np.int64)
            for who, day in events[k]:
                after = day >= lr.landmark_day
                np.minimum.at(first, who[after], day[after])
            first[first > end_day] = NEVER
            for h_i, h in enumerate(opts.horizons):
                m = len(people)
                cols["pat"].append(pos[people])
                cols["landmark"].append(np.full(m, lr.landmark_day))
                cols["outcome"].append(np.full(m, k_i, np.int8))
                cols["horizon"].append(np.full(m, h, np.int8))
                cols["risk"].append(lr.risk[k][sel, h_i])
                cols["prevalent"].append(lr.prevalent[k][sel])
                cols["age"].append(lr.age[sel])
                cols["event_day"].append(first[people])
                cols["end_day"].append(data_end[people])
                cols["temporal_log_hr"].append(lr.temporal_log_hr[k][sel])
                cols["temporal_active"].append(lr.temporal_active[k][sel])
    return {c: (np.concatenate(v) if v else np.zeros(0)) for c, v in cols.items()}


def generate(opts: SynthOptions, out: Path, progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Write `opts.patients` people to `out` (records + truth/); returns counts per written table."""
    from ehr_risk.synth.output import TruthWriter, open_writer

    opts.check()
    records = out / ("csv" if opts.format == "synthea-csv" else "fhir")
    for folder in (records, out / "truth"):
        if folder.is_dir() and any(folder.iterdir()):
            raise ConfigError(f"{folder}: not empty; choose a new --out (records of two runs must not mix)")
    out.mkdir(parents=True, exist_ok=True)
    writer = open_writer(opts, out)
    truth = TruthWriter(out, opts)
    done = 0
    try:
        for i in range(math.ceil(opts.patients / opts.chunk_size)):
            chunk = simulate_chunk(opts, i, min(opts.chunk_size, opts.patients - done))
            writer.write(chunk)
            truth.write(chunk)
            done += len(chunk.ids)
            if progress:
                progress(done)
    finally:
        writer.close()
        truth.close()
    counts = dict(writer.counts)
    counts["truth_rows"] = truth.rows
    return counts
