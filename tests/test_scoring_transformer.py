"""The transformer's scoring path (TransformerEncoder._encode_for_inference, fused attention) gives the same
risks as torch's own encoder on the same inputs, is used only for inference, and leaves training alone."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from ehr_risk.models.data import build_batch
from ehr_risk.models.hazard import cumulative_risk
from ehr_risk.models.networks import HazardNetwork, TransformerEncoder
from ehr_risk.predictor import Predictor, inference_batches
from tests.test_models_networks import config, make_arrays
from tests.test_scoring_batches import sequence_table


def _random_network(n_layers: int, d_model: int = 32, n_heads: int = 4, seed: int = 0) -> HazardNetwork:
    torch.manual_seed(seed)
    net = HazardNetwork(
        config("transformer", n_layers=n_layers, d_model=d_model, n_heads=n_heads, dropout=0.2, n_tasks=1)
    )
    with torch.no_grad():
        for p in net.parameters():  # the head starts at zero: random weights make rows differ
            p.normal_(0, 0.2)
        out = net.head[-1]
        assert isinstance(out, torch.nn.Linear)
        out.bias.fill_(-4.0)  # risks spread over (0, 1) rather than all near 1
    return net.eval()


def _risks(net: HazardNetwork, batch: dict[str, torch.Tensor], fast: bool) -> np.ndarray:
    encoder = net.encoder
    assert isinstance(encoder, TransformerEncoder)
    encoder.fast_inference = fast
    with torch.inference_mode():
        return cumulative_risk(net(batch)).double().numpy()


@pytest.mark.parametrize("n_layers", [1, 2])
def test_fast_inference_matches_torchs_encoder_on_padded_and_full_batches(n_layers: int) -> None:
    max_len = 48
    arrays, _ = make_arrays(300, seed=n_layers, max_len=max_len)
    net = _random_network(n_layers)
    lengths = np.maximum(np.minimum(arrays.lengths, max_len), 1)
    by_length = np.argsort(lengths, kind="stable")
    padded = build_batch(arrays, by_length[::7], max_len)  # every length range: much padding
    full = build_batch(arrays, np.flatnonzero(lengths == max_len), max_len)  # no padding: no mask
    assert not bool(padded["mask"].all()) and bool(full["mask"].all()) and full["mask"].shape[0] > 1
    for batch in (padded, full):
        reference, fast = _risks(net, batch, fast=False), _risks(net, batch, fast=True)
        np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-5)
        assert np.std(reference[:, 0, -1]) > 1e-3  # rows differ: the comparison is not trivial


def test_padding_does_not_reach_the_real_positions() -> None:
    """A row scored alone (no padding) and in a batch with longer rows gives the same risk."""
    arrays, _ = make_arrays(24, seed=3, max_len=40)
    net = _random_network(2)
    encoder = net.encoder
    assert isinstance(encoder, TransformerEncoder)
    encoder.fast_inference = True
    rows = np.argsort(arrays.lengths, kind="stable")
    with torch.inference_mode():
        together = cumulative_risk(net(build_batch(arrays, rows, 40))).numpy()
        alone = np.concatenate(
            [cumulative_risk(net(build_batch(arrays, rows[i : i + 1], 40))) for i in range(len(rows))]
        )
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)


def _predictor(net: HazardNetwork, max_len: int) -> Predictor:
    return Predictor(
        model_kind="transformer",
        tasks=["t"],
        horizons={"t": [1.0, 3.0, 5.0]},
        primary_horizons={"t": 5.0},
        sequence=object(),
        feature_names=["clin:x0", "clin:x1"],
        network_config=net.config.to_dict(),
        network_state={k: v.numpy().copy() for k, v in net.state_dict().items()},
        max_len=max_len,
    )


def test_predictor_scores_with_the_fast_path_and_unchanged_risks() -> None:
    """Predictor risks (length-bucketed batches, budgeted by work) equal the previous code path's: the same
    batches through torch's encoder."""
    max_len = 64
    arrays, _ = make_arrays(400, seed=7, max_len=max_len)
    net = _random_network(1, d_model=32)
    pred = pickle.loads(pickle.dumps(_predictor(net, max_len)))  # as a registered model is loaded
    risks, _ = pred._predict_network(sequence_table(arrays), arrays.static)
    scoring_net = pred.network()
    assert isinstance(scoring_net.encoder, TransformerEncoder) and scoring_net.encoder.fast_inference
    assert not scoring_net.training

    reference = np.zeros((len(arrays), 1, net.config.n_intervals))
    lengths = np.maximum(np.minimum(arrays.lengths, max_len), 1)
    for rows in inference_batches(lengths, "transformer", pred.batch_size):
        reference[rows] = _risks(net, build_batch(arrays, rows, max_len), fast=False)
    for h in (1, 3, 5):
        np.testing.assert_allclose(risks[f"risk_t_{h}y"], reference[:, 0, h - 1], rtol=0, atol=1e-5)
    assert np.std(risks["risk_t_5y"]) > 1e-3


def test_training_and_gradients_never_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _random_network(1)
    encoder = net.encoder
    assert isinstance(encoder, TransformerEncoder)
    assert not TransformerEncoder(16, 1, 2, 0.1).fast_inference  # off unless a Predictor turns it on
    encoder.fast_inference = True

    def refuse(*_args: object) -> torch.Tensor:
        raise AssertionError("fast path used outside inference")

    monkeypatch.setattr(encoder, "_encode_for_inference", refuse)
    arrays, _ = make_arrays(20, seed=1, max_len=10)
    batch = build_batch(arrays, np.arange(20), 10)
    net(batch).sum().backward()  # eval mode with gradients (e.g. explanations by gradient)
    net.train()
    net(batch).sum().backward()
    with torch.no_grad():
        net(batch)  # training mode, no gradients: dropout is on, so not the scoring maths
