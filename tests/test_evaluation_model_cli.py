"""`ehr-risk evaluate --model … --dataset …` against a registered model: synthetic records → events →
ascvd_10y dataset → logistic regression registered as challenger (own SQLite MLflow store), then evaluated
on the held-out split against the clinical scores, with the report logged to the model's run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from ehr_risk.cli import app, main

REPO = Path(__file__).resolve().parent.parent
TASK = "ascvd_10y"
MODEL = f"models:/ehr-risk-{TASK}@challenger"
# The module's fixture builds and trains on a small cohort (about 15 CPU seconds): marked slow.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from ehr_risk.dataset import build_dataset
    from ehr_risk.ingest.run import IngestOptions, ingest
    from ehr_risk.synth import SynthOptions, generate
    from ehr_risk.tasks import load_task
    from ehr_risk.train import train
    from ehr_risk.train_config import load_train_config

    root = tmp_path_factory.mktemp("evalmodel")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    generate(SynthOptions(patients=500, seed=3), root / "raw")
    ingest([root / "raw" / "fhir"], root / "events", IngestOptions())
    build_dataset(root / "events", [load_task(TASK)], root / "dataset")
    cfg = load_train_config(
        REPO / "pipelines" / "train.yaml",
        {"dataset": str(root / "dataset"), "tasks": [TASK], "model": "lr", "tracking_uri": uri},
    )
    result = train(cfg)
    return {"root": root, "uri": uri, "run_id": result.run_id}


def _evaluate(trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    return CliRunner().invoke(app, ["evaluate", "--dataset", str(trained["root"] / "dataset"), *args])


def test_evaluates_the_registered_model_and_logs_to_its_run(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    out = tmp_path / "eval"
    args = ["--model", MODEL, "--compare", "pce,prevent", "--out", str(out), "--n-boot", "40"]
    res = _evaluate(trained, monkeypatch, *args)
    assert res.exit_code == 0, res.output
    assert f"logged to MLflow run {trained['run_id']}" in res.output
    m = json.loads((out / "metrics.json").read_text())
    # `prevent` is the task's PREVENT variant; every score is reported on the model's evaluated rows
    assert list(m["comparisons"]) == ["pce", "prevent_ascvd_10y"]
    c = m["counts"]
    held_out = _held_out_rows(trained["root"] / "dataset")
    assert c["rows"] == held_out and c["rows_evaluated"] + c["rows_censored_before_horizon"] == held_out
    for name in ("pce", "prevent_ascvd_10y"):
        s = m["scores"][name]
        assert s["n_rows"] + s["n_missing"] == c["rows_evaluated"]
        assert sum(s["missing_reasons"].values()) >= s["n_missing"] > 0
        assert m["comparisons"][name]["n_rows_paired"] == s["n_rows"]
    model = m["scores"]["model_risk"]["metrics"]
    assert model["auroc"]["ci_low"] <= model["auroc"]["estimate"] <= model["auroc"]["ci_high"]
    # time-dependent AUC at each of the task's horizons, with the model's risk at that horizon
    tte = m["time_to_event"]
    assert tte["horizons_years"] == [5.0, 10.0]
    assert tte["model_td_auc_columns"] == {"5y": "model_risk_5y", "10y": "model_risk"}
    assert tte["scores"]["model_risk"]["td_auc@5y"]["estimate"] is not None
    card = (out / "model_card.md").read_text()
    # cohort flow, missingness of the model's inputs, data dates and the model's details
    for text in (
        "age 40-79 at t",
        "held_out rows",
        "model input",
        "hba1c_pct",
        "2006-01-01",
        "| type | lr |",
    ):
        assert text in card, text

    client = mlflow.MlflowClient(trained["uri"])
    logged = {a.path for a in client.list_artifacts(trained["run_id"], "evaluation")}
    assert {f"evaluation/{f}" for f in ("report.html", "metrics.json", "model_card.md", "plots")} <= logged
    plots = {a.path for a in client.list_artifacts(trained["run_id"], "evaluation/plots")}
    assert len(plots) == 5 and all(p.endswith(".png") for p in plots)
    run_metrics = client.get_run(trained["run_id"]).data.metrics
    assert run_metrics["eval_auroc"] == pytest.approx(model["auroc"]["estimate"])
    assert run_metrics["eval_calibration_slope_ci_low"] == pytest.approx(model["calibration_slope"]["ci_low"])


def test_a_bare_run_id_names_the_model_too(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "by_run"
    res = _evaluate(trained, monkeypatch, "--model", trained["run_id"], "--out", str(out), "--n-boot", "0")
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["comparisons"]) == ["pce", "prevent_ascvd_10y", "framingham"]  # the task's defaults


def test_another_split_is_logged_beside_the_held_out_evaluation(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    args = ["--model", MODEL, "--split", "tuning", "--compare", "pce", "--out", str(tmp_path / "t")]
    res = _evaluate(trained, monkeypatch, *args, "--n-boot", "0")
    assert res.exit_code == 0, res.output
    assert "artifacts/evaluation_tuning" in res.output
    client = mlflow.MlflowClient(trained["uri"])
    logged = {a.path for a in client.list_artifacts(trained["run_id"], "evaluation_tuning")}
    assert "evaluation_tuning/report.html" in logged
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    auroc = metrics["scores"]["model_risk"]["metrics"]["auroc"]["estimate"]
    run_metrics = client.get_run(trained["run_id"]).data.metrics
    assert run_metrics["evaluation_tuning_auroc"] == pytest.approx(auroc)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", MODEL, "--compare", "nonsense"], "unknown risk score"),
        (["--model", "models:/ehr-risk-absent@champion"], "not found"),
        (["--model", MODEL, "--split", "nowhere"], "no ascvd_10y rows"),
        (["--model", MODEL, "--compare", "framingham_x,prevent_hf"], "unknown risk score"),
    ],
)
def test_user_errors_exit_2(
    trained: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    dataset = ["--dataset", str(trained["root"] / "dataset")]
    assert _main(monkeypatch, [*dataset, *args, "--out", str(tmp_path / "o"), "--n-boot", "0"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_model_without_dataset_is_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _main(monkeypatch, ["--model", MODEL, "--out", str(tmp_path / "o")]) == 2
    assert "--model needs --dataset" in capsys.readouterr().err


def _main(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> int:
    monkeypatch.setattr(sys, "argv", ["ehr-risk", "evaluate", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0)


def _held_out_rows(dataset: Path) -> int:
    labels = pl.read_parquet(dataset / "labels" / f"{TASK}.parquet")
    splits = pl.read_parquet(dataset / "splits.parquet").filter(pl.col("split") == "held_out")
    return labels.join(splits.select("subject_id"), on="subject_id").height


def test_model_predictions_carry_every_horizon_from_one_scoring_pass(
    trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ehr_risk.evaluation.model_source import model_predictions

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    source = model_predictions(MODEL, trained["root"] / "dataset", compare=["pce"])
    table = source.table
    assert source.horizons == [5.0, 10.0]
    assert source.horizon_risks == {10.0: "model_risk", 5.0: "model_risk_5y"}
    assert table.height == _held_out_rows(trained["root"] / "dataset")
    assert table["model_risk_5y"].null_count() == table["model_risk"].null_count() == 0
    assert (table["model_risk_5y"] <= table["model_risk"] + 1e-12).all()  # cumulative risk grows with time
    assert source.run_id == trained["run_id"]
    wanted = {"pce", "pce_reason", "sex", "race", "age_years", "event_time", "censor_time"}
    assert wanted <= set(table.columns)
