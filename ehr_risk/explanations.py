"""Top contributing factors per patient: which named variables move a patient's risk, and by how much.

A factor is a named group of tabular features (`factor_groups`): a clinical variable (`systolic_bp_mm_hg`,
`diabetes`; its value and its age), a coded history item (`LOINC/4548-4 last value`, `SNOMED/44054006
count`: the counts over all windows), `age_years`, `sex`, `race`, `ethnicity`, `history_days` (length of
the record), `all events count`; for the networks also `event history` (the whole event sequence). The
last value of a lab code of a clinical variable counts for that variable. Names are feature names, never
values.

The effect of factor g for one patient is the change in the explained risk (primary horizon of the first
task, a fraction 0-1) that the factor makes against a reference:

    effect_g = risk(patient) - risk(patient with factor g at its training reference)

    logistic regression  exact and additive: the contribution of g in log-odds is the sum over its columns
                         of coefficient x standardised value (missing indicators included), the reference
                         being the training mean (standardised value 0); risk without it is
                         sigmoid(logit - contribution).
    gradient boosting    the path decomposition of each tree (Saabas): every split on the path of the
                         patient adds E[child] - E[node] to its feature, E being the count-weighted mean
                         prediction of the training rows in the node, so contributions add up exactly to
                         the log-odds minus the training-average prediction; then as above.
    GRU / transformer    the static features of g are set to their training means (what the network uses
                         for a missing value, without the missing flag) and only the static part and the
                         head are re-run on the encoded sequence; `event history` compares with an empty
                         history. Not additive; the history still shows what the group's static features
                         summarise (e.g. blood pressure readings as events), so a static effect can
                         understate the variable's whole influence.

With a recalibrated model (ehr_risk.models.calibration) both risks go through the column's recalibration.
Positive effects raise the risk. Factors are ranked by absolute effect; zero effects are left out.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa

from ehr_risk.errors import ConfigError
from ehr_risk.features.clinical import LABS

EVENT_HISTORY = "event history"
_LAB_VARIABLES = {f"LOINC/{code}": name for name, spec in LABS.items() for code in spec.codes}
_STATIC_GROUPS = {"GENDER/": "sex", "RACE/": "race", "ETHNICITY/": "ethnicity"}


def factor_name(feature: str) -> str:
    """The factor a tabular feature column belongs to (see the module docstring). The last value of a lab
    or vital code of a named clinical variable joins that variable (LOINC/8480-6 → systolic_bp_mm_hg)."""
    if feature.startswith("static:"):
        code = feature.removeprefix("static:")
        return next((g for p, g in _STATIC_GROUPS.items() if code.startswith(p)), code)
    if feature.startswith("clin:"):
        return feature.removeprefix("clin:").removesuffix("_age_days")
    if feature.startswith("events:count_"):
        return "all events count"
    if feature.startswith("code:"):
        key, stat = feature.removeprefix("code:").rsplit(":", 1)
        if not stat.startswith("last_value"):
            return f"{key} count"
        return _LAB_VARIABLES.get(key, f"{key} last value")
    return feature  # age_years, history_days


def factor_groups(features: list[str]) -> tuple[list[str], np.ndarray]:
    """(factor names in first-seen order, (n_features, n_factors) 0/1 matrix mapping columns to factors)."""
    names: dict[str, int] = {}
    index = [names.setdefault(factor_name(f), len(names)) for f in features]
    member = np.zeros((len(features), len(names)), dtype=np.float64)
    member[np.arange(len(features)), index] = 1.0
    return list(names), member


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def effects_from_logit_contributions(logit: np.ndarray, contributions: np.ndarray) -> np.ndarray:
    """Risk differences from additive log-odds contributions (n, G) of a model with log-odds `logit` (n,)."""
    return _sigmoid(logit)[:, None] - _sigmoid(logit[:, None] - contributions)


def lr_contributions(pipeline: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log-odds, per-feature contributions (n, p)) of the impute → scale → logistic-regression pipeline."""
    impute, scale, model = (pipeline.named_steps[s] for s in ("impute", "scale", "model"))
    z = scale.transform(impute.transform(X))
    coef = np.asarray(model.coef_, dtype=np.float64).reshape(-1)
    terms = z * coef
    p = X.shape[1]
    contributions = terms[:, :p].copy()
    indicator = getattr(impute, "indicator_", None)
    if indicator is not None and terms.shape[1] > p:  # a missing flag counts for its feature
        np.add.at(contributions.T, np.asarray(indicator.features_), terms[:, p:].T)
    if terms.shape[1] != p + (len(indicator.features_) if indicator is not None else 0):
        raise ConfigError("explanations: the logistic model's columns do not match its features")
    logit = terms.sum(axis=1) + float(np.asarray(model.intercept_).reshape(-1)[0])
    return logit, contributions


