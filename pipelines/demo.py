"""The end-to-end demo (`make demo`): synthetic records → events → ascvd_10y dataset → models vs clinical
scores → champion → batch scores, on local files and the local MLflow store only.

Thin on purpose: every step is one library call; the settings are in pipelines/demo.yaml.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def step(title: str) -> float:
    say(f"\n== {title}")
    return time.monotonic()


def main(config_path: Path = REPO / "pipelines" / "demo.yaml") -> int:
    from ehr_risk import registry
    from ehr_risk.dataset import build_dataset
    from ehr_risk.evaluation import evaluate
    from ehr_risk.holdout import DEFAULT_COMPARE, MODEL_COLUMN, predictions_table
    from ehr_risk.ingest.run import IngestOptions, ingest
    from ehr_risk.scoring import ModelRef, score
    from ehr_risk.synth import SynthOptions, generate
    from ehr_risk.tasks import load_task
    from ehr_risk.train import train
    from ehr_risk.train_config import load_train_config

    cfg: dict[str, Any] = yaml.safe_load(config_path.read_text())
    out = Path(cfg["output_dir"])
    if out.exists():
        shutil.rmtree(out)  # the demo starts clean so its numbers are reproducible
    started = time.monotonic()
    task = load_task(cfg["task"])

    t0 = step(f"1/6 synthesising {cfg['patients']:,} patients (seed {cfg['seed']})")
    counts = generate(SynthOptions(patients=cfg["patients"], seed=cfg["seed"]), out / "raw")
    say(f"   {counts} in {time.monotonic() - t0:.0f}s")

    t0 = step("2/6 ingesting FHIR NDJSON into the MEDS event table")
    summary = ingest([out / "raw" / "fhir"], out / "events", IngestOptions(), lambda m: say(f"   {m}"))
    totals = summary.totals()
    say(f"   {totals} -> {summary.events:,} events in {time.monotonic() - t0:.0f}s")

    t0 = step(f"3/6 building the {task.name} dataset (labels, splits, features)")
    build_dataset(out / "events", [task], out / "dataset", progress=lambda s, d, n: say(f"   {s}: {d}/{n}"))
    say(f"   done in {time.monotonic() - t0:.0f}s")

    results: dict[str, Any] = {}
    compare = list(DEFAULT_COMPARE.get(task.name, ()))
    for kind in cfg["models"]:
        t0 = step(f"4/6 training {kind} and evaluating it against {', '.join(compare)}")
        train_cfg = load_train_config(
            REPO / "pipelines" / "train.yaml",
            {"dataset": str(out / "dataset"), "tasks": [task.name], "model": kind, **cfg.get(kind, {})},
        )
        result = train(train_cfg, lambda m: say(f"   {m}"))
        table = predictions_table(result.predictor, out / "dataset", task.name, compare=compare)
        ev = evaluate(
            table,
            model=MODEL_COLUMN,
            compare=compare,
            horizon_years=task.primary_horizon,
            n_boot=cfg["n_boot"],
            out_dir=out / "reports" / kind,
            context={"task": task.name, "model_kind": kind, "run_id": result.run_id},
        )
        registry.log_artifacts(result.run_id, out / "reports" / kind, "evaluation")
        results[kind] = (result, ev)
        say(f"   held-out AUROC {ev.estimate(MODEL_COLUMN, 'auroc'):.3f} in {time.monotonic() - t0:.0f}s")

    step("5/6 registering the best model as champion")
    best = max(results, key=lambda k: results[k][1].estimate(MODEL_COLUMN, "auroc") or 0.0)
    name = registry.registered_name(task.name)
    best_version = next(v.version for v in results[best][0].versions if v.name == name)
    registry.set_alias(name, "champion", best_version)
    say(f"   {name} v{best_version} ({best}) is champion")

    t0 = step(f"6/6 batch scoring the population as of {cfg['as_of']}")
    champion_uri = f"models:/{name}@champion"
    predictor = registry.load_predictor(champion_uri)
    _, version, run_id = registry.describe_model(champion_uri)
    scored = score(
        predictor,
        task,
        out / "events",
        dt.date.fromisoformat(str(cfg["as_of"])),
        out / "scores",
        ModelRef(name, version, run_id, champion_uri),
        fhir=True,
    )
    say(f"   {scored.subjects_scored:,} subjects scored in {time.monotonic() - t0:.0f}s")

    print_table(results, compare, best)
    print(f"\nreports: {out / 'reports'}/<model>/report.html")
    print(f"scores:  {scored.partition}")
    print(f"MLflow:  {registry.resolve_tracking_uri()}  (model {name}@champion = v{best_version}, {best})")
    print(f"demo finished in {time.monotonic() - started:.0f}s")
    return 0


def print_table(results: dict[str, Any], compare: list[str], best: str) -> None:
    from ehr_risk.holdout import MODEL_COLUMN

    def fmt(metric: dict[str, Any] | None) -> str:
        if not metric or metric.get("estimate") is None:
            return "n/a"
        if metric.get("ci_low") is None or metric.get("ci_high") is None:
            return f"{metric['estimate']:.3f}"
        return f"{metric['estimate']:.3f} [{metric['ci_low']:.3f}-{metric['ci_high']:.3f}]"

    rows = []
    for kind, (_, ev) in results.items():
        entry = ev.metrics["scores"][MODEL_COLUMN]
        rows.append((kind + (" *" if kind == best else ""), entry["n_rows"], entry["metrics"]))
    _, ev = results[best]
    for name in compare:
        entry = ev.metrics["scores"][name]
        rows.append((name, entry["n_rows"], entry["metrics"]))
    print("\nheld-out 10-year ASCVD (95% bootstrap CI); * = champion; scores only on rows where computable")
    print(f"{'model':<20}{'rows':>6}  {'AUROC':<24}{'Brier':<24}{'calibration slope':<24}")
    for label, n, m in rows:
        cells = "".join(f"{fmt(m.get(k)):<24}" for k in ("auroc", "brier", "calibration_slope"))
        print(f"{label:<20}{n:>6}  {cells}")


if __name__ == "__main__":
    sys.exit(main())
