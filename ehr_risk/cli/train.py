"""`ehr-risk train`: fit a model on a dataset folder, log it to MLflow and register it as challenger."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ehr_risk.cli import app


@app.command()
def train(
    config: Path = typer.Option(..., "--config", help="Training config YAML (see pipelines/train.yaml)."),
    dataset: Path | None = typer.Option(None, "--dataset", help="Override the config's dataset folder."),
    model: str | None = typer.Option(
        None, "--model", help="Override the model kind: lr | gbm | gru | transformer."
    ),
    task: list[str] | None = typer.Option(None, "--task", help="Override the task(s); repeat for several."),
    output_dir: Path | None = typer.Option(None, "--out", help="Write tuning/held-out predictions here."),
    no_register: bool = typer.Option(
        False, "--no-register", help="Log the run but register no model version."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show Lightning's and MLflow's own messages."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Train a model (lr, gbm, gru, transformer) and register it as `ehr-risk-<task>@challenger`."""
    import logging
    import warnings

    from ehr_risk.train import train as run_train
    from ehr_risk.train_config import load_train_config

    if not verbose:
        import lightning.pytorch  # noqa: F401  (their imports set their loggers' levels: quiet them after)
        import mlflow  # noqa: F401

        for name in ("lightning", "lightning.pytorch", "lightning.fabric", "mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", module="lightning.*")
        warnings.filterwarnings("ignore", module="mlflow.*")

    overrides = {
        "dataset": dataset,
        "model": model,
        "tasks": list(task) if task else None,
        "output_dir": output_dir,
        "register_model": False if no_register else None,
    }
    cfg = load_train_config(config, overrides)

    def message(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    result = run_train(cfg, message)
    for task_name in cfg.tasks:
        h = result.predictor.primary_horizons[task_name]
        auc = result.metrics.get(f"held_out_auroc_{task_name}_{h:g}y")
        shown = f"{auc:.3f}" if auc is not None else "n/a"
        print(f"train: {cfg.model} {task_name}: held-out AUROC at {h:g}y {shown}")
    for v in result.versions:
        print(f"train: registered {v.name} version {v.version} as @{v.alias} ({v.model_uri})")
    print(f"train: run {result.run_id}; model {result.model_uri}")
    if result.predictions_path is not None:
        print(f"train: predictions in {result.predictions_path}")
