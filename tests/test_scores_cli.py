"""`ehr-risk risk-score`: happy path, policies, and one clear error line with exit 2 for bad files."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from ehr_risk.cli import main

HEADER = (
    "age_years,sex,race,total_cholesterol_mg_dl,hdl_mg_dl,systolic_bp_mm_hg,on_bp_treatment,"
    "current_smoker,diabetes,egfr_ml_min_1_73m2,bmi_kg_m2,on_statin,site"
)
ROWS = [
    "55,female,white,213,50,120,0,0,0,90,25,0,north",  # Goff et al. Table A profile: 2.1 %
    "55,male,black,213,50,120,0,0,0,90,25,0,south",  # 6.1 %
    "85,male,other,213,,120,0,0,0,90,25,0,",  # age out of range and HDL missing
    "50,female,white,200,45,160,1,0,1,90,35,0,east",  # preventr README profile
]


def run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["ehr-risk", *args])
    with pytest.raises(SystemExit) as exc:
        main()
        raise SystemExit(0)
    return int(exc.value.code or 0)


@pytest.fixture
def input_csv(tmp_path: Path) -> Path:
    path = tmp_path / "in.csv"
    path.write_text("\n".join([HEADER, *ROWS]) + "\n")
    return path


def test_pce_happy_path(monkeypatch: pytest.MonkeyPatch, input_csv: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out" / "pce.csv"
    assert run(monkeypatch, "risk-score", "pce", "--input", str(input_csv), "--out", str(out)) == 0
    result = pd.read_csv(out, dtype={"reason": str}, keep_default_na=False)
    original = pd.read_csv(input_csv, dtype=str, keep_default_na=False)
    assert list(result.columns) == [*original.columns, "risk", "reason"]
    pd.testing.assert_frame_equal(result[original.columns].astype(str), original)  # input passed through
    assert round(float(result["risk"].iloc[0]) * 100, 1) == 2.1
    assert round(float(result["risk"].iloc[1]) * 100, 1) == 6.1
    assert (
        result.loc[2, "risk"] == ""
        and result.loc[2, "reason"] == "age_years out of range 40-79; missing hdl_mg_dl"
    )
    assert result.loc[0, "reason"] == ""
    printed = capsys.readouterr().out
    assert "4 rows, 3 with a risk" in printed


def test_prevent_outcome_and_horizon(
    monkeypatch: pytest.MonkeyPatch, input_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "prevent.csv"
    code = run(monkeypatch, "risk-score", "prevent", "--outcome", "hf", "--horizon", "30", "--input",
               str(input_csv), "--out", str(out))  # fmt: skip
    assert code == 0
    result = pd.read_csv(out, keep_default_na=False)
    assert round(float(result["risk"].iloc[3]), 2) == 0.39  # preventr README: 30-year HF 0.39
    assert result.loc[2, "reason"] == "age_years out of range 30-59"


def test_clip_policy_flags_rows(monkeypatch: pytest.MonkeyPatch, input_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "fr.csv"
    code = run(monkeypatch, "risk-score", "framingham-bmi", "--out-of-range", "clip",
               "--input", str(input_csv), "--out", str(out))  # fmt: skip
    assert code == 0
    result = pd.read_csv(out, keep_default_na=False)
    assert result["flag"].tolist() == [0, 0, 1, 0]
    assert result.loc[2, "reason"] == "clipped age_years to 30-74"
    assert float(result["risk"].iloc[2]) > 0


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("age_years,sex\n50,male\n", ("pce",), "missing column(s) race, total_cholesterol_mg_dl"),
        ("\n".join([HEADER, ROWS[0].replace(",213,", ",high,")]), ("pce",),
         "column total_cholesterol_mg_dl: data row 1 is not a number"),
        ("", ("pce",), "empty file"),
        ("\n".join([HEADER + ",risk", ROWS[0] + ",0.1"]), ("pce",), "already has output column(s) risk"),
        ("\n".join([HEADER, ROWS[0]]), ("pce", "--horizon", "30"), "pce is a 10-year score"),
        ("\n".join([HEADER, ROWS[0]]), ("prevent", "--outcome", "stroke"), "--outcome must be one of"),
        ("\n".join([HEADER, ROWS[0]]), ("qrisk",), "unknown risk score"),
        ("\n".join([HEADER, ROWS[0] + ",high,extra"]), ("pce",), "line 2 has 15 fields, the header has 13"),
        ("\n".join([HEADER, ROWS[0], "", "55,male,white,213"]), ("pce",), "line 4 has 4 fields, the header"),
        ("age_years," + HEADER + "\n1," + ROWS[0], ("pce",), "age_years appear more than once"),
        ("\ufeff" + HEADER + "\n" + ROWS[0], ("pce", "--horizon", "30"), "pce is a 10-year score"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys, content: str, args: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    out = tmp_path / "never.csv"
    code = run(monkeypatch, "risk-score", *args, "--input", str(path), "--out", str(out))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("ehr-risk: error:")
    assert message in err
    assert "high" not in err  # never echo the offending value
    assert not out.exists()


def test_not_a_text_file_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    path = tmp_path / "in.csv.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe binary")
    code = run(monkeypatch, "risk-score", "pce", "--input", str(path), "--out", str(tmp_path / "o.csv"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "not UTF-8 text" in err


def test_unusable_paths_exit_2_without_traceback(
    monkeypatch: pytest.MonkeyPatch, input_csv: Path, tmp_path: Path, capsys
) -> None:
    code = run(monkeypatch, "risk-score", "pce", "--input", str(tmp_path), "--out", str(tmp_path / "o.csv"))
    assert code == 2 and "is a directory" in capsys.readouterr().err
    out_dir = tmp_path / "taken"
    out_dir.mkdir()
    code = run(monkeypatch, "risk-score", "pce", "--input", str(input_csv), "--out", str(out_dir))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot write the output" in err
    assert list(tmp_path.glob("*.tmp")) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("prevent", "--horizon", "abc"), "Invalid value for '--horizon'"),
        (("pce", "--out", "x.csv"), "Missing option '--input'"),
    ],
)
def test_usage_errors_exit_2_without_traceback(
    monkeypatch: pytest.MonkeyPatch, input_csv: Path, capsys, args: tuple[str, ...], message: str
) -> None:
    extra = () if "--out" in args else ("--input", str(input_csv), "--out", str(input_csv.with_name("o.csv")))
    code = run(monkeypatch, "risk-score", *args, *extra)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_missing_input_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    code = run(
        monkeypatch, "risk-score", "pce", "--input", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")
    )
    assert code == 2
    assert "no such file" in capsys.readouterr().err


def test_input_schema_matches_the_equations_and_the_clinical_table() -> None:
    """data_schemas/risk_score_input.json lists exactly the inputs of the CLI's equations, and each is a
    column of the clinical-variables table, so `risk-score` runs on an exported clinical.parquet."""
    from ehr_risk.scores.registry import FIXED_SCORES, make_score
    from ehr_risk.tables import load_schema

    used = {c for name in FIXED_SCORES for c in make_score(name).required_columns}
    assert set(load_schema("risk_score_input").columns) == used
    assert used <= set(load_schema("features_clinical").columns)
