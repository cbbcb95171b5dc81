"""Training of the hazard networks with Lightning: one LightningModule for every network kind.

Model selection: the epoch with the lowest tuning-split loss (the censoring-aware likelihood, a proper
scoring rule) is kept, and training stops after `patience` epochs without improvement. Per-epoch metrics
(train_loss, val_loss, val_auroc_<task> at the task's primary horizon) go to the logger given (the MLflow
logger made by ehr_risk.registry). Seeds are fixed and CPU runs are deterministic; on a GPU
(`accelerator="auto"`) training uses mixed precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from sklearn.metrics import roc_auc_score

from ehr_risk.models.data import SequenceDataset, make_loader
from ehr_risk.models.hazard import cumulative_risk, hazard_nll
from ehr_risk.models.networks import HazardNetwork, NetworkConfig


@dataclass(frozen=True)
class FitSettings:
    max_epochs: int = 10
    patience: int = 2
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_len: int = 256
    seed: int = 0
    grad_clip: float = 1.0
    accelerator: str = "auto"
    progress: bool = False
    threads: int | None = None  # torch CPU threads; None keeps torch's default


@dataclass
class FitResult:
    network: HazardNetwork  # on CPU, eval mode, weights of the best epoch
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


class HazardModule(L.LightningModule):
    def __init__(
        self,
        network_config: dict[str, Any],
        task_names: list[str],
        primary_horizons: list[int],
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = HazardNetwork(NetworkConfig(**network_config))
        self.task_names, self.primary_horizons = task_names, primary_horizons
        self.lr, self.weight_decay = lr, weight_decay
        self._val: list[tuple[np.ndarray, ...]] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(batch)

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(batch)
        b = batch
        loss = hazard_nll(logits, b["interval"], b["event"], b["task_mask"], b.get("competing"))
        return loss, logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=int(batch["task_mask"].sum()))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, logits = self._loss(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=int(batch["task_mask"].sum()))
        risk = cumulative_risk(logits).detach().float().cpu().numpy()
        mask_np = batch["task_mask"].cpu().numpy()
        self._val.append(
            (
                risk,
                batch["interval"].cpu().numpy(),
                batch["event"].cpu().numpy(),
                batch["task_mask"].cpu().numpy(),
                batch["competing"].cpu().numpy() if "competing" in batch else np.zeros_like(mask_np),
            )
        )

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        risk, interval, event, mask, died = (np.concatenate(a) for a in zip(*self._val, strict=True))
        self._val.clear()
        for k, (task, h) in enumerate(zip(self.task_names, self.primary_horizons, strict=True)):
            # Known label at h: the outcome before h, or event-free follow-up through h (or a competing
            # death before h, when the network models it: the binary labels' "no event").
            case = mask[:, k] & event[:, k] & (interval[:, k] < h)
            control = mask[:, k] & ((interval[:, k] >= h) | (died[:, k] & (interval[:, k] < h)))
            known = case | control
            if case.any() and control.any():
                auc = roc_auc_score(case[known], risk[known, k, h - 1])
                self.log(f"val_auroc_{task}", float(auc))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class _KeepBest(L.Callback):
    """Keeps the weights of the epoch with the lowest val_loss in memory and records per-epoch metrics."""

    def __init__(self) -> None:
        self.best = math.inf
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.history.append({"epoch": float(trainer.current_epoch), **metrics})
        value = metrics.get("val_loss", math.inf)
        if value < self.best:
            self.best, self.best_epoch = value, trainer.current_epoch
            assert isinstance(pl_module, HazardModule)
            self.state = {k: t.detach().cpu().clone() for k, t in pl_module.net.state_dict().items()}


def _device_settings(accelerator: str) -> tuple[str, str, bool]:
    """(accelerator, precision, deterministic): mixed precision on a GPU, deterministic fp32 on CPU."""
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if not gpu:
        return "cpu", "32-true", True
    precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "gpu", precision, False


def set_static_statistics(net: HazardNetwork, static: np.ndarray) -> None:
    """Standardisation of the static features from the training rows (NaN-aware)."""
    if net.static is None or static.shape[1] == 0:
        return
    with np.errstate(all="ignore"):
        mean = np.nan_to_num(np.nanmean(static, axis=0), nan=0.0)
        std = np.nan_to_num(np.nanstd(static, axis=0), nan=1.0)
    std = np.where(std > 1e-6, std, 1.0)
    net.static.set_statistics(
        torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32))
    )


def fit_network(
    config: NetworkConfig,
    train: SequenceDataset,
    tuning: SequenceDataset,
    task_names: list[str],
    primary_horizons: list[int],
    settings: FitSettings,
    logger: Any = None,
) -> FitResult:
    """Train with early stopping on the tuning split and return the best network (CPU, eval mode)."""
    L.seed_everything(settings.seed, workers=True, verbose=False)
    threads_before = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    module = HazardModule(config.to_dict(), task_names, primary_horizons, settings.lr, settings.weight_decay)
    set_static_statistics(module.net, train.arrays.static)
    accelerator, precision, deterministic = _device_settings(settings.accelerator)
    keep = _KeepBest()
    trainer = L.Trainer(
        max_epochs=settings.max_epochs,
        accelerator=accelerator,
        devices=1,
        precision=precision,  # type: ignore[arg-type]
        deterministic=deterministic,
        gradient_clip_val=settings.grad_clip,
        callbacks=[EarlyStopping("val_loss", patience=settings.patience, mode="min"), keep],
        logger=logger if logger is not None else False,
        enable_checkpointing=False,
        enable_progress_bar=settings.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=50,
    )
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        trainer.fit(
            module,
            make_loader(train, settings.batch_size, shuffle=True, seed=settings.seed),
            make_loader(tuning, settings.batch_size, shuffle=False),
        )
    finally:  # the thread count and Trainer(deterministic=True) are process-wide: give them back
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(threads_before)
    net = module.net.cpu()
    if keep.state is not None:
        net.load_state_dict(keep.state)
    net.eval()
    return FitResult(net, keep.best_epoch, keep.best, trainer.current_epoch, keep.history)
