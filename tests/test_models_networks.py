"""Sequence networks, batches and their Lightning training (ehr_risk/models/networks.py, data.py,
lightning_module.py) on small synthetic tensors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from ehr_risk.models.data import LengthBucketSampler, SequenceArrays, SequenceDataset, build_batch
from ehr_risk.models.lightning_module import FitSettings, fit_network
from ehr_risk.models.networks import HazardNetwork, NetworkConfig


def make_arrays(
    n: int, seed: int = 0, max_len: int = 12, n_static: int = 2
) -> tuple[SequenceArrays, np.ndarray]:
    """Random sequences; the planted signal: token 5 within the last 400 days raises the hazard."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, max_len + 1, n)
    tokens, delta, age, vbin = [], [], [], []
    signal = np.zeros(n, bool)
    for i, m in enumerate(lengths):
        tok = rng.integers(2, 8, m)
        d = np.sort(rng.uniform(0, 2000, m))[::-1].astype(np.float32)
        tokens.append(tok.astype(np.int32).tolist())
        delta.append(d.tolist())
        age.append((60 - d / 365.25).astype(np.float32).tolist())
        vbin.append(rng.integers(0, 4, m).astype(np.int8).tolist())
        signal[i] = bool(((tok == 5) & (d < 400)).any())
    table = pa.table(
        {
            "tokens": pa.array(tokens, pa.list_(pa.int32())),
            "delta_days": pa.array(delta, pa.list_(pa.float32())),
            "age_years": pa.array(age, pa.list_(pa.float32())),
            "value_bin": pa.array(vbin, pa.list_(pa.int8())),
        }
    )
    static = rng.normal(size=(n, n_static)).astype(np.float32)
    static[rng.random((n, n_static)) < 0.2] = np.nan
    return SequenceArrays.from_arrow(table, static), signal


def config(kind: str, **kw: object) -> NetworkConfig:
    base: dict[str, object] = dict(
        kind=kind,
        n_tokens=8,
        n_value_bins=3,
        n_static=2,
        n_tasks=2,
        n_intervals=5,
        d_model=16,
        n_heads=2,
        dropout=0.0,
    )
    base.update(kw)
    return NetworkConfig(**base)  # type: ignore[arg-type]


def test_build_batch_trims_padding_and_keeps_the_most_recent_events() -> None:
    arrays, _ = make_arrays(20)
    rows = np.array([0, 3, 7])
    batch = build_batch(arrays, rows, max_len=4)
    lengths = np.minimum(arrays.lengths[rows], 4)
    assert batch["tokens"].shape == (3, max(int(lengths.max()), 1))
    for b, r in enumerate(rows):
        start, end = arrays.offsets[r], arrays.offsets[r + 1]
        kept = arrays.tokens[max(start, end - 4) : end]
        assert batch["tokens"][b, : len(kept)].tolist() == kept.tolist()
        assert batch["tokens"][b, len(kept) :].eq(0).all()
    assert batch["mask"][:, 0].all()  # an empty history is one PAD step


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_outputs_do_not_depend_on_padding_or_batch_neighbours(kind: str) -> None:
    torch.manual_seed(0)
    arrays, _ = make_arrays(30)
    net = HazardNetwork(config(kind)).eval()
    short = int(np.argmin(arrays.lengths))
    longest = int(np.argmax(arrays.lengths))
    with torch.no_grad():
        alone = net(build_batch(arrays, np.array([short]), 12))
        padded = net(build_batch(arrays, np.array([longest, short]), 12))[1:]
    assert alone.shape == (1, 2, 5)
    assert torch.allclose(alone, padded, atol=1e-5)
    assert torch.isfinite(padded).all()  # NaN static features and empty histories are handled


def test_sampler_covers_each_row_once_and_is_reproducible() -> None:
    lengths = np.random.default_rng(0).integers(0, 50, 1000)
    s = LengthBucketSampler(lengths, batch_size=64, shuffle=True, seed=3, bucket=4)
    first = [r for b in s for r in b]
    assert sorted(first) == list(range(1000)) and len(list(s)) == len(s)
    assert first == [r for b in s for r in b]
    s.set_epoch(1)
    assert first != [r for b in s for r in b]
    # batches are of similar length: far less padding than a random batching
    spread = np.mean([np.ptp(lengths[b]) for b in s])
    assert spread < 20
    eval_rows = [r for b in LengthBucketSampler(lengths, 64, shuffle=False) for r in b]
    assert (np.diff(lengths[eval_rows]) >= 0).all()


