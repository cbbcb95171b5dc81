"""The training job's configuration (`pipelines/train.yaml`): a frozen pydantic model, extra keys refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ehr_risk.errors import ConfigError

ModelKind = Literal["lr", "gbm", "gru", "transformer", "ensemble"]
MemberKind = Literal["lr", "gbm", "gru", "transformer"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LRParams(_Frozen):
    C: list[float] = Field(
        default=[0.01, 0.1, 1.0], min_length=1, description="grid, chosen on tuning log loss"
    )
    class_weight: Literal["balanced"] | None = None
    censoring: Literal["ipcw", "drop"] = "ipcw"
    max_iter: int = Field(default=2000, ge=10)


class GBMParams(_Frozen):
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    max_iter: int = Field(default=1000, ge=1, description="upper bound; early stopping on the tuning split")
    max_leaf_nodes: int = Field(default=8, ge=2)
    min_samples_leaf: int = Field(default=200, ge=1)
    l2_regularization: float = Field(default=1.0, ge=0)
    n_iter_no_change: int = Field(default=20, ge=1)
    class_weight: Literal["balanced"] | None = None
    censoring: Literal["ipcw", "drop"] = "ipcw"


class NetworkParams(_Frozen):
    d_model: int = Field(default=64, ge=4)
    n_layers: int = Field(default=1, ge=1)
    n_heads: int = Field(default=4, ge=1)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    n_intervals: int = Field(default=10, ge=1, le=50, description="yearly hazard intervals")
    max_len: int = Field(default=256, ge=1, description="most recent events used per prediction time")
    use_static: bool = Field(default=True, description="join the tabular features")
    static_head: bool = Field(
        default=True, description="static features also through the non-linear head (else: wide path only)"
    )
    competing_risk: bool = Field(
        default=True, description="model death from other causes as a competing event (else: censoring)"
    )
    training_only_rows: bool = Field(
        default=False,
        description="also train on the task's training-only landmarks (off: each epoch stays as long)",
    )
    batch_size: int = Field(default=256, ge=1)
    max_epochs: int = Field(default=10, ge=1)
    patience: int = Field(default=2, ge=0)
    learning_rate: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    accelerator: str = "auto"
    threads: int | None = Field(
        default=1, ge=1, description="CPU threads for torch (None: torch's default); see pipelines/train.yaml"
    )


class EnsembleParams(_Frozen):
    members: list[MemberKind] = Field(
        default=["lr", "gbm", "gru"], min_length=2, description="models whose logits are averaged"
    )

    @field_validator("members")
    @classmethod
    def _distinct(cls, members: list[MemberKind]) -> list[MemberKind]:
        if len(set(members)) != len(members):
            raise ValueError("each member kind at most once")
        return members


class TrainConfig(_Frozen):
    dataset: Path = Field(
        description="dataset folder made by `ehr-risk dataset` (relative: to the working dir)"
    )
    tasks: list[str] = Field(min_length=1)
    model: ModelKind
    seed: int = 0
    horizons: list[float] | None = Field(
        default=None,
        description="output horizons in years; default: the label horizons (lr, gbm), 1..n_intervals",
    )
    experiment: str = "ehr-risk"
    run_name: str | None = None
    register_model: bool = True
    alias: str = "challenger"
    tracking_uri: str | None = Field(
        default=None, description="default: $MLFLOW_TRACKING_URI or sqlite:///mlruns"
    )
    output_dir: Path | None = Field(default=None, description="where tuning/held-out predictions are written")
    recalibration: Literal["logistic", "none"] = Field(
        default="logistic", description="refit intercept and slope of logit risk on the tuning split"
    )
    exclude_features: list[str] = Field(
        default=[], description="tabular feature names to leave out (shell patterns, e.g. '*:slope_*')"
    )
    lr: LRParams = Field(default_factory=LRParams)
    gbm: GBMParams = Field(default_factory=GBMParams)
    network: NetworkParams = Field(default_factory=NetworkParams)
    ensemble: EnsembleParams = Field(default_factory=EnsembleParams)


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read the YAML file and apply overrides (e.g. from the command line, None values ignored)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({type(exc).__name__})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']} ({exc.error_count()} problem(s))") from exc
