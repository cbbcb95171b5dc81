"""`evaluate` end to end: row accounting, comparisons, subgroups, time-to-event, and the written outputs."""

from __future__ import annotations

import json
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from matplotlib.image import imread

from ehr_risk.errors import InputDataError
from ehr_risk.evaluation import EvaluationResult, TimeToEvent, evaluate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def predictions(n: int = 3000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    subject = rng.integers(0, int(n * 0.7), n)
    age = rng.uniform(35, 85, n)
    sex = rng.choice(["female", "male"], n)
    race = rng.choice(["white", "black", "other"], n, p=[0.7, 0.25, 0.05])
    lp = -2.8 + 0.04 * (age - 55) + 0.4 * (sex == "male") + rng.normal(0, 0.9, n)
    risk = 1 / (1 + np.exp(-lp))
    y = rng.random(n) < risk
    pce = 1 / (1 + np.exp(-(0.7 * lp - 0.6 + rng.normal(0, 0.7, n))))
    no_pce = (age < 40) | (age > 79)
    pce[no_pce] = np.nan
    censored = rng.random(n) < 0.08
    t0 = np.datetime64("2016-01-01") + rng.integers(0, 700, n).astype("timedelta64[D]")
    years_to_event = np.where(y, rng.uniform(0.2, 9.9, n), np.nan)
    follow = np.where(censored, rng.uniform(0.5, 9.5, n), 12.0)
    event_time = np.where(
        y & (years_to_event < follow),
        t0 + (years_to_event * 365.25).astype("timedelta64[D]"),
        np.datetime64("NaT"),
    )
    return pl.DataFrame(
        {
            "subject_id": subject.astype(np.int64),
            "prediction_time": pl.Series(t0).cast(pl.Datetime("us")),
            "label": [None if c else bool(v) for c, v in zip(censored, y, strict=True)],
            "model_risk": risk,
            "pce": pce,
            "pce_reason": np.where(no_pce, "age outside 40-79", None),
            "sex": sex,
            "race": race,
            "age_years": age,
            "event_time": pl.Series(event_time).cast(pl.Datetime("us")),
            "censor_time": pl.Series(t0 + (follow * 365.25).astype("timedelta64[D]")).cast(pl.Datetime("us")),
        }
    )


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> EvaluationResult:
    out = tmp_path_factory.mktemp("eval")
    context = {
        "model": {"name": "ascvd-gbm", "version": "4"},
        "task": {"name": "ascvd_10y", "outcome": "first ASCVD event", "horizon_years": 10},
        "dataset": {"source": "synthetic", "date_range": ["2005-01-01", "2026-01-01"]},
        "cohort_report": {"flow": [{"step": "all subjects", "n": 2500}, {"step": "aged 35-85", "n": 2100}]},
        "missingness": {"ldl_mg_dl": 0.31},
        "limitations": ["Synthetic data."],
    }
    return evaluate(
        predictions(),
        compare=["pce"],
        horizon_years=10,
        horizons=[5, 10],
        time_to_event=TimeToEvent(),
        n_boot=60,
        seed=1,
        out_dir=out,
        context=context,
    )


def test_rows_are_accounted_for(result: EvaluationResult) -> None:
    df = predictions()
    c = result.metrics["counts"]
    assert c["rows"] == df.height
    assert c["rows_censored_before_horizon"] == df["label"].null_count()
    assert c["rows_evaluated"] == df.height - df["label"].null_count()
    assert c["events"] + c["non_events"] == c["rows_evaluated"]
    labelled = df.filter(pl.col("label").is_not_null())
    pce = result.metrics["scores"]["pce"]
    assert pce["n_missing"] == labelled["pce"].is_nan().sum() > 0
    assert pce["n_rows"] + pce["n_missing"] == c["rows_evaluated"]
    assert pce["missing_reasons"] == {"age outside 40-79": pce["n_missing"]}
    assert result.metrics["comparisons"]["pce"]["n_rows_paired"] == pce["n_rows"]
    assert result.metrics["decision_curve"]["n_rows"] == pce["n_rows"]


def test_metrics_have_intervals_that_cover_them(result: EvaluationResult) -> None:
    from sklearn.metrics import roc_auc_score

    df = predictions().filter(pl.col("label").is_not_null())
    model = result.metrics["scores"]["model_risk"]["metrics"]
    assert model["auroc"]["estimate"] == pytest.approx(roc_auc_score(df["label"], df["model_risk"]))
    for key in ("auroc", "auprc", "brier", "calibration_slope", "eo_ratio", "sensitivity@0.075"):
        e = model[key]
        assert e["ci_low"] <= e["estimate"] <= e["ci_high"], key
        assert e["n_boot"] == 60
    paired = result.metrics["comparisons"]["pce"]["paired"]
    assert paired["delta_auroc"]["estimate"] == pytest.approx(
        paired["model_auroc"]["estimate"] - paired["score_auroc"]["estimate"]
    )
    assert set(result.metrics["comparisons"]["pce"]["nri"]) == {"nri_events", "nri_nonevents", "nri"}


def test_subgroups_and_suppression(result: EvaluationResult) -> None:
    groups = {(g["variable"], g["level"]): g for g in result.metrics["subgroups"]}
    assert {("sex", "female"), ("sex", "male"), ("race", "white")} <= set(groups)
    assert any(v == "age_band" for v, _ in groups)
    other = groups[("race", "other")]  # about 150 rows, few events
    if other["suppressed"]:
        assert other["metrics"] == {}
    female = groups[("sex", "female")]
    assert not female["suppressed"] and female["metrics"]["model_risk"]["auroc"]["estimate"] is not None
    young = groups.get(("age_band", "18-39"))
    assert young is not None and "pce" not in young["metrics"]  # PCE undefined below 40: no cell, no metric


def test_subgroup_metrics_are_those_of_the_subgroup_rows(result: EvaluationResult) -> None:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    df = predictions().filter(pl.col("label").is_not_null())
    groups = {(g["variable"], g["level"]): g for g in result.metrics["subgroups"]}
    for key, rows in (
        (("sex", "male"), df.filter(pl.col("sex") == "male")),
        (("age_band", "50-59"), df.filter((pl.col("age_years") >= 50) & (pl.col("age_years") < 60))),
    ):
        g = groups[key]
        assert g["n_rows"] == str(rows.height) and g["n_events"] == str(int(rows["label"].sum()))
        model, y, p = g["metrics"]["model_risk"], rows["label"], rows["model_risk"]
        assert model["auroc"]["estimate"] == pytest.approx(roc_auc_score(y, p))
        assert model["brier"]["estimate"] == pytest.approx(brier_score_loss(y, p))
        assert model["auroc"]["ci_low"] < model["auroc"]["estimate"] < model["auroc"]["ci_high"]
        with_pce = rows.filter(pl.col("pce").is_not_nan())
        assert g["metrics"]["pce"]["auroc"]["estimate"] == pytest.approx(
            roc_auc_score(with_pce["label"], with_pce["pce"])
        )


def test_time_to_event_metrics(result: EvaluationResult) -> None:
    tte = result.metrics["time_to_event"]
    assert tte["horizons_years"] == [5.0, 10.0]
    model = tte["scores"]["model_risk"]
    for key in ("harrell_c", "uno_c", "td_auc@5y", "td_auc@10y"):
        assert 0.55 < model[key]["estimate"] < 0.95, key
    assert tte["horizon_counts"]["10y"]["censored_before"] > 0
    # rows whose binary label is null (censored before the horizon) still count here, through IPCW
    assert tte["rows"] > result.metrics["counts"]["rows_evaluated"]


def test_outputs_written_and_valid(result: EvaluationResult) -> None:
    files = result.files
    for key in ("report", "metrics", "model_card_md", "model_card_html", "subgroups"):
        assert files[key].is_file() and files[key].stat().st_size > 0, key
    pngs = [p for k, p in files.items() if k.startswith("plot_")]
    assert {p.stem for p in pngs} == {"roc", "pr", "calibration", "decision_curve", "risk_distribution"}
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
        width, height = struct.unpack(">II", data[16:24])
        assert width > 300 and height > 300
        pixels = imread(png)  # decodes the whole image: a truncated or corrupt PNG raises
        assert pixels.shape[:2] == (height, width) and pixels.std() > 0  # not a blank canvas
    doc = json.loads(files["metrics"].read_text())  # strict JSON: no NaN
    assert doc["schema"] == "ehr_risk.evaluation/1"


class _Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "img":
            self.images.append(str(a.get("src")))
        if tag == "table":
            self.tables += 1
        if tag in ("script", "link", "iframe") or (
            tag == "img" and not str(a.get("src")).startswith("data:")
        ):
            self.external.append(tag)


def test_html_report_is_self_contained(result: EvaluationResult) -> None:
    parser = _Sections()
    text = result.files["report"].read_text()
    parser.feed(text)
    assert {
        "population",
        "metrics",
        "thresholds",
        "comparison",
        "decision-curve",
        "subgroups",
        "time-to-event",
        "figures",
    } <= set(parser.ids)
    assert len(parser.images) == 5 and all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert parser.tables >= 6
    assert "age outside 40-79" in text  # the reason rows lack the score is shown
    # self-contained: nothing is fetched from elsewhere (no scripts, stylesheets or remote images)
    assert parser.external == []
    for heading in (
        "ROC curve",
        "Precision-recall curve",
        "Calibration",
        "Decision curve",
        "Risk distribution",
    ):
        assert heading in text, heading


def test_model_card_sections(result: EvaluationResult) -> None:
    md = result.files["model_card_md"].read_text()
    for heading in (
        "Model details",
        "Intended use",
        "Data",
        "Cohort flow",
        "Missingness",
        "Performance",
        "Subgroup performance",
        "Limitations",
    ):
        assert f"## {heading}" in md
    assert "ascvd-gbm" in md and "aged 35-85" in md and "ldl_mg_dl" in md and "Synthetic data." in md
    parser = _Sections()
    parser.feed(result.files["model_card_html"].read_text())
    assert "limitations" in parser.ids


def test_accepts_pandas_and_no_bootstrap() -> None:
    df = predictions(800, 3).drop("event_time", "censor_time", "prediction_time").to_pandas()
    assert isinstance(df, pd.DataFrame)
    res = evaluate(df, n_boot=0, subgroups=("sex",))
    auroc = res.metrics["scores"]["model_risk"]["metrics"]["auroc"]
    assert auroc["estimate"] is not None and auroc["ci_low"] is None
    assert res.files == {}


def test_small_subgroup_is_suppressed() -> None:
    df = predictions(1500, 4).with_columns(
        site=pl.when(pl.int_range(pl.len()) < 8).then(pl.lit("tiny")).otherwise(pl.lit("main"))
    )
    res = evaluate(df, n_boot=0, subgroups=("site", "missing_column"))
    groups = {g["level"]: g for g in res.metrics["subgroups"]}
    assert (
        groups["tiny"]["suppressed"] and groups["tiny"]["n_rows"] == "<10" and groups["tiny"]["metrics"] == {}
    )
    assert not groups["main"]["suppressed"]
    assert res.metrics["subgroups_unavailable"] == ["missing_column"]


def test_user_errors_are_input_data_errors() -> None:
    df = predictions(200, 5)
    with pytest.raises(InputDataError, match="missing column"):
        evaluate(df, compare=["prevent"], n_boot=0)
    with pytest.raises(InputDataError, match="outside"):
        evaluate(df.with_columns(model_risk=pl.col("model_risk") * 10), n_boot=0)
    with pytest.raises(InputDataError, match="other than"):
        evaluate(df.with_columns(label=pl.lit(2)), n_boot=0)
    with pytest.raises(InputDataError, match="levels"):
        evaluate(df, n_boot=0, subgroups=("subject_id",))
    with pytest.raises(InputDataError, match="no row"):
        evaluate(df.with_columns(model_risk=pl.lit(None, dtype=pl.Float64)), n_boot=0)


def test_rows_without_model_risk_are_counted(tmp_path: Path) -> None:
    df = predictions(600, 6).with_columns(
        model_risk=pl.when(pl.int_range(pl.len()) < 25).then(None).otherwise(pl.col("model_risk"))
    )
    res = evaluate(df, n_boot=0)
    assert res.metrics["counts"]["rows_without_model_risk"] == 25
    assert res.metrics["counts"]["model_missing_reasons"] == {"not given": 25}


def test_scores_by_short_name_from_risk_score_columns() -> None:
    """`ehr-risk risk-score` writes pce_risk and pce_reason ('' when computed); --compare pce finds them."""
    df = predictions(900, 7)
    df = df.rename({"pce": "pce_risk"}).with_columns(
        pce_reason=pl.when(pl.col("pce_risk").is_nan())
        .then(pl.lit("age outside 40-79"))
        .otherwise(pl.lit(""))
    )
    res = evaluate(df, compare=["pce"], n_boot=0)
    pce = res.metrics["scores"]["pce"]
    assert pce["n_missing"] > 0 and pce["missing_reasons"] == {"age outside 40-79": pce["n_missing"]}


def test_time_to_event_auto_and_plain_context(tmp_path: Path) -> None:
    df = predictions(700, 8)
    on = evaluate(
        df, n_boot=0, horizon_years=10, out_dir=tmp_path, context={"task": "ascvd_10y", "run_id": "abc"}
    )
    assert on.metrics["time_to_event"]["scores"]["model_risk"]["td_auc@10y"]["estimate"] is not None
    card = (tmp_path / "model_card.md").read_text()
    assert "ascvd_10y" in (tmp_path / "report.html").read_text() and "| run_id | abc |" in card
    off = evaluate(df, n_boot=0, time_to_event=None)
    assert "time_to_event" not in off.metrics


def test_bad_thresholds_rejected() -> None:
    with pytest.raises(InputDataError, match="thresholds"):
        evaluate(predictions(200, 9), thresholds=(0.1, 1.5), n_boot=0)


def test_time_dependent_auc_uses_the_model_risk_at_each_horizon() -> None:
    """With `horizon_risks`, td-AUC at 5 years ranks by the 5-year risk; the scores keep their own risk."""
    from ehr_risk.evaluation.survival import td_auc
    from ehr_risk.evaluation.table import _follow_up

    rng = np.random.default_rng(10)
    df = predictions(1500, 10)
    df = df.with_columns(model_risk_5y=pl.Series(rng.uniform(0.01, 0.3, df.height)))  # a different ranking
    res = evaluate(
        df, n_boot=0, horizon_years=10, horizons=[5, 10], horizon_risks={5: "model_risk_5y"}, compare=["pce"]
    )
    tte = res.metrics["time_to_event"]
    assert tte["model_td_auc_columns"] == {"5y": "model_risk_5y", "10y": "model_risk"}
    years, event = _follow_up(df, TimeToEvent())
    ok = np.isfinite(years)
    for horizon, col in ((5.0, "model_risk_5y"), (10.0, "model_risk")):
        risk = df[col].to_numpy()
        expected = td_auc(years[ok], event[ok], risk[ok], horizon)
        assert tte["scores"]["model_risk"][f"td_auc@{horizon:g}y"]["estimate"] == pytest.approx(expected)
    pce = df["pce"].to_numpy()
    keep = ok & ~np.isnan(pce)
    assert tte["scores"]["pce"]["td_auc@5y"]["estimate"] == pytest.approx(
        td_auc(years[keep], event[keep], pce[keep], 5.0)
    )
    with pytest.raises(InputDataError, match="not evaluated"):
        evaluate(df, n_boot=0, horizons=[10], horizon_risks={5: "model_risk_5y"})
    with pytest.raises(InputDataError, match="missing risk column"):
        evaluate(df, n_boot=0, horizons=[5, 10], horizon_risks={5: "absent"})
