"""`ehr-risk dataset`: event table + task(s) → labels, splits, features and a cohort report."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import typer

from ehr_risk.cli import app


@app.command()
def dataset(
    events: Path = typer.Option(
        ..., "--events", help="Ingest output folder (events/*.parquet) or shard folder."
    ),
    task: list[str] = typer.Option(
        ..., "--task", help="Task name (pipelines/tasks/NAME.yaml) or YAML path; repeat."
    ),
    out: Path = typer.Option(..., "--out", help="Dataset folder to write."),
    train: float = typer.Option(
        0.7, "--train-fraction", min=0.01, max=0.99, help="Share of subjects in train."
    ),
    tuning: float = typer.Option(0.15, "--tuning-fraction", min=0.0, max=0.98, help="Share in tuning."),
    split_key: str = typer.Option("ehr-risk-splits-v1", "--split-key", help="Key of the split hash."),
    temporal_holdout: str | None = typer.Option(
        None,
        "--temporal-holdout",
        help="YYYY-MM-DD: subjects whose first record is on or after it are all held out (and flagged).",
    ),
    features: str = typer.Option(
        "tabular,sequence,clinical",
        "--features",
        help="Comma-separated: tabular, sequence, clinical; '' = none.",
    ),
    top_k: int = typer.Option(200, "--top-k", min=1, help="Tabular: codes kept (by train frequency)."),
    windows: str = typer.Option(
        "30,365,1825,all", "--windows", help="Tabular: count windows in days before t; 'all' = whole history."
    ),
    max_len: int = typer.Option(256, "--max-len", min=1, help="Sequence: most recent events kept."),
    fit_max_subjects: int = typer.Option(
        25_000, "--fit-max-subjects", min=1, help="Fit featurizers on at most this many train subjects."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Build labels, splits, features and the cohort report for one or more tasks."""
    from ehr_risk.cli.common import Progress
    from ehr_risk.dataset import DatasetOptions, build_dataset
    from ehr_risk.errors import ConfigError
    from ehr_risk.splits import SplitConfig
    from ehr_risk.tasks import load_task

    holdout = None
    if temporal_holdout:
        try:
            holdout = dt.date.fromisoformat(temporal_holdout)
        except ValueError as exc:
            raise ConfigError(f"--temporal-holdout: {temporal_holdout!r} is not a YYYY-MM-DD date") from exc
    if train + tuning >= 1.0:
        raise ConfigError("--train-fraction + --tuning-fraction must leave a held-out share (sum < 1)")
    split_config = SplitConfig(
        train=train,
        tuning=tuning,
        held_out=1.0 - train - tuning,
        key=split_key,
        temporal_holdout_date=holdout,
    )
    kinds = tuple(k.strip() for k in features.split(",") if k.strip())
    options = DatasetOptions(
        splits=split_config,
        features=kinds,
        top_k=top_k,
        windows_days=_windows(windows),
        max_len=max_len,
        fit_max_subjects=fit_max_subjects,
    )
    tasks = [load_task(t) for t in task]
    bars: dict[str, Progress] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = Progress(f"dataset {stage}", total=total, quiet=quiet)
        bars[stage](done)

    meta = build_dataset(events, tasks, out, options, progress=progress)
    counts = meta["counts"]
    labels = ", ".join(f"{name} {n:,}" for name, n in counts["labels"].items())
    print(
        f"dataset: {counts['subjects']:,} subjects, {counts['prediction_times']:,} prediction times; "
        f"label rows: {labels}; written to {out} in {meta['seconds']['total']:.1f}s"
    )
    sys.stdout.flush()


def _windows(text: str) -> tuple[int | None, ...]:
    """`30,365,all` → (30, 365, None); ConfigError on anything else."""
    from ehr_risk.errors import ConfigError

    out: list[int | None] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part == "all":
            out.append(None)
        elif part.isdigit() and int(part) > 0:
            out.append(int(part))
        else:
            raise ConfigError(f"--windows: {part!r} is neither a positive number of days nor 'all'")
    if not out or len(set(out)) != len(out):
        raise ConfigError("--windows: give distinct windows, e.g. 30,365,1825,all")
    return tuple(out)
