"""The retraining job: new data in, a challenger trained, and `champion` moved only if the gate passes.

Steps: ingest new extracts into the event table (incremental) → rebuild the dataset → train and register a
challenger (alias `challenger`) → score challenger and current champion on the same held-out rows (each
through its own featurizers, from the events) → evaluate with paired bootstrap intervals → gate → move the
alias or not. The decision and its numbers go to MLflow tags on the challenger's run and to a JSON file. A
rejected challenger stays registered (alias `challenger`), so it can be inspected.

Gate (config `gate`): with a champion, the lower 95% bound of ΔAUROC (challenger − champion) must exceed
`min_auroc_delta` and the challenger's calibration slope must lie in `calibration_slope`; on the first run
(no champion yet) the challenger must beat the clinical score `first_run_baseline` the same way.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ehr_risk.errors import ConfigError, ModelNotFoundError

CHAMPION = "champion"
Message = Callable[[str], None]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gate(_Frozen):
    min_auroc_delta: float = Field(default=0.0, description="lower CI bound of ΔAUROC must be above this")
    calibration_slope: tuple[float, float] = (0.8, 1.2)
    first_run_baseline: str = "pce"
    n_boot: int = Field(default=1000, ge=100)
    seed: int = 0


class RetrainConfig(_Frozen):
    task: str
    events: Path
    dataset: Path
    train_config: Path
    new_data: list[Path] = Field(default_factory=list)
    train_overrides: dict[str, Any] = Field(default_factory=dict)
    gate: Gate = Field(default_factory=Gate)
    output_dir: Path = Path("retrain_out")
    tracking_uri: str | None = None


def load_retrain_config(path: Path) -> RetrainConfig:
    try:
        raw = yaml.safe_load(path.read_text())
        return RetrainConfig.model_validate(raw)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: retrain config not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({type(exc).__name__})") from exc
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}: {where}: {err['msg']} ({exc.error_count()} error(s))") from exc


@dataclass
class Decision:
    promoted: bool
    reason: str
    challenger_version: str
    champion_version: str | None
    numbers: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def gate_decision(metrics: dict[str, Any], compared: str, gate: Gate) -> tuple[bool, str, dict[str, Any]]:
    """Apply the gate to an evaluation's metrics.json content (model vs `compared`)."""
    slope = metrics["scores"]["model_risk"]["metrics"].get("calibration_slope", {}).get("estimate")
    paired = metrics["comparisons"].get(compared, {}).get("paired", {})
    delta = paired.get("delta_auroc", {})
    numbers = {
        "compared_with": compared,
        "delta_auroc": delta.get("estimate"),
        "delta_auroc_ci_low": delta.get("ci_low"),
        "delta_auroc_ci_high": delta.get("ci_high"),
        "calibration_slope": slope,
        "n_rows_paired": metrics["comparisons"].get(compared, {}).get("n_rows_paired"),
    }
    low, (s_lo, s_hi) = delta.get("ci_low"), gate.calibration_slope
    if low is None:
        return False, f"no paired ΔAUROC against {compared}", numbers
    if low <= gate.min_auroc_delta:
        return (
            False,
            f"ΔAUROC lower bound {low:.4f} not above {gate.min_auroc_delta:g} vs {compared}",
            numbers,
        )
    if slope is None or not s_lo <= slope <= s_hi:
        return False, f"calibration slope {slope} outside [{s_lo:g}, {s_hi:g}]", numbers
    return True, f"ΔAUROC lower bound {low:.4f} above {gate.min_auroc_delta:g} vs {compared}", numbers


def retrain(config: RetrainConfig, message: Message = lambda _m: None) -> Decision:
    from ehr_risk import registry
    from ehr_risk.dataset import build_dataset
    from ehr_risk.evaluation import evaluate
    from ehr_risk.holdout import MODEL_COLUMN, model_risks, predictions_table
    from ehr_risk.ingest.run import IngestOptions, ingest
    from ehr_risk.tasks import load_task
    from ehr_risk.train import train
    from ehr_risk.train_config import load_train_config

    task = load_task(config.task)
    if config.new_data:
        message(f"retrain: ingesting {len(config.new_data)} new input(s) into {config.events}")
        ingest(list(config.new_data), config.events, IngestOptions(incremental=True), message)
    message(f"retrain: rebuilding dataset {config.dataset}")
    build_dataset(config.events, [task], config.dataset)
    overrides = {"dataset": str(config.dataset), "tasks": [config.task], "alias": "challenger"}
    if config.tracking_uri:
        overrides["tracking_uri"] = config.tracking_uri
    train_cfg = load_train_config(config.train_config, {**config.train_overrides, **overrides})
    message(f"retrain: training a {train_cfg.model} challenger")
    result = train(train_cfg, message)
    name = registry.registered_name(config.task)
    challenger_version = next(v.version for v in result.versions if v.name == name)
    try:
        champion = registry.load_predictor(f"models:/{name}@{CHAMPION}", config.tracking_uri)
        champion_version: str | None = registry.alias_version(name, CHAMPION, config.tracking_uri)
    except ModelNotFoundError:
        champion, champion_version = None, None

    compared = "champion" if champion is not None else config.gate.first_run_baseline
    table = predictions_table(
        result.predictor, config.dataset, config.task, compare=[] if champion else [compared]
    )
    if champion is not None:
        keys = table.select("subject_id", "prediction_time")
        champ = model_risks(champion, keys, config.dataset, config.events)
        col = [c for c in champ.columns if c.startswith(f"risk_{config.task}_")]
        wanted = next(c for c in col if c.endswith(f"_{task.primary_horizon:g}y"))
        table = table.with_columns(champ.get_column(wanted).alias("champion"))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = config.output_dir / f"{stamp}-{name}-v{challenger_version}"
    evaluation = evaluate(
        table,
        label="label",
        model=MODEL_COLUMN,
        compare=[compared],
        horizon_years=task.primary_horizon,
        n_boot=config.gate.n_boot,
        seed=config.gate.seed,
        out_dir=out / "evaluation",
    )
    promoted, reason, numbers = gate_decision(evaluation.metrics, compared, config.gate)
    if promoted:
        registry.set_alias(name, CHAMPION, challenger_version, config.tracking_uri)
    decision = Decision(promoted, reason, challenger_version, champion_version, numbers)
    record = {**decision.to_dict(), "model": name, "run_id": result.run_id, "decided_at": stamp}
    (out / "decision.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    tags = {f"ehr_risk.promotion.{k}": str(v) for k, v in numbers.items()}
    tags.update({"ehr_risk.promotion.decision": "promoted" if promoted else "rejected"})
    tags["ehr_risk.promotion.reason"] = reason
    registry.set_tags(result.run_id, tags, config.tracking_uri)
    registry.log_artifact(result.run_id, out / "decision.json", "promotion", config.tracking_uri)
    registry.log_artifact(result.run_id, out / "evaluation", "evaluation", config.tracking_uri)
    return decision
