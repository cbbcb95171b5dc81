"""Ensembles (models/ensemble.py, Predictor.members, train.fit_ensemble) and feature exclusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from models_synthetic import write_dataset

from ehr_risk.errors import ConfigError
from ehr_risk.explanations import EVENT_HISTORY
from ehr_risk.models.ensemble import combined_effects, expit, logit, mean_logit
from ehr_risk.train import train
from ehr_risk.train_config import TrainConfig


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ensemble"), n=400)


def _config(dataset: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = {
        "dataset": dataset,
        "tasks": ["toy_10y"],
        "model": "ensemble",
        "register_model": False,
        "horizons": [5, 10],
        "tracking_uri": f"sqlite:///{dataset.parent / 'mlflow.db'}",
        "gbm": {"max_iter": 30, "n_iter_no_change": 5},
        "network": {"max_epochs": 1, "d_model": 8},
    }
    return TrainConfig.model_validate({**base, **kw})


def test_mean_logit_and_exact_effects_of_the_combination() -> None:
    rng = np.random.default_rng(0)
    r1, r2 = rng.uniform(0.05, 0.9, 50), rng.uniform(0.05, 0.9, 50)
    assert np.allclose(logit(expit(np.array([-3.0, 0.0, 2.5]))), [-3.0, 0.0, 2.5])
    mixed = mean_logit([{"c": r1}, {"c": r2}], ["c"])["c"]
    assert np.allclose(mixed, 1 / (1 + np.sqrt((1 - r1) / r1 * (1 - r2) / r2)))  # geometric mean of odds
    # member 1 explains with factors a, b; member 2 with b, history
    e1 = np.column_stack([r1 * 0.3, -r1 * 0.1])
    e2 = np.column_stack([r2 * 0.2, r2 * 0.5])
    names, risk, effects = combined_effects([(["a", "b"], r1, e1), (["b", "h"], r2, e2)])
    assert names == ["a", "b", "h"] and np.allclose(risk, mixed)
    # taking a factor out of every member and averaging the logits again gives the combined effect
    without_b = expit((logit(r1 - e1[:, 1]) + logit(r2 - e2[:, 0])) / 2)
    without_h = expit((logit(r1) + logit(r2 - e2[:, 1])) / 2)
    assert np.allclose(effects[:, 1], mixed - without_b) and np.allclose(effects[:, 2], mixed - without_h)


def test_ensemble_averages_its_members_and_survives_the_registry(dataset: Path) -> None:
    from ehr_risk.registry import load_predictor

    res = train(_config(dataset, recalibration="none", register_model=True))
    ens = res.predictor
    assert ens.model_kind == "ensemble" and [m.model_kind for m in ens.members] == ["lr", "gbm", "gru"]
    assert ens.output_columns == ["risk_toy_10y_5y", "risk_toy_10y_10y"]
    events = pl.read_parquet(dataset.parent / "events.parquet")
    times = pl.read_parquet(dataset / "prediction_times.parquet").head(60)
    out = ens.predict(events, times)
    members = [m.predict(events, times) for m in ens.members]
    for column in ens.output_columns:
        expect = expit(np.mean([logit(m.get_column(column).to_numpy()) for m in members], axis=0))
        assert np.allclose(out.get_column(column).to_numpy(), expect)
    assert "held_out_auroc_toy_10y_10y" in res.metrics
    loaded = load_predictor(res.model_uri, uri=f"sqlite:///{dataset.parent / 'mlflow.db'}")
    assert loaded.predict(events, times).equals(out)
    assert loaded.uses_torch and not ens.members[0].uses_torch


def test_recalibrated_ensemble_explains_with_every_members_factors(dataset: Path) -> None:
    res = train(_config(dataset, ensemble={"members": ["lr", "gru"]}))
    ens = res.predictor
    assert all(m.calibration is not None for m in ens.members) and ens.calibration is not None
    assert "members" in res.details and set(res.details["members"]) == {"lr", "gru"}
    events = pl.read_parquet(dataset.parent / "events.parquet")
    times = pl.read_parquet(dataset / "prediction_times.parquet").head(40)
    plain = ens.predict(events, times)
    explained = ens.predict(events, times, explain=100)  # every factor
    assert explained.drop("top_factors", "top_factor_effects").equals(plain)
    factors = set(explained.get_column("top_factors").explode().drop_nulls().to_list())
    assert EVENT_HISTORY in factors  # from the network
    assert {"age", "last_lab"} & factors  # from the tabular features


def test_excluded_features_are_left_out_and_typos_refused(dataset: Path) -> None:
    res = train(_config(dataset, model="lr", exclude_features=["n_*"]))
    assert res.predictor.feature_names == ["age", "last_lab"]
    with pytest.raises(ConfigError, match="matches no tabular feature"):
        train(_config(dataset, model="lr", exclude_features=["nothing_like_this*"]))
    with pytest.raises(ConfigError, match="leaves no tabular feature"):
        train(_config(dataset, model="lr", exclude_features=["*"]))


@pytest.mark.parametrize(
    ("members", "match"), [(["lr"], "at least 2"), (["lr", "lr"], "at most once"), (["lr", "svm"], "members")]
)
def test_bad_ensembles_are_config_errors(tmp_path: Path, members: list[str], match: str) -> None:
    from ehr_risk.train_config import load_train_config

    path = tmp_path / "train.yaml"
    path.write_text(f"dataset: d\ntasks: [t]\nmodel: ensemble\nensemble: {{members: {members}}}\n")
    with pytest.raises(ConfigError, match=match):
        load_train_config(path)


def test_ensemble_scores_combined_from_the_members_equal_scoring_it_again(dataset: Path) -> None:
    """fit_ensemble combines the members' own scoring passes instead of running every member twice; the
    result must be what scoring the (not yet recalibrated) ensemble gives."""
    from ehr_risk.models.training_data import load_training_data
    from ehr_risk.train import evaluation_scores, fit_ensemble

    config = _config(dataset)  # members recalibrated on the tuning split
    data = load_training_data(dataset, ["toy_10y"], need_tabular=True, need_sequence=True)
    ens, details, scores = fit_ensemble(config, data, lambda _: None, None)
    assert set(details["members"]) == {"lr", "gbm", "gru"}
    assert all(m.calibration is not None for m in ens.members) and ens.calibration is None
    again = evaluation_scores(ens, data)
    assert scores.columns == again.columns and scores.height == again.height > 0
    assert scores.select("subject_id", "prediction_time", "split").equals(
        again.select("subject_id", "prediction_time", "split")
    )
    for column in ens.output_columns:
        assert np.allclose(
            scores.get_column(column).to_numpy(), again.get_column(column).to_numpy(), rtol=1e-12
        )
