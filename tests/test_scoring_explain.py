"""Top contributing factors (ehr_risk.explanations and Predictor.predict_features(..., explain=k)): the
decompositions add up to the models' own outputs, network effects equal full re-runs, names are feature
names."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from ehr_risk.explanations import (
    EVENT_HISTORY,
    effects_from_logit_contributions,
    factor_groups,
    factor_name,
    gbm_contributions,
    lr_contributions,
    top_factors,
)
from ehr_risk.models.calibration import Recalibration
from ehr_risk.models.classical import ClassicalSettings, HorizonClassifiers, make_estimator
from ehr_risk.models.data import SequenceArrays, build_batch
from ehr_risk.models.hazard import cumulative_risk
from ehr_risk.predictor import Predictor
from tests.test_models_networks import make_arrays
from tests.test_scoring_batches import _network_predictor, sequence_table

FEATURES = [
    "age_years",
    "static:GENDER/female",
    "clin:systolic_bp_mm_hg",
    "clin:systolic_bp_mm_hg_age_days",
    "code:LOINC/4548-4:count_30d",
    "code:LOINC/4548-4:count_all",
    "code:LOINC/4548-4:last_value",
]


def test_factor_names_are_feature_and_variable_names() -> None:
    assert factor_name("clin:systolic_bp_mm_hg_age_days") == "systolic_bp_mm_hg"
    assert factor_name("clin:diabetes") == "diabetes"
    assert factor_name("static:GENDER/female") == "sex"
    assert factor_name("static:RACE/2106-3") == "race"
    assert factor_name("events:count_365d") == "all events count"
    assert factor_name("code:SNOMED/44054006:count_1825d") == "SNOMED/44054006 count"
    assert factor_name("code:LOINC/4548-4:last_value_age_days") == "hba1c_pct"  # a lab of a clinical variable
    assert factor_name("code:LOINC/99999-9:last_value") == "LOINC/99999-9 last value"
    assert (
        factor_name("code:LOINC/72166-2=SNOMED/449868002:count_all") == "LOINC/72166-2=SNOMED/449868002 count"
    )
    names, member = factor_groups(FEATURES)
    assert names == ["age_years", "sex", "systolic_bp_mm_hg", "LOINC/4548-4 count", "hba1c_pct"]
    assert member.sum(axis=0).tolist() == [1, 1, 2, 2, 1] and (member.sum(axis=1) == 1).all()


def _classical_data(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    X[rng.random(X.shape) < 0.15] = np.nan
    logit = -1.0 + 1.2 * np.nan_to_num(X[:, 0]) + 0.8 * np.nan_to_num(X[:, 2]) + 0.6 * np.isnan(X[:, 6])
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return X, y


def test_lr_contributions_add_up_to_the_pipeline_log_odds() -> None:
    X, y = _classical_data()
    model = make_estimator(ClassicalSettings(kind="lr"), C=1.0).fit(X, y)
    logit, contributions = lr_contributions(model, X)
    np.testing.assert_allclose(logit, model.decision_function(X), rtol=1e-5, atol=1e-6)  # float32 model
    np.testing.assert_allclose(contributions.sum(axis=1), logit - model.named_steps["model"].intercept_[0])
    # the planted strong feature dominates where it is far from its mean
    far = np.abs(np.nan_to_num(X[:, 0])) > 2
    assert (np.abs(contributions[far, 0]) > np.abs(contributions[far, 3])).mean() > 0.9


def test_gbm_path_contributions_add_up_to_the_model_log_odds() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = _classical_data(seed=1)
    model = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=8, random_state=0).fit(X, y)
    logit, contributions = gbm_contributions(model, X)
    np.testing.assert_allclose(logit, model.decision_function(X), rtol=1e-6, atol=1e-8)
    used = {
        int(f)
        for (tree,) in model._predictors
        for f in tree.nodes["feature_idx"][~tree.nodes["is_leaf"].astype(bool)]
    }
    unused = [j for j in range(X.shape[1]) if j not in used]
    assert np.all(contributions[:, unused] == 0)  # a feature no tree splits on contributes nothing
    assert np.abs(contributions[:, 0]).mean() > np.abs(contributions[:, 3]).mean()


def test_effects_are_risk_differences_against_the_reference() -> None:
    logit = np.array([0.0, 1.0])
    contributions = np.array([[0.5, 0.0], [-1.0, 2.0]])
    effects = effects_from_logit_contributions(logit, contributions)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected = sig(logit)[:, None] - sig(logit[:, None] - contributions)
    np.testing.assert_allclose(effects, expected)
    assert effects[0, 1] == 0 and effects[0, 0] > 0 and effects[1, 0] < 0


def test_top_factors_rank_by_absolute_effect_and_drop_zeros() -> None:
    names = ["a", "b", "c", "d"]
    effects = np.array([[0.01, -0.05, 0.0, 0.02], [0.0, 0.0, 0.0, 0.0]])
    labels, values = top_factors(names, effects, 3)
    assert labels.to_pylist() == [["b", "d", "a"], []]
    assert values.to_pylist() == [[-0.05, 0.02, 0.01], []]
    labels, _ = top_factors(names, effects, 10)  # k above the number of factors
    assert labels.to_pylist()[0] == ["b", "d", "a"]


def _classical_predictor(kind: str) -> tuple[Predictor, pl.DataFrame, pl.DataFrame]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = _classical_data(seed=2)
    model = (
        make_estimator(ClassicalSettings(kind="lr")).fit(X, y)
        if kind == "lr"
        else HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    )
    classifiers = HorizonClassifiers(ClassicalSettings(kind=kind))  # type: ignore[arg-type]
    classifiers.add("risk_t_5y", model, {})
    pred = Predictor(
        model_kind=kind,
        tasks=["t"],
        horizons={"t": [5.0]},
        primary_horizons={"t": 5.0},
        tabular=object(),
        feature_names=FEATURES,
        classifiers=classifiers,
    )
    keys = pl.DataFrame({"subject_id": np.arange(len(X)), "prediction_time": [None] * len(X)}).with_columns(
        pl.col("prediction_time").cast(pl.Datetime("us"))
    )
    tab = pl.DataFrame({name: X[:, j] for j, name in enumerate(FEATURES)})
    return pred, keys, tab


@pytest.mark.parametrize("kind", ["lr", "gbm"])
def test_classical_predictor_explains_without_changing_risks(kind: str) -> None:
    pred, keys, tab = _classical_predictor(kind)
    plain = pred.predict_features(keys, tab, None)
    explained = pred.predict_features(keys, tab, None, explain=3)
    assert explained["risk_t_5y"].equals(plain["risk_t_5y"])
    lists = explained["top_factors"].to_list()
    assert all(len(f) <= 3 for f in lists) and any(len(f) == 3 for f in lists)
    assert set().union(*map(set, lists)) <= set(factor_groups(FEATURES)[0])
    assert explained["top_factor_effects"].list.len().equals(explained["top_factors"].list.len())
    top = explained["top_factors"].list.first().drop_nulls().value_counts().sort("count")[-1, 0]
    assert top in {"age_years", "systolic_bp_mm_hg"}  # a planted strong variable leads most often


def test_effects_go_through_the_recalibration() -> None:
    pred, keys, tab = _classical_predictor("lr")
    raw = pred.predict_features(keys, tab, None, explain=2)
    pred.calibration = Recalibration(coefficients={"risk_t_5y": (0.4, 0.7)})
    cal = pred.predict_features(keys, tab, None, explain=2)
    assert not cal["risk_t_5y"].equals(raw["risk_t_5y"])
    assert cal["top_factors"].list.len().equals(raw["top_factors"].list.len())
    # slope 0.7 < 1 shrinks every effect towards 0 on the logit scale
    r = np.abs(raw["top_factor_effects"].list.first().drop_nulls().to_numpy())
    c = np.abs(cal["top_factor_effects"].list.first().drop_nulls().to_numpy())
    assert np.median(c / r) < 1


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_network_effects_equal_full_reruns(kind: str) -> None:
    arrays, _ = make_arrays(40, seed=5, max_len=12, n_static=3)
    pred = _network_predictor(kind, n_static=3)
    pred.feature_names = ["age_years", "clin:hdl_mg_dl", "clin:hdl_mg_dl_age_days"]
    keys = pl.DataFrame({"subject_id": np.arange(40)}).with_columns(
        pl.lit(None, pl.Datetime("us")).alias("prediction_time")
    )
    tab = pl.DataFrame({n: arrays.static[:, j] for j, n in enumerate(pred.feature_names)})
    seq = sequence_table(arrays)
    out = pred.predict_features(keys, tab, seq, explain=10)
    assert out["risk_t_5y"].equals(pred.predict_features(keys, tab, seq)["risk_t_5y"])
    net = pred.network()
    reference = net.static.mean.numpy()
    rows = np.arange(40)

    def full(static: np.ndarray, history: SequenceArrays) -> np.ndarray:
        batch = build_batch(history, rows, pred.max_len)
        batch["static"] = torch.from_numpy(static)
        with torch.inference_mode():
            return cumulative_risk(net(batch))[:, 0, 4].double().numpy()

    base = full(arrays.static, arrays)
    np.testing.assert_allclose(base, out["risk_t_5y"].to_numpy(), rtol=1e-5)
    hdl = arrays.static.copy()
    hdl[:, 1:] = reference[1:]
    empty = SequenceArrays(
        tokens=np.zeros(0, np.int32),
        delta_days=np.zeros(0, np.float32),
        age_years=np.zeros(0, np.float32),
        value_bin=np.zeros(0, np.int8),
        offsets=np.zeros(41, np.int64),
        static=arrays.static,
    )
    expected = {"hdl_mg_dl": base - full(hdl, arrays), EVENT_HISTORY: base - full(arrays.static, empty)}
    for i, (names, effects) in enumerate(
        zip(out["top_factors"].to_list(), out["top_factor_effects"].to_list(), strict=True)
    ):
        got = dict(zip(names, effects, strict=True))
        assert set(got) <= {"age_years", "hdl_mg_dl", EVENT_HISTORY}
        for name, value in expected.items():
            assert got.get(name, 0.0) == pytest.approx(value[i], rel=1e-4, abs=1e-7)


def test_network_without_static_features_explains_the_history_only() -> None:
    arrays, _ = make_arrays(30, seed=6, max_len=12, n_static=0)
    pred = _network_predictor("gru", n_static=0)
    keys = pl.DataFrame({"subject_id": np.arange(30)}).with_columns(
        pl.lit(None, pl.Datetime("us")).alias("prediction_time")
    )
    out = pred.predict_features(keys, None, sequence_table(arrays), explain=3)
    factors = out["top_factors"].to_list()
    assert {name for row in factors for name in row} == {EVENT_HISTORY}
    assert out["top_factor_effects"].list.first().abs().max() > 0
