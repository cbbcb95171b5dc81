"""The scheduled jobs end to end on a small synthetic cohort: batch scoring (idempotent, atomic, locked,
blind to data after the as-of date, FHIR write-back) and retraining (promote and reject)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from ehr_risk import registry
from ehr_risk.dataset import event_shards
from ehr_risk.errors import SchemaError
from ehr_risk.jobs import JobLockedError, exclusive_lock
from ehr_risk.scoring import ModelRef, score
from ehr_risk.tasks import load_task

REPO = Path(__file__).resolve().parent.parent
AS_OF = dt.date(2020, 6, 30)
TASK = "ascvd_10y"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """synth → ingest (2 shards) → dataset → LR registered as challenger; explicit tracking URI."""
    from ehr_risk.dataset import build_dataset
    from ehr_risk.ingest.run import IngestOptions, ingest
    from ehr_risk.synth import SynthOptions, generate
    from ehr_risk.train import train
    from ehr_risk.train_config import load_train_config

    root = tmp_path_factory.mktemp("jobs")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    generate(SynthOptions(patients=700, seed=3), root / "raw")
    ingest([root / "raw" / "fhir"], root / "events", IngestOptions(n_shards=2))
    build_dataset(root / "events", [load_task(TASK)], root / "dataset")
    cfg = load_train_config(
        REPO / "pipelines" / "train.yaml",
        {"dataset": str(root / "dataset"), "tasks": [TASK], "model": "lr", "tracking_uri": uri},
    )
    result = train(cfg)
    version = result.versions[0].version
    return {"root": root, "uri": uri, "result": result, "version": version}


def _score(trained: dict[str, object], out: Path, events: Path | None = None, fhir: bool = False):  # type: ignore[no-untyped-def]
    root = trained["root"]
    assert isinstance(root, Path)
    result = trained["result"]
    ref = ModelRef("ehr-risk-ascvd_10y", str(trained["version"]), result.run_id, "models:/x")  # type: ignore[attr-defined]
    return score(result.predictor, load_task(TASK), events or root / "events", AS_OF, out, ref, fhir=fhir)  # type: ignore[attr-defined]


def _read(partition: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(partition.glob("part-*.parquet"))).sort("subject_id")


def test_score_writes_partition_and_is_idempotent(trained: dict[str, object], tmp_path: Path) -> None:
    first = _score(trained, tmp_path)
    assert first.partition == tmp_path / "as_of_date=2020-06-30" / f"model_version={trained['version']}"
    assert first.subjects_scored > 50
    files = {p.name: p.read_bytes() for p in first.partition.iterdir()}
    scores = _read(first.partition)
    assert scores["subject_id"].is_unique().all()
    assert scores.height == first.subjects_scored
    assert {"risk_ascvd_10y_10y", "n_inputs", "model_name", "model_version", "run_id"} <= set(scores.columns)
    assert scores["risk_ascvd_10y_10y"].is_between(0, 1).all()
    assert (scores["prediction_time"] == dt.datetime(2020, 6, 30, 23, 59, 59, 999999)).all()
    second = _score(trained, tmp_path)
    assert {p.name: p.read_bytes() for p in second.partition.iterdir()} == files  # same files, no duplicates
    assert [p.name for p in tmp_path.rglob(".tmp-*")] == []


def test_crash_mid_run_leaves_no_partial_partition(
    trained: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ehr_risk.scoring as scoring

    real = scoring.score_shard
    calls = {"n": 0}

    def crash_on_second(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "score_shard", crash_on_second)
    with pytest.raises(RuntimeError):
        _score(trained, tmp_path)
    assert not (tmp_path / "as_of_date=2020-06-30").exists() or not any(
        (tmp_path / "as_of_date=2020-06-30").iterdir()
    )
    assert list(tmp_path.rglob("part-*.parquet")) == []


def test_concurrent_run_of_same_job_is_refused(trained: dict[str, object], tmp_path: Path) -> None:
    lock = tmp_path / f".lock-ehr-risk-ascvd_10y-{trained['version']}-{AS_OF.isoformat()}"
    with exclusive_lock(lock), pytest.raises(JobLockedError):
        _score(trained, tmp_path)
    assert _score(trained, tmp_path).subjects_scored > 0  # released after the holder is done


def test_records_after_as_of_change_nothing(trained: dict[str, object], tmp_path: Path) -> None:
    root = trained["root"]
    assert isinstance(root, Path)
    base = _read(_score(trained, tmp_path / "a").partition)
    # the same events plus a heart attack and extreme labs for everyone the day after the as-of date
    later = tmp_path / "events_later"
    (later / "events").mkdir(parents=True)
    for shard in event_shards(root / "events"):
        ev = pl.read_parquet(shard)
        subjects = ev.select("subject_id").unique()
        when = dt.datetime(2020, 7, 1, 9)
        extra = subjects.with_columns(
            pl.lit(when).cast(pl.Datetime("us")).alias("time"),
            pl.lit("SNOMED/22298006").alias("code"),
        )
        lab = subjects.with_columns(
            pl.lit(when).cast(pl.Datetime("us")).alias("time"),
            pl.lit("LOINC/2093-3").alias("code"),
            pl.lit(400.0, pl.Float32).alias("numeric_value"),
        )
        merged = pl.concat([ev, extra, lab], how="diagonal_relaxed").sort(
            "subject_id", "time", nulls_last=False
        )
        merged.select(ev.columns).write_parquet(later / "events" / shard.name)
    after = _read(_score(trained, tmp_path / "b", events=later).partition)
    assert after.drop("n_inputs").equals(base.drop("n_inputs"))
    assert after["n_inputs"].equals(base["n_inputs"])


def test_fhir_risk_assessments_are_valid(trained: dict[str, object], tmp_path: Path) -> None:
    from fhir.resources.R4B.riskassessment import RiskAssessment

    result = _score(trained, tmp_path, fhir=True)
    assert result.fhir_file is not None
    lines = result.fhir_file.read_text().splitlines()
    assert len(lines) == result.subjects_scored
    first = RiskAssessment.model_validate_json(lines[0])
    assert first.subject.reference.startswith("Patient/")  # mapped back through the private id map
    assert 0 <= float(first.prediction[0].probabilityDecimal) <= 1


def test_model_on_incompatible_schema_is_refused(trained: dict[str, object], tmp_path: Path) -> None:
    import copy

    result = trained["result"]
    predictor = copy.copy(result.predictor)  # type: ignore[attr-defined]
    predictor.metadata = {**predictor.metadata, "schema_versions": {"events": "events@2.0.0"}}
    ref = ModelRef("ehr-risk-ascvd_10y", "1", "r", "models:/x")
    with pytest.raises(SchemaError, match="retrain"):
        score(predictor, load_task(TASK), trained["root"] / "events", AS_OF, tmp_path, ref)  # type: ignore[operator]


def _retrain_config(trained: dict[str, object], tmp_path: Path, gate: dict[str, object]) -> Path:
    root = trained["root"]
    assert isinstance(root, Path)
    events = tmp_path / "events"
    shutil.copytree(root / "events", events, symlinks=True)
    cfg = {
        "task": TASK,
        "events": str(events),
        "dataset": str(tmp_path / "dataset"),
        "train_config": str(REPO / "pipelines" / "train.yaml"),
        "train_overrides": {"model": "lr"},
        "gate": {"n_boot": 200, **gate},
        "output_dir": str(tmp_path / "decisions"),
        "tracking_uri": trained["uri"],
    }
    path = tmp_path / "retrain.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_retrain_promotes_then_rejects(trained: dict[str, object], tmp_path: Path) -> None:
    from ehr_risk.retrain import load_retrain_config, retrain

    uri = str(trained["uri"])
    name = "ehr-risk-ascvd_10y"
    # first run (no champion): the challenger is gated against the clinical score; a lenient gate promotes
    lenient = {"min_auroc_delta": -1.0, "calibration_slope": [-1e9, 1e9]}  # tiny cohort: any slope
    first = retrain(load_retrain_config(_retrain_config(trained, tmp_path / "one", lenient)))
    assert first.promoted and first.champion_version is None
    assert first.numbers["compared_with"] == "pce"
    assert registry.alias_version(name, "champion", uri) == first.challenger_version
    # second run: a gate no model can pass leaves the champion where it was; the challenger stays registered
    strict = {"min_auroc_delta": 0.99}
    second = retrain(load_retrain_config(_retrain_config(trained, tmp_path / "two", strict)))
    assert not second.promoted and second.champion_version == first.challenger_version
    assert second.numbers["compared_with"] == "champion"
    assert registry.alias_version(name, "champion", uri) == first.challenger_version
    assert registry.alias_version(name, "challenger", uri) == second.challenger_version
    decision_files = list((tmp_path / "two" / "decisions").rglob("decision.json"))
    assert len(decision_files) == 1
    record = json.loads(decision_files[0].read_text())
    assert record["promoted"] is False and "ΔAUROC" in record["reason"]
    from mlflow import MlflowClient

    tags = MlflowClient(uri).get_run(record["run_id"]).data.tags
    assert tags["ehr_risk.promotion.decision"] == "rejected"


def test_network_inference_threads_are_set_then_restored() -> None:
    from types import SimpleNamespace

    import torch

    from ehr_risk.scoring import torch_threads

    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with torch_threads(SimpleNamespace(uses_torch=True), target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
    with torch_threads(SimpleNamespace(uses_torch=False), target):  # no network: torch untouched
        assert torch.get_num_threads() == before


def test_scores_do_not_depend_on_the_number_of_workers(trained: dict[str, object], tmp_path: Path) -> None:
    root, result = trained["root"], trained["result"]
    assert isinstance(root, Path)
    ref = ModelRef("ehr-risk-ascvd_10y", str(trained["version"]), result.run_id, "models:/x")  # type: ignore[attr-defined]
    parts = {}
    for workers in (1, 2):
        out = tmp_path / str(workers)
        done = score(result.predictor, load_task(TASK), root / "events", AS_OF, out, ref, workers=workers)  # type: ignore[attr-defined]
        parts[workers] = {p.name: p.read_bytes() for p in done.partition.glob("part-*.parquet")}
    assert len(parts[1]) == 2 and parts[1] == parts[2]  # same files, byte for byte


def test_explain_adds_top_factors_to_scores_and_fhir(trained: dict[str, object], tmp_path: Path) -> None:
    from ehr_risk.explanations import factor_groups

    root, result = trained["root"], trained["result"]
    assert isinstance(root, Path)
    predictor = result.predictor  # type: ignore[attr-defined]
    ref = ModelRef("ehr-risk-ascvd_10y", str(trained["version"]), result.run_id, "models:/x")  # type: ignore[attr-defined]
    plain = _read(_score(trained, tmp_path / "plain").partition)
    assert plain["top_factors"].null_count() == plain.height  # the columns exist, empty, without --explain
    done = score(
        predictor, load_task(TASK), root / "events", AS_OF, tmp_path / "x", ref, fhir=True, explain=3
    )
    explained = _read(done.partition)
    risk = [c for c in plain.columns if c.startswith("risk_")]
    assert explained.select("subject_id", *risk).equals(plain.select("subject_id", *risk))
    assert explained["top_factors"].list.len().max() == 3
    names = set(explained["top_factors"].explode().drop_nulls().to_list())
    assert names <= set(factor_groups(predictor.feature_names)[0])
    manifest = json.loads((done.partition / "_manifest.json").read_text())
    assert manifest["explained"] == {"column": predictor.explained_column, "top_factors": 3}
    assert done.fhir_file is not None
    resource = json.loads(done.fhir_file.read_text().splitlines()[0])
    rationale = [p["rationale"] for p in resource["prediction"] if "rationale" in p]
    assert len(rationale) == 1 and "percentage points" in rationale[0]
    subject = explained.filter(pl.col("top_factors").list.len() > 0).row(0, named=True)
    assert subject["top_factors"][0] in done.fhir_file.read_text()
