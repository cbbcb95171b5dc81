"""End-to-end smoke of the demo pipeline (a small cohort), then the CLI jobs on its outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_then_evaluate_and_score_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sys.path.insert(0, str(REPO / "pipelines"))
    import demo

    monkeypatch.chdir(tmp_path)
    config = {
        "output_dir": str(tmp_path / "demo_out"),
        "task": "ascvd_10y",
        "patients": 600,
        "seed": 5,
        "models": ["lr", "gru"],
        "n_boot": 20,
        "as_of": "2022-12-31",
        "gru": {"network": {"max_epochs": 1, "d_model": 16}},
    }
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    assert demo.main(path) == 0
    printed = capsys.readouterr().out
    assert "AUROC" in printed and "pce" in printed and "demo finished" in printed
    out = tmp_path / "demo_out"
    for kind in ("lr", "gru"):
        assert (out / "reports" / kind / "report.html").stat().st_size > 10_000
    partition = next((out / "scores" / "as_of_date=2022-12-31").iterdir())
    assert any(partition.glob("part-*.parquet")) and (partition / "risk_assessments.ndjson").exists()

    from ehr_risk.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            "models:/ehr-risk-ascvd_10y@champion",
            "--dataset",
            str(out / "dataset"),
            "--out",
            str(tmp_path / "eval"),
            "--n-boot",
            "20",
        ],
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "pce" in metrics["comparisons"]
    args = [
        "score",
        "--model",
        "models:/ehr-risk-ascvd_10y@champion",
        "--events",
        str(out / "events"),
        "--as-of",
        "2021-01-01",
        "--out",
        str(tmp_path / "scores"),
        "-q",
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "subjects scored as of 2021-01-01" in first.output
    parts = sorted(p.relative_to(tmp_path) for p in (tmp_path / "scores").rglob("part-*.parquet"))
    assert parts
    assert runner.invoke(app, args).exit_code == 0  # a rerun replaces the partition: same files
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "scores").rglob("part-*.parquet")) == parts
