"""Batch-scoring throughput machinery: inference batches by work budget (ehr_risk.predictor) and shards
scored by several workers in order (ehr_risk.scoring.in_order); results must not depend on either."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ehr_risk import predictor as predictor_module
from ehr_risk.models.data import SequenceArrays
from ehr_risk.predictor import (
    GRU_BATCH_TOKENS,
    TRANSFORMER_BATCH_TOKENS2,
    Predictor,
    inference_batches,
)
from ehr_risk.scoring import in_order
from tests.test_models_networks import config, make_arrays


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 300), min_size=0, max_size=400),
    kind=st.sampled_from(["gru", "transformer"]),
    max_rows=st.integers(1, 600),
)
def test_inference_batches_cover_each_row_once_within_budget(
    lengths: list[int], kind: str, max_rows: int
) -> None:
    arr = np.array(lengths, dtype=np.int64)
    batches = list(inference_batches(arr, kind, max_rows))
    rows = np.concatenate(batches) if batches else np.zeros(0, np.int64)
    assert sorted(rows.tolist()) == list(range(len(lengths)))  # every row exactly once
    budget = TRANSFORMER_BATCH_TOKENS2 if kind == "transformer" else GRU_BATCH_TOKENS
    widths = []
    for batch in batches:
        assert 1 <= len(batch) <= max_rows
        width = int(arr[batch].max())
        cost = width * width if kind == "transformer" else width
        assert len(batch) == 1 or len(batch) * cost <= budget  # a single row may exceed it
        widths.append(width)
    assert widths == sorted(widths)  # sorted by length: padding trimmed to similar rows


def _network_predictor(kind: str, n_static: int = 2) -> Predictor:
    torch.manual_seed(0)
    from ehr_risk.models.networks import HazardNetwork

    net = HazardNetwork(config(kind, n_static=n_static, n_tasks=1))
    with torch.no_grad():
        for p in net.parameters():  # the head starts at zero: random weights make rows differ
            p.normal_(0, 0.3)
    return Predictor(
        model_kind=kind,
        tasks=["t"],
        horizons={"t": [1.0, 5.0]},
        primary_horizons={"t": 5.0},
        sequence=object(),
        feature_names=[f"clin:x{i}" for i in range(n_static)],
        network_config=net.config.to_dict(),
        network_state={k: v.numpy().copy() for k, v in net.state_dict().items()},
        max_len=12,
    )


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_network_risks_do_not_depend_on_the_inference_batching(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays, _ = make_arrays(150, seed=4, max_len=12)
    pred = _network_predictor(kind)
    table = sequence_table(arrays)
    default, _ = pred._predict_network(table, arrays.static)
    monkeypatch.setattr(predictor_module, "GRU_BATCH_TOKENS", 1)  # one row per batch
    monkeypatch.setattr(predictor_module, "TRANSFORMER_BATCH_TOKENS2", 1)
    single, _ = pred._predict_network(table, arrays.static)
    assert default.keys() == single.keys()
    for column in default:
        np.testing.assert_allclose(default[column], single[column], rtol=1e-5, atol=1e-7)
    assert np.std(default["risk_t_5y"]) > 0  # rows differ: the comparison is not trivial


def sequence_table(arrays: SequenceArrays) -> pl.DataFrame:
    """The polars sequence table of `arrays` (the featurizer's output layout)."""

    def rows(flat: np.ndarray) -> list[list[float]]:
        return [flat[a:b].tolist() for a, b in zip(arrays.offsets[:-1], arrays.offsets[1:], strict=True)]

    return pl.DataFrame(
        {
            "tokens": pl.Series(rows(arrays.tokens), dtype=pl.List(pl.Int32)),
            "delta_days": pl.Series(rows(arrays.delta_days), dtype=pl.List(pl.Float32)),
            "age_years": pl.Series(rows(arrays.age_years), dtype=pl.List(pl.Float32)),
            "value_bin": pl.Series(rows(arrays.value_bin), dtype=pl.List(pl.Int8)),
        }
    )


def test_in_order_yields_in_item_order_with_bounded_concurrency() -> None:
    items = [Path(f"shard-{i}") for i in range(12)]
    lock = threading.Lock()
    running = {"now": 0, "max": 0}

    def work(item: Path) -> str:
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        time.sleep(0.02 * (int(item.name.split("-")[1]) % 3))  # later items may finish first
        with lock:
            running["now"] -= 1
        return item.name

    assert list(in_order(work, items, workers=3)) == [p.name for p in items]
    assert 1 <= running["max"] <= 3
    assert list(in_order(work, items, workers=1)) == [p.name for p in items]


def test_in_order_propagates_a_worker_error_and_stops() -> None:
    started: list[str] = []

    def work(item: Path) -> str:
        started.append(item.name)
        if item.name == "b":
            raise RuntimeError("boom")
        return item.name

    items = [Path(n) for n in "abcdefgh"]
    with pytest.raises(RuntimeError, match="boom"):
        list(in_order(work, items, workers=2))
    assert len(started) < len(items)  # the remaining shards are not all scored after a failure
