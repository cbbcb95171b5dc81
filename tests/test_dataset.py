"""`ehr-risk dataset` end to end on small synthetic event shards (the benchmark's generator)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from ehr_risk.cli import app
from ehr_risk.dataset import DatasetOptions, build_dataset
from ehr_risk.splits import SplitConfig
from ehr_risk.tables import read_table
from ehr_risk.tasks import load_task

REPO = Path(__file__).resolve().parent.parent
TASKS = ["ascvd_10y", "heart_failure_5y", "t2d_5y", "ckd_5y"]
SMALL = DatasetOptions(top_k=20, max_len=32, min_count=2, batch_subjects=70)


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_dataset", REPO / "benchmarks" / "dataset.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(frames: list[pl.DataFrame], folder: Path) -> Path:
    (folder / "events").mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
        frame.write_parquet(folder / "events" / f"shard-{k:04d}.parquet")
    return folder


@pytest.fixture(scope="module")
def chunks() -> list[pl.DataFrame]:
    rng = np.random.default_rng(7)
    bench = _bench()
    return [bench.synth_chunk(rng, 0, 120), bench.synth_chunk(rng, 120, 120)]


@pytest.fixture(scope="module")
def built(chunks: list[pl.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("ds")
    events = _write(chunks, root / "in")
    meta = build_dataset(events, [load_task(t) for t in TASKS], root / "out", SMALL)
    return root / "out", meta


def test_layout_and_schemas(built: tuple[Path, dict], chunks: list[pl.DataFrame]) -> None:
    out, meta = built
    times = read_table(out / "prediction_times.parquet", "prediction_times")
    splits = read_table(out / "splits.parquet", "splits")
    for task in TASKS:
        read_table(out / "labels" / f"{task}.parquet", "labels")
        meds = read_table(out / "labels" / f"{task}.meds.parquet", "labels_meds")
        assert meds.column("boolean_value").null_count == 0
    for kind in ("tabular", "sequence", "clinical"):
        table = read_table(out / "features" / f"{kind}.parquet", f"features_{kind}")
        assert table.num_rows == times.num_rows
        assert table.select(["subject_id", "prediction_time"]).equals(times)  # same rows, same order
    assert (out / "featurizers" / "vocab.json").exists() and (out / "featurizers" / "tabular.pkl").exists()
    assert not (out / "features" / ".parts").exists()
    assert splits.num_rows == 240 and meta["counts"]["subjects"] == 240
    assert meta["events"]["n_events"] == sum(c.height for c in chunks)
    assert set(meta["schemas"]) >= {"labels", "splits", "prediction_times", "features_tabular"}
    assert set(meta["codelists"]) >= {
        "ascvd",
        "coronary_death",
        "ascvd_history",
        "heart_failure",
        "t2d",
        "ckd",
    }
    assert set(meta["seconds"]) >= {"cohort", "fit", "transform", "total"}


def test_labels_and_times_are_consistent(built: tuple[Path, dict]) -> None:
    out, _ = built
    times = pl.read_parquet(out / "prediction_times.parquet")
    union = []
    for task in TASKS:
        labels = pl.read_parquet(out / "labels" / f"{task}.parquet")
        assert labels.height > 0
        assert labels.filter(pl.col("event_time") <= pl.col("prediction_time")).height == 0
        assert labels.filter(pl.col("censor_time") <= pl.col("prediction_time")).height == 0
        assert labels.select(["subject_id", "prediction_time"]).is_unique().all()
        primary = load_task(task).primary_horizon
        assert labels["boolean_value"].equals(labels[f"label_{primary:g}y"], check_names=False)
        meds = pl.read_parquet(out / "labels" / f"{task}.meds.parquet")
        assert meds.height == labels["boolean_value"].is_not_null().sum()
        union.append(labels.select("subject_id", "prediction_time"))
    assert pl.concat(union).unique().sort(pl.all()).equals(times.sort(pl.all()))


def test_splits_are_subject_disjoint_across_tables(built: tuple[Path, dict]) -> None:
    out, _ = built
    splits = pl.read_parquet(out / "splits.parquet")
    assert splits["subject_id"].is_unique().all()
    labels = pl.read_parquet(out / "labels" / "ascvd_10y.parquet").join(splits, on="subject_id", how="left")
    assert labels["split"].null_count() == 0
    per_subject = labels.group_by("subject_id").agg(pl.col("split").n_unique())
    assert per_subject["split"].max() == 1


def test_cohort_report(built: tuple[Path, dict]) -> None:
    out, _ = built
    report = json.loads((out / "cohort_report.json").read_text())
    assert set(report) == set(TASKS)
    for task in TASKS:
        r = report[task]
        rows = [s["rows"] for s in r["flow"][1:]]
        assert rows == sorted(rows, reverse=True)
        for step in r["flow"]:
            by_split = step["by_split"]
            assert sum(v["rows"] for v in by_split.values()) == step["rows"]
            assert sum(v["subjects"] for v in by_split.values()) == step["subjects"]
        labels = pl.read_parquet(out / "labels" / f"{task}.parquet")
        assert r["flow"][-1]["rows"] == labels.height == r["overall"]["rows"]
        assert sum(r["splits"][s]["rows"] for s in ("train", "tuning", "held_out")) == labels.height
        h = f"{r['primary_horizon_years']:g}y"
        stats = r["overall"][h]
        assert stats["known"] + stats["censored"] == labels.height
        assert stats["events"] == labels["boolean_value"].sum()
        assert 0 <= stats["event_rate"] <= 1


def test_sharding_does_not_change_labels_or_splits(chunks: list[pl.DataFrame], tmp_path: Path) -> None:
    one = _write([pl.concat(chunks)], tmp_path / "one")
    two = _write(chunks, tmp_path / "two")
    tasks = [load_task("ascvd_10y"), load_task("ckd_5y")]
    options = DatasetOptions(features=())
    build_dataset(one, tasks, tmp_path / "a", options)
    build_dataset(two, tasks, tmp_path / "b", options)
    for name in ("labels/ascvd_10y.parquet", "labels/ckd_5y.parquet", "splits.parquet"):
        assert pl.read_parquet(tmp_path / "a" / name).equals(pl.read_parquet(tmp_path / "b" / name)), name
    a = json.loads((tmp_path / "a" / "cohort_report.json").read_text())
    b = json.loads((tmp_path / "b" / "cohort_report.json").read_text())
    assert a == b


def test_new_subjects_leave_existing_labels_and_splits_alone(
    chunks: list[pl.DataFrame], tmp_path: Path
) -> None:
    tasks = [load_task("heart_failure_5y")]
    options = DatasetOptions(features=(), splits=SplitConfig(key="k1"))
    build_dataset(_write(chunks[:1], tmp_path / "old"), tasks, tmp_path / "a", options)
    build_dataset(_write(chunks, tmp_path / "new"), tasks, tmp_path / "b", options)
    for name in ("labels/heart_failure_5y.parquet", "splits.parquet"):
        old = pl.read_parquet(tmp_path / "a" / name)
        new = pl.read_parquet(tmp_path / "b" / name).join(
            old.select("subject_id").unique(), on="subject_id", how="semi"
        )
        assert old.equals(new.sort(old.columns[:2])), name


def test_cli(chunks: list[pl.DataFrame], tmp_path: Path) -> None:
    events = _write(chunks[:1], tmp_path / "in")
    runner = CliRunner()
    args = ["dataset", "--events", str(events), "--task", "ascvd_10y", "--out", str(tmp_path / "out")]
    result = runner.invoke(app, [*args, "--features", "", "--temporal-holdout", "2005-01-01", "-q"])
    assert result.exit_code == 0, result.output
    assert "subjects" in result.output
    splits = pl.read_parquet(tmp_path / "out" / "splits.parquet")
    assert splits["temporal_holdout"].null_count() == 0 and splits["temporal_holdout"].any()


def test_cli_errors_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ehr-risk"),
            "dataset",
            "--events",
            str(tmp_path),
            "--task",
            "nope",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 2 and "unknown task 'nope'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("task", TASKS)
def test_shard_pass_matches_cohort_on_all_events(
    built: tuple[Path, dict], chunks: list[pl.DataFrame], task: str
) -> None:
    """The dataset reads only the events criteria can match; labels must equal a build on every event."""
    from ehr_risk.cohort import build_cohort

    out, _ = built
    full = pl.concat([build_cohort(c, load_task(task))[0] for c in chunks]).sort(
        "subject_id", "prediction_time"
    )
    assert pl.read_parquet(out / "labels" / f"{task}.parquet").equals(full)


def test_features_equal_direct_featurizer_calls(built: tuple[Path, dict], chunks: list[pl.DataFrame]) -> None:
    """The builder trims each subject's future events and batches subjects; outputs must not change."""
    import pickle

    from ehr_risk.features import clinical_variables

    out, _ = built
    events = chunks[1]
    times = pl.read_parquet(out / "prediction_times.parquet").join(
        events.select("subject_id").unique(), on="subject_id", how="semi", maintain_order="left"
    )
    for kind in ("tabular", "sequence", "clinical"):
        stored = pl.read_parquet(out / "features" / f"{kind}.parquet").join(
            times, on=["subject_id", "prediction_time"], how="semi", maintain_order="left"
        )
        if kind == "clinical":
            direct = clinical_variables(events, times)
        else:
            with (out / "featurizers" / f"{kind}.pkl").open("rb") as fh:
                direct = pickle.load(fh).transform(events, times)
        assert stored.equals(direct.select(stored.columns).cast(stored.schema)), kind
