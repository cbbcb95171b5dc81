"""Model quality against the truth: synthetic cohort → ingest → ascvd_10y dataset → LR / GBM / GRU →
held-out AUROC and calibration, next to the Pooled Cohort Equations and the oracle (the generator's true
risk) on exactly the same held-out rows. Prints JSON.

    .venv/bin/python benchmarks/quality.py --patients 20000 --workdir /tmp/quality

`--models ensemble` also reports each member (trained once, inside the ensemble). `--exclude` leaves tabular
features out of every model, e.g. `--exclude '*:sd_*' '*:slope_*'`: the windowed counts and last values
only, to see what the sequence model finds in the history that such a table misses.

When gradient boosting and a sequence model (GRU or transformer) both ran, `sequence_vs_gbm` gives their
paired AUROC difference (subject-level bootstrap) on all held-out rows and on the rows where the generator
planted temporal effects: the truth file's `temporal_active` (a rising-pressure phase, a statin refill gap
or an unstable phase on at the landmark) and the top quintile of its `temporal_log_hr` (those plus the
person's SBP variability and visit-rate burden), the signal that only the history shows. Each model's
`temporal_headroom` is the AUROC it would reach if the truth's temporal log-hazard were added to it: what
is left in those effects for any model to win. `benchmarks/quality_pool.py` pools the comparison over
cohorts of several seeds.

`table_bound` is what the tabular features can carry at best: the truth's risk regressed on them (gradient
boosting on its logit, fitted on the training and tuning rows), scored on the same held-out rows and paired
with the PCE. A model fitted to labels from the same table cannot expect to beat it; only what the sequence
model reads beyond the table can. `--no-bound` skips it. On the 100k cohorts of seeds 11, 12 and 13 it
reaches 0.796 / 0.798 / 0.797 (oracle 0.809 / 0.808 / 0.805) and, on the PCE's rows, +0.034 / +0.029 /
+0.034 over the PCE: the learned models come within about 0.005 of it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import polars as pl

REPO = Path(__file__).resolve().parent.parent


def truth_column(work: Path, table: pl.DataFrame, horizon: int) -> pl.DataFrame:
    """The generator's true ascvd risk at each row's landmark (and its temporal part), joined through the
    private id map."""
    ids = pl.read_parquet(work / "events" / "private" / "subject_ids.parquet")
    truth = pl.read_parquet(work / "raw" / "truth" / "risk.parquet").filter(
        (pl.col("outcome") == "ascvd") & (pl.col("horizon_years") == horizon)
    )
    truth = truth.join(ids, on="source_id").select(
        "subject_id",
        pl.col("landmark").cast(pl.Datetime("us")).alias("prediction_time"),
        pl.col("risk").alias("oracle"),
        "temporal_active",
        "temporal_log_hr",
    )
    return table.join(truth, on=["subject_id", "prediction_time"], how="left", maintain_order="left")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ehr-risk-quality"))
    ap.add_argument("--models", nargs="+", default=["lr", "gbm", "gru"])
    ap.add_argument("--gru-epochs", type=int, default=None, help="default: pipelines/train.yaml's max_epochs")
    ap.add_argument("--network", type=json.loads, default={}, help='JSON, e.g. {"dropout": 0.2}')
    ap.add_argument("--n-boot", type=int, default=300)
    ap.add_argument("--reuse", action="store_true", help="reuse the workdir's events and dataset")
    ap.add_argument("--exclude", nargs="*", default=[], help="tabular feature patterns to leave out")
    ap.add_argument("--no-bound", action="store_true", help="skip the table's information bound")
    args = ap.parse_args()

    from ehr_risk.dataset import build_dataset
    from ehr_risk.ingest.run import IngestOptions, ingest
    from ehr_risk.synth import SynthOptions, generate
    from ehr_risk.tasks import load_task
    from ehr_risk.train import train
    from ehr_risk.train_config import load_train_config

    work: Path = args.workdir
    task = load_task("ascvd_10y")
    seconds: dict[str, float] = {}
    if not args.reuse:
        t0 = time.monotonic()
        generate(SynthOptions(patients=args.patients, seed=args.seed), work / "raw")
        seconds["synth"] = time.monotonic() - t0
        t0 = time.monotonic()
        ingest([work / "raw" / "fhir"], work / "events", IngestOptions())
        seconds["ingest"] = time.monotonic() - t0
        t0 = time.monotonic()
        build_dataset(work / "events", [task], work / "dataset")
        seconds["dataset"] = time.monotonic() - t0
    uri = f"sqlite:///{work / 'mlflow.db'}"
    results: dict[str, Any] = {"patients": args.patients, "seed": args.seed, "task": task.name}
    results["exclude_features"] = args.exclude
    base = load_train_config(REPO / "pipelines" / "train.yaml", {"dataset": str(work / "dataset")})
    tables: dict[str, pl.DataFrame] = {}
    for kind in args.models:
        t0 = time.monotonic()
        overrides: dict[str, Any] = {"dataset": str(work / "dataset"), "tasks": [task.name], "model": kind}
        overrides["tracking_uri"] = uri
        overrides["exclude_features"] = args.exclude
        if kind in ("gru", "transformer", "ensemble"):
            epochs = {} if args.gru_epochs is None else {"max_epochs": args.gru_epochs}
            overrides["network"] = {**base.network.model_dump(), **epochs, **args.network}
        result = train(load_train_config(REPO / "pipelines" / "train.yaml", overrides))
        seconds[f"train_{kind}"] = time.monotonic() - t0
        named = [(kind, result.predictor)] + [(f"{kind}/{m.model_kind}", m) for m in result.predictor.members]
        for name, predictor in named:
            entry, tables[name] = quality_entry(work, predictor, task, args.n_boot)
            results[name] = entry
            print(json.dumps({name: entry}, default=str), flush=True)
    if tables and not args.no_bound:
        t0 = time.monotonic()
        results["table_bound"] = table_bound(work, next(iter(tables.values())), task, args.n_boot)
        seconds["table_bound"] = time.monotonic() - t0
        print(json.dumps({"table_bound": results["table_bound"]}, default=str), flush=True)
    for seq, gbm in sequence_gbm_pairs(list(tables)):
        entry = sequence_vs_gbm(tables[seq], tables[gbm], task, args.n_boot)
        results[f"sequence_vs_gbm:{seq}"] = entry
        print(json.dumps({f"sequence_vs_gbm:{seq}": entry}, default=str), flush=True)
    results["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    print(json.dumps(results, indent=2, default=str))


def quality_entry(work: Path, predictor: Any, task: Any, n_boot: int) -> tuple[dict[str, Any], pl.DataFrame]:
    """Held-out AUROC, calibration slope and Brier, and the paired comparisons with the PCE and oracle;
    also the held-out predictions table."""
    from ehr_risk.holdout import predictions_table

    table = predictions_table(predictor, work / "dataset", task.name, compare=["pce"])
    table = truth_column(work, table, int(task.primary_horizon))
    return table_entry(table, task, n_boot), table


def table_entry(table: pl.DataFrame, task: Any, n_boot: int) -> dict[str, Any]:
    """`quality_entry`'s figures from a predictions table that carries the truth columns."""
    from ehr_risk.holdout import MODEL_COLUMN

    m, paired = against_pce_and_oracle(table, task, n_boot, "model")
    entry: dict[str, Any] = {"counts": m["counts"]}
    for name in ("auroc", "calibration_slope", "brier"):
        entry[name] = m["scores"][MODEL_COLUMN]["metrics"].get(name)
    entry.update(paired)
    entry["temporal_headroom"] = temporal_headroom(table)
    return entry


