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


def test_meds_label_files_pass_the_meds_schema(built: tuple[Path, dict]) -> None:
    """`<task>.meds.parquet` is what MEDS tools read: meds.LabelSchema must accept it unchanged."""
    import meds
    import pyarrow.parquet as pq

    out, _ = built
    for task in TASKS:
        table = pq.read_table(out / "labels" / f"{task}.meds.parquet")
        meds.LabelSchema.validate(table)  # raises on a wrong type, an extra column or a null value
        assert table.num_rows > 0


def test_temporal_holdout_and_featurizers_never_see_non_train_subjects(
    chunks: list[pl.DataFrame], tmp_path: Path
) -> None:
    """Late arrivals are all held out; vocabulary and columns come from train subjects only.

    A code planted in every tuning, held-out and temporal hold-out subject (and in no train subject that
    stays in train) must not reach the vocabulary or the tabular columns."""
    import datetime as dt

    from ehr_risk.holdout import split_rows
    from ehr_risk.splits import assign_splits

    cutoff = dt.date(2003, 1, 1)
    events = pl.concat(chunks)
    first = (
        events.filter(pl.col("time").is_not_null() & (pl.col("code") != "MEDS_BIRTH"))
        .group_by("subject_id")
        .agg(pl.col("time").min().alias("first_time"))
    )
    late = set(first.filter(pl.col("first_time") >= dt.datetime(2003, 1, 1))["subject_id"])
    config = SplitConfig(key="k2", temporal_holdout_date=cutoff)
    hashed = assign_splits(events["subject_id"].unique().sort(), config)
    hashed_train = set(hashed.filter(pl.col("split") == "train")["subject_id"])
    assert late & hashed_train, "the fixture needs late arrivals that the hash puts in train"
    secret = "SNOMED/123456789"
    planted = [
        pl.DataFrame({"subject_id": [sid] * 6, "time": [dt.datetime(2010, 1, 1)] * 6, "code": [secret] * 6})
        for sid in sorted((set(hashed["subject_id"]) - hashed_train) | late)
    ]
    with_secret = pl.concat([events, *planted], how="diagonal_relaxed").sort("subject_id", "time")
    root = _write([with_secret], tmp_path / "in")
    options = DatasetOptions(
        top_k=500, max_len=32, min_count=1, splits=config, features=("tabular", "sequence")
    )
    meta = build_dataset(root, [load_task("ascvd_10y")], tmp_path / "out", options)
    splits = pl.read_parquet(tmp_path / "out" / "splits.parquet")
    flagged = splits.filter(pl.col("temporal_holdout"))
    assert set(flagged["subject_id"]) == late and (flagged["split"] == "held_out").all()
    assert not (set(splits.filter(pl.col("split") == "train")["subject_id"]) & late)
    unchanged = splits.filter(~pl.col("temporal_holdout")).join(hashed, on="subject_id", suffix="_hash")
    assert (unchanged["split"] == unchanged["split_hash"]).all()  # the others keep their hash split
    vocab = json.loads((tmp_path / "out" / "featurizers" / "vocab.json").read_text())
    assert secret not in vocab and len(vocab) > 10
    columns = pl.read_parquet_schema(tmp_path / "out" / "features" / "tabular.parquet")
    assert not any(secret in c for c in columns) and any("LOINC/8480-6" in c for c in columns)
    assert meta["features"]["fit_subjects"] <= splits.filter(pl.col("split") == "train").height
    report = json.loads((tmp_path / "out" / "cohort_report.json").read_text())["ascvd_10y"]
    rows = split_rows(tmp_path / "out", "ascvd_10y", "temporal_holdout")
    assert report["temporal_holdout"]["rows"] == rows.height > 0
    assert set(rows["subject_id"]) <= late
    assert meta["splits"]["observed"]["temporal_holdout"] == pytest.approx(len(late) / splits.height)


