"""MLflow logging and the model registry (ehr_risk/registry.py), through the training job on a toy dataset.

The models are trained once per module (an explicit SQLite tracking URI in tmp); the pyfunc is loaded in a
fresh process from `models:/ehr-risk-<task>@challenger` and must give the in-process Predictor's scores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from models_synthetic import write_dataset

from ehr_risk import registry
from ehr_risk.errors import ModelNotFoundError
from ehr_risk.train import TrainResult, train
from ehr_risk.train_config import TrainConfig

TESTS = Path(__file__).resolve().parent
TASK = "toy_10y"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("registry")
    ds = write_dataset(root, n=300)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    common = {"dataset": ds, "tasks": [TASK], "tracking_uri": uri}
    lr = train(TrainConfig(model="lr", lr={"C": [1.0]}, **common))  # type: ignore[arg-type]
    gru = train(
        TrainConfig(model="gru", network={"max_epochs": 2, "d_model": 8, "batch_size": 64}, **common)  # type: ignore[arg-type]
    )
    return {
        "root": root,
        "uri": uri,
        "lr": lr,
        "gru": gru,
        "events": pl.read_parquet(root / "events.parquet"),
    }


def test_fresh_process_loads_the_challenger_and_scores_identically(trained: dict) -> None:  # type: ignore[type-arg]
    root: Path = trained["root"]
    events: pl.DataFrame = trained["events"]
    times = (
        events.select("subject_id")
        .unique(maintain_order=True)
        .head(40)
        .with_columns(
            pl.lit("2020-01-01").str.to_datetime("%Y-%m-%d", time_unit="us").alias("prediction_time")
        )
    )
    frame = registry.pyfunc_input(events, times)
    frame.to_parquet(root / "input.parquet")
    script = (
        "import sys, mlflow.pyfunc, pandas as pd\n"
        "x = pd.read_parquet(sys.argv[1])\n"
        "for uri, out in ((sys.argv[2], sys.argv[3]), (sys.argv[4], sys.argv[5])):\n"
        "    mlflow.pyfunc.load_model(uri).predict(x).to_parquet(out)\n"
    )
    env = dict(os.environ, MLFLOW_TRACKING_URI=trained["uri"], PYTHONPATH=str(TESTS))
    args = [
        str(root / "input.parquet"),
        f"models:/ehr-risk-{TASK}@challenger",
        str(root / "gru.parquet"),
        f"models:/ehr-risk-{TASK}/1",
        str(root / "lr.parquet"),
    ]
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=300, cwd=root
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("gru", "lr"):
        result: TrainResult = trained[name]
        expected = result.predictor.predict(events, times)
        got = pl.read_parquet(root / f"{name}.parquet").with_columns(
            pl.col("prediction_time").cast(pl.Datetime("us"))
        )
        assert got.columns == expected.columns
        assert got.equals(expected), name
    gru: TrainResult = trained["gru"]
    assert [c for c in expected.columns if c.startswith("risk_")] == [f"risk_{TASK}_{h}y" for h in (1, 5, 10)]
    assert len(gru.predictor.output_columns) == 10  # risk at 1..10 years


def test_pyfunc_input_round_trip_and_events_of_the_latest_time() -> None:
    events = pl.DataFrame(
        {
            "subject_id": [1, 1, 2],
            "time": ["2019-01-01", "2021-01-01", "2018-05-05"],
            "code": ["A/1", "A/2", "B/1"],
        }
    ).with_columns(pl.col("time").str.to_datetime("%Y-%m-%d", time_unit="us"))
    times = pl.DataFrame(
        {
            "subject_id": [1, 1, 2, 3],
            "prediction_time": ["2020-01-01", "2022-01-01", "2020-01-01", "2020-01-01"],
        }
    ).with_columns(pl.col("prediction_time").str.to_datetime("%Y-%m-%d", time_unit="us"))
    frame = registry.pyfunc_input(events, times)
    assert len(frame) == 2 * 2 + 1 + 1  # subject 1's events per time, subject 2's, a marker row for 3
    ev, tm = registry.split_pyfunc_input(frame)
    assert tm.equals(times)
    assert ev.select("subject_id", "time", "code").sort("subject_id", "time").equals(events)


def test_run_records_params_metrics_tags_artifacts_and_aliases(trained: dict) -> None:  # type: ignore[type-arg]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=trained["uri"], registry_uri=trained["uri"])
    gru: TrainResult = trained["gru"]
    run = client.get_run(gru.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model"] == "gru" and run.data.params["network.d_model"] == "8"
    assert run.data.tags["ehr_risk.model_kind"] == "gru"
    assert len(run.data.tags["dataset_fingerprint"]) == 64
    if registry.git_commit(Path.cwd()):
        assert run.data.tags["git_commit"]
    assert f"held_out_auroc_{TASK}_10y" in run.data.metrics
    history = client.get_metric_history(gru.run_id, "val_loss")
    assert len(history) == gru.details["epochs_run"] >= 1  # per-epoch metrics from Lightning's logger
    arts = {a.path for a in client.list_artifacts(gru.run_id)}
    assert {"config", "dataset", "features", "training"} <= arts
    spec = json.loads(Path(client.download_artifacts(gru.run_id, "features/feature_spec.json")).read_text())
    assert spec["model_kind"] == "gru" and spec["output_columns"] == gru.predictor.output_columns
    assert "vocab.json" in {Path(a.path).name for a in client.list_artifacts(gru.run_id, "featurizers")}
    name = registry.registered_name(TASK)
    challenger = client.get_model_version_by_alias(name, "challenger")
    assert str(challenger.version) == gru.versions[0].version == "2"
    assert all(v.current_stage == "None" for v in client.search_model_versions(f"name='{name}'"))
    assert registry.alias_version(name, "challenger", trained["uri"]) == "2"
    assert registry.alias_version(name, "champion", trained["uri"]) is None
    assert registry.describe_model(f"models:/{name}@challenger", trained["uri"]) == (name, "2", gru.run_id)
    lr: TrainResult = trained["lr"]
    assert registry.describe_model(f"models:/{name}/1", trained["uri"]) == (name, "1", lr.run_id)
    # load_predictor gives the Predictor back, with its provenance
    loaded = registry.load_predictor(f"models:/{name}@challenger", uri=trained["uri"])
    assert loaded.metadata["run_id"] == gru.run_id and loaded.model_kind == "gru"


def test_aliases_move_between_versions(trained: dict) -> None:  # type: ignore[type-arg]
    name, uri = registry.registered_name(TASK), trained["uri"]
    registry.set_alias(name, "champion", "1", uri)
    assert registry.alias_version(name, "champion", uri) == "1"
    registry.set_alias(name, "champion", 2, uri)
    assert registry.alias_version(name, "champion", uri) == "2"
    assert registry.alias_version(name, "challenger", uri) == "2"  # other aliases untouched
    with pytest.raises(ModelNotFoundError):
        registry.set_alias(name, "champion", "99", uri)


def test_unknown_models_raise_model_not_found(trained: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ModelNotFoundError):
        registry.load_predictor("models:/ehr-risk-nope@champion", uri=trained["uri"])
    with pytest.raises(ModelNotFoundError):
        registry.load_pyfunc(f"models:/ehr-risk-{TASK}@nobody", uri=trained["uri"])
    with pytest.raises(ModelNotFoundError):
        registry.describe_model("models:/ehr-risk-nope/3", uri=trained["uri"])


def test_tracking_uri_default_env_and_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert registry.resolve_tracking_uri() == "sqlite:///mlruns/mlflow.db"
    assert (tmp_path / "mlruns").is_dir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert registry.resolve_tracking_uri() == "http://mlflow.example:5000"
    assert registry.resolve_tracking_uri("sqlite:///x/y.db") == "sqlite:///x/y.db"


def test_light_modules_do_not_import_heavy_libraries() -> None:
    code = (
        "import sys, ehr_risk.registry, ehr_risk.cli, ehr_risk.predictor, ehr_risk.train_config\n"
        "print(sorted(m for m in ('mlflow', 'torch', 'lightning') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
