"""`ehr-risk ingest` through the console entry point: exit codes, no patient data in output, light imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fhir_helpers import FIXTURES

from ehr_risk.cli import main

BUNDLE = FIXTURES / "bundle_transaction.json"
# Identifying values in the fixture that must never reach stderr, stdout or the summary.
PHI = ("pat-a", "pat-b", "Alice", "Testperson", "1960-05-17", "1971-03-04", "B-2")


def _main(monkeypatch: pytest.MonkeyPatch, *args: str | Path) -> int:
    """Run the console entry point in-process; returns its exit code."""
    monkeypatch.setattr(sys, "argv", ["ehr-risk", *map(str, args)])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_ingest_in_a_fresh_process_is_light_and_prints_no_patient_data(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = (
        "import sys\nfrom ehr_risk.cli import main\n"
        f"sys.argv = ['ehr-risk', 'ingest', {str(BUNDLE)!r}, '--out', {str(out)!r}]\n"
        "main()\n"
        "heavy = sorted(m for m in ('torch', 'mlflow', 'lightning', 'sklearn') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY="
    assert "read 30 records: 20 converted, 6 skipped, 4 rejected" in proc.stdout
    summary = (out / "summary.json").read_text()
    assert json.loads(summary)["rejected"] == 4
    for text in (proc.stdout, proc.stderr, summary):
        for value in PHI:
            assert value not in text


def test_help_lists_every_subcommand_without_heavy_imports() -> None:
    import typer.main

    from ehr_risk.cli import app

    names = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert {"ingest", "synth", "dataset", "train", "evaluate", "score"} <= set(names)
    code = (
        "import sys\nfrom ehr_risk.cli import main\nsys.argv = ['ehr-risk', '--help']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "heavy = ('torch', 'mlflow', 'lightning', 'sklearn', 'polars', 'pyarrow', 'pandas', 'orjson')\n"
        "print('HEAVY=' + ','.join(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "HEAVY="  # only typer: `ehr-risk --help` starts fast
    # each command opens a line of the command list (rich box or plain click layout)
    first_words = {ln.strip(" │|").split()[0] for ln in lines[:-1] if ln.strip(" │|")}
    assert set(names) <= first_words


def test_strict_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _main(monkeypatch, "ingest", BUNDLE, "--out", tmp_path / "out", "--strict") == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("ehr-risk: error:")]
    assert len(lines) == 1 and "entry[19]" in lines[0] and "--strict" in lines[0]
    assert not any(value in err for value in PHI)


def test_max_reject_fraction_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("ingest", BUNDLE, "--out", tmp_path / "out", "-q", "--max-reject-fraction")
    assert _main(monkeypatch, *args, "0.05") == 2
    assert "4 of 30 records rejected" in capsys.readouterr().err
    assert _main(monkeypatch, *args, "0.5") == 0


def test_missing_input_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _main(monkeypatch, "ingest", tmp_path / "nope.json", "--out", tmp_path / "out") == 2
    assert "no such file" in capsys.readouterr().err
