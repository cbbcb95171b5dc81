"""Everything MLflow: runs (params, metrics, tags, artifacts), the Lightning logger, the pyfunc model that
wraps the Predictor, and the model registry (aliases, never stages).

Tracking and registry URI: the `uri` argument, else `MLFLOW_TRACKING_URI`, else `sqlite:///mlruns/mlflow.db`
(relative to the working directory; `mlruns/` is created). For a SQLite store, artifacts go to an
`artifacts/` folder beside the database file; a server keeps its own artifact root.

The pyfunc input and output are described in ehr_risk/pyfunc_input.py.

`mlflow` is imported inside functions only: importing this module is cheap.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ehr_risk.errors import ModelNotFoundError
from ehr_risk.pyfunc_input import EVENT_INPUT, example_input
from ehr_risk.pyfunc_input import PyfuncPredictor as PyfuncPredictor  # re-exported: the loaded model
from ehr_risk.pyfunc_input import pyfunc_input as pyfunc_input  # re-exported
from ehr_risk.pyfunc_input import split_pyfunc_input as split_pyfunc_input  # re-exported

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_EXPERIMENT = "ehr-risk"
CHALLENGER = "challenger"
PREDICTOR_FILE = "predictor.pkl"
_MLFLOW_TYPES = {
    pl.Int64(): "long",
    pl.Datetime("us"): "datetime",
    pl.String(): "string",
    pl.Float64(): "double",
}


def registered_name(task: str) -> str:
    return f"ehr-risk-{task}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI in force; creates the folder of a SQLite database."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def _client(uri: str | None) -> Any:
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(client: Any, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = None
    uri = client.tracking_uri
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///")).resolve()
        location = (db.parent / "artifacts").as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def start_run(
    run_name: str,
    tags: dict[str, str] | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    uri: str | None = None,
) -> str:
    """Create a run (status RUNNING) and return its id."""
    client = _client(uri)
    run = client.create_run(_experiment_id(client, experiment), run_name=run_name, tags=tags or {})
    return str(run.info.run_id)


def end_run(run_id: str, status: str = "FINISHED", uri: str | None = None) -> None:
    _client(uri).set_terminated(run_id, status)


def lightning_logger(run_id: str, experiment: str = DEFAULT_EXPERIMENT, uri: str | None = None) -> Any:
    """Lightning's MLflow logger writing per-epoch metrics into the run `run_id`."""
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(experiment_name=experiment, tracking_uri=resolve_tracking_uri(uri), run_id=run_id)


def log_params(run_id: str, params: dict[str, Any], uri: str | None = None) -> None:
    """Params (nested dicts flattened with dots; values cut to MLflow's 6,000 characters)."""
    from mlflow.entities import Param

    flat = _flatten(params)
    client = _client(uri)
    items = [Param(k, str(v)[:6000]) for k, v in sorted(flat.items())]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def log_metrics(
    run_id: str, metrics: dict[str, float], step: int | None = None, uri: str | None = None
) -> None:
    from mlflow.entities import Metric

    client = _client(uri)
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if np.isfinite(v)]
    for i in range(0, len(items), 500):
        client.log_batch(run_id, metrics=items[i : i + 500])


def set_tags(run_id: str, tags: dict[str, str], uri: str | None = None) -> None:
    client = _client(uri)
    for k, v in tags.items():
        client.set_tag(run_id, k, str(v))


def log_dict(run_id: str, data: Any, artifact_file: str, uri: str | None = None) -> None:
    """A JSON (or YAML by extension) artifact; no patient data goes here by contract."""
    _client(uri).log_dict(run_id, data, artifact_file)


def log_artifact(
    run_id: str, path: str | Path, artifact_path: str | None = None, uri: str | None = None
) -> None:
    """A file, or a folder's content, under `artifact_path` of the run."""
    if Path(path).is_dir():
        log_artifacts(run_id, path, artifact_path, uri)
    else:
        _client(uri).log_artifact(run_id, str(path), artifact_path)


def log_artifacts(
    run_id: str, folder: str | Path, artifact_path: str | None = None, uri: str | None = None
) -> None:
    _client(uri).log_artifacts(run_id, str(folder), artifact_path)


def git_commit(path: str | Path = ".") -> str | None:
    """The commit of the git checkout containing `path` (suffixed `-dirty` with local changes), or None."""
    try:
        head = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _load_pyfunc(data_path: str) -> PyfuncPredictor:
    """MLflow's loader_module entry point."""
    path = Path(data_path)
    with open(path / PREDICTOR_FILE if path.is_dir() else path, "rb") as f:
        return PyfuncPredictor(pickle.load(f))


