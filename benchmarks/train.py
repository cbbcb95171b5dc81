"""Training throughput of the sequence models: sequences/s for the GRU and the transformer at L = 256 and 512,
training (forward + backward + AdamW step through the real batching code) and inference, and the peak
memory of each run (every configuration runs in its own process, so peak RSS is per configuration).

    .venv/bin/python benchmarks/train.py [--device cpu|cuda] [--batches 6] [--patients 100000]

Prints one JSON document. Sequences are full length (the worst case: real histories are mostly shorter
and length-bucketed batches trim padding). `gru_100k_estimate_minutes` extrapolates a GRU training run
(`--patients` × `--times-per-patient` sequences, `--epochs` epochs, plus the tuning pass) from the L=256 rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any, Literal


def _one(
    kind: Literal["gru", "transformer"],
    length: int,
    device: str,
    batches: int,
    batch_size: int,
    d_model: int,
    n_static: int,
) -> dict:
    import numpy as np
    import pyarrow as pa
    import torch

    from ehr_risk.models.data import SequenceArrays, SequenceDataset, make_loader
    from ehr_risk.models.hazard import hazard_nll
    from ehr_risk.models.networks import HazardNetwork, NetworkConfig

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = batches * batch_size
    flat = n * length
    offsets = np.arange(0, flat + 1, length)
    col = lambda values, t: pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, t))  # noqa: E731
    table = pa.table(
        {
            "tokens": col(rng.integers(2, 5000, flat).astype(np.int32), pa.int32()),
            "delta_days": col(rng.uniform(0, 20000, flat).astype(np.float32), pa.float32()),
            "age_years": col(rng.uniform(20, 90, flat).astype(np.float32), pa.float32()),
            "value_bin": col(rng.integers(0, 11, flat).astype(np.int8), pa.int8()),
        }
    )
    static = rng.normal(size=(n, n_static)).astype(np.float32)
    arrays = SequenceArrays.from_arrow(table, static)
    targets = (rng.integers(0, 11, (n, 1)), rng.random((n, 1)) < 0.1, np.ones((n, 1), bool))
    ds = SequenceDataset(arrays, length, *targets)
    cfg = NetworkConfig(
        kind=kind, n_tokens=5000, n_value_bins=10, n_static=n_static, n_tasks=1, d_model=d_model
    )
    net = HazardNetwork(cfg).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device == "cuda"
        else torch.autocast("cpu", enabled=False)
    )

    def to(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    loader = make_loader(ds, batch_size, shuffle=True, seed=0)
    it = iter(loader)
    first = to(next(it))  # warm-up step (allocations, kernels)
    with autocast:
        hazard_nll(net(first), first["interval"], first["event"], first["task_mask"]).backward()
    opt.zero_grad()
    sync()
    t0 = time.perf_counter()
    seen = 0
    for batch in it:
        b = to(batch)
        with autocast:
            loss = hazard_nll(net(b), b["interval"], b["event"], b["task_mask"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        seen += len(batch["tokens"])
    sync()
    train_s = time.perf_counter() - t0
    net.eval()
    t0 = time.perf_counter()
    with torch.inference_mode(), autocast:
        for batch in make_loader(ds, batch_size, shuffle=False):
            net(to(batch))
    sync()
    infer_s = time.perf_counter() - t0
    out = {
        "model": kind,
        "L": length,
        "device": device,
        "d_model": d_model,
        "batch_size": batch_size,
        "params": sum(p.numel() for p in net.parameters()),
        "train_sequences_per_s": round(seen / train_s, 1),
        "inference_sequences_per_s": round(n / infer_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if device == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument(
        "--batches", type=int, default=6, help="timed training batches per configuration (+1 warm-up)"
    )
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--d-model", type=int, default=64, help="the default of pipelines/train.yaml")
    ap.add_argument("--static", type=int, default=400, help="number of static (tabular) features")
    ap.add_argument("--lengths", default="256,512")
    ap.add_argument("--models", default="gru,transformer")
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--times-per-patient", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    if a.one:
        kind, length = a.one.split(":")
        if kind not in ("gru", "transformer"):
            raise SystemExit(f"unknown model {kind}")
        result = _one(kind, int(length), a.device, a.batches, a.batch_size, a.d_model, a.static)
        print(json.dumps(result))
        return
    results: list[dict[str, Any]] = []
    for kind in a.models.split(","):
        for length in (int(x) for x in a.lengths.split(",")):
            cmd = [sys.executable, __file__, "--one", f"{kind}:{length}", "--device", a.device]
            cmd += ["--batches", str(a.batches), "--batch-size", str(a.batch_size)]
            cmd += ["--d-model", str(a.d_model), "--static", str(a.static), "--threads", str(a.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    report: dict[str, Any] = {
        "benchmark": "train",
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": _threads(),
            "python": platform.python_version(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "results": results,
    }
    gru = next((r for r in results if r["model"] == "gru" and r["L"] == 256), None)
    if gru:
        n_seq = a.patients * a.times_per_patient
        train_s = a.epochs * n_seq * 0.7 / gru["train_sequences_per_s"]  # 70% train split
        tune_s = a.epochs * n_seq * 0.15 / gru["inference_sequences_per_s"]
        report["gru_100k_estimate_minutes"] = round((train_s + tune_s) / 60, 1)
        report["gru_estimate_assumes"] = (
            f"{a.patients} patients x {a.times_per_patient} prediction times, {a.epochs} epochs, "
            "all sequences at L=256 (an upper bound), 70% train / 15% tuning"
        )
    print(json.dumps(report, indent=2))


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


if __name__ == "__main__":
    main()
