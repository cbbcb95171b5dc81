"""Benchmark of `ehr-risk dataset`: rows/s and peak RSS for N synthetic patients × the four shipped tasks.

    python benchmarks/dataset.py                       # 10k and 100k patients
    python benchmarks/dataset.py --patients 10000 100000 1000000 --threads 2

Prints one JSON object, with wall and CPU seconds (user + system, all threads: the figure to compare on a
shared machine) and CPU seconds per 1k patients (flat across sizes = cost growing linearly). Each size
runs in a fresh subprocess (POLARS_MAX_THREADS = --threads), so the peak RSS (VmHWM) is that of the
dataset build alone. The events come from a vectorised numpy generator
below: per patient ~20 years of visits at ~3 a year, each with an encounter, blood pressure, often a
lipid/glucose/renal lab panel, BMI, smoking status, diagnosis codes and prescriptions, plus outcome
diagnoses and deaths with a cause: ~440 events per patient, the shape of real EHR data. `--source synth`
runs `ehr-risk synth` + `ehr-risk ingest` instead (the real path, but far slower for 100k+ patients).
Sizes whose events would not fit the disk budget (--max-events) are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

TASKS = ["ascvd_10y", "heart_failure_5y", "t2d_5y", "ckd_5y"]
_DAY_US = 86_400 * 1_000_000
_EPOCH = np.datetime64("1970-01-01", "us")
LABS = [  # code, unit, mean, sd
    ("LOINC/2093-3", "mg/dL", 200.0, 35.0),
    ("LOINC/2085-9", "mg/dL", 52.0, 14.0),
    ("LOINC/18262-6", "mg/dL", 120.0, 30.0),
    ("LOINC/2571-8", "mg/dL", 140.0, 60.0),
    ("LOINC/2345-7", "mg/dL", 100.0, 20.0),
    ("LOINC/4548-4", "%", 5.7, 0.8),
    ("LOINC/2160-0", "mg/dL", 1.0, 0.25),
    ("LOINC/33914-3", "mL/min/{1.73_m2}", 85.0, 18.0),
]
DIAGNOSES = [
    "SNOMED/59621000",
    "SNOMED/55822004",
    "ICD10CM/I10",
    "ICD10CM/E78.5",
    "SNOMED/10509002",
    "SNOMED/195662009",
    "SNOMED/444814009",
    "SNOMED/40055000",
    "ICD10CM/J06.9",
    "ICD10CM/M54.5",
]
DRUGS = ["RxNorm/314076", "RxNorm/197361", "RxNorm/310798", "RxNorm/617312", "RxNorm/312961", "RxNorm/860975"]
OUTCOMES = ["SNOMED/22298006", "SNOMED/230690007", "SNOMED/84114007", "SNOMED/44054006", "SNOMED/433144002"]
SMOKING = ["SNOMED/449868002", "SNOMED/8517006", "SNOMED/266919005"]


def _us(year: np.ndarray) -> np.ndarray:
    """Fractional calendar year → microseconds since the epoch."""
    return ((year - 1970.0) * 365.25 * _DAY_US).astype(np.int64)


def synth_chunk(rng: np.random.Generator, first_id: int, n: int) -> pl.DataFrame:
    """Events of `n` patients as one shard frame, sorted (subject_id, time) with static rows first."""
    sid = (np.arange(first_id, first_id + n, dtype=np.int64) * 2654435761 + 12345) % (2**62)
    birth = rng.uniform(1930, 1990, n)
    start = np.maximum(rng.uniform(1995, 2008, n), birth + 18)
    death = np.where(rng.random(n) < 0.15, rng.uniform(2000, 2025, n), np.inf)
    death = np.where(death <= start + 1, np.inf, death)
    end = np.minimum(2024.99, death)
    years = np.maximum(end - start, 0.1)
    n_visits = rng.poisson(3.0 * years) + 1
    v_pid = np.repeat(np.arange(n), n_visits)
    v_time = start[v_pid] + rng.random(v_pid.size) * years[v_pid]
    cols: dict[str, list[np.ndarray]] = {"pid": [], "t": [], "code": [], "num": [], "text": [], "unit": []}
    strings: dict[str, int] = {}

    def ids(values: np.ndarray) -> np.ndarray:
        """Strings → indices into one string table (-1 = null): polars gathers them at the end, fast."""
        inv, uniq = pd.factorize(values)  # hashing, not sorting: fast on object arrays
        table = np.array([strings.setdefault(str(u), len(strings)) for u in uniq], np.int32)
        return table[inv] if len(uniq) else np.zeros(0, np.int32)

    def add(pid: np.ndarray, t: np.ndarray, code: np.ndarray, num=None, text=None, unit=None) -> None:
        m = pid.size
        cols["pid"].append(pid)
        cols["t"].append(t)
        cols["code"].append(ids(code))
        cols["num"].append(np.full(m, np.nan, np.float32) if num is None else num.astype(np.float32))
        cols["text"].append(np.full(m, -1, np.int32) if text is None else ids(text))
        cols["unit"].append(np.full(m, -1, np.int32) if unit is None else ids(unit))

    add(v_pid, v_time, np.full(v_pid.size, "SNOMED/185349003", object))
    bp = rng.random(v_pid.size) < 0.8
    age = v_time - birth[v_pid]
    sbp = 110 + 0.5 * age + rng.normal(0, 15, v_pid.size)
    for code, value in (("LOINC/8480-6", sbp), ("LOINC/8462-4", sbp * 0.62 + rng.normal(0, 6, v_pid.size))):
        add(
            v_pid[bp],
            v_time[bp],
            np.full(bp.sum(), code, object),
            value[bp],
            unit=np.full(bp.sum(), "mm[Hg]", object),
        )
    panel = rng.random(v_pid.size) < 0.3
    for code, unit, mean, sd in LABS:
        k = panel.sum()
        add(
            v_pid[panel],
            v_time[panel],
            np.full(k, code, object),
            rng.normal(mean, sd, k),
            unit=np.full(k, unit, object),
        )
    bmi = rng.random(v_pid.size) < 0.5
    add(
        v_pid[bmi],
        v_time[bmi],
        np.full(bmi.sum(), "LOINC/39156-5", object),
        rng.normal(28, 5, bmi.sum()),
        unit=np.full(bmi.sum(), "kg/m2", object),
    )
    smk = rng.random(v_pid.size) < 0.3
    add(
        v_pid[smk],
        v_time[smk],
        np.full(smk.sum(), "LOINC/72166-2", object),
        text=np.array(SMOKING, object)[rng.integers(0, 3, smk.sum())],
    )
    dx = rng.random(v_pid.size) < 0.35
    add(v_pid[dx], v_time[dx], np.array(DIAGNOSES, object)[rng.integers(0, len(DIAGNOSES), dx.sum())])
    rx = rng.random(v_pid.size) < 0.5
    add(v_pid[rx], v_time[rx], np.array(DRUGS, object)[rng.integers(0, len(DRUGS), rx.sum())])
    for code in OUTCOMES:  # incident outcomes: ~8% of patients each, at a random time in follow-up
        hit = rng.random(n) < 0.08
        pid = np.nonzero(hit)[0]
        add(pid, start[pid] + rng.random(pid.size) * years[pid], np.full(pid.size, code, object))
    dead = np.nonzero(np.isfinite(death))[0]
    add(dead, death[dead], np.full(dead.size, "MEDS_DEATH", object))
    cause = np.where(rng.random(dead.size) < 0.3, "SNOMED/22298006", "SNOMED/363346000").astype(object)
    add(dead, death[dead], np.full(dead.size, "LOINC/69453-9", object), text=cause)
    add(np.arange(n), birth, np.full(n, "MEDS_BIRTH", object))
    pid, t = np.concatenate(cols["pid"]), _us(np.concatenate(cols["t"]))
    table = pl.Series(list(strings), dtype=pl.String)

    def gather(name: str) -> pl.Series:
        idx = pl.Series(np.concatenate(cols[name]))
        return table.gather(idx.set(idx < 0, None) if (idx < 0).any() else idx)

    timed = pl.DataFrame(
        {
            "subject_id": sid[pid],
            "time": pl.Series(t).cast(pl.Datetime("us")),
            "code": gather("code"),
            "numeric_value": np.concatenate(cols["num"]),
            "text_value": gather("text"),
            "unit": gather("unit"),
        }
    ).with_columns(pl.col("numeric_value").fill_nan(None))
    sex = np.where(rng.random(n) < 0.5, "GENDER/female", "GENDER/male")
    race = np.where(rng.random(n) < 0.8, "RACE/2106-3", "RACE/2054-5")
    static = pl.DataFrame(
        {"subject_id": np.concatenate([sid, sid]), "code": np.concatenate([sex, race])}
    ).with_columns(pl.lit(None, pl.Datetime("us")).alias("time"))
    frame = pl.concat([static, timed], how="diagonal_relaxed").with_columns(
        pl.lit(None, pl.Datetime("us")).alias("end_time"),
        pl.lit(None, pl.Datetime("us")).alias("recorded_time"),
        pl.lit("Synthetic").alias("resource_type"),
        pl.lit(None, pl.Int64).alias("record_id"),
    )
    from ehr_risk.events import EVENT_COLUMNS

    return frame.sort(["subject_id", "time"], nulls_last=False).select(EVENT_COLUMNS)


def synth_events(n: int, folder: Path, seed: int = 0, per_shard: int = 25_000) -> int:
    """Write `n` patients as event shards under folder/events; returns the number of events."""
    rng = np.random.default_rng(seed)
    (folder / "events").mkdir(parents=True, exist_ok=True)
    total = 0
    for k, first in enumerate(range(0, n, per_shard)):
        frame = synth_chunk(rng, first, min(per_shard, n - first))
        frame.write_parquet(folder / "events" / f"shard-{k:04d}.parquet", compression="zstd")
        total += frame.height
    return total


def synth_and_ingest(n: int, folder: Path, seed: int = 0) -> int:
    """The project's own path: `ehr-risk synth` (FHIR NDJSON) then `ehr-risk ingest` into folder/events."""
    cli = str(Path(sys.executable).parent / "ehr-risk")
    raw = folder.with_name(folder.name + "-fhir")
    subprocess.run([cli, "synth", "-n", str(n), "--seed", str(seed), "--out", str(raw), "-q"], check=True)
    subprocess.run([cli, "ingest", str(raw / "fhir"), "--out", str(folder), "-q"], check=True)
    shutil.rmtree(raw, ignore_errors=True)
    return int(pl.scan_parquet(folder / "events" / "*.parquet").select(pl.len()).collect().item())