def test_cli_windows_option(chunks: list[pl.DataFrame], tmp_path: Path) -> None:
    events = _write(chunks[:1], tmp_path / "in")
    runner = CliRunner()
    args = ["dataset", "--events", str(events), "--task", "ckd_5y", "--out", str(tmp_path / "out"), "-q"]
    result = runner.invoke(app, [*args, "--features", "tabular", "--windows", "90,all", "--top-k", "5"])
    assert result.exit_code == 0, result.output
    columns = pl.read_parquet_schema(tmp_path / "out" / "features" / "tabular.parquet")
    assert {"events:count_90d", "events:count_all"} <= set(columns)
    assert not any(c.endswith(("count_30d", "count_365d")) for c in columns)
    assert sum(c.startswith("code:") and c.endswith(":count_90d") for c in columns) == 5
    from ehr_risk.errors import ConfigError

    for bad in ("90,90", "-3", "week", ""):  # main() turns a ConfigError into one line and exit 2
        result = runner.invoke(app, [*args, "--features", "tabular", "--windows", bad])
        assert isinstance(result.exception, ConfigError) and "--windows" in str(result.exception), bad


def test_temporal_holdout_rows_need_a_temporal_holdout(built: tuple[Path, dict]) -> None:
    from ehr_risk.errors import InputDataError
    from ehr_risk.holdout import split_rows

    out, _ = built
    with pytest.raises(InputDataError, match="temporal-holdout"):
        split_rows(out, "ascvd_10y", "temporal_holdout")
    report = json.loads((out / "cohort_report.json").read_text())
    assert all("temporal_holdout" not in r for r in report.values())


def test_training_dates_add_train_rows_only(chunks: list[pl.DataFrame], tmp_path: Path) -> None:
    """Landmark stacking: the train split gains rows at the training-only dates; tuning and held-out rows,
    the featurizers and every regular row's features stay as without them; networks skip the extra rows
    unless asked."""
    import datetime as dt

    from ehr_risk.models.training_data import load_training_data
    from ehr_risk.train import fit_sequence
    from ehr_risk.train_config import TrainConfig

    root = _write(chunks, tmp_path / "in")
    base = load_task("ascvd_10y")
    spec = base.prediction_times.model_copy(
        update={"training_dates": [dt.date(2004, 1, 1), dt.date(2008, 1, 1), base.prediction_times.dates[0]]}
    )
    stacked = base.model_copy(update={"prediction_times": spec})
    extra = [dt.datetime(2004, 1, 1), dt.datetime(2008, 1, 1)]  # a regular date is not training-only
    assert stacked.training_only_times == extra
    build_dataset(root, [base], tmp_path / "a", SMALL)
    meta = build_dataset(root, [stacked], tmp_path / "b", SMALL)
    assert meta["training_only_times"] == [x.isoformat() for x in extra]

    keys = ["subject_id", "prediction_time"]
    splits = pl.read_parquet(tmp_path / "b" / "splits.parquet").select("subject_id", "split")
    a = pl.read_parquet(tmp_path / "a" / "labels" / "ascvd_10y.parquet")
    b = pl.read_parquet(tmp_path / "b" / "labels" / "ascvd_10y.parquet")
    added = b.join(a, on=keys, how="anti").join(splits, on="subject_id")
    assert added.height > 0 and set(added["split"]) == {"train"}
    assert set(added["prediction_time"]) <= set(extra)
    assert a.join(b, on=keys, how="anti").height == 0  # nothing lost
    assert b.join(added, on=keys, how="anti").sort(keys).equals(a.sort(keys))  # the rest unchanged
    vocab = "featurizers/vocab.json"
    assert (tmp_path / "a" / vocab).read_text() == (tmp_path / "b" / vocab).read_text()
    for kind in ("tabular", "sequence", "clinical"):
        fa = pl.read_parquet(tmp_path / "a" / "features" / f"{kind}.parquet").sort(keys)
        fb = pl.read_parquet(tmp_path / "b" / "features" / f"{kind}.parquet")
        assert fb.join(fa.select(keys), on=keys, how="semi").sort(keys).equals(fa), kind

    data = load_training_data(tmp_path / "b", ["ascvd_10y"], need_tabular=True, need_sequence=True)
    assert data.training_only is not None
    flagged = data.keys.filter(pl.Series(data.training_only))
    assert flagged.sort(keys).equals(added.select(keys).sort(keys))
    n_train = int((data.split == "train").sum())
    for also, expected in ((False, n_train - added.height), (True, n_train)):
        config = TrainConfig(
            dataset=tmp_path / "b",
            tasks=["ascvd_10y"],
            model="gru",
            register_model=False,
            network={"max_epochs": 1, "d_model": 8, "training_only_rows": also},
        )  # type: ignore[arg-type]
        _, info = fit_sequence(config, data, lambda _: None, None)
        assert info["train_sequences"] == expected