def _signature(predictor: Any) -> Any:
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    required = {"subject_id", "prediction_time"}
    in_cols: list[Any] = [
        ColSpec(_MLFLOW_TYPES[t], c, required=c in required) for c, t in EVENT_INPUT.items()
    ]
    out_cols: list[Any] = [ColSpec("long", "subject_id"), ColSpec("datetime", "prediction_time")]
    out_cols += [ColSpec("double", c) for c in predictor.output_columns]
    inputs, outputs = Schema(in_cols), Schema(out_cols)
    return ModelSignature(inputs=inputs, outputs=outputs)


# --- model logging and the registry ----------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    alias: str
    model_uri: str  # models:/<name>@<alias>


def log_predictor(
    run_id: str,
    predictor: Any,
    register: bool = True,
    alias: str = CHALLENGER,
    uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
) -> tuple[str, list[RegisteredVersion]]:
    """Log the Predictor as a pyfunc model in run `run_id`; register it as `ehr-risk-<task>` for each of
    its tasks and point `alias` at the new versions. Returns the logged model URI and the versions."""
    import mlflow
    import mlflow.pyfunc

    import ehr_risk

    uri = resolve_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = _client(uri)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / PREDICTOR_FILE
        with open(data, "wb") as f:
            pickle.dump(predictor, f, protocol=pickle.HIGHEST_PROTOCOL)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="predictor",
                loader_module="ehr_risk.registry",
                data_path=str(data),
                signature=_signature(predictor),
                input_example=example_input(),
                pip_requirements=[f"ehr-risk=={getattr(ehr_risk, '__version__', '0.1.0')}"],
            )
        client.update_run(run_id, status="RUNNING")  # the caller ends the run (end_run)
    versions: list[RegisteredVersion] = []
    if register:
        for task in predictor.tasks:
            name = registered_name(task)
            mv = mlflow.register_model(info.model_uri, name, tags={"model_kind": predictor.model_kind})
            client.set_registered_model_alias(name, alias, mv.version)
            versions.append(RegisteredVersion(name, str(mv.version), alias, f"models:/{name}@{alias}"))
    return str(info.model_uri), versions


def set_alias(name: str, alias: str, version: str | int, uri: str | None = None) -> None:
    """Point `alias` (champion, challenger) of registered model `name` at `version`."""
    from mlflow.exceptions import MlflowException

    try:
        _client(uri).set_registered_model_alias(name, alias, str(version))
    except MlflowException as exc:
        raise ModelNotFoundError(f"models:/{name}/{version}: no such model version") from exc


def alias_version(name: str, alias: str, uri: str | None = None) -> str | None:
    """The version `alias` points at, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(uri).get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def describe_model(model_uri: str, uri: str | None = None) -> tuple[str, str, str]:
    """(registered name, version, run id) of `models:/NAME@ALIAS` or `models:/NAME/VERSION`; for other URIs
    (runs:/, paths) the name and version are empty strings and the run id is taken from a runs:/ URI."""
    from mlflow.exceptions import MlflowException

    if model_uri.startswith("runs:/"):
        return "", "", model_uri.removeprefix("runs:/").split("/", 1)[0]
    if not model_uri.startswith("models:/"):
        return "", "", ""
    ref = model_uri.removeprefix("models:/").rstrip("/")
    client = _client(uri)
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, _, version = ref.partition("/")
            mv = client.get_model_version(name, version)
    except MlflowException as exc:
        raise ModelNotFoundError(f"{model_uri}: model not found") from exc
    return str(mv.name), str(mv.version), str(mv.run_id or "")


def load_predictor(model_uri: str, uri: str | None = None) -> Any:
    """The Predictor behind a model URI (`models:/ehr-risk-ascvd_10y@champion`, `runs:/…`, a path)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = resolve_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri)
    except (MlflowException, OSError) as exc:
        raise ModelNotFoundError(f"{model_uri}: model not found ({type(exc).__name__})") from exc
    files = list(Path(local).rglob(PREDICTOR_FILE))
    if not files:
        raise ModelNotFoundError(f"{model_uri}: not an ehr-risk model (no {PREDICTOR_FILE})")
    return _load_pyfunc(str(files[0])).predictor


def load_pyfunc(model_uri: str, uri: str | None = None) -> Any:
    """The MLflow pyfunc model (what serving and spark_udf use)."""
    import mlflow
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    uri = resolve_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        raise ModelNotFoundError(f"{model_uri}: model not found ({type(exc).__name__})") from exc
