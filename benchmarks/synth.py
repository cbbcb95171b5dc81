"""Benchmark of `ehr-risk synth`: patients/s, peak RSS and bytes written, one core.

    .venv/bin/python benchmarks/synth.py                              # 10k patients, NDJSON
    .venv/bin/python benchmarks/synth.py --patients 100000 --format synthea-csv --gzip

Prints one JSON object. Each run is a fresh subprocess (so its peak RSS is the generator's alone) pinned
to one thread (BLAS and the polars/rayon pool), writing into a temporary folder that is deleted afterwards.
On a shared machine read `cpu_s` (and `seconds_for_100k_at_this_cpu_rate`): wall time there depends on
the other load, and it also includes writing ~110 kB of NDJSON per patient to disk. Two figures: the whole
command (simulation + truth + writing) and the simulation alone (`--format none`: no records written),
which separates the numpy simulation from the per-resource JSON/CSV serialisation.
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


def _child(args: argparse.Namespace) -> None:
    from ehr_risk.synth import SynthOptions, generate
    from ehr_risk.synth.generate import simulate_chunk

    out = Path(args.out)
    t0, c0 = time.perf_counter(), time.process_time()
    if args.format == "none":
        opts = SynthOptions(patients=args.patients, seed=args.seed, replicates=args.replicates)
        done = 0
        for i in range(-(-args.patients // opts.chunk_size)):
            done += len(simulate_chunk(opts, i, min(opts.chunk_size, args.patients - done)).ids)
        counts: dict[str, int] = {"patients": done}
    else:
        opts = SynthOptions(
            patients=args.patients,
            seed=args.seed,
            format=args.format,
            gzip=args.gzip,
            replicates=args.replicates,
        )
        counts = generate(opts, out)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak, "bytes": size, "counts": counts}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--format", default="ndjson", choices=["ndjson", "bundle", "synthea-csv", "none"])
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--replicates", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    one = (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "POLARS_MAX_THREADS",
        "RAYON_NUM_THREADS",
    )
    env = {**os.environ, **dict.fromkeys(one, "1")}
    results = {}
    for fmt in (args.format, "none"):
        tmp = Path(tempfile.mkdtemp(prefix="synth-bench-"))
        try:
            cmd = [sys.executable, __file__, "--child", "--out", str(tmp), "--patients", str(args.patients),
                   "--format", fmt, "--replicates", str(args.replicates),
                   "--seed", str(args.seed)]  # fmt: skip
            if args.gzip:
                cmd.append("--gzip")
            line = subprocess.run(
                cmd, env=env, check=True, capture_output=True, text=True
            ).stdout.splitlines()[-1]
            r = json.loads(line)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        r["patients_per_s"] = args.patients / r["wall_s"]
        r["patients_per_cpu_s"] = args.patients / r["cpu_s"]
        results["simulation_only" if fmt == "none" else "full"] = r
    full = results["full"]
    print(
        json.dumps(
            {
                "benchmark": "synth",
                "patients": args.patients,
                "format": args.format,
                "gzip": args.gzip,
                "replicates": args.replicates,
                "cpu_count": os.cpu_count(),
                "load_avg_1m": os.getloadavg()[0],
                "seconds_for_100k_at_this_cpu_rate": 100_000 / full["patients_per_cpu_s"],
                **results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
