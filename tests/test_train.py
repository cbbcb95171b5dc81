"""The training job's config, CLI and job-level behaviour (train.py, train_config.py, cli/train.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from models_synthetic import write_dataset

from ehr_risk.errors import ConfigError, InputDataError
from ehr_risk.train import train
from ehr_risk.train_config import TrainConfig, load_train_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = write_dataset(tmp_path_factory.mktemp("train"), n=300)
    # a second task on a subset of the rows, for the multi-task network
    labels = pl.read_parquet(ds / "labels" / "toy_10y.parquet")
    labels.filter(pl.col("subject_id") % 3 != 0).write_parquet(ds / "labels" / "toy_b.parquet")
    return ds


def test_the_shipped_config_is_valid() -> None:
    cfg = load_train_config(REPO / "pipelines" / "train.yaml")
    assert cfg.model in ("lr", "gbm", "gru", "transformer") and cfg.tasks == ["ascvd_10y"]
    assert cfg.network.d_model <= 128 and cfg.network.n_layers == 1  # small and fast by default
    over = load_train_config(
        REPO / "pipelines" / "train.yaml", {"model": "gbm", "dataset": "x", "tasks": None}
    )
    assert over.model == "gbm" and over.dataset == Path("x") and over.tasks == ["ascvd_10y"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("dataset: d\ntasks: [t]\nmodel: svm\n", "model"),
        ("dataset: d\ntasks: [t]\nmodel: lr\nlearning_rate: 3\n", "learning_rate"),
        ("dataset: d\ntasks: []\nmodel: lr\n", "tasks"),
        ("dataset: d\ntasks: [t]\nmodel: gru\nnetwork: {d_model: 0}\n", "network.d_model"),
        ("- a list\n", "mapping"),
        ("dataset: [unclosed\n", "YAML"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_train_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_train_config(tmp_path / "missing.yaml")


def test_missing_dataset_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="not found"):
        train(TrainConfig(dataset=tmp_path / "nope", tasks=["t"], model="lr"))


def test_classical_training_is_reproducible_and_writes_predictions(dataset: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        dataset=dataset,
        tasks=["toy_10y"],
        model="gbm",
        register_model=False,
        output_dir=tmp_path,
        horizons=[5, 10],
        tracking_uri=f"sqlite:///{dataset.parent / 'mlflow.db'}",
        gbm={"max_iter": 40, "n_iter_no_change": 5},
    )  # type: ignore[arg-type]
    a, b = train(cfg), train(cfg)
    assert a.versions == [] and a.run_id != b.run_id
    assert a.metrics == b.metrics and "held_out_auroc_toy_10y_10y" in a.metrics
    pred = pl.read_parquet(tmp_path / "predictions.parquet")
    assert set(pred.get_column("split").unique()) == {"tuning", "held_out"}
    assert {"risk_toy_10y_5y", "risk_toy_10y_10y", "label_toy_10y_10y"} <= set(pred.columns)


def test_recalibration_on_the_tuning_split_keeps_ranking_and_fits_slope_one(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path, n=1500)  # enough tuning events to fit an intercept and a slope

    def run(recalibration: str) -> tuple[pl.DataFrame, dict]:
        cfg = TrainConfig(
            dataset=dataset,
            tasks=["toy_10y"],
            model="lr",
            register_model=False,
            horizons=[5, 10],
            recalibration=recalibration,
            tracking_uri=f"sqlite:///{dataset.parent / 'mlflow.db'}",
            lr={"C": [10.0]},  # weakly regularised: over-confident on 300 rows
        )  # type: ignore[arg-type]
        res = train(cfg)
        keys = pl.read_parquet(dataset / "labels" / "toy_10y.parquet").select("subject_id", "prediction_time")
        tab = pl.read_parquet(dataset / "features" / "tabular.parquet")
        tab = keys.join(tab, on=["subject_id", "prediction_time"], how="left", maintain_order="left")
        return res.predictor.predict_features(keys, tab, None), res.details

    plain, _ = run("none")
    fixed, details = run("logistic")
    a, b = details["recalibration"]["coefficients"]["risk_toy_10y_10y"].values()
    assert 0 < b < 1  # an over-confident model is pulled in
    before, after = plain.get_column("risk_toy_10y_10y"), fixed.get_column("risk_toy_10y_10y")
    assert not before.equals(after)
    assert (fixed.get_column("risk_toy_10y_10y") >= fixed.get_column("risk_toy_10y_5y")).all()
    # the predictor applies the fitted map, then keeps the 10-year risk at least the 5-year one
    expect = 1 / (1 + np.exp(-(a + b * np.log(before.to_numpy() / (1 - before.to_numpy())))))
    assert np.allclose(np.maximum(expect, fixed.get_column("risk_toy_10y_5y").to_numpy()), after.to_numpy())


def test_one_network_predicts_several_tasks(dataset: Path) -> None:
    cfg = TrainConfig(
        dataset=dataset,
        tasks=["toy_10y", "toy_b"],
        model="transformer",
        register_model=False,
        horizons=[1, 5, 10],
        tracking_uri=f"sqlite:///{dataset.parent / 'mlflow.db'}",
        network={"max_epochs": 1, "d_model": 8, "n_heads": 2},
    )  # type: ignore[arg-type]
    res = train(cfg)
    assert res.predictor.output_columns == [
        f"risk_{t}_{h}y" for t in ("toy_10y", "toy_b") for h in (1, 5, 10)
    ]
    events = pl.read_parquet(dataset.parent / "events.parquet")
    times = pl.read_parquet(dataset / "prediction_times.parquet").head(20)
    out = res.predictor.predict(events, times).select(pl.selectors.starts_with("risk_")).to_numpy()
    assert np.isfinite(out).all() and ((out >= 0) & (out <= 1)).all()
    assert (np.diff(out[:, :3], axis=1) >= 0).all()  # risk grows with the horizon


def test_cli_trains_registers_and_reports(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ehr_risk.cli import main

    config = tmp_path / "train.yaml"
    config.write_text(f"dataset: {dataset}\ntasks: [toy_10y]\nmodel: lr\nlr: {{C: [1.0]}}\n")
    monkeypatch.setattr(sys, "argv", ["ehr-risk", "train", "--config", str(config), "-q"])
    main()
    out = capsys.readouterr().out
    assert "registered ehr-risk-toy_10y version 1 as @challenger" in out
    assert "held-out AUROC at 10y" in out
    from mlflow import MlflowClient

    client = MlflowClient()  # MLFLOW_TRACKING_URI from the test's environment is the store used
    assert client.get_model_version_by_alias("ehr-risk-toy_10y", "challenger").version in (1, "1")
    monkeypatch.setattr(
        sys, "argv", ["ehr-risk", "train", "--config", str(config), "--dataset", "/nonexistent"]
    )
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("ehr-risk: error: ")
