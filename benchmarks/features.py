"""Feature-building throughput: fit + transform of the three featurizers on a random event table.

    .venv/bin/python benchmarks/features.py --patients 10000 100000 [--events-per-patient 100]
        [--times-per-patient 4] [--shards 8]

Prints one JSON object per size: events, prediction times, seconds per step, prediction-time rows/s and
peak RSS. Events come from tests/featuredata.py (random, plausible codes and values; no ingestion) and are
processed shard by shard (shards hold whole subjects), as `ehr-risk dataset` does. The fit uses 70 % of
the subjects' prediction times, as a training split would.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import polars as pl

from ehr_risk.features import SequenceFeaturizer, TabularFeaturizer, clinical_variables

# The random event generator is shared with the unit tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from featuredata import prediction_times, random_events, write_codelists

T = TypeVar("T")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n_patients: int, per_patient: int, n_times: int, n_shards: int, codelists: Path) -> dict[str, object]:
    dates = tuple(dt.datetime(2010 + 3 * i, 1, 1) for i in range(n_times))
    t0 = time.perf_counter()
    size = -(-n_patients // n_shards)
    shards = [
        random_events(
            min(size, n_patients - k * size),
            seed=k,
            events_per_subject=per_patient,
            first_subject=1 + k * size,
        )
        for k in range(n_shards)
        if k * size < n_patients
    ]
    generated = time.perf_counter() - t0
    times = [prediction_times(s, dates) for s in shards]
    train = [t.filter(pl.col("subject_id") % 10 < 7) for t in times]
    timings: dict[str, float] = {}
    cpu_start = time.process_time()

    def timed(name: str, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        out = fn()
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        return out

    all_events = pl.concat(shards).lazy()
    all_train = pl.concat(train)
    tab = timed("tabular_fit", lambda: TabularFeaturizer(codelist_dir=codelists).fit(all_events, all_train))
    seq = timed("sequence_fit", lambda: SequenceFeaturizer().fit(all_events, all_train))
    n_rows = 0
    for events, t in zip(shards, times, strict=True):
        # as `ehr-risk dataset` does: the clinical table once, reused by the tabular features
        clinical = timed("clinical", partial(clinical_variables, events, t, codelist_dir=codelists))
        n_rows += timed("tabular_transform", partial(tab.transform, events, t, clinical=clinical)).height
        timed("sequence_transform", partial(seq.transform, events, t))
    total = sum(timings.values())
    cpu = time.process_time() - cpu_start
    return {
        "patients": n_patients,
        "events": sum(s.height for s in shards),
        "prediction_times": n_rows,
        "tabular_columns": len(tab.feature_names_),
        "vocab": seq.n_tokens_,
        "generate_s": round(generated, 2),
        **{f"{k}_s": round(v, 2) for k, v in timings.items()},
        "features_total_s": round(total, 2),
        "features_cpu_s": round(cpu, 2),  # all threads; wall > cpu/threads means a shared, busy machine
        "prediction_times_per_s": round(n_rows / total, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "polars_threads": pl.thread_pool_size(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[10_000])
    parser.add_argument("--events-per-patient", type=int, default=100)
    parser.add_argument("--times-per-patient", type=int, default=4)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        codelists = write_codelists(Path(tmp))
        for n in args.patients:
            print(
                json.dumps(run(n, args.events_per_patient, args.times_per_patient, args.shards, codelists)),
                flush=True,
            )


if __name__ == "__main__":
    main()