def against_pce_and_oracle(
    table: pl.DataFrame, task: Any, n_boot: int, label: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The evaluation metrics of `table`'s model column, and its paired AUROC comparisons with the PCE
    and the oracle (`vs_pce`, `vs_oracle`; the model's AUROC named `<label>_auroc`)."""
    from ehr_risk.evaluation import evaluate
    from ehr_risk.holdout import MODEL_COLUMN

    m = evaluate(
        table,
        model=MODEL_COLUMN,
        compare=["pce", "oracle"],
        horizon_years=task.primary_horizon,
        time_to_event=None,
        n_boot=n_boot,
    ).metrics
    out = {}
    for other in ("pce", "oracle"):
        paired = m["comparisons"].get(other, {}).get("paired", {})
        out[f"vs_{other}"] = {
            "n_rows_paired": m["comparisons"].get(other, {}).get("n_rows_paired"),
            f"{label}_auroc": paired.get("model_auroc"),
            f"{other}_auroc": paired.get("score_auroc"),
            "delta_auroc": paired.get("delta_auroc"),
        }
    return m, out


def temporal_headroom(table: pl.DataFrame) -> dict[str, float]:
    """How much AUROC the planted temporal effects could still add to the model: the model's logit plus
    the truth's `temporal_log_hr` in a logistic regression, cross-fitted over two halves of the subjects,
    against the model alone. A model that read those effects perfectly from the history would gain
    nothing; the gain bounds what any model can win from them over this one."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from ehr_risk.models.ensemble import logit

    rows = table.filter(pl.col("label").is_not_null() & pl.col("temporal_log_hr").is_not_null())
    y = rows.get_column("label").to_numpy()
    x = np.column_stack([logit(rows.get_column("model_risk").to_numpy()), rows.get_column("temporal_log_hr")])
    half = rows.get_column("subject_id").to_numpy() % 2 == 0
    combined = np.zeros(len(y))
    for fit in (half, ~half):
        combined[~fit] = LogisticRegression().fit(x[fit], y[fit]).decision_function(x[~fit])
    alone = float(roc_auc_score(y, x[:, 0]))
    return {"model_auroc": alone, "with_true_temporal_auroc": float(roc_auc_score(y, combined))}


def table_bound(work: Path, table: pl.DataFrame, task: Any, n_boot: int) -> dict[str, Any]:
    """The held-out AUROC of E[true logit | tabular features] (see the module docstring), alone and paired
    with the PCE and the oracle on the rows `quality_entry` evaluates (`table`: a model's held-out table)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from ehr_risk.holdout import MODEL_COLUMN
    from ehr_risk.models.ensemble import expit, logit

    keys = ["subject_id", "prediction_time"]
    features = pl.read_parquet(work / "dataset" / "features" / "tabular.parquet")
    names = [c for c in features.columns if c not in keys]
    fit_ids = pl.read_parquet(work / "dataset" / "splits.parquet").filter(pl.col("split") != "held_out")
    fit = features.join(fit_ids.select("subject_id"), on="subject_id", how="semi")
    fit = truth_column(work, fit, int(task.primary_horizon)).filter(pl.col("oracle").is_not_null())
    reg = HistGradientBoostingRegressor(
        max_iter=1000, learning_rate=0.05, early_stopping=True, random_state=0
    )
    reg.fit(fit.select(names).cast(pl.Float64).to_numpy(), logit(fit.get_column("oracle").to_numpy()))
    held = table.select(keys).join(features, on=keys, how="left", maintain_order="left")
    bound = expit(reg.predict(held.select(names).cast(pl.Float64).to_numpy()))
    m, paired = against_pce_and_oracle(
        table.with_columns(pl.Series(MODEL_COLUMN, bound)), task, n_boot, "bound"
    )
    out: dict[str, Any] = {"fit_rows": fit.height, "n_iter": int(reg.n_iter_)}
    out["auroc"] = m["scores"][MODEL_COLUMN]["metrics"].get("auroc")
    return {**out, **paired}


def sequence_gbm_pairs(names: list[str]) -> list[tuple[str, str]]:
    """(sequence model, gradient boosting) pairs among the trained names: a standalone `gru` or
    `transformer` against a standalone `gbm`, ensemble members against the same ensemble's `gbm`."""
    pairs = []
    for name in names:
        prefix, _, kind = name.rpartition("/")
        own = f"{prefix}/gbm" if prefix else "gbm"
        gbm = own if own in names else "gbm"
        if kind in ("gru", "transformer") and gbm in names:
            pairs.append((name, gbm))
    return pairs


def sequence_vs_gbm(seq: pl.DataFrame, gbm: pl.DataFrame, task: Any, n_boot: int) -> dict[str, Any]:
    """Paired AUROC of the sequence model minus gradient boosting, on all rows and where the generator
    planted temporal effects (see the module docstring)."""
    from ehr_risk.evaluation import evaluate
    from ehr_risk.holdout import MODEL_COLUMN

    keys = ["subject_id", "prediction_time"]
    table = seq.join(gbm.select(*keys, pl.col(MODEL_COLUMN).alias("gbm")), on=keys, how="left")
    cut = table.filter(pl.col("label").is_not_null()).get_column("temporal_log_hr").quantile(0.8)
    subsets = {
        "all": table,
        "temporal_active": table.filter(pl.col("temporal_active").fill_null(False)),
        "temporal_log_hr_top_quintile": table.filter(pl.col("temporal_log_hr") >= cut),
        "no_temporal_effect_on": table.filter(~pl.col("temporal_active").fill_null(True)),
    }
    out: dict[str, Any] = {}
    for name, rows in subsets.items():
        ev = evaluate(
            rows,
            model=MODEL_COLUMN,
            compare=["gbm"],
            horizon_years=task.primary_horizon,
            time_to_event=None,
            subgroups=(),
            n_boot=n_boot,
        )
        m = ev.metrics
        paired = m["comparisons"]["gbm"]["paired"]
        out[name] = {
            "n_rows": m["counts"]["rows_evaluated"],
            "n_events": m["counts"]["events"],
            "sequence_auroc": paired.get("model_auroc"),
            "gbm_auroc": paired.get("score_auroc"),
            "delta_auroc": paired.get("delta_auroc"),
        }
    return out


if __name__ == "__main__":
    main()