def _datasets(n: int = 400, seed: int = 0) -> tuple[SequenceDataset, SequenceDataset]:
    arrays, signal = make_arrays(n, seed)
    rng = np.random.default_rng(seed + 1)
    rate = np.where(signal, 0.5, 0.05)
    t = rng.exponential(1 / rate)
    cens = rng.uniform(1, 6, n)
    interval = np.minimum(np.floor(np.minimum(t, cens)), 5).astype(np.int64)
    event = (t <= cens) & (interval < 5)
    interval2 = np.stack([interval, interval], 1)
    event2 = np.stack([event, event], 1)
    mask = np.ones((n, 2), bool)
    mask[::3, 1] = False  # the second task's cohort is a subset
    cut = int(0.75 * n)
    tr, tu = np.arange(cut), np.arange(cut, n)

    def sub(rows: np.ndarray) -> SequenceDataset:
        table = pa.table(
            {
                "tokens": pa.array([arrays.tokens[arrays.offsets[r] : arrays.offsets[r + 1]] for r in rows]),
                "delta_days": pa.array(
                    [arrays.delta_days[arrays.offsets[r] : arrays.offsets[r + 1]] for r in rows]
                ),
                "age_years": pa.array(
                    [arrays.age_years[arrays.offsets[r] : arrays.offsets[r + 1]] for r in rows]
                ),
                "value_bin": pa.array(
                    [arrays.value_bin[arrays.offsets[r] : arrays.offsets[r + 1]] for r in rows]
                ),
            }
        )
        return SequenceDataset(
            SequenceArrays.from_arrow(table, arrays.static[rows]),
            12,
            interval2[rows],
            event2[rows],
            mask[rows],
        )

    return sub(tr), sub(tu)


def test_training_is_reproducible_on_cpu_and_learns_the_planted_signal() -> None:
    train, tune = _datasets()
    settings = FitSettings(max_epochs=10, patience=3, batch_size=64, max_len=12, seed=7, lr=1e-2, threads=1)
    a = fit_network(config("gru"), train, tune, ["a", "b"], [3, 3], settings)
    b = fit_network(config("gru"), train, tune, ["a", "b"], [3, 3], settings)
    for (k, va), vb in zip(a.network.state_dict().items(), b.network.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert a.history == b.history and a.best_epoch == b.best_epoch
    assert [h["epoch"] for h in a.history] == list(range(a.epochs_run))
    assert max(h["val_auroc_a"] for h in a.history) > 0.7  # token 5 in the last 400 days is found
    assert min(h["val_loss"] for h in a.history) == pytest.approx(a.best_val_loss)
    other = FitSettings(**{**settings.__dict__, "seed": 8, "max_epochs": 1})
    c = fit_network(config("gru"), train, tune, ["a", "b"], [3, 3], other)
    assert not torch.equal(a.network.head[-1].weight, c.network.head[-1].weight)


def test_transformer_trains_and_early_stopping_keeps_the_best_epoch() -> None:
    train, tune = _datasets(200)
    settings = FitSettings(max_epochs=4, patience=1, batch_size=64, max_len=12, seed=0, lr=5e-3, threads=1)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    res = fit_network(config("transformer"), train, tune, ["a", "b"], [3, 3], settings)
    # process-wide torch settings are given back as they were
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert 1 <= res.epochs_run <= 4
    losses = [h["val_loss"] for h in res.history]
    assert res.best_epoch == int(np.argmin(losses))
    assert not res.network.training


def test_competing_heads_and_a_wide_only_static_path() -> None:
    torch.manual_seed(0)
    arrays, _ = make_arrays(10)
    rows = np.arange(10)
    net = HazardNetwork(config("gru", competing=True, static_head=False)).eval()
    assert net.wide is not None
    torch.nn.init.normal_(net.wide.weight)  # zero at start: give the wide path something to do
    batch = build_batch(arrays, rows, 12)
    with torch.no_grad():
        logits = net(batch)
        batch["static"] = batch["static"] + 1.0
        moved = net(batch)
    assert logits.shape == (10, 2, 5, 2)  # rows, tasks, intervals, (outcome, competing death)
    shift = moved - logits
    # without the static head, static features act only through the wide path: one shift per row, task
    # and kind, the same for every interval
    assert torch.allclose(shift, shift[:, :, :1, :].expand_as(shift), atol=1e-5)
    assert shift.abs().max() > 1e-3
