"""`ehr-risk evaluate` from a predictions parquet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ehr_risk.cli import app, main


def _write(path: Path, n: int = 1200) -> Path:
    rng = np.random.default_rng(0)
    lp = rng.normal(-2.0, 1.0, n)
    risk = 1 / (1 + np.exp(-lp))
    score = 1 / (1 + np.exp(-(0.6 * lp - 0.8)))
    score[:50] = np.nan
    pl.DataFrame(
        {
            "subject_id": np.arange(n, dtype=np.int64),
            "outcome": rng.random(n) < risk,
            "model_risk": risk,
            "pce": score,
            "sex": rng.choice(["female", "male"], n),
        }
    ).write_parquet(path)
    return path


def test_cli_writes_report(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    preds = _write(tmp_path / "preds.parquet")
    out = tmp_path / "eval"
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--predictions",
            str(preds),
            "--out",
            str(out),
            "--compare",
            "pce",
            "--label",
            "outcome",
            "--n-boot",
            "30",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "model_risk: AUROC" in res.output and "50 rows without it" in res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scores"]["pce"]["n_missing"] == 50
    assert metrics["settings"]["n_boot"] == 30
    assert (out / "report.html").is_file() and (out / "plots" / "roc.png").is_file()
    assert (out / "model_card.md").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compare", "nope"], "missing column"),
        (["--thresholds", "a,b"], "comma-separated numbers"),
    ],
)
def test_cli_user_errors_exit_2(
    tmp_path: Path,
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    preds = _write(tmp_path / "preds.parquet", 200)
    argv = [
        "ehr-risk",
        "evaluate",
        "--predictions",
        str(preds),
        "--out",
        str(tmp_path / "o"),
        "--label",
        "outcome",
        "--n-boot",
        "0",
        *args,
    ]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_missing_file_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ehr_risk.cli import main; main()",
            "evaluate",
            "--predictions",
            str(tmp_path / "absent.parquet"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "not found" in proc.stderr and "Traceback" not in proc.stderr
