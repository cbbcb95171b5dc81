"""Batch-scoring throughput: patients/s end to end (events → features → model → Parquet) for the GRU and the
transformer, with peak RSS and CPU time, at several population sizes; prints one JSON document.

    .venv/bin/python benchmarks/score.py [--scales 10000,100000] [--models gru,transformer] [--work DIR]

Setup (cached in --work, not timed): `ehr_risk.synth.generate` makes --base patients once, ingest writes them
as --shards event shards; larger populations replicate those shards with subject_ids moved to a fresh range
(scoring cost depends on the events, not on how they were made). A small GRU and a small transformer are
trained once (--train-patients, max_epochs 1: training speed is not what is measured) and pickled.
Measured: `ehr_risk.scoring.score(...)` alone, each (model, scale) in its own child process so its peak RSS
(ru_maxrss of the child) and CPU time (user + sys, all threads) are its own. `score` runs --workers shards
at once (threads: one shard's featurization overlaps another's network pass), torch --threads threads per
worker, polars one thread per core (its default). --explain K adds the top-K factors (off by default);
--torch-attention scores the transformer through torch's own encoder layers instead of the fused scoring
path (networks.py), for a before/after taken under the same conditions. The
1-minute load average before and after each run is recorded: on a shared host, wall-clock figures are
pessimistic and patients per CPU second is the steadier figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pickle
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AS_OF = dt.date(2020, 6, 30)
TASK = "ascvd_10y"


def _setup_events(work: Path, base: int, shards: int) -> Path:
    from ehr_risk.ingest.run import IngestOptions, ingest
    from ehr_risk.synth import SynthOptions, generate

    events = work / f"events_{base}"
    if not (events / "events").is_dir():
        generate(SynthOptions(patients=base, seed=11), work / f"raw_{base}")
        ingest([work / f"raw_{base}" / "fhir"], events, IngestOptions(n_shards=shards))
        shutil.rmtree(work / f"raw_{base}")
    return events


def _replicated(work: Path, base_events: Path, base: int, n: int) -> Path:
    """Events of `n` patients: copies of the base shards with subject_ids moved to disjoint ranges."""
    import polars as pl

    from ehr_risk.dataset import event_shards

    if n <= base:
        return base_events
    out = work / f"events_{n}" / "events"
    if out.is_dir():
        return out.parent
    tmp = out.with_name(".events-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shards = event_shards(base_events)
    ids = pl.concat([pl.read_parquet(s, columns=["subject_id"]).unique() for s in shards]).sort("subject_id")
    dense = ids.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("dense"))
    copies = -(-n // base)
    for k in range(copies):
        for i, shard in enumerate(shards):
            ev = pl.read_parquet(shard)
            moved = ev.join(dense, on="subject_id", how="left").with_columns(
                (pl.col("dense") + k * base + 1).cast(ev.schema["subject_id"]).alias("subject_id")
            )
            moved.select(ev.columns).write_parquet(tmp / f"shard-{k:04d}-{i:03d}.parquet")
    tmp.rename(out)
    return out.parent


def _train(work: Path, kind: str, train_patients: int) -> Path:
    import yaml

    from ehr_risk.dataset import build_dataset
    from ehr_risk.tasks import load_task
    from ehr_risk.train import train
    from ehr_risk.train_config import load_train_config

    path = work / f"predictor_{kind}.pkl"
    if path.exists():
        return path
    events = _setup_events(work, train_patients, 2)
    ds = work / f"dataset_{train_patients}"
    if not (ds / "dataset.json").exists():
        build_dataset(events, [load_task(TASK)], ds)
    cfg = load_train_config(
        REPO / "pipelines" / "train.yaml",
        {
            "dataset": str(ds),
            "tasks": [TASK],
            "model": kind,
            "tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
            "register_model": False,
            "network": {
                **yaml.safe_load((REPO / "pipelines" / "train.yaml").read_text())["network"],
                "max_epochs": 1,
            },
        },
    )
    result = train(cfg)
    path.write_bytes(pickle.dumps((result.predictor, result.run_id)))
    return path


def _child(args: argparse.Namespace) -> None:
    import torch  # noqa: F401  (imported once per job, outside the timed part)

    from ehr_risk.scoring import ModelRef, score
    from ehr_risk.tasks import load_task

    predictor, run_id = pickle.loads(Path(args.predictor).read_bytes())
    if args.torch_attention and args.kind == "transformer":  # the previous scoring path, for comparison
        predictor.network().encoder.fast_inference = False
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    ref = ModelRef(f"bench-{args.kind}", "1", run_id, "bench")
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
    w0, c0 = time.perf_counter(), time.process_time()
    result = score(
        predictor,
        load_task(TASK),
        Path(args.events),
        AS_OF,
        out,
        ref,
        threads=args.threads,
        workers=args.workers,
        explain=args.explain,
    )
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    if args.profile:
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
    out_bytes = sum(p.stat().st_size for p in result.partition.rglob("*.parquet"))
    shutil.rmtree(out, ignore_errors=True)
    print(
        json.dumps(
            {
                "subjects_in_data": result.subjects_in_data,
                "subjects_scored": result.subjects_scored,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "patients_per_s": round(result.subjects_in_data / wall, 1),
                "patients_per_cpu_s": round(result.subjects_in_data / cpu, 1),
                "scored_per_s": round(result.subjects_scored / wall, 1),
                "parquet_bytes": out_bytes,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="10000,100000")
    ap.add_argument("--models", default="gru,transformer")
    ap.add_argument("--base", type=int, default=10_000, help="patients generated; larger scales replicate")
    ap.add_argument("--shards", type=int, default=4, help="event shards of the base population")
    ap.add_argument("--train-patients", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker (score()'s default)")
    ap.add_argument("--workers", type=int, default=2, help="shards scored at once (score()'s default)")
    ap.add_argument("--explain", type=int, default=0, help="top contributing factors per patient (0: off)")
    ap.add_argument("--work", default="/tmp/ehr-risk-bench-score", help="cached inputs (reused)")
    ap.add_argument("--profile", action="store_true", help="cProfile each child (to stderr)")
    ap.add_argument(
        "--torch-attention",
        action="store_true",
        help="transformer: torch's own encoder instead of the fused scoring path (the 'before' figure)",
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--predictor", help=argparse.SUPPRESS)
    ap.add_argument("--events", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    base_events = _setup_events(work, args.base, args.shards)
    predictors = {kind: _train(work, kind, args.train_patients) for kind in args.models.split(",")}
    setup_s = time.perf_counter() - t0
    runs = []
    for n in (int(s) for s in args.scales.split(",")):
        events = _replicated(work, base_events, args.base, n)
        for kind, pred in predictors.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            cmd = [sys.executable, __file__, "--child", "--kind", kind, "--predictor", str(pred)]
            cmd += ["--events", str(events), "--out", str(work / "scores"), "--threads", str(args.threads)]
            cmd += ["--workers", str(args.workers), "--explain", str(args.explain)]
            cmd += ["--profile"] if args.profile else []
            cmd += ["--torch-attention"] if args.torch_attention else []
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            load_before = os.getloadavg()[0]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if args.profile:
                sys.stderr.write(proc.stderr)
            if proc.returncode != 0:
                runs.append({"model": kind, "patients": n, "error": proc.stderr.strip().splitlines()[-1:]})
                continue
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row.update(model=kind, patients=n, load_avg_1m_before=round(load_before, 2))
            row["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
            row["child_cpu_s"] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2)
            runs.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    report = {
        "benchmark": "batch scoring (ehr_risk.scoring.score), events -> features -> model -> Parquet",
        "as_of": AS_OF.isoformat(),
        "threads": args.threads,
        "workers": args.workers,
        "explain": args.explain,
        "torch_attention": args.torch_attention,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "setup_s": round(setup_s, 1),
        "runs": runs,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
