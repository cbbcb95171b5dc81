"""External validation: registered models trained on one generated cohort, scored on other cohorts of the
same generator (independent patients, other seeds) and compared there with the PCE and the oracle. Prints
JSON lines as benchmarks/quality.py does, so `quality_pool.py` pools the sequence-vs-GBM entries.

A 100k cohort's held-out split has ~6.5k rows where the PCE is computable, so its paired ΔAUROC against
the PCE has a bootstrap interval about ±0.01 wide, and its few thousand rows with planted temporal effects
give the sequence-vs-GBM difference a ±0.007 one. Every row of another 100k cohort (all splits: the
models never saw those patients) gives about twelve times the rows. The models score from the external
cohort's events with their own featurizers (vocabulary, value bins and feature spec of their training
cohort), as batch scoring at another site would.

    .venv/bin/python benchmarks/quality_external.py --models-from /tmp/q11 --models lr=5 gbm=6 gru=3 \\
        --ensemble --on /tmp/q12 [--save /tmp/external]

Each cohort folder is a `benchmarks/quality.py` workdir: raw/truth, events, dataset (and mlflow.db for
`--models-from`). `--ensemble` combines the given models as `ehr-risk train --model ensemble` does (mean
logit, then logistic recalibration on the training cohort's tuning split).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import polars as pl
from quality import sequence_gbm_pairs, sequence_vs_gbm, table_entry, truth_column

REGISTERED = "ehr-risk-ascvd_10y"


def calibrated_ensemble(work: Path, members: list[Any], task: Any) -> Any:
    """The members' ensemble, recalibrated on `work`'s tuning split as `fit_ensemble` does."""
    from ehr_risk.models.training_data import load_training_data
    from ehr_risk.train import ensemble_of, ensemble_scores, evaluation_scores, recalibrate

    data = load_training_data(work / "dataset", [task.name], need_tabular=True, need_sequence=True)
    ensemble = ensemble_of(members, {task.name: task.primary_horizon})
    parts = [evaluation_scores(m, data) for m in members]  # registered members: already calibrated
    risks = [{c: p.get_column(c).to_numpy() for c in ensemble.output_columns} for p in parts]
    ensemble.calibration = recalibrate(ensemble, data, ensemble_scores(ensemble, parts[0], risks), print)
    return ensemble


def ensemble_table(ensemble: Any, tables: list[pl.DataFrame], task: Any) -> pl.DataFrame:
    """The ensemble's predictions table from its members' (same rows): mean logit, then its calibration."""
    from ehr_risk.holdout import MODEL_COLUMN
    from ehr_risk.models.ensemble import mean_logit
    from ehr_risk.predictor import risk_column

    column = risk_column(task.name, task.primary_horizon)
    risk = mean_logit([{column: t.get_column(MODEL_COLUMN).to_numpy()} for t in tables], [column])
    risk = ensemble.calibration.apply(risk) if ensemble.calibration is not None else risk
    return tables[0].with_columns(pl.Series(MODEL_COLUMN, risk[column]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-from", type=Path, required=True, help="training cohort (with mlflow.db)")
    ap.add_argument(
        "--models",
        nargs="+",
        required=True,
        help="kind=registry version, e.g. gru=3 (a member of an ensemble version: its model of that kind)",
    )
    ap.add_argument("--ensemble", action="store_true", help="also their ensemble")
    ap.add_argument("--on", type=Path, nargs="+", required=True, help="external cohorts")
    ap.add_argument("--split", default="all", help="rows of the external cohorts' datasets")
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--save", type=Path, default=None, help="write each predictions table here")
    args = ap.parse_args()

    from ehr_risk.holdout import predictions_table
    from ehr_risk.registry import load_predictor
    from ehr_risk.tasks import load_task

    task = load_task("ascvd_10y")
    uri = f"sqlite:///{args.models_from / 'mlflow.db'}"
    models: dict[str, Any] = {}
    for spec in args.models:
        kind, _, version = spec.partition("=")
        loaded = load_predictor(f"models:/{REGISTERED}/{version}", uri=uri)
        # a registered ensemble lends its member of that kind
        found = [m for m in [loaded, *loaded.members] if m.model_kind == kind]
        if not found:
            raise SystemExit(f"{REGISTERED} version {version} is a {loaded.model_kind}, not {kind}")
        models[kind] = found[0]
    ensemble = calibrated_ensemble(args.models_from, list(models.values()), task) if args.ensemble else None
    for cohort in args.on:
        tables = {}
        for kind, predictor in models.items():
            table = predictions_table(
                predictor, cohort / "dataset", task.name, args.split, ["pce"], events=cohort / "events"
            )
            tables[kind] = truth_column(cohort, table, int(task.primary_horizon))
        if ensemble is not None:
            tables["ensemble"] = ensemble_table(ensemble, list(tables.values()), task)
        where = {"models_from": str(args.models_from), "cohort": str(cohort), "split": args.split}
        for name, table in tables.items():
            if args.save is not None:
                args.save.mkdir(parents=True, exist_ok=True)
                table.write_parquet(args.save / f"{cohort.name}_{name}.parquet")
            entry = {**where, **table_entry(table, task, args.n_boot)}
            print(json.dumps({name: entry}, default=str), flush=True)
        for seq, gbm in sequence_gbm_pairs(list(tables)):
            entry = {**where, **sequence_vs_gbm(tables[seq], tables[gbm], task, args.n_boot)}
            print(json.dumps({f"sequence_vs_gbm:{seq}": entry}, default=str), flush=True)


if __name__ == "__main__":
    main()
