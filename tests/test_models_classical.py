"""Classical baselines and the Predictor built on them (models/classical.py, predictor.py)."""

from __future__ import annotations

import pickle
from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from models_synthetic import RISKY, T0, ToySequenceFeaturizer, ToyTabularFeaturizer, make_cohort
from sklearn.metrics import roc_auc_score

from ehr_risk.errors import InputDataError
from ehr_risk.models.classical import BinaryTarget, ClassicalSettings, HorizonClassifiers, fit_binary
from ehr_risk.predictor import Predictor


def _data(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    X[rng.random((n, 5)) < 0.1] = np.nan
    logit = -2 + 1.5 * np.nan_to_num(X[:, 0]) - 1.0 * np.nan_to_num(X[:, 1])
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return X, y


def _targets(y: np.ndarray) -> tuple[BinaryTarget, BinaryTarget]:
    n = len(y)
    tr, tu = np.arange(0, int(0.7 * n)), np.arange(int(0.7 * n), n)
    return BinaryTarget(tr, y[tr], np.ones(len(tr))), BinaryTarget(tu, y[tu], np.ones(len(tu)))


@pytest.mark.parametrize("kind", ["lr", "gbm"])
def test_classifiers_learn_and_select_on_the_tuning_split(kind: str) -> None:
    X, y = _data()
    train, tune = _targets(y)
    settings = ClassicalSettings(
        kind=kind, C=(0.001, 1.0), max_iter=200, learning_rate=0.1, n_iter_no_change=5
    )  # type: ignore[arg-type]
    model, info = fit_binary(settings, X, train, X, tune)
    p = model.predict_proba(X[tune.rows])[:, 1]
    assert roc_auc_score(tune.y, p) > 0.75
    assert "tuning_log_loss" in info
    if kind == "lr":
        assert info["C"] == 1.0  # the heavily regularised C=0.001 loses on the tuning loss
    else:
        assert info["n_iter"] < 200  # early stopping on the tuning rows
    # calibrated on average (no class weighting by default)
    assert p.mean() == pytest.approx(tune.y.mean(), abs=0.03)


def test_class_weighting_is_configurable() -> None:
    X, y = _data()
    train, tune = _targets(y)
    plain, _ = fit_binary(ClassicalSettings(kind="lr", C=(1.0,)), X, train, X, tune)
    balanced, _ = fit_binary(
        ClassicalSettings(kind="lr", C=(1.0,), class_weight="balanced"), X, train, X, tune
    )
    assert balanced.predict_proba(X)[:, 1].mean() > plain.predict_proba(X)[:, 1].mean() + 0.1


def test_single_class_training_rows_are_refused() -> None:
    X, y = _data(200)
    train, tune = _targets(np.zeros_like(y))
    with pytest.raises(ValueError, match="single class"):
        fit_binary(ClassicalSettings(kind="lr"), X, train, X, tune)


@pytest.fixture(scope="module")
def cohort() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return make_cohort(400, seed=3)


def _fit_predictor(cohort: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]) -> Predictor:
    events, labels, _ = cohort
    times = labels.select("subject_id", "prediction_time")
    tab = ToyTabularFeaturizer().fit(events, times)
    X_table = tab.transform(events, times)
    known = labels.get_column("label_5y").is_not_null().to_numpy()
    y = labels.get_column("label_5y").fill_null(False).to_numpy()
    X = Predictor.tabular_matrix_of(X_table, tab.feature_names_)
    rows = np.flatnonzero(known)
    t = BinaryTarget(rows, y[rows], np.ones(len(rows)))
    clf = HorizonClassifiers(ClassicalSettings(kind="lr", C=(1.0,)))
    clf.add("risk_toy_5y", *fit_binary(clf.settings, X, t, X, t))
    return Predictor(
        model_kind="lr",
        tasks=["toy"],
        horizons={"toy": [5.0]},
        primary_horizons={"toy": 5.0},
        tabular=tab,
        feature_names=tab.feature_names_,
        classifiers=clf,
    )


def test_predictor_scores_events_and_ignores_anything_after_t(cohort) -> None:  # type: ignore[no-untyped-def]
    events, labels, _ = cohort
    predictor = _fit_predictor(cohort)
    times = labels.select("subject_id", "prediction_time").reverse()  # any row order
    out = predictor.predict(events, times)
    assert out.columns == ["subject_id", "prediction_time", "risk_toy_5y"]
    assert out.select("subject_id").equals(times.select("subject_id"))
    risk = out.get_column("risk_toy_5y").to_numpy()
    assert ((risk > 0) & (risk < 1)).all()
    later = pl.DataFrame(
        {"subject_id": times["subject_id"], "time": [T0 + timedelta(days=1)] * times.height, "code": RISKY},
        schema_overrides={"time": pl.Datetime("us")},
    )
    more = pl.concat([events, later], how="diagonal_relaxed")
    assert predictor.predict(more, times).equals(out)
    # same through the precomputed features, a LazyFrame, and after a pickle round trip
    tab = predictor.tabular
    assert tab is not None
    assert predictor.predict_features(times, tab.transform(events, times), None).equals(out)
    assert predictor.predict(events.lazy(), times).equals(out)
    assert pickle.loads(pickle.dumps(predictor)).predict(events, times).equals(out)
    assert predictor.predict(events, times.head(0)).height == 0


def test_predictor_refuses_bad_prediction_times(cohort) -> None:  # type: ignore[no-untyped-def]
    events, _, _ = cohort
    predictor = _fit_predictor(cohort)
    with pytest.raises(InputDataError, match="prediction_time"):
        predictor.predict(events, pl.DataFrame({"subject_id": [1]}))
    with pytest.raises(InputDataError, match="null"):
        predictor.predict(events, pl.DataFrame({"subject_id": [1], "prediction_time": [None]}))


def test_a_network_predictor_needs_weights() -> None:
    with pytest.raises(ValueError, match="network weights"):
        Predictor(
            model_kind="gru",
            tasks=["t"],
            horizons={"t": [1.0]},
            primary_horizons={"t": 1.0},
            sequence=ToySequenceFeaturizer(),
        )