def gbm_contributions(model: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log-odds, per-feature contributions (n, p)) of a binary HistGradientBoostingClassifier, by the path
    decomposition of every tree. Uses the fitted trees' node arrays (sklearn's `_predictors`)."""
    n, p = X.shape
    contributions = np.zeros((n, p), dtype=np.float64)
    logit = np.full(n, float(np.asarray(model._baseline_prediction).reshape(-1)[0]))
    rows = np.arange(n)
    for (tree,) in model._predictors:
        nodes = tree.nodes
        if nodes["is_categorical"].any():
            raise ConfigError("explanations: gradient boosting with categorical splits is not supported")
        expected = _node_expectations(nodes)
        node = np.zeros(n, dtype=np.int64)
        logit += expected[0]
        active = ~nodes["is_leaf"][node].astype(bool)
        while active.any():
            at = node[active]
            feature = nodes["feature_idx"][at]
            x = X[rows[active], feature]
            left = np.where(
                np.isnan(x), nodes["missing_go_to_left"][at] == 1, x <= nodes["num_threshold"][at]
            )
            child = np.where(left, nodes["left"][at], nodes["right"][at]).astype(np.int64)
            np.add.at(contributions, (rows[active], feature), expected[child] - expected[at])
            node[active] = child
            active = ~nodes["is_leaf"][node].astype(bool)
    logit += contributions.sum(axis=1)
    return logit, contributions


def _node_expectations(nodes: np.ndarray) -> np.ndarray:
    """Count-weighted mean leaf value under every node (nodes are stored parents before children)."""
    value = nodes["value"].astype(np.float64)
    count = nodes["count"].astype(np.float64)
    out = value.copy()
    for i in range(len(nodes) - 1, -1, -1):
        if not nodes["is_leaf"][i]:
            left, right = int(nodes["left"][i]), int(nodes["right"][i])
            total = count[left] + count[right]
            out[i] = (count[left] * out[left] + count[right] * out[right]) / total if total else 0.0
    return out


@cache
def _modules() -> tuple[type, type]:
    """(Recording, Constant): stand-ins for a network's submodules (torch imported only when needed)."""
    import torch
    from torch import nn

    class Recording(nn.Module):
        """Runs the wrapped encoder and keeps its output (the encoded sequences)."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner, self.out = inner, torch.empty(0)

        def forward(self, *args: Any) -> torch.Tensor:
            self.out = self.inner(*args)
            return self.out

    class Constant(nn.Module):
        """Returns a fixed value: the sequences are encoded once, then only the rest of the net re-runs."""

        def __init__(self, value: torch.Tensor | None) -> None:
            super().__init__()
            self.value = value

        def forward(self, *_args: Any) -> torch.Tensor | None:
            return self.value

    return Recording, Constant


def encode_and_score(net: Any, batch: dict[str, Any]) -> tuple[np.ndarray, Any]:
    """(cumulative risks (B, tasks, intervals), encoded sequences (B, d)) of a HazardNetwork batch."""
    from ehr_risk.models.hazard import cumulative_risk

    recording_cls, _ = _modules()
    recording = recording_cls(net.encoder)
    cumulative = cumulative_risk(_with_modules(net, encoder=recording)(batch)).double().numpy()
    return cumulative, recording.out


def network_effects(
    net: Any,
    encoded: Any,
    static: Any,
    risk: np.ndarray,
    empty: dict[str, Any],
    reference: np.ndarray,
    member: np.ndarray,
    column: tuple[int, int],
) -> np.ndarray:
    """Effects (n, G + 1) on the explained risk `risk` (n,) of a HazardNetwork, from the encoded sequences
    (n, d) and static features (n, S) of its rows: each static factor set to `reference` (only the static
    part and the head re-run), then (last column) the history replaced by `empty`, a one-row batch of an
    empty history. `column` = (task, interval) of the explained risk."""
    import torch

    from ehr_risk.models.hazard import cumulative_risk

    _, constant_cls = _modules()
    task, interval = column

    def risk_of(encoding: torch.Tensor, features: torch.Tensor) -> np.ndarray:
        model = _with_modules(net, embed=constant_cls(None), encoder=constant_cls(encoding))
        return np.asarray(cumulative_risk(model({"static": features}))[:, task, interval].double().numpy())

    if not np.allclose(risk_of(encoded, static), risk, rtol=1e-5, atol=1e-7):
        raise RuntimeError("explanations: the network is no longer encoder -> static features -> head")
    n = static.shape[0]
    effects = np.zeros((n, member.shape[1] + 1), dtype=np.float64)
    ref = torch.from_numpy(reference.astype(np.float32))
    for g in range(member.shape[1]):
        cols = torch.from_numpy(np.flatnonzero(member[:, g]))
        changed = static.clone()
        changed[:, cols] = ref[cols]
        effects[:, g] = risk - risk_of(encoded, changed)
    _, no_history = encode_and_score(net, empty)
    effects[:, -1] = risk - risk_of(no_history.expand(n, -1), static)
    return effects


def _with_modules(net: Any, **replace: Any) -> Any:
    """A shallow copy of `net` with some submodules replaced (the weights are shared, nothing is copied)."""
    clone = copy.copy(net)
    clone.__dict__["_modules"] = {**net._modules, **replace}
    return clone


def top_factors(names: list[str], effects: np.ndarray, k: int) -> tuple[pa.Array, pa.Array]:
    """The `k` largest absolute effects per row as (list<string> names, list<float64> effects) arrays."""
    n, g = effects.shape
    k = min(k, g)
    order = np.argsort(-np.abs(effects), axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(effects, order, axis=1)
    keep = chosen != 0
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    labels = pa.array(names, pa.string()).take(pa.array(order[keep]))
    return (
        pa.ListArray.from_arrays(pa.array(offsets), labels),
        pa.ListArray.from_arrays(pa.array(offsets), pa.array(chosen[keep], pa.float64())),
    )
