"""Pool `benchmarks/quality.py`'s sequence-vs-gradient-boosting comparisons over independent cohorts.

One 100k-patient cohort holds a few thousand rows where planted temporal effects are on, so the paired
ΔAUROC there has a bootstrap interval about ±0.007 wide, as wide as the effect. Cohorts generated with
different seeds are independent, so their estimates pool by inverse variance (fixed effect), each
variance taken from the bootstrap interval (half-width / 1.96). Prints JSON.

    .venv/bin/python benchmarks/quality_pool.py quality_seed11.log quality_seed12.log ...

Each file is quality.py's (or quality_external.py's) output (its JSON lines, or the final JSON); every
`sequence_vs_gbm:<name>` entry counts as one cohort's estimate (use one name per cohort: `--name gru`, or
`ensemble/gru`; external evaluations: each cohort scored once, by models trained on another).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def entries(path: Path, name: str) -> list[dict[str, Any]]:
    """The `sequence_vs_gbm:<name>` entries of one quality.py output file."""
    key, found = f"sequence_vs_gbm:{name}", []
    for line in path.read_text().splitlines():
        if line.startswith("{") and f'"{key}"' in line:
            found.append(json.loads(line)[key])
    return found


def pool(estimates: list[tuple[float, float, float]]) -> dict[str, float]:
    """Fixed-effect inverse-variance pool of (estimate, ci_low, ci_high) triples."""
    weights, values = [], []
    for est, lo, hi in estimates:
        se = (hi - lo) / (2 * 1.959964)
        weights.append(1.0 / se**2)
        values.append(est)
    total = sum(weights)
    mean = sum(w * v for w, v in zip(weights, values, strict=True)) / total
    se = math.sqrt(1.0 / total)
    return {"estimate": mean, "ci_low": mean - 1.959964 * se, "ci_high": mean + 1.959964 * se, "se": se}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", type=Path, nargs="+")
    ap.add_argument("--name", nargs="+", default=["gru", "ensemble/gru"], help="entries to pool")
    args = ap.parse_args()
    cohorts = [(str(f), e) for f in args.files for n in args.name for e in entries(f, n)]
    if not cohorts:
        raise SystemExit("no sequence_vs_gbm entries found")
    out: dict[str, Any] = {"cohorts": [f for f, _ in cohorts], "subsets": {}}
    # subsets are the dict entries (quality_external.py adds where the models and rows came from)
    for subset in [k for k, v in cohorts[0][1].items() if isinstance(v, dict)]:
        rows = [e[subset] for _, e in cohorts]
        d = [r["delta_auroc"] for r in rows]
        out["subsets"][subset] = {
            "per_cohort": [
                {"n_rows": r["n_rows"], "n_events": r["n_events"], "delta_auroc": x}
                for r, x in zip(rows, d, strict=True)
            ],
            "pooled_delta_auroc": pool([(x["estimate"], x["ci_low"], x["ci_high"]) for x in d]),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
