"""Sequence networks: plain `nn.Module`s, independent of Lightning (training lives in lightning_module.py).

Each event is embedded as token + value bin + time, where time is the log-scaled days before the prediction
time and the age at the event; the sequence is encoded by a GRU (output at the last real step) or a
transformer encoder (masked mean and last position, pooled), joined with the static/tabular features and
mapped to discrete-time hazard logits (tasks × yearly intervals, see hazard.py).

Batches are dicts of tensors made by ehr_risk/models/data.py: tokens (B, L) long, value_bin (B, L) long,
delta_days, age_years (B, L) float, mask (B, L) bool (True = real event; position 0 is always True so that an
empty history still has one PAD step), lengths (B,) long (≥ 1), static (B, S) float (NaN = missing).
Sequences are left-aligned: oldest → newest, padding at the end.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

_LOG_100Y = math.log1p(36_525.0)


@dataclass(frozen=True)
class NetworkConfig:
    kind: Literal["gru", "transformer"]
    n_tokens: int
    n_value_bins: int
    n_static: int
    n_tasks: int
    n_intervals: int = 10
    d_model: int = 64
    n_layers: int = 1
    n_heads: int = 4
    dropout: float = 0.1
    base_hazard: float = 0.01  # initial per-year hazard of every head: starts training near the truth
    competing: bool = False  # also a competing-death head per task and interval (models/hazard.py)
    static_head: bool = True  # static features also through the non-linear head (else: wide path only)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class EventEmbedding(nn.Module):
    """token + value-bin + time/age embedding, summed, then LayerNorm and dropout."""

    def __init__(self, n_tokens: int, n_value_bins: int, d: int, dropout: float) -> None:
        super().__init__()
        self.token = nn.Embedding(n_tokens, d, padding_idx=0)
        self.value_bin = nn.Embedding(n_value_bins + 1, d, padding_idx=0)
        self.time = nn.Linear(4, d)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ld = torch.log1p(batch["delta_days"].clamp(min=0)) / _LOG_100Y
        age = batch["age_years"] / 100.0
        t = torch.stack([ld, ld * ld, age, age * age], dim=-1)
        x = self.token(batch["tokens"]) + self.value_bin(batch["value_bin"]) + self.time(t)
        return self.drop(self.norm(x))


class StaticEncoder(nn.Module):
    """Standardises static features with train-set statistics held as buffers (NaN → mean) and adds a
    missing flag per feature (an unmeasured lab says something about a patient); `forward` gives both the
    plain standardised vector with flags (for the wide, linear path) and its projection (for the head)."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, n_static: int, d: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_static))
        self.register_buffer("scale", torch.ones(n_static))
        self.proj = nn.Sequential(nn.Linear(2 * n_static, d), nn.ReLU())

    def set_statistics(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.scale.copy_(scale)

    def flat(self, static: torch.Tensor) -> torch.Tensor:
        z = (static - self.mean) / self.scale
        missing = torch.isnan(static).to(z.dtype)
        return torch.cat([torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).clamp(-10, 10), missing], -1)

    def forward(self, static: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = self.flat(static)
        return flat, self.proj(flat)


class GRUEncoder(nn.Module):
    def __init__(self, d: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.gru = nn.GRU(d, d, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # Padding is at the end and the GRU is causal, so the output at the last real step is exactly the
        # state a packed sequence would end in. Packed sequences are avoided: on CPU they run an order of
        # magnitude slower than the dense kernel, and batches are length-bucketed so little padding is left.
        out, _ = self.gru(x)
        last = (batch["lengths"] - 1).clamp(min=0)
        return out[torch.arange(out.shape[0], device=out.device), last]


class TransformerEncoder(nn.Module):
    # Scoring path (see _encode_for_inference); off for training, so Lightning's validation passes and early
    # stopping run exactly as before. Predictor.network() turns it on. A class default, so modules pickled
    # before it existed load with it off.
    fast_inference: bool = False

    def __init__(self, d: int, n_layers: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d, n_heads, 2 * d, dropout=dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        # Dropout stays on the residual and feed-forward paths but not on the attention weights: that one
        # draws a B×heads×L×L random mask per layer and keeps the fused attention kernels from running
        # (about 3x slower training on CPU at L=256).
        layer.self_attn.dropout = 0.0
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.pool = nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["mask"]
        # Order comes from the time embedding (days before t), so no positional encoding is added.
        if self.fast_inference and not self.training and not torch.is_grad_enabled():
            h = self.norm(self._encode_for_inference(x, mask))
        else:
            h = self.norm(self.encoder(x, src_key_padding_mask=~mask))
        m = mask.unsqueeze(-1).to(h.dtype)
        mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
        last = h[torch.arange(h.shape[0], device=h.device), batch["lengths"] - 1]
        return self.pool(torch.cat([mean, last], dim=-1))

    def _encode_for_inference(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The encoder layers' eval-mode maths (pre-norm, dropout off) with attention by
        `scaled_dot_product_attention`. torch's own eval fast path for a padded batch materialises every
        B x heads x L x L score matrix for a masked softmax, about 3/4 of a scoring pass on CPU; the fused
        (flash) kernel streams it, ~3.5x faster at L=256. A batch with no padding drops the mask. Padded
        keys are masked, so real positions get the same values; the padded positions' outputs are unused."""
        attn_mask = None if bool(mask.all()) else mask[:, None, None, :]  # (B, 1, 1, L): True = attend
        b, length, d = x.shape
        for layer in self.encoder.layers:
            assert isinstance(layer, nn.TransformerEncoderLayer) and layer.norm_first
            attn = layer.self_attn
            heads = attn.num_heads
            h = layer.norm1(x)
            qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).view(b, length, 3, heads, d // heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, L, d / heads)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
            x = x + attn.out_proj(a.transpose(1, 2).reshape(b, length, d))
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))
        return x


class HazardNetwork(nn.Module):
    """Events (+ static features) → hazard logits (B, n_tasks, n_intervals)."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        c = self.config = config
        d = c.d_model
        self.embed = EventEmbedding(c.n_tokens, c.n_value_bins, d, c.dropout)
        self.encoder: nn.Module
        if c.kind == "gru":
            self.encoder = GRUEncoder(d, c.n_layers, c.dropout)
        elif c.kind == "transformer":
            self.encoder = TransformerEncoder(d, c.n_layers, c.n_heads, c.dropout)
        else:  # pragma: no cover - guarded by the config model
            raise ValueError(f"unknown network kind {c.kind!r}")
        self.static = StaticEncoder(c.n_static, d) if c.n_static else None
        joined = 2 * d if c.n_static and c.static_head else d
        self.n_kinds = 2 if c.competing else 1  # outcome (+ competing death) logits per interval
        n_out = c.n_tasks * c.n_intervals * self.n_kinds
        self.head = nn.Sequential(nn.Linear(joined, d), nn.ReLU(), nn.Dropout(c.dropout), nn.Linear(d, n_out))
        # Wide path: the static features also reach the logits linearly (wide & deep, Cheng et al. 2016),
        # so the network starts from what a regularised logistic model on the same table can do and the
        # sequence branch has only to add what the history shows. One shift per task for all intervals
        # (proportional odds of the yearly hazards): few weights. Zero-initialised, like the head's output.
        self.wide = nn.Linear(2 * c.n_static, c.n_tasks * self.n_kinds, bias=False) if c.n_static else None
        out = self.head[-1]
        assert isinstance(out, nn.Linear)
        nn.init.zeros_(out.weight)
        nn.init.constant_(out.bias, math.log(c.base_hazard / (1.0 - c.base_hazard)))
        if self.wide is not None:
            nn.init.zeros_(self.wide.weight)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        z = self.encoder(self.embed(batch), batch)
        wide: torch.Tensor | None = None
        if self.static is not None and self.wide is not None:
            if self.config.static_head:
                flat, projected = self.static(batch["static"])
                z = torch.cat([z, projected], dim=-1)
            else:
                flat = self.static.flat(batch["static"])
            # (B, tasks, 1[, kinds]): the same shift for every interval
            wide = self.wide(flat).view(-1, self.config.n_tasks, 1, self.n_kinds)
        c = self.config
        logits = self.head(z).view(-1, c.n_tasks, c.n_intervals, self.n_kinds)
        if wide is not None:
            logits = logits + wide
        # (B, tasks, intervals): hazard logits; (B, tasks, intervals, 2): outcome and competing-death logits
        return logits if c.competing else logits.squeeze(-1)