def _peak_rss_mb() -> float:
    """Peak resident memory of this process: VmHWM (per address space, so it restarts at exec, unlike
    ru_maxrss, which a child inherits from the forking parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_one(events: Path, out: Path, features: str) -> None:
    """Child process: build the dataset and print its timing JSON (peak RSS is read by the parent)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from ehr_risk.dataset import DatasetOptions, build_dataset
    from ehr_risk.tasks import load_task

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    options = DatasetOptions(features=tuple(k for k in features.split(",") if k))
    meta = build_dataset(events, [load_task(t) for t in TASKS], out, options)
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - cpu0,
                "meta_seconds": meta["seconds"],
                "prediction_times": meta["counts"]["prediction_times"],
                "label_rows": sum(meta["counts"]["labels"].values()),
                "n_events": meta["events"]["n_events"],
                "peak_rss_mb": _peak_rss_mb(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-events", type=float, default=150e6, help="skip sizes expected to exceed this")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--source", choices=["numpy", "synth"], default="numpy", help="event generator (synth: slow, small N)"
    )
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) generated events in --workdir")
    parser.add_argument("--features", default="tabular,sequence,clinical", help="'' = labels and splits only")
    parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        _run_one(Path(args._child[0]), Path(args._child[1]), args._child[2])
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ehr-risk-bench-"))
    results = []
    per_patient: float | None = None
    for n in args.patients:
        if per_patient is not None and n * per_patient > args.max_events:
            results.append({"patients": n, "skipped": f"~{n * per_patient:,.0f} events > --max-events"})
            continue
        events = work / f"events-{n}"
        t0 = time.perf_counter()
        if args.keep and any((events / "events").glob("*.parquet")):  # reuse events of an earlier --keep run
            n_events = pl.scan_parquet(events / "events" / "*.parquet").select(pl.len()).collect().item()
        elif args.source == "synth":
            n_events = synth_and_ingest(n, events)
        else:
            n_events = synth_events(n, events)
        gen_s = time.perf_counter() - t0
        per_patient = n_events / n
        env = {**os.environ, "POLARS_MAX_THREADS": str(args.threads)}
        out = work / f"dataset-{n}"
        proc = subprocess.run(
            [sys.executable, __file__, "--_child", str(events), str(out), args.features],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            results.append({"patients": n, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(
            {
                "patients": n,
                "events": n_events,
                "generate_seconds": round(gen_s, 1),
                "dataset_seconds": round(child["seconds"], 1),
                # user + system CPU of all threads: on a shared machine wall time is inflated, this is not
                "dataset_cpu_seconds": round(child["cpu_seconds"], 1),
                "cpu_seconds_per_1k_patients": round(1000 * child["cpu_seconds"] / n, 2),
                "stage_seconds": child["meta_seconds"],
                "prediction_times": child["prediction_times"],
                "label_rows": child["label_rows"],
                "rows_per_s": round(child["prediction_times"] / child["seconds"], 1),
                "events_per_s": round(n_events / child["seconds"]),
                "peak_rss_mb": round(child["peak_rss_mb"]),
            }
        )
        if not args.keep:
            shutil.rmtree(events, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    print(
        json.dumps(
            {"benchmark": "dataset", "tasks": TASKS, "threads": args.threads, "results": results}, indent=2
        )
    )


if __name__ == "__main__":
    main()
