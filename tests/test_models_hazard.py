"""Discrete-time hazard likelihood, targets and censoring weights (ehr_risk/models/hazard.py, targets.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ehr_risk.models.hazard import cumulative_risk, hazard_nll
from ehr_risk.models.targets import (
    binary_label,
    censoring_survival,
    competing_targets,
    hazard_targets,
    ipcw_weights,
    label_horizons,
    observed_time,
)

T0 = np.datetime64("2020-01-01T00:00:00", "us")
YEAR = np.timedelta64(int(365.25 * 86400e6), "us")
NAT = np.datetime64("NaT", "us")


def at(years: float) -> np.datetime64:
    return T0 + np.timedelta64(int(years * 365.25 * 86400e6), "us")


def test_targets_event_censoring_competing_and_beyond_the_last_interval() -> None:
    t = np.array([T0] * 6)
    event = np.array([at(2.5), NAT, NAT, at(11.0), at(0.0), at(4.0)])
    competing = np.array([NAT, NAT, at(3.2), NAT, NAT, at(3.0)])
    censor = np.array([at(8.0), at(0.5), at(3.2), at(15.0), at(5.0), at(9.0)])
    first_half = hazard_targets(t[:1], np.array([NAT]), np.array([NAT]), np.array([at(0.4)]), n_intervals=10)
    assert first_half[0].tolist() == [0] and not first_half[1][0]
    interval, is_event = hazard_targets(t, event, competing, censor, n_intervals=10)
    # event in year 3 (index 2); censored in the first half of year 1 (survived none; at 0.5 it counts as
    # surviving year 1); competing death = censored at 3.2 → survived 3 intervals; outcome after 10 years =
    # followed through all intervals; outcome at t; death at 3.0 before the outcome → survived 3.
    assert interval.tolist() == [2, 1, 3, 10, 0, 3]
    assert is_event.tolist() == [True, False, False, False, True, False]


def test_competing_targets_put_a_competing_death_in_its_own_interval() -> None:
    t = np.array([T0] * 4)
    event = np.array([at(2.5), NAT, NAT, NAT])
    competing = np.array([NAT, at(3.2), at(12.0), at(1.9)])
    censor = np.array([at(8.0), at(9.0), at(15.0), at(1.5)])
    interval, is_event, died = competing_targets(t, event, competing, censor, n_intervals=10)
    # event in year 3; death from another cause in year 4 (index 3, not rounded like a censoring);
    # a death after the last interval is survival through all of them; censored at 1.5 before the death
    assert interval.tolist() == [2, 3, 10, 2]
    assert is_event.tolist() == [True, False, False, False]
    assert died.tolist() == [False, True, False, False]


def test_binary_label_matches_the_contract() -> None:
    years = np.array([2.0, 2.0, 12.0, 3.0])
    is_event = np.array([True, False, False, False])
    is_comp = np.array([False, True, False, False])
    value, known = binary_label(years, is_event, is_comp, horizon=10)
    # outcome before h → True; competing death first → False (known); followed beyond h → False;
    # censored before h → unknown.
    assert value.tolist() == [True, False, False, False]
    assert known.tolist() == [True, True, True, False]


def test_label_horizons_parses_whole_and_fractional_years() -> None:
    assert label_horizons(["subject_id", "label_10y", "label_2.5y", "label_1y", "boolean_value"]) == [
        1,
        2.5,
        10,
    ]


def test_nll_matches_a_hand_computed_value() -> None:
    logits = torch.tensor([[[0.0, 1.0, -1.0]], [[2.0, 0.0, 0.0]]])  # (B=2, K=1, J=3)
    interval = torch.tensor([[1], [2]])
    event = torch.tensor([[True], [False]])
    mask = torch.ones(2, 1, dtype=torch.bool)
    s = torch.sigmoid
    # row 0: survives interval 0, event in 1; row 1: censored in interval 2 → survives 0 and 1
    ll = torch.log(1 - s(torch.tensor(0.0))) + torch.log(s(torch.tensor(1.0)))
    ll = ll + torch.log(1 - s(torch.tensor(2.0))) + torch.log(1 - s(torch.tensor(0.0)))
    assert hazard_nll(logits, interval, event, mask).item() == pytest.approx(-ll.item() / 2, rel=1e-6)
    # rows outside a task's cohort do not count
    mask2 = torch.tensor([[True], [False]])
    ll0 = torch.log(1 - s(torch.tensor(0.0))) + torch.log(s(torch.tensor(1.0)))
    assert hazard_nll(logits, interval, event, mask2).item() == pytest.approx(-ll0.item(), rel=1e-6)


def test_cumulative_risk_is_one_minus_the_product_of_survivals() -> None:
    logits = torch.randn(4, 2, 10)
    h = torch.sigmoid(logits)
    expected = 1 - torch.cumprod(1 - h, dim=-1)
    assert torch.allclose(cumulative_risk(logits), expected, atol=1e-6)
    assert bool((cumulative_risk(logits).diff(dim=-1) >= 0).all())


def test_maximum_likelihood_recovers_a_constant_hazard_under_heavy_censoring() -> None:
    """The censoring-aware likelihood is unbiased; ignoring censoring (all rows followed) would not be."""
    rng = np.random.default_rng(0)
    n, rate = 10_000, 0.08
    t_event = rng.exponential(1 / rate, n)
    t_cens = rng.uniform(0, 10, n)
    t = np.array([T0] * n)
    event = np.array([at(x) for x in t_event])
    censor = np.array([at(x) for x in t_cens])
    interval, is_event = hazard_targets(t, event, np.array([NAT] * n), censor, n_intervals=10)
    logit = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([logit], lr=1.0, max_iter=30)
    iv, ev = torch.from_numpy(interval)[:, None], torch.from_numpy(is_event)[:, None]
    mask = torch.ones(n, 1, dtype=torch.bool)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = hazard_nll(logit.expand(n, 1, 10), iv, ev, mask)
        loss.backward()
        return loss

    opt.step(closure)
    assert torch.sigmoid(logit).item() == pytest.approx(1 - np.exp(-rate), abs=0.006)


def test_censoring_survival_is_kaplan_meier() -> None:
    years = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
    censored = np.array([True, False, True, True, False])
    times, surv = censoring_survival(years, censored)
    # at 1: 1 of 5 censored → 0.8; at 2: 1 of 4 → 0.6; at 3: 1 of 2 → 0.3
    assert times.tolist() == [1.0, 2.0, 3.0]
    assert surv == pytest.approx([0.8, 0.6, 0.3])


def test_ipcw_removes_the_bias_of_dropping_censored_rows() -> None:
    rng = np.random.default_rng(1)
    n, rate, h = 40_000, 0.05, 10.0
    t_event = rng.exponential(1 / rate, n)
    t_cens = rng.uniform(0, 15, n)
    years = np.minimum(t_event, t_cens)
    is_event = t_event <= t_cens
    is_comp = np.zeros(n, bool)
    value, known = binary_label(years, is_event, is_comp, h)
    truth = 1 - np.exp(-rate * h)
    naive = value[known].mean()
    w = ipcw_weights(years, is_event, is_comp, h)
    weighted = np.average(value[known], weights=w[known])
    assert abs(naive - truth) > 0.05  # dropping censored rows overstates the risk
    assert weighted == pytest.approx(truth, abs=0.01)
    assert (w[~known] == 0).all() and w[known].mean() == pytest.approx(1.0)


def test_observed_time_without_follow_up_information_is_censored_at_t() -> None:
    years, is_event, is_comp = observed_time(
        np.array([T0]), np.array([NAT]), np.array([NAT]), np.array([NAT])
    )
    assert years.tolist() == [0.0] and not is_event[0] and not is_comp[0]


def test_competing_nll_and_cumulative_incidence_match_hand_computed_values() -> None:
    logits = torch.tensor([[[[0.5, -1.0], [1.0, 0.0]]], [[[-0.5, 0.3], [0.2, 1.0]]]])  # (B=2, K=1, J=2, 2)

    def probs(le: float, lc: float) -> tuple[float, float, float]:
        z = 1 + np.exp(le) + np.exp(lc)
        return 1 / z, np.exp(le) / z, np.exp(lc) / z

    (n0, e0, _), (_, e1, _) = probs(0.5, -1.0), probs(1.0, 0.0)
    (m0, _, _), (_, _, c1) = probs(-0.5, 0.3), probs(0.2, 1.0)
    # row 0: outcome in interval 1; row 1: competing death in interval 1
    interval = torch.tensor([[1], [1]])
    event = torch.tensor([[True], [False]])
    died = torch.tensor([[False], [True]])
    mask = torch.ones(2, 1, dtype=torch.bool)
    ll = np.log(n0) + np.log(e1) + np.log(m0) + np.log(c1)
    assert hazard_nll(logits, interval, event, mask, died).item() == pytest.approx(-ll / 2, rel=1e-6)
    with pytest.raises(ValueError, match="competing"):
        hazard_nll(logits, interval, event, mask)
    cif = cumulative_risk(logits)
    assert cif.shape == (2, 1, 2)
    assert cif[0, 0].tolist() == pytest.approx([e0, e0 + n0 * e1], rel=1e-6)
    # the cumulative incidence stays below the risk that ignores the competing death
    assert (cif < cumulative_risk(logits[..., 0])).all()
