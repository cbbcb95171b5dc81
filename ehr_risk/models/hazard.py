"""Discrete-time hazard heads over yearly intervals, for several tasks at once.

The follow-up after a prediction time t is cut into intervals [j, j+1) years, j = 0..J-1. For each task k a
head outputs the conditional hazard h_kj = P(event in interval j | event-free at its start). The risk at
h years is 1 − ∏_{j<h} (1 − h_kj).

Likelihood (censoring-aware): a row whose first outcome falls in interval j contributes
log h_j + Σ_{m<j} log(1 − h_m); a censored row contributes Σ_{m<c} log(1 − h_m), survival up to its censor
interval c (c = the interval it left in, or the next one when it left in that interval's second half: see
targets.hazard_targets). Follow-up beyond J years counts as surviving all J intervals.

Competing risk: death from another cause is treated as censoring at the time of death, so each head is a
cause-specific hazard and 1 − ∏(1 − h) is the cause-specific cumulative risk that would hold without the
competing death (it is at least the cumulative incidence; the gap is small while the death rate is low). This
is a deliberate, documented simplification; the binary labels, in contrast, count a prior competing death as
"no event" (contracts.md).

The targets (interval index, event flag) come from `ehr_risk.models.targets` (numpy only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hazard_nll(
    logits: torch.Tensor, interval: torch.Tensor, event: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean negative log-likelihood per (row, task) pair in the cohort.

    logits (B, K, J) are hazard logits; interval (B, K) long; event, mask (B, K) bool.
    """
    n_int = logits.shape[-1]
    logits = logits.float()  # the sum of many log terms is done in fp32 also under mixed precision
    steps = torch.arange(n_int, device=logits.device)
    survived = steps.view(1, 1, -1) < interval.unsqueeze(-1)
    failed = (steps.view(1, 1, -1) == interval.unsqueeze(-1)) & event.unsqueeze(-1)
    m = mask.unsqueeze(-1)
    ll = (F.logsigmoid(-logits) * (survived & m)).sum() + (F.logsigmoid(logits) * (failed & m)).sum()
    return -ll / mask.sum().clamp(min=1)


def cumulative_risk(logits: torch.Tensor) -> torch.Tensor:
    """Risk by the end of each interval: 1 − ∏_{m≤j}(1 − h_m), computed in log space. (…, J) → (…, J)."""
    return -torch.expm1(torch.cumsum(F.logsigmoid(-logits.float()), dim=-1))
