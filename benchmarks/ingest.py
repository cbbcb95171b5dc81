"""Ingestion throughput and memory: FHIR bundles at 1×, 4×, 16× (copies with rewritten ids).

For each scale a child process runs `ehr_risk.ingest.run.ingest` on the copies and reports the time of
the ingest call (imports excluded) and its peak RSS; another child times a plain parse of the same bytes
(gunzip + orjson.loads per file), the floor any Python FHIR reader pays. Each measurement is repeated and
the fastest kept (the machine may be shared). Prints one JSON document:

    {"fhir": {"scales": [{"scale", "files", "resources", "mb", "ingest_s", "parse_s",
                          "resources_per_s", "mb_per_s", "parse_mb_per_s", "throughput_vs_parse",
                          "peak_rss_mb", ...}], "rss_growth_1x_to_max": …, "targets": {…}},
     "csv": {...}}   # Synthea CSV at --csv-scales: benchmarks/ingest_csv.py `run()` (one copy of the logic)

Usage: python benchmarks/ingest.py [--data DIR] [--scales 1 4 16] [--repeat 2] [--keep DIR]
                                  [--csv-scales 1 16 64] [--no-csv | --no-fhir]
"""

from __future__ import annotations

import argparse
import gc
import gzip
import importlib.util
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "synthea_fhir_r4_bundles" / "bundles"
_UUID = re.compile(rb"([0-9a-f]{8})(-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def make_copies(src: Path, dest: Path, n: int) -> list[Path]:
    """`n` copies of every bundle, copy k with every UUID changed (first 8 hex digits XOR k), so that
    patients, resources and references stay consistent within a copy and distinct across copies."""
    folders = []
    files = sorted(src.glob("*.json*"))
    for k in range(n):
        folder = dest / f"copy-{k:03d}"
        folders.append(folder)
        if folder.exists():
            continue
        folder.mkdir(parents=True)
        for path in files:
            data = path.read_bytes()
            if path.name.endswith(".gz"):
                data = gzip.decompress(data)
            if k:
                data = _UUID.sub(lambda m, k=k: b"%08x%s" % (int(m[1], 16) ^ k, m[2]), data)  # type: ignore[misc]
            (folder / (path.name.removesuffix(".gz") + ".gz")).write_bytes(
                gzip.compress(data, compresslevel=1)
            )
    return folders


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def child_ingest(folders: list[Path], out: Path) -> dict[str, Any]:
    import polars  # noqa: F401 - imports before the clock starts
    import pyarrow.parquet  # noqa: F401

    from ehr_risk.ingest import fhir  # noqa: F401
    from ehr_risk.ingest.run import IngestOptions, ingest

    start, cpu = time.perf_counter(), time.process_time()
    summary = ingest(folders, out, IngestOptions())
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    totals = summary.totals()
    return {"seconds": elapsed, "cpu": cpu, "peak_rss_mb": _peak_rss_mb(), "events": summary.events, **totals}


def child_parse(folders: list[Path]) -> dict[str, Any]:
    import orjson

    files = sorted(p for f in folders for p in f.glob("*.gz"))
    result: dict[str, Any] = {"peak_rss_mb": 0.0}
    for label, collect in (("", True), ("_nogc", False)):  # plain, then with the cyclic GC paused
        if not collect:
            gc.disable()
        start, cpu = time.perf_counter(), time.process_time()
        size = 0
        for path in files:
            data = gzip.decompress(path.read_bytes())
            size += len(data)
            orjson.loads(data)
        result[f"seconds{label}"] = time.perf_counter() - start
        result[f"cpu{label}"] = time.process_time() - cpu
        result["bytes"] = size
        gc.enable()
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def _run_child(mode: str, folders: list[Path], out: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--out", str(out), *map(str, folders)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def measure(folders: list[Path], work: Path, repeat: int) -> dict[str, Any]:
    best_ingest: dict[str, Any] | None = None
    best_parse: dict[str, Any] | None = None
    rss = 0.0
    parses, runs = [], []
    for _ in range(repeat):  # interleaved, so both see the same machine load
        parse = _run_child("parse", folders, work / "unused")
        parses.append(parse)
        if best_parse is None or parse["seconds"] < best_parse["seconds"]:
            best_parse = parse
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        run = _run_child("ingest", folders, out)
        runs.append(run)
        rss = max(rss, run["peak_rss_mb"])
        if best_ingest is None or run["seconds"] < best_ingest["seconds"]:
            best_ingest = run
    assert best_ingest is not None and best_parse is not None
    mb = best_parse["bytes"] / 1e6
    cpu_parse = min(p["cpu"] for p in parses)
    cpu_ingest = min(r["cpu"] for r in runs)
    return {
        "files": sum(len(list(f.glob("*.gz"))) for f in folders),
        "resources": best_ingest["read"],
        "events": best_ingest["events"],
        "rejected": best_ingest["rejected"],
        "mb": round(mb, 1),
        "ingest_s": round(best_ingest["seconds"], 3),
        "parse_s": round(best_parse["seconds"], 3),
        "resources_per_s": round(best_ingest["read"] / best_ingest["seconds"]),
        "mb_per_s": round(mb / best_ingest["seconds"], 1),
        "parse_mb_per_s": round(mb / best_parse["seconds"], 1),
        "throughput_vs_parse": round(best_parse["seconds"] / best_ingest["seconds"], 3),
        "ingest_cpu_s": round(cpu_ingest, 3),
        "parse_cpu_s": round(cpu_parse, 3),
        "throughput_vs_parse_cpu": round(cpu_parse / cpu_ingest, 3),
        "parse_nogc_s": round(min(p["seconds_nogc"] for p in parses), 3),
        "peak_rss_mb": round(rss, 1),
        "parse_peak_rss_mb": round(best_parse["peak_rss_mb"], 1),
    }


def run_fhir(data: Path, scales: list[int], repeat: int, keep: Path | None) -> dict[str, Any]:
    work = keep or Path(tempfile.mkdtemp(prefix="ehr-risk-bench-"))
    try:
        folders = make_copies(data, work / "copies", max(scales))
        rows = []
        for scale in scales:
            row = measure(folders[:scale], work, repeat if scale < 16 else max(1, repeat - 1))
            rows.append({"scale": scale, **row})
            print(f"fhir {scale}x: {json.dumps(row)}", file=sys.stderr, flush=True)
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    growth = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"] - 1
    return {
        "data": str(data),
        "scales": rows,
        "rss_growth_1x_to_max": round(growth, 3),
        "targets": {
            "throughput_vs_parse>=0.40": all(r["throughput_vs_parse"] >= 0.40 for r in rows),
            "throughput_vs_parse_cpu>=0.40": all(r["throughput_vs_parse_cpu"] >= 0.40 for r in rows),
            "rss_growth<=0.20": growth <= 0.20,
        },
        "note": "ingest_s: the ingest call (imports excluded); parse_s: gunzip + orjson.loads per file "
        "(parse_nogc_s: the same with the cyclic GC paused, as the FHIR reader does); *_cpu: process CPU "
        "seconds, steadier than wall time on a shared machine; best of the repeats",
    }


def run_csv(scales: tuple[int, ...] = (1, 16)) -> dict[str, Any] | None:
    """The CSV section (Synthea CSV at `scales`, observation rows per CPU second and peak RSS), when
    benchmarks/ingest_csv.py (with `run() -> dict`) exists."""
    path = Path(__file__).with_name("ingest_csv.py")
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("ingest_csv", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result: dict[str, Any] = module.run(scales)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (copies are reused)")
    parser.add_argument("--no-csv", action="store_true")
    parser.add_argument("--no-fhir", action="store_true")
    parser.add_argument("--csv-scales", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--child", choices=["ingest", "parse"])
    parser.add_argument("--out", type=Path)
    parser.add_argument("folders", type=Path, nargs="*")
    args = parser.parse_args()
    if args.child == "ingest":
        print(json.dumps(child_ingest(args.folders, args.out)))
        return
    if args.child == "parse":
        print(json.dumps(child_parse(args.folders)))
        return
    report: dict[str, Any] = {}
    if not args.no_fhir:
        report["fhir"] = run_fhir(args.data, sorted(args.scales), args.repeat, args.keep)
    if not args.no_csv:
        csv = run_csv(tuple(sorted(args.csv_scales)))
        if csv is not None:
            report["csv"] = csv
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
