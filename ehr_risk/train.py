"""The training job: dataset folder → fitted Predictor → MLflow run + registered model (alias challenger).

    config ─▶ load_training_data ─▶ fit (lr | gbm: one classifier per task × horizon;
                                         gru | transformer: one hazard network for all tasks)
           ─▶ Predictor ─▶ tuning / held-out metrics ─▶ registry: params, config, fingerprint, schema
              versions, git commit, artifacts, pyfunc model, `ehr-risk-<task>@challenger`

The held-out metrics here are a quick check (AUROC, Brier at each horizon with a known label); the full
comparison with the clinical scores is `ehr-risk evaluate`. Nothing here prints: progress goes to `message`.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import brier_score_loss, roc_auc_score

import ehr_risk
from ehr_risk import registry
from ehr_risk.errors import ConfigError, InputDataError
from ehr_risk.models.calibration import Recalibration, fit_column
from ehr_risk.models.classical import BinaryTarget, ClassicalSettings, HorizonClassifiers, fit_binary
from ehr_risk.models.targets import binary_label, ipcw_weights
from ehr_risk.models.training_data import KEYS, TrainingData, fingerprint, load_training_data, schema_versions
from ehr_risk.predictor import CLASSICAL_KINDS, ENSEMBLE, SEQUENCE_KINDS, Predictor, risk_column
from ehr_risk.train_config import TrainConfig

Message = Callable[[str], None]


@dataclass
class TrainResult:
    run_id: str
    model_uri: str
    versions: list[registry.RegisteredVersion]
    metrics: dict[str, float]
    predictor: Predictor
    predictions_path: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _feature_names(data: TrainingData, exclude: list[str]) -> list[str]:
    """The tabular columns the model uses: all of them but those matching an `exclude` pattern."""
    assert data.tabular is not None
    names = [c for c in data.tabular.columns if c not in KEYS]
    fitted = getattr(data.featurizers.get("tabular"), "feature_names_", None)
    if fitted is not None and list(fitted) != names:
        raise InputDataError("features/tabular.parquet: columns differ from the fitted tabular featurizer's")
    for pattern in exclude:  # a pattern that matches nothing is a typo, not a choice
        if not any(fnmatchcase(name, pattern) for name in names):
            raise ConfigError(f"exclude_features: {pattern!r} matches no tabular feature")
    return [n for n in names if not any(fnmatchcase(n, pattern) for pattern in exclude)]


def fit_classical(
    config: TrainConfig, data: TrainingData, message: Message
) -> tuple[Predictor, dict[str, Any]]:
    params = config.lr if config.model == "lr" else config.gbm
    settings = ClassicalSettings(
        kind=config.model,  # type: ignore[arg-type]
        class_weight=params.class_weight,
        censoring=params.censoring,
        seed=config.seed,
        **(
            {"C": tuple(config.lr.C), "lr_max_iter": config.lr.max_iter}
            if config.model == "lr"
            else config.gbm.model_dump(exclude={"class_weight", "censoring"})
        ),
    )
    if "tabular" not in data.featurizers:
        raise InputDataError(f"{config.dataset}/featurizers: no fitted tabular featurizer")
    names = _feature_names(data, config.exclude_features)
    if not names:
        raise ConfigError("exclude_features: leaves no tabular feature for the model")
    predictor = Predictor(
        model_kind=config.model,
        tasks=list(config.tasks),
        horizons={},
        primary_horizons={t: data.tasks[t].primary_horizon for t in config.tasks},
        tabular=data.featurizers["tabular"],
        feature_names=names,
        classifiers=HorizonClassifiers(settings),
    )
    assert data.tabular is not None and predictor.classifiers is not None
    X = predictor.tabular_matrix(data.tabular)
    for task in config.tasks:
        lab = data.tasks[task]
        horizons = config.horizons or sorted(lab.labels)
        missing = [h for h in horizons if h not in lab.labels]
        if missing:
            raise ConfigError(f"horizons: task {task} has no label column for {missing} year(s)")
        predictor.horizons[task] = list(horizons)
        for h in horizons:
            if settings.censoring == "ipcw":
                weight = ipcw_weights(lab.years, lab.is_event, lab.is_competing, h)
            else:
                weight = lab.known[h].astype(np.float64)

            def target(split: str, h: float = h, weight: np.ndarray = weight, lab: Any = lab) -> BinaryTarget:
                rows = data.rows(split)
                rows = rows[lab.in_task[rows] & lab.known[h][rows] & (weight[rows] > 0)]
                return BinaryTarget(rows, lab.labels[h][rows], weight[rows])

            train, tune = target("train"), target("tuning")
            n_events = int(train.y.sum())
            message(f"train: {config.model} {task} {h:g}y on {len(train.rows):,} rows ({n_events:,} events)")
            if len(np.unique(train.y)) < 2:
                raise InputDataError(f"task {task}, {h:g}y: the training rows hold a single class")
            model, info = fit_binary(settings, X, train, X, tune)
            predictor.classifiers.add(risk_column(task, h), model, info)
    return predictor, {"model_selection": predictor.classifiers.selection_}


def _list_max(table: pl.DataFrame, column: str) -> int:
    value: Any = table.get_column(column).explode().max()
    return int(value) if value is not None else 0


def fit_sequence(
    config: TrainConfig, data: TrainingData, message: Message, logger: Any
) -> tuple[Predictor, dict[str, Any]]:
    from ehr_risk.models.data import SequenceArrays, SequenceDataset
    from ehr_risk.models.lightning_module import FitSettings, fit_network
    from ehr_risk.models.networks import NetworkConfig
    from ehr_risk.models.targets import competing_targets, hazard_targets

    net = config.network
    seq_feat = data.featurizers.get("sequence")
    if seq_feat is None:
        raise InputDataError(f"{config.dataset}/featurizers: no fitted sequence featurizer")
    horizons = config.horizons or [float(h) for h in range(1, net.n_intervals + 1)]
    bad = [h for h in horizons if h != int(h) or not 1 <= h <= net.n_intervals]
    if bad:
        raise ConfigError(f"horizons: {bad} not whole years in 1..{net.n_intervals} (network.n_intervals)")
    use_static = net.use_static and data.tabular is not None and "tabular" in data.featurizers
    names = _feature_names(data, config.exclude_features) if use_static else []
    static = None
    if use_static:
        assert data.tabular is not None
        static = Predictor.tabular_matrix_of(data.tabular, names)
    assert data.sequence is not None
    arrays_all = data.sequence.select("tokens", "delta_days", "age_years", "value_bin").to_arrow()
    n = data.keys.height
    K = len(config.tasks)
    interval = np.zeros((n, K), np.int64)
    event = np.zeros((n, K), bool)
    died = np.zeros((n, K), bool)
    mask = np.zeros((n, K), bool)
    for k, task in enumerate(config.tasks):
        lab = data.tasks[task]
        t0, ev, comp, cens = (lab.frame.get_column(c).to_numpy() for c in lab.frame.columns)
        if net.competing_risk:
            interval[:, k], event[:, k], died[:, k] = competing_targets(t0, ev, comp, cens, net.n_intervals)
        else:
            interval[:, k], event[:, k] = hazard_targets(t0, ev, comp, cens, n_intervals=net.n_intervals)
        mask[:, k] = lab.in_task
    n_tokens = int(getattr(seq_feat, "n_tokens_", 0) or len(getattr(seq_feat, "vocab_", {})))
    n_bins = int(getattr(seq_feat, "n_value_bins_", 0))
    n_tokens = max(n_tokens, _list_max(data.sequence, "tokens") + 1, 2)
    n_bins = max(n_bins, _list_max(data.sequence, "value_bin"))
    network_config = NetworkConfig(
        kind=config.model,  # type: ignore[arg-type]
        n_tokens=n_tokens,
        n_value_bins=n_bins,
        n_static=len(names),
        n_tasks=K,
        n_intervals=net.n_intervals,
        d_model=net.d_model,
        n_layers=net.n_layers,
        n_heads=net.n_heads,
        dropout=net.dropout,
        competing=net.competing_risk,
        static_head=net.static_head,
    )

    usable = np.asarray(mask.any(axis=1))
    left_out = np.zeros(n, bool)  # training-only landmark rows the network skips
    if data.training_only is not None and not net.training_only_rows:
        left_out = usable & data.training_only
        usable = usable & ~data.training_only

    def dataset(split: str) -> SequenceDataset:
        rows = data.rows(split)
        rows = rows[usable[rows]]
        arrays = SequenceArrays.from_arrow(arrays_all.take(rows), None if static is None else static[rows])
        competing = died[rows] if net.competing_risk else None
        return SequenceDataset(arrays, net.max_len, interval[rows], event[rows], mask[rows], competing)

    train, tune = dataset("train"), dataset("tuning")
    if len(train) == 0 or len(tune) == 0:
        raise InputDataError("the train and tuning splits both need labelled prediction times")
    settings = FitSettings(
        max_epochs=net.max_epochs,
        patience=net.patience,
        lr=net.learning_rate,
        weight_decay=net.weight_decay,
        batch_size=net.batch_size,
        max_len=net.max_len,
        seed=config.seed,
        accelerator=net.accelerator,
        threads=net.threads,
    )
    primary = [min(int(np.ceil(data.tasks[t].primary_horizon)), net.n_intervals) for t in config.tasks]
    n_left = int(left_out[data.rows("train")].sum())
    skipped = (
        f" ({n_left:,} training-only landmark rows left out: network.training_only_rows)" if n_left else ""
    )
    message(f"train: {config.model} on {len(train):,} sequences, tuning on {len(tune):,}{skipped}")
    started = time.perf_counter()
    result = fit_network(network_config, train, tune, list(config.tasks), primary, settings, logger)
    seconds = time.perf_counter() - started
    message(
        f"train: best epoch {result.best_epoch} of {result.epochs_run}, val_loss {result.best_val_loss:.4f}"
    )
    predictor = Predictor(
        model_kind=config.model,
        tasks=list(config.tasks),
        horizons={t: list(horizons) for t in config.tasks},
        primary_horizons={t: data.tasks[t].primary_horizon for t in config.tasks},
        tabular=data.featurizers.get("tabular") if use_static else None,
        sequence=seq_feat,
        feature_names=names,
        network_config=network_config.to_dict(),
        network_state={k: v.detach().cpu().numpy().copy() for k, v in result.network.state_dict().items()},
        max_len=net.max_len,
    )
    info = {
        "history": result.history,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "fit_seconds": seconds,
        "train_sequences": len(train),
        "train_sequences_per_second": len(train) * max(result.epochs_run, 1) / max(seconds, 1e-9),
    }
    return predictor, info


def fit_ensemble(
    config: TrainConfig, data: TrainingData, message: Message, logger: Any
) -> tuple[Predictor, dict[str, Any], pl.DataFrame]:
    """Each member fitted (and recalibrated) as if trained alone, on the same splits; the ensemble predicts
    the task horizons that every member predicts (models/ensemble.py). Also gives the ensemble's
    `evaluation_scores`, combined from the members' own scoring passes: scoring the ensemble again would
    run every member (the network included) a second time over the tuning and held-out rows."""
    members: list[Predictor] = []
    member_risks: list[dict[str, np.ndarray]] = []
    info: dict[str, Any] = {}
    scores: pl.DataFrame | None = None
    for kind in config.ensemble.members:
        member_config = config.model_copy(update={"model": kind})
        if kind in CLASSICAL_KINDS:
            member, details = fit_classical(member_config, data, message)
        else:
            member, details = fit_sequence(member_config, data, message, logger)
        scores = evaluation_scores(member, data)
        if config.recalibration == "logistic":
            member.calibration = recalibrate(member, data, scores, message)
            details["recalibration"] = member.calibration.summary()
        risks = {c: scores.get_column(c).to_numpy() for c in member.output_columns}
        member_risks.append(member.calibration.apply(risks) if member.calibration is not None else risks)
        members.append(member)
        info[kind] = details
    predictor = ensemble_of(members, {t: data.tasks[t].primary_horizon for t in config.tasks})
    assert scores is not None  # the config requires at least two members
    return predictor, {"members": info}, ensemble_scores(predictor, scores, member_risks)


def ensemble_scores(
    ensemble: Predictor, member_scores: pl.DataFrame, member_risks: list[dict[str, np.ndarray]]
) -> pl.DataFrame:
    """The ensemble's uncalibrated `evaluation_scores` from its members' calibrated risks on the same rows
    (`member_scores`: any member's scores frame, for the keys and split)."""
    from ehr_risk.models.ensemble import mean_logit

    columns = ensemble.output_columns
    combined = mean_logit(member_risks, columns)
    return member_scores.select(
        "subject_id", "prediction_time", *(pl.Series(c, combined[c]) for c in columns), "split"
    )


def ensemble_of(members: list[Predictor], primary_horizons: dict[str, float]) -> Predictor:
    """The (uncalibrated) ensemble of fitted members, for the tasks of `primary_horizons`: it predicts the
    horizons that every member predicts and featurizes once for all of them."""
    tasks = list(primary_horizons)
    horizons = {
        task: [h for h in members[0].horizons[task] if all(h in m.horizons[task] for m in members)]
        for task in tasks
    }
    empty = [task for task, hs in horizons.items() if not hs]
    if empty:
        raise ConfigError(f"ensemble: the members share no output horizon for task(s) {', '.join(empty)}")
    return Predictor(
        model_kind=ENSEMBLE,
        tasks=tasks,
        horizons=horizons,
        primary_horizons=dict(primary_horizons),
        tabular=next((m.tabular for m in members if m.tabular is not None), None),
        sequence=next((m.sequence for m in members if m.sequence is not None), None),
        members=members,
    )


def _evaluated_rows(data: TrainingData) -> np.ndarray:
    return np.flatnonzero(np.isin(data.split, ["tuning", "held_out"]))


def evaluation_scores(predictor: Predictor, data: TrainingData) -> pl.DataFrame:
    """The predictor's scores of the tuning and held-out rows (with their `split`), from the dataset's
    feature tables: the one scoring pass that recalibration and the split metrics share."""
    rows = _evaluated_rows(data)
    idx = pl.Series(rows)
    tab = data.tabular[idx] if data.tabular is not None and predictor.tabular is not None else None
    seq = (
        data.sequence[idx]
        if data.sequence is not None and predictor.model_kind not in CLASSICAL_KINDS
        else None
    )
    scores = predictor.predict_features(data.keys[idx], tab, seq)
    return scores.with_columns(pl.Series("split", data.split[rows]))


def recalibrate(
    predictor: Predictor, data: TrainingData, scores: pl.DataFrame, message: Message
) -> Recalibration:
    """Logistic recalibration of every output column on the tuning rows of `scores` (uncalibrated, from
    `evaluation_scores`; see models/calibration.py), with the same censoring-aware labels and IPCW
    weights the classical models are trained with."""
    rows = _evaluated_rows(data)
    tuning = data.split[rows] == "tuning"
    cal = Recalibration()
    for task in predictor.tasks:
        lab = data.tasks[task]
        cal.order[task] = [risk_column(task, h) for h in sorted(predictor.horizons[task])]
        for h in predictor.horizons[task]:
            column = risk_column(task, h)
            y, known = binary_label(lab.years, lab.is_event, lab.is_competing, h)
            weight = ipcw_weights(lab.years, lab.is_event, lab.is_competing, h)
            sel = tuning & lab.in_task[rows] & known[rows]
            risk = scores.get_column(column).to_numpy()[sel]
            coef, why = fit_column(risk, y[rows][sel], weight[rows][sel])
            if coef is None:
                cal.skipped[column] = why
            else:
                cal.coefficients[column] = coef
    primary = [risk_column(t, predictor.primary_horizons[t]) for t in predictor.tasks]
    for column in primary:
        if column in cal.coefficients:
            a, b = cal.coefficients[column]
            message(f"train: recalibrated {column} on the tuning split: intercept {a:+.3f}, slope {b:.3f}")
        elif column in cal.skipped:
            message(f"train: {column} left uncalibrated: {cal.skipped[column]}")
    return cal


def split_metrics(
    predictor: Predictor, data: TrainingData, scores: pl.DataFrame
) -> tuple[dict[str, float], pl.DataFrame]:
    """AUROC / Brier of `scores` (from `evaluation_scores`) on the tuning and held-out rows at each output
    horizon that has a label column (rows with a known label only); `scores` with the label columns."""
    rows = _evaluated_rows(data)
    metrics: dict[str, float] = {}
    for task in predictor.tasks:
        lab = data.tasks[task]
        for h in predictor.horizons[task]:
            if h not in lab.labels:
                continue
            col = risk_column(task, h)
            scores = scores.with_columns(
                pl.when(pl.Series(lab.known[h][rows] & lab.in_task[rows]))
                .then(pl.Series(lab.labels[h][rows]))
                .alias(f"label_{task}_{h:g}y")
            )
            for split in ("tuning", "held_out"):
                sel = (data.split[rows] == split) & lab.in_task[rows] & lab.known[h][rows]
                y, p = lab.labels[h][rows][sel], scores.get_column(col).to_numpy()[sel]
                if len(np.unique(y)) == 2:
                    metrics[f"{split}_auroc_{task}_{h:g}y"] = float(roc_auc_score(y, p))
                    metrics[f"{split}_brier_{task}_{h:g}y"] = float(brier_score_loss(y, p))
    return metrics, scores


def train(config: TrainConfig, message: Message | None = None) -> TrainResult:
    """Run the training job of `config` (see the module docstring)."""
    say: Message = message or (lambda _text: None)
    kinds = config.ensemble.members if config.model == ENSEMBLE else [config.model]
    sequence_model = any(kind in SEQUENCE_KINDS for kind in kinds)
    ds = Path(config.dataset)
    if not ds.is_dir():
        raise InputDataError(f"{ds}: dataset folder not found")
    say(f"train: reading {ds}")
    data = load_training_data(ds, list(config.tasks), need_tabular=True, need_sequence=sequence_model)
    fp = fingerprint(data.files)
    versions_of_schemas = schema_versions(data.files, data.meta)
    commit = registry.git_commit(Path.cwd())
    tags = {"ehr_risk.model_kind": config.model, "ehr_risk.tasks": ",".join(config.tasks)}
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    run_name = config.run_name or f"{config.model}-{'-'.join(config.tasks)}"
    run_id = registry.start_run(run_name, tags, config.experiment, config.tracking_uri)
    try:
        registry.log_params(run_id, config.model_dump(mode="json"), config.tracking_uri)
        logger = None
        if sequence_model:
            logger = registry.lightning_logger(run_id, config.experiment, config.tracking_uri)
        # scores before recalibration: what it is fitted on
        if config.model == ENSEMBLE:
            predictor, details, scores = fit_ensemble(config, data, say, logger)
        else:
            if sequence_model:
                predictor, details = fit_sequence(config, data, say, logger)
            else:
                predictor, details = fit_classical(config, data, say)
            scores = evaluation_scores(predictor, data)
        if config.recalibration == "logistic":
            cal = predictor.calibration = recalibrate(predictor, data, scores, say)
            columns = predictor.output_columns
            fixed = cal.apply({c: scores.get_column(c).to_numpy() for c in columns})
            scores = scores.with_columns(pl.Series(c, fixed[c], dtype=pl.Float64) for c in columns)
            details["recalibration"] = cal.summary()
        predictor.metadata = {
            "run_id": run_id,
            "dataset_fingerprint": fp,
            "schema_versions": versions_of_schemas,
            "ehr_risk_version": ehr_risk.__version__,
            "git_commit": commit,
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        metrics, scores = split_metrics(predictor, data, scores)
        counts = {f"n_{s}": float((data.split == s).sum()) for s in ("train", "tuning", "held_out")}
        registry.log_metrics(run_id, {**metrics, **counts}, uri=config.tracking_uri)
        _log_artifacts(run_id, config, data, predictor, details, fp, versions_of_schemas)
        say(f"train: logging the model to run {run_id}")
        model_uri, versions = registry.log_predictor(
            run_id, predictor, register=config.register_model, alias=config.alias, uri=config.tracking_uri
        )
        predictions_path = None
        if config.output_dir is not None:
            predictions_path = Path(config.output_dir) / "predictions.parquet"
            predictions_path.parent.mkdir(parents=True, exist_ok=True)
            scores.write_parquet(predictions_path)
        registry.end_run(run_id, "FINISHED", config.tracking_uri)
    except BaseException:
        registry.end_run(run_id, "FAILED", config.tracking_uri)
        raise
    return TrainResult(run_id, model_uri, versions, metrics, predictor, predictions_path, details)


def _log_artifacts(
    run_id: str,
    config: TrainConfig,
    data: TrainingData,
    predictor: Predictor,
    details: dict[str, Any],
    fp: str,
    versions: dict[str, str],
) -> None:
    uri = config.tracking_uri
    registry.log_dict(run_id, config.model_dump(mode="json"), "config/train.json", uri)
    registry.log_dict(
        run_id,
        {
            "dataset": str(config.dataset),
            "fingerprint": fp,
            "files": [str(p.relative_to(config.dataset)) for p in data.files],
            "schema_versions": versions,
            "dataset_json": {k: v for k, v in data.meta.items() if k != "tasks"},
            "tasks": {t: data.meta.get("tasks", {}).get(t) for t in config.tasks}
            if isinstance(data.meta.get("tasks"), dict)
            else None,
            "rows": {s: int((data.split == s).sum()) for s in ("train", "tuning", "held_out")},
        },
        "dataset/dataset.json",
        uri,
    )
    registry.set_tags(run_id, {"dataset_fingerprint": fp, "python": platform.python_version()}, uri)
    spec: dict[str, Any] = {
        "model_kind": predictor.model_kind,
        "tasks": predictor.tasks,
        "horizons": predictor.horizons,
        "primary_horizons": predictor.primary_horizons,
        "output_columns": predictor.output_columns,
        "tabular_features": predictor.feature_names,
    }
    for member in [predictor, *predictor.members]:
        if member.network_config is not None:
            spec["network"] = member.network_config
            spec["max_len"] = member.max_len
    if predictor.members:
        spec["members"] = [
            {"model_kind": m.model_kind, "tabular_features": len(m.feature_names)} for m in predictor.members
        ]
    registry.log_dict(run_id, spec, "features/feature_spec.json", uri)
    registry.log_dict(run_id, json.loads(json.dumps(details, default=float)), "training/details.json", uri)
    for name in ("featurizers/vocab.json", "cohort_report.json"):
        path = Path(config.dataset) / name
        if path.is_file():
            registry.log_artifact(run_id, path, str(Path(name).parent) if "/" in name else "dataset", uri)
