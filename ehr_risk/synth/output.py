"""Where the generator writes: the record writer for the chosen format, and the truth table.

OUT/fhir/ (NDJSON or Bundles) or OUT/csv/ (Synthea CSV) hold the records; OUT/truth/risk.parquet (schema
data_schemas/synth_truth.json) and OUT/truth/README hold the true risks, kept apart from the records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ehr_risk.synth.generate import Chunk, SynthOptions
from ehr_risk.synth.params import OUTCOMES
from ehr_risk.synth.state import NEVER
from ehr_risk.tables import conform, load_schema

TRUTH_SCHEMA = "synth_truth"


class RecordWriter(Protocol):
    counts: dict[str, int]

    def write(self, ch: Chunk) -> None: ...

    def close(self) -> None: ...


def open_writer(opts: SynthOptions, out: Path) -> RecordWriter:
    if opts.format == "synthea-csv":
        from ehr_risk.synth.csv_writer import CsvWriter

        return CsvWriter(out, gz=opts.gzip)
    from ehr_risk.synth.fhir_writer import FhirWriter

    return FhirWriter(out, bundle=opts.format == "bundle", gz=opts.gzip)


def _timestamps(days: np.ndarray) -> pa.Array:
    valid = days < NEVER
    us = np.where(valid, days, 0).astype(np.int64) * 86_400_000_000
    return pa.array(us, pa.timestamp("us"), mask=~valid)


def truth_table(ch: Chunk) -> pa.Table:
    t = ch.truth
    pat = t["pat"].astype(np.int64)
    risk = t["risk"].astype(np.float64)
    return pa.table(
        {
            "source_id": pa.array(ch.ids, pa.string()).take(pat),
            "landmark": _timestamps(t["landmark"].astype(np.int64)),
            "outcome": pa.array(OUTCOMES, pa.string()).take(t["outcome"].astype(np.int64)),
            "horizon_years": pa.array(t["horizon"].astype(np.int8)),
            "risk": pa.array(risk, pa.float64(), mask=np.isnan(risk)),
            "prevalent": pa.array(t["prevalent"].astype(bool)),
            "age_years": pa.array(t["age"].astype(np.float32)),
            "sex": pa.array(["female", "male"], pa.string()).take(ch.state.male[pat].astype(np.int64)),
            "event_time": _timestamps(t["event_day"].astype(np.int64)),
            "end_time": _timestamps(t["end_day"].astype(np.int64)),
            "temporal_log_hr": pa.array(t["temporal_log_hr"].astype(np.float32)),
            "temporal_active": pa.array(t["temporal_active"].astype(bool)),
        }
    )


class TruthWriter:
    """Streams truth rows chunk by chunk into one Parquet file (row group per chunk)."""

    def __init__(self, out: Path, opts: SynthOptions):
        self.dir = out / "truth"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "risk.parquet"
        self._tmp = self.dir / ".risk.parquet.tmp"
        self.opts = opts
        self.rows = 0
        schema = load_schema(TRUTH_SCHEMA)
        meta = {b"ehr_risk.schema": f"{schema.name}@{schema.version}".encode()}
        self._schema = schema.arrow.with_metadata(meta)
        self._writer = pq.ParquetWriter(self._tmp, self._schema, compression="zstd")

    def write(self, ch: Chunk) -> None:
        table = conform(truth_table(ch), TRUTH_SCHEMA, where=str(self.path))
        self._writer.write_table(table.replace_schema_metadata(self._schema.metadata))
        self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()
        self._tmp.replace(self.path)
        o = self.opts
        landmarks = ",".join(d.isoformat() for d in o.landmarks)
        horizons = ",".join(map(str, o.horizons))
        (self.dir / "README").write_text(
            "risk.parquet: true cumulative incidence of each outcome (ascvd, hf, t2d, ckd, death_other) over "
            "each horizon from each landmark, computed from the generator's hazard model given the full "
            "simulated state at the landmark, with death as a competing risk (see ehr_risk/synth/truth.py). "
            "temporal_log_hr / temporal_active: the log-hazard the planted temporal effects add at the "
            "landmark, and whether a time-varying one is on. "
            "Rows: people alive, adult and with records before the landmark. Never part of the records; join "
            "on source_id = FHIR Patient.id / Synthea patients.Id.\n"
            f"seed={o.seed} patients={o.patients} landmarks={landmarks} horizons={horizons} "
            f"replicates={o.replicates} end_date={o.end_date.isoformat()}\n"
        )
